# Copyright (c) opendove.mailserver contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The platform vars file of a role; the logic lives in module_utils/_platform.py."""

from __future__ import annotations

import os

from ansible.errors import AnsibleFilterError

from ansible_collections.opendove.mailserver.plugins.module_utils._platform import PlatformError, vars_file


def mail_platform_vars_file(role_path, facts):
    """The file of role_path/vars with the names and paths of the platform these host facts describe."""
    try:
        return vars_file(os.path.join(role_path, "vars"), facts)
    except (PlatformError, KeyError) as exc:
        raise AnsibleFilterError(f"mail_platform_vars_file: {exc}") from exc


class FilterModule:
    """opendove.mailserver platform filters."""

    def filters(self):
        return {"mail_platform_vars_file": mail_platform_vars_file}
