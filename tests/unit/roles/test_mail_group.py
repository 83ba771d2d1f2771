"""mail_group names the deployment's MX hosts: the playbooks' hosts line and the roles' lists of every MX host
(opensmtpd's SRS hosts, mta_sts's policy MX names) follow it, with the group `mail` when it is not given. Run by
ansible-playbook on local hosts, with the roles' own vars files and the playbooks' own hosts line."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[3]
PLAYBOOK = Path(sys.executable).parent / "ansible-playbook"
HOSTS_LINE = yaml.safe_load((ROOT / "playbooks" / "site.yml").read_text())[0]["hosts"]


@pytest.fixture
def run(tmp_path):
    local = f"ansible_connection=local ansible_python_interpreter={sys.executable}"
    (tmp_path / "hosts.ini").write_text(
        f"[mail]\nmx1 mail_hostname=mx1.example.org {local}\n"
        f"[east]\nmx2 mail_hostname=mx2.example.org {local}\nmx3 mail_hostname=mx3.example.org {local}\n")
    play = [{
        "hosts": HOSTS_LINE,
        "gather_facts": False,
        "tasks": [
            {"ansible.builtin.include_vars": str(ROOT / "roles" / role / "vars" / "main.yml")}
            for role in ("opensmtpd", "mta_sts")
        ] + [{
            "ansible.builtin.copy": {
                "content": "{{ {'srs_hosts': __opensmtpd_srs_hosts, 'mta_sts_mx': __mta_sts_mx_hosts} | to_json }}",
                "dest": f"{tmp_path}/got-{{{{ inventory_hostname }}}}.json", "mode": "0600"},
            "vars": {"opensmtpd_srs_hosts": []},
        }],
    }]
    (tmp_path / "play.yml").write_text(yaml.safe_dump(play))

    def run_play(*args: str) -> dict:
        result = subprocess.run([str(PLAYBOOK), "-i", str(tmp_path / "hosts.ini"), str(tmp_path / "play.yml"), *args],
                                capture_output=True, text=True, check=False, timeout=300, cwd=ROOT,
                                env=dict(os.environ, ANSIBLE_CONFIG=str(ROOT / "ansible.cfg"), ANSIBLE_NOCOLOR="1"))
        assert result.returncode == 0, result.stdout + result.stderr
        return {path.stem[4:]: json.loads(path.read_text()) for path in tmp_path.glob("got-*.json")}

    return run_play


def test_without_mail_group_the_group_mail(run):
    assert run() == {"mx1": {"srs_hosts": ["mx1"], "mta_sts_mx": ["mx1.example.org"]}}


def test_mail_group_names_the_hosts_and_what_the_roles_list(run):
    got = run("-e", "mail_group=east")
    expected = {"srs_hosts": ["mx2", "mx3"], "mta_sts_mx": ["mx2.example.org", "mx3.example.org"]}
    assert got == {"mx2": expected, "mx3": expected}
