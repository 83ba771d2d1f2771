"""module_utils/_platform.py: which vars file of a role describes a host's platform."""

from pathlib import Path

import pytest

from ansible_collections.opendove.mailserver.plugins.module_utils._platform import (
    PlatformError,
    vars_file,
    vars_file_names,
)

BOOKWORM = {"distribution": "Debian", "distribution_major_version": "12", "os_family": "Debian"}
ALPINE = {"distribution": "Alpine", "distribution_major_version": "3", "os_family": "Alpine"}


def test_names_go_from_the_release_to_the_family():
    assert vars_file_names(BOOKWORM) == ["Debian-12.yml", "Debian.yml"]


@pytest.mark.parametrize("present, expected", [
    ({"/r/vars/Debian-12.yml", "/r/vars/Debian.yml"}, "/r/vars/Debian-12.yml"),
    ({"/r/vars/Debian.yml"}, "/r/vars/Debian.yml"),
])
def test_the_most_specific_file_that_exists(present, expected):
    assert vars_file("/r/vars", BOOKWORM, present.__contains__) == expected


def test_a_platform_without_a_file_is_named():
    with pytest.raises(PlatformError, match=r"neither Alpine-3.yml nor Alpine.yml.*does not support Alpine 3 \(Alpine\)"):
        vars_file("/r/vars", ALPINE, {"/r/vars/Debian.yml"}.__contains__)


def test_every_role_has_a_file_for_each_supported_platform():
    """The roles' own vars directories, read from this checkout; roles that load no platform file (dns_records
    runs on the controller) are left out."""
    roles = Path(__file__).resolve().parents[4] / "roles"
    with_vars = [role for role in sorted(roles.iterdir()) if (role / "vars").is_dir()
                 and any("mail_platform_vars_file" in f.read_text() for f in (role / "tasks").glob("*.yml"))]
    assert len(with_vars) >= 7
    for role in with_vars:
        for facts in (BOOKWORM, dict(BOOKWORM, distribution_major_version="13"), ALPINE):
            assert vars_file(str(role / "vars"), facts).startswith(str(role / "vars"))
