#!/usr/bin/env bash
# Installs the real Consul agent (v1.8.7, Debian bullseye's `consul` package) into DEST/consul
# without touching the system's apt configuration: it reuses the Debian mirror the machine's own
# apt sources name, with the suite switched to bullseye, in a private apt state folder.
# Usage: scripts/install-consul.sh [DEST]   (default: .consul-bin in the project). Prints the path.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
dest=${1:-$root/.consul-bin}
mkdir -p "$dest"
dest=$(cd "$dest" && pwd)
if [[ -x $dest/consul ]]; then echo "$dest/consul"; exit 0; fi

mirror=$(grep -hoE '^(URIs:[[:space:]]*|deb[[:space:]]+)[^[:space:]]+/debian/?([[:space:]]|$)' \
           /etc/apt/sources.list.d/*.sources /etc/apt/sources.list 2>/dev/null \
         | head -n1 | sed -E 's/^(URIs:[[:space:]]*|deb[[:space:]]+)//; s/[[:space:]]+$//' || true)
[[ -n $mirror ]] || { echo "install-consul: no Debian mirror found in the apt sources" >&2; exit 1; }

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/lists/partial" "$work/cache/archives/partial"
echo "deb $mirror bullseye main" > "$work/sources.list"
opts=(-o "Dir::Etc::sourcelist=$work/sources.list" -o Dir::Etc::sourceparts=/dev/null
      -o "Dir::State::Lists=$work/lists" -o "Dir::Cache=$work/cache" -o APT::Sandbox::User=root -qq)
apt-get "${opts[@]}" update >/dev/null
(cd "$work" && apt-get "${opts[@]}" download consul >/dev/null)
dpkg-deb -x "$work"/consul_*.deb "$work/root"
install -m 0755 "$work/root/usr/bin/consul" "$dest/consul"
echo "$dest/consul"
