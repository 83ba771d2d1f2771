"""Daemons run, listen where they should, and secrets have the right owners and modes."""

import pytest


@pytest.mark.parametrize("service", ["opensmtpd", "dovecot"])
def test_daemon_is_active_and_enabled(host, service):
    assert host.service(service).is_running
    assert host.service(service).is_enabled


@pytest.mark.parametrize("port", [25, 465, 587, 143, 993])
def test_mail_port_listens(host, port):
    assert host.socket(f"tcp://0.0.0.0:{port}").is_listening


@pytest.mark.parametrize(
    "path, owner, group, mode",
    [
        ("/etc/smtpd/srs.conf", "root", "root", 0o600),
        ("/etc/smtpd/credentials", "root", "opensmtpd", 0o640),
        ("/etc/smtpd/sender_addresses", "root", "opensmtpd", 0o640),
        ("/etc/smtpd/virtuals", "root", "opensmtpd", 0o640),
        ("/etc/dovecot/users", "root", "dovecot", 0o640),
        ("/etc/ssl/private/mail.key", "root", "root", 0o600),
        ("/home/vmail", "vmail", "vmail", 0o750),
    ],
)
def test_secret_file_owner_and_mode(host, path, owner, group, mode):
    f = host.file(path)
    assert f.exists
    assert (f.user, f.group, f.mode) == (owner, group, mode)


def test_srs_key_is_generated_and_long(host):
    content = host.file("/etc/smtpd/srs.conf").content_string
    key = content.split("srs key ", 1)[1].split()[0]
    assert len(key) >= 32


def test_lmtp_socket_is_reachable_by_opensmtpd_only(host):
    socket = host.file("/run/dovecot/lmtp")
    assert socket.is_socket
    assert (socket.user, socket.group, socket.mode) == ("vmail", "opensmtpd", 0o660)


def test_opensmtpd_config_is_valid(host):
    assert host.run("smtpd -n -f /etc/smtpd.conf").rc == 0


def test_dovecot_template_matches_installed_series(host):
    version = host.run("dovecot --version").stdout
    config = host.file("/etc/dovecot/dovecot.conf").content_string
    assert ("dovecot_config_version" in config) == version.startswith("2.4")


@pytest.fixture(scope="module")
def signer(host_vars):
    return host_vars["mail_dkim_signer"]


def test_filter_and_signer_run(host, signer):
    services = ["rspamd"] + (["dkimproxy-out"] if signer == "dkimproxy" else [])
    for service in services:
        assert host.service(service).is_running and host.service(service).is_enabled, service


def test_signer_and_filter_listen_on_loopback_only(host, signer):
    ports = [11333] + ([10027, 10028] if signer == "dkimproxy" else [])
    for port in ports:
        assert host.socket(f"tcp://127.0.0.1:{port}").is_listening, port
        assert not host.socket(f"tcp://0.0.0.0:{port}").is_listening, port


def test_dkim_keys_are_readable_by_the_signer_only(host, host_vars, signer):
    owner, group, mode = ("_rspamd", "_rspamd", 0o600) if signer == "rspamd" else ("root", "dkimproxy", 0o640)
    key_dir = host.file("/var/lib/opendove/dkim")
    assert (key_dir.user, key_dir.group, key_dir.mode) == ("root", group, 0o750)
    keys = host.check_output("find /var/lib/opendove/dkim -name '*.key'").split()
    assert len(keys) >= len(host_vars["mail_domains"])
    for path in keys:
        key = host.file(path)
        assert (key.user, key.group, key.mode) == (owner, group, mode), path


def test_daemons_run_under_the_hosts_utf8_locale(host):
    """The lab is a real host: systemd passes /etc/default/locale's en_US.UTF-8 to the daemons and to smtpd's
    filters (under C.UTF-8, Python would read the filter protocol leniently and hide decoding bugs)."""
    assert "LANG=en_US.UTF-8" in host.file("/etc/default/locale").content_string
    pid = host.check_output("pgrep -f -- '^/usr/bin/python3 -I /usr/local/sbin/opendove-filter-senders'").split()[0]
    assert "LANG=en_US.UTF-8" in host.check_output(f"tr '\\0' '\\n' < /proc/{pid}/environ")
    assert host.run("locale -a | grep -qix en_US.utf8").rc == 0
