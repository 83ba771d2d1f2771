"""Each role's argument spec documents every tunable in defaults/main.yml, with the same default."""

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROLES = sorted(p for p in (Path(__file__).resolve().parents[3] / "roles").iterdir() if p.is_dir())


def load(path):
    return yaml.safe_load(path.read_text()) or {}


@pytest.mark.parametrize("role", ROLES, ids=lambda p: p.name)
def test_spec_documents_every_default_with_the_same_value(role):
    defaults = load(role / "defaults" / "main.yml")
    options = load(role / "meta" / "argument_specs.yml")["argument_specs"]["main"]["options"]
    for name, value in defaults.items():
        assert name in options, f"{role.name}: {name} is in defaults/main.yml but not in the argument spec"
        assert options[name].get("default") == value, f"{role.name}: {name} default differs"


@pytest.mark.parametrize("role", ROLES, ids=lambda p: p.name)
def test_spec_tunables_all_have_defaults(role):
    defaults = load(role / "defaults" / "main.yml")
    options = load(role / "meta" / "argument_specs.yml")["argument_specs"]["main"]["options"]
    tunables = {name for name, option in options.items()
                if name.startswith(f"{role.name}_") and not option.get("required")}
    assert tunables <= set(defaults), f"{role.name}: {sorted(tunables - set(defaults))} lack a default"


@pytest.mark.parametrize("role", ROLES, ids=lambda p: p.name)
def test_every_os_vars_file_defines_the_same_names(role):
    loads_platform_vars = any("mail_platform_vars_file" in f.read_text() for f in (role / "tasks").glob("*.yml"))
    if not loads_platform_vars:
        pytest.skip(f"{role.name} has no platform names")
    files = sorted((role / "vars").glob("[A-Z]*.yml"))
    names = [set(load(f)) for f in files]
    assert files and all(n == names[0] for n in names), [f.name for f in files]


def test_role_readmes_show_the_current_argument_specs():
    script = Path(__file__).resolve().parents[3] / "scripts" / "role_readme.py"
    result = subprocess.run([sys.executable, str(script), "--check"], capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stdout
