"""The opensmtpd role's SRS decision as its tasks are written (roles/opensmtpd/tasks/srs.yml: the reads of every
MX host's files, the srs_secrets module run once on the controller, the check), run by ansible-playbook on two
local hosts: both get the same secrets through the registered result, a host left out of a rotation and a file
that cannot be read stop the run with a message, and no secret is printed. Writing the files, the handler and
the real hosts are the Molecule scenarios' part."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[3]
ROLE = ROOT / "roles" / "opensmtpd"
PLAYBOOK = Path(sys.executable).parent / "ansible-playbook"
OLD = {"current": {"secret": "a" * 48, "created": 1_700_000_000}, "backup": None}


def decision_tasks() -> list[dict]:
    """The role's tasks up to the check, as srs.yml writes them."""
    [block] = yaml.safe_load((ROLE / "tasks" / "srs.yml").read_text())[:1]
    tasks = block["block"]
    names = [task["name"] for task in tasks]
    return tasks[:names.index("Check that the SRS secrets can be shared") + 1]


@pytest.fixture
def site(tmp_path, request):
    """Two MX hosts (both this machine), their SRS files under tmp_path, and a playbook running the role's
    decision, then keeping what each host got (the registered result and the role's __opensmtpd_srs_keys)."""
    inventory = tmp_path / "hosts.ini"
    hosts = {host: f"ansible_connection=local ansible_python_interpreter={sys.executable}" for host in ("mx1", "mx2")}
    hosts.update(getattr(request, "param", {}))
    inventory.write_text("".join(f"{host} {settings}\n" for host, settings in hosts.items()))
    role_vars = yaml.safe_load((ROLE / "vars" / "main.yml").read_text())
    play = [{
        "name": "SRS decision",
        "hosts": "mx1,mx2",
        "gather_facts": False,
        "vars": {
            "__opensmtpd_srs_hosts": ["mx1", "mx2"],
            "__opensmtpd_srs_state_file": str(tmp_path / "srs.json"),
            "__opensmtpd_srs_file": str(tmp_path / "srs.conf"),
            "__opensmtpd_srs_keys": role_vars["__opensmtpd_srs_keys"],
            "opensmtpd_srs_key": "", "opensmtpd_srs_backup_key": "", "opensmtpd_srs_ttl": "4d",
        },
        "tasks": decision_tasks() + [{
            "name": "Keep what this host got",
            "ansible.builtin.copy": {
                "content": "{{ {'srs': __opensmtpd_srs, 'keys': __opensmtpd_srs_keys} | ansible.builtin.to_json }}",
                "dest": f"{tmp_path}/got-{{{{ inventory_hostname }}}}.json", "mode": "0600"},
            "no_log": True,
            "check_mode": False,  # what check mode decided is kept too
        }],
    }]
    playbook = tmp_path / "play.yml"
    playbook.write_text(yaml.safe_dump(play, sort_keys=False))

    def run(*args: str) -> tuple[subprocess.CompletedProcess, dict]:
        result = subprocess.run([str(PLAYBOOK), "-i", str(inventory), str(playbook), *args], capture_output=True,
                                text=True, check=False, timeout=300, cwd=ROOT,
                                env=dict(os.environ, ANSIBLE_CONFIG=str(ROOT / "ansible.cfg"), ANSIBLE_NOCOLOR="1"))
        got = {host: json.loads((tmp_path / f"got-{host}.json").read_text())
               for host in ("mx1", "mx2") if (tmp_path / f"got-{host}.json").exists()}
        return result, got

    run.dir = tmp_path
    return run


def test_first_run_gives_every_host_the_same_new_secret_and_prints_none(site):
    result, got = site()
    assert result.returncode == 0, result.stdout
    assert got["mx1"]["srs"]["state"] == got["mx2"]["srs"]["state"]
    secret = got["mx1"]["srs"]["state"]["current"]["secret"]
    assert got["mx1"]["keys"] == got["mx2"]["keys"] == {"current": secret, "backup": ""}
    assert got["mx1"]["srs"]["summary"][0] == "SRS: a new secret is shared by every MX host"
    assert secret not in result.stdout + result.stderr


def test_a_rotation_reaches_both_hosts_and_check_mode_predicts_it(site):
    (site.dir / "srs.json").write_text(json.dumps(OLD))
    args = ("-e", "__opensmtpd_srs_rotate=true", "-e", '{"mail_srs_rotation": {"interval": "5d", "grace": "4d"}}')
    predicted, got = site("--check", *args)
    assert predicted.returncode == 0, predicted.stdout
    assert [a["action"] for a in got["mx1"]["srs"]["actions"]] == ["rotate"]
    assert got["mx1"]["srs"]["state"]["backup"]["secret"] == "a" * 48
    result, got = site(*args)
    assert result.returncode == 0, result.stdout
    assert got["mx1"]["keys"] == got["mx2"]["keys"] and got["mx1"]["keys"]["backup"] == "a" * 48
    assert "a" * 48 not in result.stdout and got["mx1"]["keys"]["current"] not in result.stdout


def test_a_host_left_out_of_a_rotation_stops_the_run(site):
    (site.dir / "srs.json").write_text(json.dumps(OLD))
    result, got = site("--limit", "mx1", "-e", "__opensmtpd_srs_rotate=true",
                       "-e", '{"mail_srs_rotation": {"interval": "5d", "grace": "4d"}}')
    assert result.returncode != 0 and got == {}
    assert "mx2 (not in this run) would keep others: run without --limit" in result.stdout
    assert "a" * 48 not in result.stdout


def test_a_file_that_cannot_be_read_stops_the_run(site):
    (site.dir / "srs.conf").mkdir()
    result, got = site()
    assert result.returncode != 0 and got == {}
    assert f"mx1: cannot read {site.dir / 'srs.conf'}" in result.stdout


@pytest.mark.skipif(not shutil.which("ssh"), reason="needs an ssh client to fail to connect with")
@pytest.mark.parametrize("site", [{"mx2": "ansible_connection=ssh ansible_host=127.0.0.1 ansible_port=1"}],
                         indirect=True)
def test_a_host_that_cannot_be_reached_stops_the_run_before_anything_is_decided(site):
    """Never taken for a new host. Ansible (2.19) ends the play at the read itself (a run_once task whose
    delegated item is unreachable fails every host, ignore_unreachable notwithstanding): the decision never
    runs, so its message (mx2: cannot read ...) is not shown; the censored read says it failed to connect."""
    (site.dir / "srs.json").write_text(json.dumps(OLD))
    result, got = site("--limit", "mx1")
    assert result.returncode != 0 and got == {}
    assert "Failed to connect to the host" in result.stdout + result.stderr
    assert "TASK [Decide the SRS secrets every MX host shares]" not in result.stdout
