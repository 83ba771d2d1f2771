#!/usr/bin/python
# Copyright (c) opendove.mailserver contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
---
module: dkim_keys
short_description: Keep a DKIM key ring per domain on the signing host
description:
  - Makes sure every domain has an active DKIM signing key of each wanted type (RSA, optionally Ed25519),
    generating missing keys on the host with C(cryptography). Private keys never leave the host and never
    appear in results, diffs or logs.
  - Each domain has a key ring, a JSON state file C(<key_dir>/<domain>.json) listing its selectors with their
    state (published, active, retired) and timestamps; keys are C(<key_dir>/<domain>.<selector>.key).
    Selectors are date-like (C(20261125), C(20261125-ed25519)); with O(selector_tag) the tag follows the date
    (C(20261125-mx1)), so that several MX hosts, each with its own keys for a domain, never make the same selector.
  - One call handles every domain, so adding a domain adds no task and no round trip.
  - A state file that cannot be read, or key files without a state file, is an error; the module never
    silently makes a new key beside keys that may be in use.
  - V(state=rotate) moves each ring one step along its rotation schedule (see docs/rotation.md). A successor
    key is created when the active one has signed for O(rotation.interval); it becomes active only once its
    TXT record has been visible with exactly its value on every name server asked (O(rotation.nameservers),
    else the domain's authoritative servers) for O(rotation.lead); a replaced key stays published for
    O(rotation.grace), then is revoked (empty C(p=), for O(rotation.revocation)) or retired, and its private
    key deleted. A run with nothing due changes nothing.
  - With V(state=rotate), the ring of a domain that is no longer in O(domains) (removed from the site) goes the
    same way with no key type wanted; its keys stop signing, stay published for O(rotation.grace) and are then
    retired and their files deleted; it is returned in RV(removed), never in RV(domains), and its DNS is never
    asked. V(state=present) leaves such rings alone.
version_added: 0.1.0
author: opendove.mailserver contributors (!UNKNOWN)
requirements:
  - cryptography on the managed host (O(state=present) and O(state=rotate))
  - dnspython on the managed host (O(state=rotate))
extends_documentation_fragment:
  - ansible.builtin.action_common_attributes
attributes:
  check_mode:
    support: full
  diff_mode:
    support: full
    details: The diff lists selectors and their states, never key material.
  platform:
    support: full
    platforms: posix
options:
  domains:
    description: The mail domains to keep a key ring for.
    type: list
    elements: str
    required: true
  key_dir:
    description:
      - Directory for key rings and private keys. It is created if missing (parents 0755 root, the directory
        itself 0750, owned by root and O(group)), so that only the signer's group can enter it.
    type: path
    default: /var/lib/opendove/dkim
  selector_tag:
    description:
      - Put after the date in new selectors, usually the host's short name; letters a-z, digits and hyphens.
      - Empty for no tag.
    type: str
    default: ""
  state:
    description:
      - V(present) makes sure every domain has its active keys.
      - V(query) only reads the key rings and reports them (what C(dns_records.yml) publishes); it changes
        nothing and ignores the key options.
      - V(rotate) moves every ring one step along its rotation schedule; it needs the active keys that
        V(present) makes.
    type: str
    choices: [present, query, rotate]
    default: present
  rsa_bits:
    description: Size of new RSA keys; at least 1024 (RFC 8301), 2048 recommended.
    type: int
    default: 2048
  ed25519:
    description: Also keep an Ed25519 key (RFC 8463), for signers that sign with both (Rspamd).
    type: bool
    default: false
  rotation:
    description:
      - The rotation schedule (O(state=rotate)); durations in seconds or as C(72h), C(7d), C(26w).
      - Checked before anything changes, with O(state=present) too.
    type: dict
    default: {}
    suboptions:
      interval:
        description: How long an active key signs before its successor is created.
        type: raw
        default: 180d
      lead:
        description: How long a successor's record must be visible before it signs, longer than O(rotation.record_ttl).
        type: raw
        default: 3d
      grace:
        description: How long a replaced key stays published, longer than O(rotation.queue_lifetime) and at least O(rotation.lead).
        type: raw
        default: 7d
      revocation:
        description: How long a retired key is published with an empty C(p=) before its record goes (0 for none).
        type: raw
        default: 0
      record_ttl:
        description: The TTL the DKIM records are published with.
        type: raw
        default: 1h
      queue_lifetime:
        description: The longest a message may wait in a queue before it bounces (OpenSMTPD's default is 4 days).
        type: raw
        default: 4d
      nameservers:
        description:
          - Addresses (or C(address#port)) of the name servers to check new records on; every one must answer
            with exactly the record's value.
          - Empty asks the authoritative name servers of each domain, found through the host's resolver.
        type: list
        elements: str
        default: []
  signer_configs:
    description:
      - The signer's configuration files (Rspamd's C(dkim_signing.conf), dkimproxy's sender map) as it runs them.
        A key file whose path one of them names is never deleted, even when its key is retired; it goes in a
        later run, once the configuration no longer names it (RV(kept) lists it meanwhile). Missing files are
        skipped.
    type: list
    elements: path
    default: []
  owner:
    description: Owner of the key files and state files (the signer reads them).
    type: str
    default: root
  group:
    description: Group of the key files and state files.
    type: str
    default: root
  mode:
    description: Mode of the key files and state files.
    type: str
    default: "0600"
"""

EXAMPLES = r"""
- name: Keep a DKIM key ring for every domain, readable by the signer
  opendove.mailserver.dkim_keys:
    domains: "{{ mail_domains | map(attribute='name') }}"
    selector_tag: mx1
    ed25519: true
    owner: _rspamd
    group: _rspamd
    mode: "0600"
  register: dkim
"""

RETURN = r"""
domains:
  description:
    - Per domain, the active key of each type, the keys whose records must be published, and the selectors of
      retired keys (C(retired)), whose records must no longer be served.
  returned: always
  type: dict
  sample:
    example.test:
      active:
        rsa: {selector: "20261125-mx1", key_file: /var/lib/opendove/dkim/example.test.20261125-mx1.key}
      publish:
        - selector: "20261125-mx1"
          key_type: rsa
          public_key: MIIBIjANBgkqh...
          txt_value: "v=DKIM1; k=rsa; h=sha256; t=s; p=MIIBIjANBgkqh..."
      retired: ["20260601-mx1"]
removed:
  description:
    - With O(state=rotate) and O(state=query), the rings in O(key_dir) of domains no longer in O(domains)
      (removed from the site), as RV(domains) gives them; empty with O(state=present).
  returned: always
  type: dict
created:
  description: The selectors created by this run (in check mode, those that would be), as domain/selector.
  returned: always
  type: list
  elements: str
actions:
  description:
    - With O(state=rotate), what each ring did or waits for, per domain; C(action) is create, visible, hidden,
      wait (with the DNS C(status) and C(activates_at), a Unix time or null), activate, deactivate, revoke,
      retire or clock (the host's clock is behind the ring's last step).
  returned: always
  type: dict
  sample:
    example.test:
      - {action: wait, selector: 20270524-mx1, key_type: rsa, status: absent, activates_at: null}
kept:
  description: Key files of retired keys kept because a file of O(signer_configs) still names them (with a warning).
  returned: always
  type: list
  elements: str
activated:
  description: The selectors that started signing in this run, as domain/selector (the signer must reload).
  returned: always
  type: list
  elements: str
"""

import dataclasses
import grp
import os
import pwd
import time

from ansible.module_utils.basic import AnsibleModule, missing_required_lib

from ansible_collections.opendove.mailserver.plugins.module_utils._dkim_keyring import (
    CRYPTOGRAPHY_IMPORT_ERROR,
    KeyRingError,
)
from ansible_collections.opendove.mailserver.plugins.module_utils._dkim_keys import (
    apply,
    key_dir_problem,
    key_request,
    make_key_dir,
    signer_in_use,
    managed_paths,
    plan,
    query,
    report,
)
from ansible_collections.opendove.mailserver.plugins.module_utils._dns_check import DNSPYTHON_IMPORT_ERROR
from ansible_collections.opendove.mailserver.plugins.module_utils._dns_records import DnsRecordError
from ansible_collections.opendove.mailserver.plugins.module_utils._state_file import StateFileError


def main() -> None:
    module = AnsibleModule(
        argument_spec={
            "domains": {"type": "list", "elements": "str", "required": True},
            "key_dir": {"type": "path", "default": "/var/lib/opendove/dkim"},
            "selector_tag": {"type": "str", "default": ""},
            "state": {"type": "str", "default": "present", "choices": ["present", "query", "rotate"]},
            "rsa_bits": {"type": "int", "default": 2048},
            "ed25519": {"type": "bool", "default": False},
            "rotation": {"type": "dict", "default": {}, "options": {
                "interval": {"type": "raw", "default": "180d"},
                "lead": {"type": "raw", "default": "3d"},
                "grace": {"type": "raw", "default": "7d"},
                "revocation": {"type": "raw", "default": 0},
                "record_ttl": {"type": "raw", "default": "1h"},
                "queue_lifetime": {"type": "raw", "default": "4d"},
                "nameservers": {"type": "list", "elements": "str", "default": []},
            }},
            "signer_configs": {"type": "list", "elements": "path", "default": []},
            "owner": {"type": "str", "default": "root"},
            "group": {"type": "str", "default": "root"},
            "mode": {"type": "str", "default": "0600"},
        },
        supports_check_mode=True,
    )
    params = module.params
    # Planning reads only the state files: check mode on a host whose packages are not installed yet (the run
    # that would install python3-cryptography and the signer's user) still says which keys would be made.
    if params["state"] != "query" and CRYPTOGRAPHY_IMPORT_ERROR and not module.check_mode:
        module.fail_json(msg=missing_required_lib("cryptography", reason="to make DKIM keys"),
                         exception=CRYPTOGRAPHY_IMPORT_ERROR)
    if params["state"] == "rotate" and DNSPYTHON_IMPORT_ERROR:
        module.fail_json(msg=missing_required_lib("dnspython", reason="to check DKIM records in DNS"),
                         exception=DNSPYTHON_IMPORT_ERROR)
    key_dir = params["key_dir"]
    try:
        mode = int(params["mode"], 8)
    except ValueError as exc:
        module.fail_json(msg=f"mode is invalid: {exc}")
    try:
        uid = pwd.getpwnam(params["owner"]).pw_uid
        gid = grp.getgrnam(params["group"]).gr_gid
    except KeyError as exc:
        if not module.check_mode:
            module.fail_json(msg=f"owner or group does not exist: {exc}")
        uid = gid = -1
    try:
        request = key_request(params["rsa_bits"], params["ed25519"], params["selector_tag"], params["rotation"])
    except (KeyRingError, DnsRecordError) as exc:
        module.fail_json(msg=str(exc))
    if params["state"] == "query":
        try:
            rings, removed = query(key_dir, params["domains"])
        except (KeyRingError, StateFileError) as exc:
            module.fail_json(msg=str(exc))
        module.exit_json(changed=False, domains=rings, removed=removed, created=[], actions={}, activated=[], kept=[])

    configs = []
    for path in params["signer_configs"]:
        try:
            with open(path, encoding="utf-8", errors="surrogateescape") as config:
                configs.append(config.read())
        except FileNotFoundError:
            continue  # not installed yet: nothing signs with any key
        except OSError as exc:
            module.fail_json(msg=f"signer_configs: {path} cannot be read: {exc}")
    request = dataclasses.replace(request, in_use=signer_in_use(key_dir, configs))

    changed = False
    if key_dir_problem(key_dir):
        module.fail_json(msg=key_dir_problem(key_dir))
    if not os.path.isdir(key_dir):
        changed = True
        if not module.check_mode:
            make_key_dir(key_dir)
    if os.path.isdir(key_dir):
        changed = module.set_fs_attributes_if_different(
            {"path": key_dir, "owner": "root", "group": params["group"], "mode": "0750",
             "attributes": None, "secontext": [None, None, None]}, changed)
    try:
        plans = plan(key_dir, params["domains"], request, time.time(), rotation=params["state"] == "rotate")
    except (KeyRingError, StateFileError) as exc:
        module.fail_json(msg=str(exc))

    for index, ring_plan in enumerate(plans):
        if ring_plan.changes:
            changed = True
            if not module.check_mode:
                plans[index] = ring_plan = dataclasses.replace(
                    ring_plan, after=apply(ring_plan.after, key_dir, mode, uid, gid, in_use=request.in_use))
        for path in managed_paths(ring_plan.after, key_dir):
            if os.path.exists(path):
                changed = module.set_fs_attributes_if_different(
                    {"path": path, "owner": params["owner"], "group": params["group"], "mode": params["mode"],
                     "attributes": None, "secontext": [None, None, None]}, changed)
            elif not module.check_mode:
                module.fail_json(msg=f"{ring_plan.domain}: {path} is missing although the key ring lists it")

    result = report(plans, key_dir, request.in_use)
    for path in result["kept"]:
        module.warn(f"{path} belongs to a retired key but the signer's configuration still names it: kept until "
                    "it no longer does (run site.yml, or reload the signer)")
    module.exit_json(changed=changed, **result)


if __name__ == "__main__":
    main()
