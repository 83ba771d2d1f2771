# Copyright (c) opendove.mailserver contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Which file of a role's vars/ holds the names and paths of a host's platform: the one for its release
(Debian-12.yml), else the one for its family (Debian.yml, Alpine.yml). Every role loads its platform this way."""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping


class PlatformError(Exception):
    """The role has no vars file for this platform."""


def vars_file_names(facts: Mapping) -> list[str]:
    """The vars file names for these host facts, the most specific first."""
    return [f"{facts['distribution']}-{facts['distribution_major_version']}.yml", f"{facts['os_family']}.yml"]


def vars_file(vars_dir: str, facts: Mapping, is_file: Callable[[str], bool] = os.path.isfile) -> str:
    """The path of the first vars file of vars_dir that exists for these host facts."""
    names = vars_file_names(facts)
    for name in names:
        path = os.path.join(vars_dir, name)
        if is_file(path):
            return path
    raise PlatformError(f"{vars_dir} has neither {' nor '.join(names)}: the role does not support "
                        f"{facts['distribution']} {facts['distribution_major_version']} ({facts['os_family']})")
