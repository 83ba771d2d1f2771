"""A minimal SMTP server for the unit tests on 127.0.0.1: the greeting, EHLO (offering STARTTLS while it has a
certificate), STARTTLS with that certificate (certificates.py makes them), QUIT; one session at a time, enough
for a client that checks the certificate and leaves."""

from __future__ import annotations

import datetime
import socket
import ssl
import threading
from pathlib import Path

from certificates import NOW, certificate, new_key, private_key_pem


class SmtpServer:
    """Listens on 127.0.0.1:port until close(). context: the certificate STARTTLS serves (serve() sets it); None,
    STARTTLS is not offered."""

    def __init__(self) -> None:
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.context: ssl.SSLContext | None = None
        threading.Thread(target=self._accept, daemon=True).start()

    def serve(self, directory: Path, hostname: str, days_left: int = 90, extra_names: tuple[str, ...] = ()) -> str:
        """Serve a new self-signed certificate for hostname (and extra_names) with days_left whole days left
        (-1: expired); its file, the CA file a client trusts it with."""
        # certificates.py's certificates are valid from its fixed NOW: the days since then make up the difference.
        days = days_left + (datetime.datetime.now(datetime.timezone.utc) - NOW).days + 1
        key = new_key()
        cert_file, key_file = directory / f"{hostname}-{days_left}.pem", directory / f"{hostname}-{days_left}.key"
        cert_file.write_text(certificate(hostname, key, days, extra_names))
        key_file.write_text(private_key_pem(key))
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(cert_file, key_file)
        self.context = context
        return str(cert_file)

    def close(self) -> None:
        self.listener.close()

    def _accept(self) -> None:
        while True:
            try:
                connection = self.listener.accept()[0]
            except OSError:  # closed
                return
            try:
                self._session(connection)
            except OSError:
                pass  # a client that refuses the certificate ends the handshake: what some tests are about

    def _session(self, connection: socket.socket) -> None:
        connection.settimeout(5)  # a client that stops talking does not hold up the next one
        context, reader = self.context, connection.makefile("rb")
        try:
            connection.sendall(b"220 smtp.test ESMTP\r\n")
            while line := reader.readline():
                verb = line.split(b" ")[0].strip().upper()
                if verb == b"EHLO":
                    offer = context is not None and not isinstance(connection, ssl.SSLSocket)
                    connection.sendall(b"250-smtp.test\r\n250 STARTTLS\r\n" if offer else b"250 smtp.test\r\n")
                elif verb == b"STARTTLS" and context is not None:
                    connection.sendall(b"220 ready to start TLS\r\n")
                    reader.close()
                    connection = context.wrap_socket(connection, server_side=True)
                    reader = connection.makefile("rb")
                elif verb == b"QUIT":
                    connection.sendall(b"221 bye\r\n")
                    return
                else:
                    connection.sendall(b"502 not implemented\r\n")
        finally:
            reader.close()
            connection.close()
