#!/usr/bin/env bash
# The demo: a container named like a real MX (mx1.example.test), converged with playbooks/site.yml and the
# example inventory, then a message submitted on 587 and read back over IMAPS. Run it with `make demo`.
set -euo pipefail
cd "$(dirname "$0")/.."

container=mx1.example.test
state=demo/.state
declare -A published=([25]=10025 [443]=10443 [465]=10465 [587]=10587 [993]=10993)

if ! docker container inspect "$container" >/dev/null 2>&1; then
  ports=()
  for port in "${!published[@]}"; do ports+=(-p "127.0.0.1:${published[$port]}:$port"); done
  # systemd as PID 1 without --privileged (which these machines refuse); NET_ADMIN for fail2ban's nftables bans.
  docker run -d --name "$container" --hostname "$container" "${ports[@]}" \
    --cap-add SYS_ADMIN --cap-add NET_ADMIN --security-opt seccomp=unconfined --security-opt apparmor=unconfined \
    --cgroupns host -v /sys/fs/cgroup:/sys/fs/cgroup:rw --tmpfs /run --tmpfs /run/lock --tmpfs /tmp \
    local/debian:trixie /lib/systemd/systemd >/dev/null
  echo "demo: started container $container"
fi

mkdir -p "$state"
chmod 0700 "$state"
# Demo passwords: random, made once, hashed with SHA512-crypt at 5000 rounds (passlib's default, 656000, is
# more than site.yml lets the server carry; a state made before with it is made again); only the hashes reach
# the inventory.
if [ ! -f "$state/vault.yml" ] || grep -q 'rounds=' "$state/vault.yml"; then
  python - "$state" <<'PY'
import json, secrets, sys
from pathlib import Path
from passlib.hash import sha512_crypt
state = Path(sys.argv[1])
passwords = {a: secrets.token_urlsafe(12) for a in ("alice@example.test", "bob@example.org")}
hashes = {a: sha512_crypt.using(rounds=5000).hash(p) for a, p in passwords.items()}
for name, data in (("passwords.json", passwords), ("vault.yml", {"vault_mail_password_hashes": hashes})):
    path = state / name
    path.touch(mode=0o600)
    path.write_text(json.dumps(data, indent=2) + "\n")
PY
fi

# The example inventory reaches its host over SSH; demo/inventory.yml points it at the container instead.
reach=(-i inventory.example -i demo/inventory.yml)

echo "demo: test CA and certificate for $container (demo/.state/pki)"
ansible-playbook "${reach[@]}" molecule/shared/prepare.yml \
  -e "test_pki_dir=$PWD/$state/pki" -e '{"test_extra_sans": ["IP:127.0.0.1", "DNS:mta-sts.example.test"]}' >"$state/prepare.log"

echo "demo: ansible-playbook playbooks/site.yml -i inventory.example (log: $state/site.log)"
SECONDS=0
ansible-playbook "${reach[@]}" -e "@$state/vault.yml" playbooks/site.yml >"$state/site.log" || {
  tail -40 "$state/site.log"; exit 1; }
echo "demo: converged in ${SECONDS} s: $(grep -E "^$container" "$state/site.log" | tr -s ' ')"

python scripts/demo_mail.py --ca "$state/pki/ca.pem" --passwords "$state/passwords.json" \
  --submission "${published[587]}" --imaps "${published[993]}" --https "${published[443]}"
