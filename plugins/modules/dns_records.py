#!/usr/bin/python
# Copyright (c) opendove.mailserver contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
---
module: dns_records
short_description: Compute the DNS records of the mail site and publish them by dynamic update
description:
  - Computes every record the mail domains and their MX hosts need (MX, SPF, DKIM, DMARC, TLSRPT, MTA-STS, the
    RFC 6186 SRV records mail clients look up, the MX hosts' address records and the PTR records their addresses
    need) from the site model, the MX hosts and their DKIM key rings; with their certificates, the MX hosts' TLSA
    records (DANE, RFC 7672); with O(caa_issuers), CAA records (RFC 8659) at the names the mail certificates
    cover.
  - With O(publishers), publishes them by dynamic update (RFC 2136) signed with TSIG to the primary server of each
    zone named. Records the collection owns that are missing are added, different ones changed, and owned ones
    no longer wanted removed (a retired DKIM selector, an old C(_mta-sts) id, a removed MX host's SRV target).
    Each zone changes in one update, all or nothing; zones change in the order of O(publishers), and a zone
    whose update is refused stops the ones after it.
  - What the collection owns in a zone, for each mail domain D (nothing else is ever changed or removed).
    The MX records of D and, among its TXT records, only the SPF ones (a user's own TXT records at D stay).
    C(_dmarc.D), C(_mta-sts.D), C(_smtp._tls.D) (TXT), C(mta-sts.D) (A, AAAA), C(_submission._tcp.D),
    C(_submissions._tcp.D), C(_imap._tcp.D), C(_imaps._tcp.D) (SRV).
    DKIM records C(<selector>._domainkey.D) whose selector is the collection's (eight digits first, as
    V(20261125) or V(20261125-mx1-ed25519)); other senders' selectors (V(google), V(s1)) are never touched.
    The address records of the MX hosts and of C(mta-sts.D), and every other record set it publishes.
    Of each MX host H (a name the MX records of the zone point to), every TLSA record at C(_25._tcp.H) and
    every CAA record at C(H) (every tag), and every CAA record at C(mta-sts.D); these are removed when
    O(mx_hosts) gives H no certificates, or O(caa_issuers) is empty. CAA records at D itself (which bind every
    certificate of D, a web server's too) are never touched.
  - The zone is read by a zone transfer (AXFR) signed with the same key, so the key must be allowed to transfer
    the zone as well as to update it (docs/dns.md shows BIND and Knot settings).
  - Records in no zone of O(publishers) (with no publishers, every record) are only returned, in RV(unpublished).
  - Every input is checked before any server is asked; every zone is read and planned before any is changed.
    Failure messages name the server, zone and key, never the secret.
  - With O(relayhost), a domain whose SPF record ends in C(-all) and authorises only the site's own hosts (C(mx),
    C(a), or C(a:)/C(mx:) naming the domain or an MX host) is refused before anything else is done, the message
    naming the domain, the smarthost and the fix; receivers would fail the SPF check of every message the
    smarthost relays. C(~all) and C(?all) records are not refused.
version_added: 0.3.0
author: opendove.mailserver contributors (!UNKNOWN)
requirements:
  - dnspython >= 2.0 (on the host the module runs on, usually the controller)
  - cryptography (there too, for TLSA records only)
  - pyspf (there too, for O(state=query) only)
extends_documentation_fragment:
  - ansible.builtin.action_common_attributes
attributes:
  check_mode:
    support: full
    details: In check mode the zones are read and the changes reported, nothing is sent.
  diff_mode:
    support: full
    details: The records added, changed and removed, as zone file lines; never a key.
  platform:
    support: full
    platforms: posix
options:
  domains:
    description: The mail domains (C(mail_domains)), each with its DNS settings (C(spf), C(dmarc), C(tlsrpt_rua), C(mta_sts)).
    type: list
    elements: dict
    required: true
  mx_hosts:
    description:
      - Every MX host of the site, C({hostname, priority, addresses, certificates}).
      - C(certificates) (optional) is a list of PEM texts, each a certificate chain that begins with the host's
        certificate, the one it serves and, during a certificate change, the one that will replace it. Each
        distinct key gets a TLSA record C(_25._tcp.<hostname>. TLSA 3 1 1 <SHA-256 of the key>) (DANE-EE,
        SubjectPublicKeyInfo, SHA-256; RFC 7672 3.1.1); no certificates, no TLSA records for the host.
    type: list
    elements: dict
    required: true
  dkim_rings:
    description:
      - The C(domains) result of M(opendove.mailserver.dkim_keys) with O(opendove.mailserver.dkim_keys#module:state=query)
        on each MX host; every host's published and active keys are published.
    type: list
    elements: dict
    default: []
  removed_rings:
    description:
      - The C(removed) result of M(opendove.mailserver.dkim_keys) with
        O(opendove.mailserver.dkim_keys#module:state=query) on each MX host, the key rings of domains removed
        from the site. Such a domain is withdrawn while some host holds its ring; in its zone, every record the
        collection owns at it is removed (MX, SPF, DMARC, TLSRPT, MTA-STS, SRV), except the DKIM keys still
        published, kept until the key rotation retires them after their grace period, so that mail signed
        before the removal still verifies; then their records go too.
      - The rings stay on the hosts (C(<key_dir>/<domain>.json)); deleting them on every host hands the domain
        back, after which the collection owns nothing there and leaves records put back by hand, or by another
        mail service, alone.
    type: list
    elements: dict
    default: []
  spf_include:
    description:
      - What the SPF record of a domain without its own C(spf) authorises beside its MX hosts (C(mail_spf_include)),
        V(v=spf1 mx <terms> -all). Each entry a domain (published as C(include:<domain>)) or one of the terms
        C(include:<domain>), C(a), C(a:<domain>), C(mx:<domain>), C(ip4:<address>[/<length>]),
        C(ip6:<address>[/<length>]); anything else is refused with a message naming the entry.
      - A domain with its own C(spf) publishes that instead.
    type: list
    elements: str
    default: []
  relayhost:
    description:
      - The host name of the smarthost all mail leaves through (C(mail_relayhost.host)); unset or empty, mail
        leaves from the MX hosts themselves.
      - A dict (C(mail_relayhost)) is taken too, and only its C(host) read; but module arguments show in verbose
        output, so pass the name, never the smarthost's credentials (the dns_records role passes the name).
      - Set, every domain's SPF record must authorise more than the site's own hosts or not end in C(-all)
        (see the description).
    type: raw
  caa_issuers:
    description:
      - The domain names of the CAs that may issue the mail certificates (V(letsencrypt.org)). Each gets a CAA
        record C(0 issue "<ca>") at every MX host name and at C(mta-sts.D) of each domain with MTA-STS, never at
        a mail domain itself. Empty, no CAA records.
    type: list
    elements: str
    default: []
  ttl:
    description: TTL of every record, in seconds.
    type: int
    default: 3600
  mta_sts_mx_hosts:
    description: The MX names the MTA-STS policies list; empty means the names of O(mx_hosts).
    type: list
    elements: str
    default: []
  client_ports:
    description: The ports the SRV records name; V(0) publishes the service as not offered (target C(.)).
    type: dict
    default: {}
    suboptions:
      submissions:
        description: Submission with implicit TLS.
        type: int
        default: 465
      submission:
        description: Submission with STARTTLS.
        type: int
        default: 587
      imaps:
        description: IMAP with implicit TLS.
        type: int
        default: 993
      imap:
        description: IMAP with STARTTLS.
        type: int
        default: 143
  publishers:
    description:
      - The zones to publish to, each with its primary server and TSIG key. A record goes to the longest zone
        that holds its name.
    type: list
    elements: dict
    default: []
    suboptions:
      zone:
        description: The zone's name, as its SOA record has it.
        type: str
        required: true
      server:
        description: The primary server's IP address, optionally followed by C(#port) (V(192.0.2.53#5353)).
        type: str
        required: true
      key_name:
        description: The TSIG key's name.
        type: str
        required: true
      key_algorithm:
        description: The TSIG key's algorithm; V(hmac-sha256) or stronger is recommended.
        type: str
        default: hmac-sha256
        choices: [hmac-sha256, hmac-sha384, hmac-sha512, hmac-sha224, hmac-sha1, hmac-md5]
      key_secret:
        description: The TSIG key's secret, base64 (as C(tsig-keygen) writes it); keep it in a vault.
        type: str
        required: true
  timeout:
    description: Seconds to wait for each answer of a server.
    type: float
    default: 10
  state:
    description:
      - V(present) publishes to O(publishers) (with none, only computes).
      - V(query) publishes nothing and checks what is live, as Mail-in-a-Box's status page does. Every record is
        asked of every authoritative server of its zone (discovered through O(resolvers), or the O(servers)
        named) without recursion, and given a status. V(ok), V(missing), V(different), V(stale) (the collection's
        but out of date, an old C(_mta-sts) id, a retired DKIM selector still served), V(extra) (more of the
        collection's kind beside the expected records, a second SPF record, an old MX host), V(unreachable) (no
        answer, or not an authoritative one).
      - Name servers whose addresses this host has no route to (IPv6 without an IPv6 route) are not asked; when
        no server of a zone can be asked, its records say so by name.
      - The MX hosts' address records and PTR records are checked too (forward-confirmed reverse DNS), and with
        O(check_policies) the MTA-STS policy every address of C(mta-sts.<domain>) serves over HTTPS, against
        the text the C(_mta-sts) id was made of.
      - With O(check_certificates), every address of each MX host is asked on SMTP (port 25) for STARTTLS, and the
        certificate it serves verified as senders enforcing MTA-STS verify it (RFC 8461 4.2), for the MX host's
        name against O(policy_ca_file) (else this host's trusted CAs). No STARTTLS, or a certificate for another
        name, expired or from an unknown CA fails (V(fail)); the days a certificate has left are reported, under
        14 with a warning (still V(ok)). When the host has TLSA records, a key served that none of them names fails
        too (V(fail)), as DANE senders (RFC 7672) refuse it.
      - SPF is evaluated as receivers do, with pyspf through O(resolvers) (else the O(servers) named, else this
        host's resolvers), every C(include:) and C(redirect=) followed; checks of type C(SPF) fail (V(fail)) when
        more than 10 DNS lookups are counted or a permanent error is found, and for each MX host address that
        does not get C(pass) for C(postmaster@<domain>).
      - RV(ok) is false when a record senders depend on is not V(ok); the mail clients' SRV records and the TLS
        reporting record are advisory.
    type: str
    default: present
    choices: [present, query]
  servers:
    description: With O(state=query), the servers to ask for every record (V(192.0.2.53) or V(192.0.2.53#5353)) instead of each zone's name servers.
    type: list
    elements: str
    default: []
  resolvers:
    description: With O(state=query), the resolvers that find each zone's name servers; empty, the system's.
    type: list
    elements: str
    default: []
  check_policies:
    description: With O(state=query), fetch and compare the MTA-STS policies.
    type: bool
    default: true
  check_certificates:
    description: With O(state=query), verify the certificate every address of each MX host serves after STARTTLS.
    type: bool
    default: true
  policy_ca_file:
    description:
      - With O(state=query), the CA certificates (PEM) the policy hosts' certificates, and with O(check_certificates)
        the MX hosts' SMTP certificates, are checked against; unset, the system's.
    type: path
notes:
  - Run it once for the site, on the controller (C(delegate_to=localhost), C(run_once=true)), as
    C(playbooks/dns_records.yml) does.
"""

EXAMPLES = r"""
- name: Publish the mail records of example.com
  opendove.mailserver.dns_records:
    domains: "{{ mail_domains }}"
    mx_hosts:
      - hostname: mx1.example.com
        priority: 10
        addresses: [192.0.2.25]
        certificates: ["{{ lookup('ansible.builtin.file', 'certs/mx1.example.com.pem') }}"]
    dkim_rings: "{{ dkim_query.results | map(attribute='domains') | list }}"
    caa_issuers: [letsencrypt.org]
    # All mail leaves through the provider's smarthost: its SPF include goes into the default record.
    relayhost: smtp.relay.example
    spf_include: [spf.relay.example]
    publishers:
      - zone: example.com
        server: 192.0.2.53
        key_name: mail-update
        key_secret: "{{ vault_dns_tsig_secret }}"
  delegate_to: localhost
  run_once: true
  register: dns
"""

RETURN = r"""
domains:
  description:
    - Per mail domain, its C(records) (C({name, type, ttl, values}) with absolute names, TXT values as lists of
      strings) and the same as zone file lines (C(zone)), to C($INCLUDE) or paste into any zone.
  returned: with O(state=present)
  type: dict
  sample: {"example.com": {"records": [{"name": "example.com.", "type": "MX", "ttl": 3600, "values": ["10 mx1.example.com."]}],
                           "zone": "example.com.\t3600\tIN\tMX\t10 mx1.example.com.\n"}}
hosts:
  description:
    - The MX hosts' address records, the PTR record each address needs, and their TLSA and CAA records, as
      C(records) and C(zone).
  returned: with O(state=present)
  type: dict
zones:
  description: Per zone published, its server and the records added, changed and removed (C(name type) each).
  returned: with O(state=present)
  type: dict
  sample: {"example.com": {"server": "192.0.2.53", "added": ["_dmarc.example.com. TXT"], "changed": [], "removed": []}}
withdrawn:
  description:
    - Per withdrawn domain (see O(removed_rings)), the records it keeps (its DKIM keys still published) as C(records)
      and C(zone); without a publisher for its zone, keep those published by hand and remove the rest.
  returned: with O(state=present)
  type: dict
unpublished:
  description: The names and types of records that no zone of O(publishers) holds (C(name type) each).
  returned: with O(state=present)
  type: list
  elements: str
report:
  description:
    - Per domain (and C(hosts) for the MX hosts' address and PTR records and SMTP certificates), each check,
      C({name, type, status, advisory, servers}), C(servers) saying what each server (or policy or MX host
      address) gave where it was not V(ok).
  returned: with O(state=query)
  type: dict
table:
  description: The report as lines, problems first in each domain.
  returned: with O(state=query)
  type: list
  elements: str
  sample: ["example.com:", "  missing     TXT   _dmarc.example.com.  192.0.2.53: missing", "  ok          MX    example.com."]
failed_checks:
  description: The checks that make RV(ok) false, each as its name, type and status.
  returned: with O(state=query)
  type: list
  elements: str
ok:
  description: Whether every record senders depend on is served exactly as expected by every server asked.
  returned: with O(state=query)
  type: bool
"""

from ansible.module_utils.basic import AnsibleModule, missing_required_lib

try:
    import dns.resolver
except ImportError:
    pass  # reported by DNSPYTHON_IMPORT_ERROR

from ansible_collections.opendove.mailserver.plugins.module_utils._dns_publish import (
    ALGORITHMS,
    DNSPYTHON_IMPORT_ERROR,
    DnsPublishError,
    apply,
    parse_server,
    plan,
    read_zone,
    tsig_key,
    zone_for,
)
from ansible_collections.opendove.mailserver.plugins.module_utils import _dns_live, _mta_sts, _spf_live
from ansible_collections.opendove.mailserver.plugins.module_utils._dns_records import (
    DnsRecordError,
    relayhost_spf_problems,
    site_records,
    spf_include_terms,
    zone_fragment,
)


def _names(records: list[dict]) -> list[str]:
    return [f"{record['name']} {record['type']}" for record in records]


def query(module: AnsibleModule, computed: dict) -> None:
    """state=query: ask the authoritative servers for every record, exit with the report."""
    params = module.params
    try:
        for server in params["servers"] + params["resolvers"]:
            parse_server(server)
    except DnsPublishError as exc:
        module.fail_json(msg=str(exc))
    resolver = dns.resolver.Resolver(configure=not params["resolvers"])
    if params["resolvers"]:
        resolvers = [parse_server(server) for server in params["resolvers"]]
        resolver.nameserver_ports = dict(resolvers)  # each its own port (192.0.2.53#5353), set before the servers
        resolver.nameservers = [address for address, _port in resolvers]
    resolver.lifetime = params["timeout"]
    discovered: dict[str, list[str]] = {}

    def servers_for(name: str) -> list[str]:
        if params["servers"]:
            return params["servers"]
        if name not in discovered:
            discovered[name] = _dns_live.authoritative_servers(name, resolver)
        return discovered[name]

    report = _dns_live.site_report(
        computed, params["domains"], params["dkim_rings"], servers_for,
        lambda name, rdtype, server: _dns_live.ask_server(name, rdtype, server, params["timeout"]),
        (lambda domain, address: _dns_live.fetch_policy(domain, address, params["policy_ca_file"], params["timeout"]))
        if params["check_policies"] else None,
        _mta_sts.policy_mx(params["mta_sts_mx_hosts"], [host["hostname"] for host in params["mx_hosts"]]),
        (lambda name, address: _dns_live.smtp_certificate(name, address, params["policy_ca_file"], params["timeout"]))
        if params["check_certificates"] else None)
    # SPF as receivers evaluate it, includes followed: through the resolvers, else the servers named, else the
    # system's resolvers (read here, so that the choice is explicit).
    spf_resolvers = params["resolvers"] or params["servers"] or list(map(str, resolver.nameservers))
    mx_addresses = [address for host in params["mx_hosts"] for address in host["addresses"]]
    for domain in params["domains"]:
        name = domain["name"]
        policy = _dns_live.spf_policy(computed["domains"][name], name)
        report[name] += _dns_live.spf_report(name, lambda name=name, policy=policy: _spf_live.spf_checks(
            name, policy, mx_addresses, spf_resolvers, params["timeout"]))
    failing = _dns_live.failed(report)
    module.exit_json(changed=False, report=report, table=_dns_live.table(report),
                     failed_checks=[f"{c['name']} {c['type']}: {c['status']}" for c in failing], ok=not failing)


def main() -> None:
    module = AnsibleModule(
        argument_spec={
            "domains": {"type": "list", "elements": "dict", "required": True},
            "mx_hosts": {"type": "list", "elements": "dict", "required": True},
            "dkim_rings": {"type": "list", "elements": "dict", "default": []},
            "removed_rings": {"type": "list", "elements": "dict", "default": []},
            "caa_issuers": {"type": "list", "elements": "str", "default": []},
            "spf_include": {"type": "list", "elements": "str", "default": []},
            "relayhost": {"type": "raw"},
            "ttl": {"type": "int", "default": 3600},
            "mta_sts_mx_hosts": {"type": "list", "elements": "str", "default": []},
            "client_ports": {"type": "dict", "default": {}, "options": {
                "submissions": {"type": "int", "default": 465},
                "submission": {"type": "int", "default": 587},
                "imaps": {"type": "int", "default": 993},
                "imap": {"type": "int", "default": 143},
            }},
            "publishers": {"type": "list", "elements": "dict", "default": [], "options": {
                "zone": {"type": "str", "required": True},
                "server": {"type": "str", "required": True},
                "key_name": {"type": "str", "required": True, "no_log": False},
                "key_algorithm": {"type": "str", "default": "hmac-sha256", "choices": list(ALGORITHMS)},
                "key_secret": {"type": "str", "required": True, "no_log": True},
            }},
            "timeout": {"type": "float", "default": 10},
            "state": {"type": "str", "default": "present", "choices": ["present", "query"]},
            "servers": {"type": "list", "elements": "str", "default": []},
            "resolvers": {"type": "list", "elements": "str", "default": []},
            "check_policies": {"type": "bool", "default": True},
            "check_certificates": {"type": "bool", "default": True},
            "policy_ca_file": {"type": "path"},
        },
        supports_check_mode=True,
    )
    params = module.params
    if DNSPYTHON_IMPORT_ERROR:
        module.fail_json(msg=missing_required_lib("dnspython", reason="to write and publish DNS records"),
                         exception=DNSPYTHON_IMPORT_ERROR)
    try:
        computed = site_records(params["domains"], params["mx_hosts"], params["dkim_rings"], params["ttl"],
                                params["mta_sts_mx_hosts"] or None, params["client_ports"], params["caa_issuers"],
                                params["removed_rings"], params["spf_include"])
        # Relayed mail leaves from the smarthost's addresses: an SPF record that names only ours would fail it.
        relay_problems = relayhost_spf_problems(params["domains"], spf_include_terms(params["spf_include"]),
                                                params["relayhost"], [host["hostname"] for host in params["mx_hosts"]])
        if relay_problems:
            raise DnsRecordError(" ".join(relay_problems))
        publishers = {}
        for publisher in params["publishers"]:
            zone = publisher["zone"].rstrip(".").lower()
            if zone in publishers:
                raise DnsPublishError(f"publishers: zone {zone} is named twice")
            parse_server(publisher["server"])
            publishers[zone] = dict(publisher, key=tsig_key(publisher["key_name"], publisher["key_algorithm"],
                                                            publisher["key_secret"]))
    except (DnsRecordError, DnsPublishError) as exc:
        module.fail_json(msg=str(exc))

    if params["state"] == "query":
        query(module, computed)

    records = [record for records in (*computed["domains"].values(), computed["hosts"], *computed["withdrawn"].values())
               for record in records]
    by_zone: dict[str, list[dict]] = {zone: [] for zone in publishers}
    unpublished = []
    for record in records:
        zone = zone_for(record["name"], publishers)
        if zone is None:
            unpublished.append(record)
        else:
            by_zone[zone].append(record)

    # Every zone is read and planned before any is changed: a zone that cannot be read changes nothing.
    plans = {}
    try:
        for zone, publisher in publishers.items():
            domains = [name for name in [*computed["domains"], *computed["withdrawn"]] if zone_for(name, [zone])]
            live = read_zone(zone, publisher["server"], publisher["key"], params["timeout"])
            plans[zone] = plan(by_zone[zone], live, domains)
        if not module.check_mode:
            for zone, changes in plans.items():
                apply(zone, publishers[zone]["server"], publishers[zone]["key"], changes, params["timeout"])
    except (DnsRecordError, DnsPublishError) as exc:
        module.fail_json(msg=str(exc))

    diffs = [changes.diff() for changes in plans.values() if changes.changed]
    module.exit_json(
        changed=any(changes.changed for changes in plans.values()),
        domains={name: {"records": domain, "zone": zone_fragment(domain)} for name, domain in computed["domains"].items()},
        hosts={"records": computed["hosts"], "zone": zone_fragment(computed["hosts"])},
        withdrawn={name: {"records": kept, "zone": zone_fragment(kept) if kept else ""}
                   for name, kept in computed["withdrawn"].items()},
        zones={zone: {"server": publishers[zone]["server"], "added": _names(changes.add),
                      "changed": _names(changes.change), "removed": _names(changes.remove)}
               for zone, changes in plans.items()},
        unpublished=_names(unpublished),
        diff={"before": "".join(d["before"] for d in diffs), "after": "".join(d["after"] for d in diffs)},
    )


if __name__ == "__main__":
    main()
