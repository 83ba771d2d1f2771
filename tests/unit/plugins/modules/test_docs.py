"""Every module's documentation renders with ansible-doc (DOCUMENTATION, EXAMPLES and RETURN parse)."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[4]
MODULES = sorted(p.stem for p in (ROOT / "plugins" / "modules").glob("*.py"))


@pytest.mark.parametrize("module", MODULES)
def test_ansible_doc_renders_the_module(module):
    result = subprocess.run([str(Path(sys.executable).parent / "ansible-doc"), "--json",
                             f"opendove.mailserver.{module}"], capture_output=True, text=True, check=False,
                            cwd=ROOT, env=dict(os.environ, ANSIBLE_CONFIG=str(ROOT / "ansible.cfg")))
    assert result.returncode == 0 and not result.stderr.strip(), result.stderr
    assert f"opendove.mailserver.{module}" in result.stdout
