"""Make this checkout importable as ansible_collections.opendove.mailserver (collections/ links to it), and
give tests a DNS server of their own on 127.0.0.1."""

import socket
import sys
import threading
from pathlib import Path

import dns.message
import dns.rcode
import dns.rrset
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "collections"))


class LocalDnsServer:
    """An authoritative-only UDP DNS server on 127.0.0.1 for the tests: TXT answers from `records`
    (name -> list of values), NXDOMAIN for other names."""

    def __init__(self) -> None:
        self.records: dict[str, list[str]] = {}
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.thread = threading.Thread(target=self.serve, daemon=True)
        self.thread.start()

    def serve(self) -> None:
        while True:
            try:
                data, peer = self.sock.recvfrom(4096)
            except OSError:
                return
            query = dns.message.from_wire(data)
            response = dns.message.make_response(query)
            question = query.question[0]
            values = self.records.get(question.name.to_text().rstrip("."))
            if values:
                # A long value goes out as several strings of at most 255 characters, as zones publish it.
                response.answer.append(dns.rrset.from_text_list(question.name, 60, "IN", "TXT", [
                    " ".join('"' + v[i:i + 255].replace('"', '\\"') + '"' for i in range(0, len(v), 255))
                    for v in values]))
            else:
                response.set_rcode(dns.rcode.NXDOMAIN)
            self.sock.sendto(response.to_wire(), peer)

    def close(self) -> None:
        self.sock.close()


@pytest.fixture
def dns_server():
    server = LocalDnsServer()
    yield server
    server.close()


@pytest.fixture(scope="session")
def named(tmp_path_factory):
    """A real BIND serving named_server.ZONES on 127.0.0.1 ("127.0.0.1#port"), for the whole test run."""
    import named_server  # pylint: disable=import-outside-toplevel

    try:
        process, server = named_server.start(tmp_path_factory.mktemp("named"))
    except RuntimeError as exc:
        pytest.fail(str(exc))
    yield server
    process.terminate()
    process.wait(timeout=10)
