"""site.yml's validation play, run once by ansible-playbook for every kind of bad input together: one local host
per input (the scenarios' site model plus the input as host variables), each stopped by the play with its own
message. A control host, whose only fault is the last one the play looks for, shows that the site model passes
every earlier check. Only the validation play is run, and in check mode: the hosts are this machine. (The
Molecule scenarios keep one such run of the whole site.yml against real hosts, stopped before the play that
changes them, and the inputs only a host can refuse: a config that fails validation, a short DKIM key.)"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from certificates import certificate

ROOT = Path(__file__).resolve().parents[3]
PLAYBOOK = Path(sys.executable).parent / "ansible-playbook"
# The scenarios' site model, the base every host here starts from.
SITE_MODEL = yaml.safe_load((ROOT / "molecule" / "shared" / "inventory" / "mail.yml").read_text())
ARCHIVE = ROOT / "molecule" / "shared" / "files" / "dkimproxy-1.4.1.tar.gz"
ARCHIVE_SHA256 = "a245ad2c82b140d9cb5bf7dcd2caf14a7ad5f84e2d8c6758424a874469b0d32b"
VALIDATION_PLAY = "Validate the site model before anything changes"
CLEAR_TEXT = "correct-horse-battery"
CRYPT = "$6$M89SwZdOBVCxPkgO$" + "a" * 86

# (input, what the play says); "{tmp}" stands for the test's directory.
BAD_INPUTS = [
    ({"mail_accounts": [{"address": "x@unhosted.test", "password_hash": CRYPT}]},
     "mail_accounts[0] (x@unhosted.test): domain unhosted.test is not in mail_domains"),
    ({"mail_accounts": [{"address": "alice@one.test", "password_hash": CLEAR_TEXT}]},
     "mail_accounts[0] (alice@one.test): password_hash is not a crypt hash"),
    ({"mail_aliases": {"a@one.test": ["b@one.test"], "b@one.test": ["a@one.test"]}},
     "mail_aliases: alias loop a@one.test -> b@one.test -> a@one.test"),
    ({"mail_domains": [{"name": "one_test"}]}, "mail_domains[0]: name 'one_test' is not a lower-case domain name"),
    ({"mail_domains": [{"name": "One.test"}]},
     "mail_domains[0]: name 'One.test' is not a lower-case domain name: it has upper-case letters: write 'one.test'"),
    ({"mail_password_hash_max_cost": {"bcrypt_cost": 5}},
     "mail_accounts[1] (bob@two.test): password_hash is a bcrypt hash of cost 6, above the limit of 5 "
     "(mail_password_hash_max_cost.bcrypt_cost)"),
    ({"mta_sts_tls_certificate": "{tmp}/missing.pem"},
     "missing on the host (variable: path): {'mta_sts_tls_certificate': '{tmp}/missing.pem'}"),
    ({"mail_domains": [{"name": "one.test", "mta_sts": {"mode": "strict"}}]},
     "mail_domains[0] (one.test).mta_sts: mode 'strict' is not one of testing, enforce, none"),
    ({"mail_domains": [{"name": "one.test", "mta_sts": {"mode": "enforce", "max_age": 31557601}}]},
     "mail_domains[0] (one.test).mta_sts: max_age 31557601 is not a whole number of seconds from 0 to 31557600"),
    ({"mail_relayhost": {"host": "relay.outside.test", "port": 65536}, "mail_spf_include": ["a:relay.outside.test"]},
     "mail_relayhost: port 65536 is not a port number from 1 to 65535"),
    ({"mail_relayhost": {"host": "smtp://relay.outside.test"}, "mail_spf_include": ["a:relay.outside.test"]},
     "mail_relayhost: host 'smtp://relay.outside.test' has a scheme"),
    ({"mail_relayhost": {"host": "relay.outside.test/submit"}, "mail_spf_include": ["a:relay.outside.test"]},
     "mail_relayhost: host 'relay.outside.test/submit' has a path"),
    ({"mail_relayhost": {"host": "relay.outside.test", "ca_file": "{tmp}/missing-ca.pem"},
      "mail_spf_include": ["a:relay.outside.test"]},
     "'mail_relayhost.ca_file': '{tmp}/missing-ca.pem'"),
    ({"opensmtpd_submission_auth": ["client_certificate"], "opensmtpd_submission_client_ca": "{tmp}/mail.pem"},
     "without password, anyone holding a client certificate could send mail through this host as any of its users "
     "(OpenSMTPD does not tie a certificate to a login): that could make an open relay"),
    ({"mail_domains": "one.test"}, "mail_domains"),
    ({"mail_domains": [{"name": "one.test", "dmarc": {"p": "maybe"}}]},
     "mail_domains[0] (one.test).dmarc: DMARC p='maybe' is invalid; expected none, quarantine or reject"),
    ({"mail_domains": [{"name": "one.test", "spf": "v=spf1 " + " ".join(f"include:s{i}.test" for i in range(11))
                        + " -all"}]}, "needs 11 DNS lookups; RFC 7208 allows 10"),
    ({"mail_dkim_signer": "opendkim"}, "mail_dkim_signer must be one of: dkimproxy, rspamd"),
    ({"mail_srs_rotation": {"grace": "2d"}},
     "mail_srs_rotation: grace (172800 s) is shorter than the SRS address lifetime (opensmtpd_srs_ttl, 345600 s)"),
    ({"mail_dkim_rotation": {"grace": "1d", "lead": "3d"}}, "mail_dkim_rotation: grace (86400 s) must be longer"),
    ({"mail_domains": SITE_MODEL["mail_domains"] + [{"name": "four.test", "mta_sts": {"mode": "testing"}}]},
     "mta_sts_tls_certificate {tmp}/mail.pem does not cover mta-sts.four.test"),
    ({"dkimproxy_archive_sha256": "0" * 64},
     f"dkimproxy_archive_src {ARCHIVE}: sha256 is {ARCHIVE_SHA256}, not dkimproxy_archive_sha256 000"),
    ({"dkimproxy_archive_src": "{tmp}/dkimproxy-1.4.1.tar.gz"},
     "dkimproxy_archive_src {tmp}/dkimproxy-1.4.1.tar.gz: no such file on the controller"),
]
# The last thing the play looks for: a TLS file missing on the host.
CONTROL = ({"mail_tls_private_key": "{tmp}/missing.key", "mta_sts_tls_private_key": "{tmp}/mail.key"},
           "missing on the host (variable: path): {'mail_tls_private_key': '{tmp}/missing.key'}")


def expand(value, tmp: Path):
    """The input with the test's directory filled in."""
    return json.loads(json.dumps(value).replace("{tmp}", str(tmp)))


@pytest.fixture(scope="module")
def validation(tmp_path_factory):
    """One run of site.yml's validation play over one local host per bad input (bad_<n>) and the control host:
    per host, the message of the task that stopped it; the stats; the whole JSON output."""
    tmp = tmp_path_factory.mktemp("site")
    model = dict(SITE_MODEL)
    (tmp / "mail.pem").write_text(certificate("mx.one.test", extra_names=("mta-sts.one.test", "mta-sts.two.test")))
    (tmp / "mail.key").write_text("a private key the play only looks for\n")
    model.update({
        "mail_hostname": "mx.one.test",
        "mail_tls_certificate": str(tmp / "mail.pem"), "mail_tls_private_key": str(tmp / "mail.key"),
        "mail_dkim_signer": "dkimproxy",
        "dkimproxy_archive_src": str(ARCHIVE), "dkimproxy_archive_sha256": ARCHIVE_SHA256,
        "test_dns_server": "192.0.2.53",
        "ansible_connection": "local", "ansible_python_interpreter": sys.executable,
    })
    hosts = {f"bad_{n}": expand(overrides, tmp) for n, overrides in enumerate(case[0] for case in BAD_INPUTS)}
    hosts["control"] = expand(CONTROL[0], tmp)
    inventory = {"all": {"children": {"mail": {"hosts": hosts, "vars": model}}}}
    (tmp / "inventory.json").write_text(json.dumps(inventory))
    # site.yml's first play alone, beside the roles as in playbooks/ (it reads their argument specs from there).
    validation_play = yaml.safe_load((ROOT / "playbooks" / "site.yml").read_text())[0]
    assert validation_play["name"] == VALIDATION_PLAY
    (tmp / "roles").symlink_to(ROOT / "roles")
    (tmp / "playbooks").mkdir()
    (tmp / "playbooks" / "validate.yml").write_text(yaml.safe_dump([validation_play]))
    result = subprocess.run([str(PLAYBOOK), "-i", str(tmp / "inventory.json"), "--forks", str(len(hosts)), "--check",
                             str(tmp / "playbooks" / "validate.yml")], capture_output=True, text=True, check=False, timeout=600,
                            cwd=ROOT, env=dict(os.environ, ANSIBLE_CONFIG=str(ROOT / "ansible.cfg"),
                                               ANSIBLE_STDOUT_CALLBACK="ansible.posix.json"))
    assert result.returncode != 0, result.stdout[-3000:]
    report = json.loads(result.stdout)
    failures = {}
    for play in report["plays"]:
        for task in play["tasks"]:
            for host, outcome in task["hosts"].items():
                if outcome.get("failed"):
                    failures[host] = "\n".join(str(result.get(key, "")) for result in [outcome, *outcome.get("results", [])]
                                               for key in ("msg", "argument_errors"))
    return {"tmp": tmp, "failures": failures, "stats": report["stats"], "output": result.stdout + result.stderr}


def test_every_host_is_stopped_by_the_validation_play(validation):
    assert len(validation["stats"]) == len(BAD_INPUTS) + 1
    assert all(stats["changed"] == 0 and stats["failures"] == 1 for stats in validation["stats"].values()), \
        validation["stats"]


def test_the_site_model_passes_every_check_before_the_last(validation):
    message = CONTROL[1].replace("{tmp}", str(validation["tmp"]))
    assert message in validation["failures"]["control"], validation["failures"]["control"]


@pytest.mark.parametrize("number", range(len(BAD_INPUTS)), ids=lambda n: BAD_INPUTS[n][1][:60])
def test_each_bad_input_is_refused_with_its_message(validation, number):
    message = BAD_INPUTS[number][1].replace("{tmp}", str(validation["tmp"]))
    assert message in validation["failures"][f"bad_{number}"], validation["failures"][f"bad_{number}"]


def test_a_clear_text_password_is_never_printed(validation):
    assert CLEAR_TEXT not in validation["output"]
