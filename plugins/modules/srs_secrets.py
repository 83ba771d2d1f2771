#!/usr/bin/python
# Copyright (c) opendove.mailserver contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
---
module: srs_secrets
short_description: Decide the SRS secrets every MX host shares
description:
  - Decides the SRS state every MX host holds after this run, from what each host has. A bounce may come back
    to any MX host, so every host holds the same current and backup secrets (docs/rotation.md). The module only
    decides, it reads no host and writes nothing. The C(opendove.mailserver.opensmtpd) role reads every MX host's
    files with M(ansible.builtin.slurp), runs this module once on the controller, and writes its RV(state) to
    every host.
  - The newest state any host holds wins. Without any state, the secrets of C(srs.conf) files written before
    the state file are adopted (two kept), else a new secret is made (48 random URL-safe characters).
  - With O(rotate=true), the backup is dropped after O(rotation.grace) and the current secret becomes the backup
    after O(rotation.interval), measured with the clock of the host the module runs on; a clock behind the
    state's last step changes nothing.
  - A host whose files cannot be read (other than not found), a state file that is not JSON or not what the
    opensmtpd role writes, or a host outside this run (C(--limit)) that would keep other secrets than the others,
    makes the module fail, naming the host; the message never holds a secret.
  - RV(state) holds the secrets, so register the result in a task with C(no_log=true). RV(summary) and RV(actions)
    never hold a secret.
version_added: 0.2.0
author: opendove.mailserver contributors (!UNKNOWN)
extends_documentation_fragment:
  - ansible.builtin.action_common_attributes
attributes:
  check_mode:
    support: full
    details: The module changes nothing in either mode; in check mode it reports what a run would decide.
  diff_mode:
    support: none
  platform:
    support: full
    platforms: posix
options:
  reads:
    description:
      - What was read of every MX host's SRS state file (a path ending in C(.json)) and C(srs.conf), one element
        per file, as the C(results) of a M(ansible.builtin.slurp) looped over C([host, path]) pairs, each
        reduced to the keys below (see EXAMPLES).
    type: list
    elements: dict
    required: true
    suboptions:
      item:
        description: The host and the path read, C([host, path]).
        type: list
        elements: str
        required: true
      content:
        description: The file's content in base64 (the read's C(content)); absent or V(null) when it was not read.
        type: str
      msg:
        description: Why the file was not read (the read's C(msg)); a message with C(not found) means a host without it.
        type: str
  play_hosts:
    description:
      - The hosts of this run (C(ansible_play_hosts)).
      - A host that was read but is not in this run would not get the new state; the module fails if it would keep
        other secrets than the others.
    type: list
    elements: str
    required: true
  rotation:
    description: The rotation schedule (C(mail_srs_rotation)); durations in seconds or as C(72h), C(30d), C(52w).
    type: dict
    default: {}
    suboptions:
      interval:
        description: How long a secret signs new SRS addresses before it becomes the backup.
        type: raw
        default: 365d
      grace:
        description:
          - How long the backup still validates bounces, at least O(srs_ttl) and shorter than O(rotation.interval).
        type: raw
        default: 30d
  srs_ttl:
    description: How long OpenSMTPD accepts an SRS address (C(opensmtpd_srs_ttl), smtpd.conf's C(srs ttl)).
    type: raw
    default: 4d
  rotate:
    description:
      - Whether the secrets move along their schedule when due (C(playbooks/rotate_keys.yml)); V(false) only makes
        or spreads them (C(playbooks/site.yml)).
    type: bool
    default: false
seealso:
  - module: ansible.builtin.slurp
"""

EXAMPLES = r"""
- name: Read every MX host's SRS state and secrets
  ansible.builtin.slurp:
    src: "{{ item[1] }}"
  delegate_to: "{{ item[0] }}"
  loop: "{{ groups[mail_group | default('mail')] | product(['/var/lib/opendove/srs.json', '/etc/smtpd/srs.conf']) }}"
  register: __srs_read
  run_once: true
  failed_when: false
  ignore_unreachable: true
  no_log: true

- name: Decide the SRS secrets every MX host shares
  opendove.mailserver.srs_secrets:
    reads: >-
      {{ __srs_read.results | map('ansible.builtin.dict2items')
         | map('selectattr', 'key', 'in', ['item', 'content', 'msg']) | map('list')
         | map('ansible.builtin.items2dict') }}
    play_hosts: "{{ ansible_play_hosts }}"
    rotation: "{{ mail_srs_rotation | default({}) }}"
    rotate: true
  delegate_to: localhost
  run_once: true
  register: __srs
  # The result holds the secrets.
  no_log: true

- name: Say what the secrets are now (no secret in these lines)
  ansible.builtin.debug:
    msg: "{{ __srs.summary }}"
  run_once: true
"""

RETURN = r"""
state:
  description:
    - The state every MX host holds after this run (write it to each host's state file, C(0600)).
    - C(current) is C({secret, created}), C(backup) is V(null) or C({secret, replaced}), times in Unix seconds.
    - Holds the secrets; register the result with C(no_log=true).
  returned: success
  type: dict
  sample:
    current: {secret: "<48 characters>", created: 1795600000}
    backup: null
actions:
  description:
    - What the run did; C(action) is V(create), V(adopt) (with C(kept) and C(found)), V(rotate) (with
      C(backup_until)), V(drop) or V(clock) (with C(reason)). Empty when nothing changes.
  returned: success
  type: list
  elements: dict
  sample:
    - {action: rotate, backup_until: 1798192000}
summary:
  description:
    - What the secrets are now, in lines without a secret (what was made, adopted, rotated or dropped, and until
      when each secret is used).
  returned: success
  type: list
  elements: str
  sample:
    - "SRS: the secret of 2026-11-25 21:40 UTC signs until 2027-11-25 21:40 UTC"
"""

import time

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.opendove.mailserver.plugins.module_utils._srs import (
    SrsError,
    new_secret,
    schedule_from,
    shared_plan,
    summary,
)


def main() -> None:
    module = AnsibleModule(
        argument_spec={
            "reads": {"type": "list", "elements": "dict", "required": True, "options": {
                "item": {"type": "list", "elements": "str", "required": True},
                "content": {"type": "str", "no_log": True},
                "msg": {"type": "str"},
            }},
            "play_hosts": {"type": "list", "elements": "str", "required": True},
            "rotation": {"type": "dict", "default": {}, "options": {
                "interval": {"type": "raw", "default": "365d"},
                "grace": {"type": "raw", "default": "30d"},
            }},
            "srs_ttl": {"type": "raw", "default": "4d"},
            "rotate": {"type": "bool", "default": False},
        },
        supports_check_mode=True,
    )
    params = module.params
    try:
        schedule = schedule_from(params["rotation"], params["srs_ttl"])
        state, actions = shared_plan(params["reads"], params["play_hosts"], schedule, time.time(), new_secret,
                                     params["rotate"])
    except SrsError as exc:
        module.fail_json(msg=str(exc))
    # The module decides; the role's tasks that write the state to each host report the changes.
    module.exit_json(changed=False, state=state, actions=actions, summary=summary(state, actions, schedule))


if __name__ == "__main__":
    main()
