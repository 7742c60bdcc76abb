#!/usr/bin/env bash
# Installs BIND's `named` (Debian's bind9 package) into DEST/named without installing the
# package itself, which would start a system resolver: the package is downloaded and unpacked,
# and only the libraries it links are installed from the system's apt sources. The tests run it
# as a forwarder in front of the bridge (it sends DNS cookies, as resolvers do).
# Usage: scripts/install-named.sh [DEST]   (default: .named-bin in the project). Prints the path.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
dest=${1:-$root/.named-bin}
mkdir -p "$dest"
dest=$(cd "$dest" && pwd)
if [[ -x $dest/named ]] && ! ldd "$dest/named" | grep -q "not found"; then
  echo "$dest/named"; exit 0
fi
need_root() { if [[ $(id -u) -eq 0 ]]; then "$@"; else sudo "$@"; fi; }
libraries=$(apt-cache depends bind9 | sed -nE 's/^ *\|?Depends: (lib[^ <>]+|bind9-libs)$/\1/p' | sort -u)
# shellcheck disable=SC2086 # one package per word
need_root apt-get install -y -qq --no-install-recommends $libraries >/dev/null 2>&1 ||
  { need_root apt-get update -qq >/dev/null &&
    need_root apt-get install -y -qq --no-install-recommends $libraries >/dev/null; }
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
chmod 0777 "$work"
(cd "$work" && apt-get download -qq bind9 >/dev/null 2>&1)
dpkg-deb -x "$work"/bind9_*.deb "$work/root"
install -m 0755 "$work/root/usr/sbin/named" "$dest/named"
if ldd "$dest/named" | grep "not found" >&2; then
  echo "install-named: named lacks the libraries above" >&2; exit 1
fi
echo "$dest/named"
