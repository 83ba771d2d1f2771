#!/usr/bin/env bash
# Provide local/debian:<suite>, a systemd-booting Debian image for Molecule and the demo, set up like a normal
# Debian installation: a generated en_US.UTF-8 locale in /etc/default/locale, which systemd passes to every
# service (under it Python reads stdin strictly, unlike the C.UTF-8 of bare images).
# Where a registry answers, build it from the official debian:<suite> image; where none does (as on the
# project's CI machines), bootstrap it with debootstrap from Debian's mirror.
# Usage: scripts/debian-image.sh bookworm|trixie [--force]
set -euo pipefail

suite=${1:?usage: $0 bookworm|trixie [--force]}
image="local/debian:${suite}"
packages="python3,systemd,systemd-sysv,ca-certificates,iproute2,locales"
locale=en_US.UTF-8
# Run in the image's root: the locale a Debian installer sets.
setup_locale="echo '${locale} UTF-8' >/etc/locale.gen && locale-gen >/dev/null && echo 'LANG=${locale}' >/etc/default/locale"

# An image made before the locale was part of it is made again.
if [ "${2:-}" != "--force" ] && docker image inspect "$image" >/dev/null 2>&1 &&
   docker run --rm "$image" grep -qx "LANG=${locale}" /etc/default/locale 2>/dev/null; then
  exit 0
fi

if docker pull -q "debian:${suite}" >/dev/null 2>&1; then
  echo "debian-image: building $image from the registry's debian:${suite}" >&2
  docker build -q -t "$image" - >/dev/null <<DOCKERFILE
FROM debian:${suite}
RUN apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
      ${packages//,/ } && apt-get clean && rm -rf /var/lib/apt/lists/* && ${setup_locale}
CMD ["/lib/systemd/systemd"]
DOCKERFILE
  exit 0
fi

echo "debian-image: no registry reachable; bootstrapping $image with debootstrap" >&2
if ! command -v debootstrap >/dev/null 2>&1; then
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq debootstrap >/dev/null
fi
rootfs=$(mktemp -d "/var/tmp/debian-${suite}.XXXXXX")
trap 'rm -rf "$rootfs"' EXIT
debootstrap --variant=minbase --include="$packages" "$suite" "$rootfs" http://deb.debian.org/debian >/dev/null
chroot "$rootfs" /bin/sh -c "$setup_locale"
# Containers resolve through Docker's DNS; the bootstrap host's files must not leak into the image.
rm -f "$rootfs/etc/hostname" "$rootfs/etc/resolv.conf"
rm -rf "$rootfs"/var/lib/apt/lists/* "$rootfs"/var/cache/apt/archives/*.deb
tar -C "$rootfs" -c . | docker import -c 'CMD ["/lib/systemd/systemd"]' - "$image" >/dev/null
echo "debian-image: $image ready" >&2
