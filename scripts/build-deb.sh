#!/usr/bin/env bash
# Builds the Debian package: the release binary, the hardened systemd unit, a default
# /etc/consul-dns-bridge/config.toml (a conffile), the README and the licenses.
# Usage: scripts/build-deb.sh [OUT_DIR]   (default target/debian); prints the .deb's path.
# BINARY=path packages that binary instead of building one.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
out=${1:-$root/target/debian}
version=$(sed -n 's/^version = "\(.*\)"/\1/p' "$root/Cargo.toml" | head -n1)
arch=$(dpkg --print-architecture)
binary=${BINARY:-}
if [[ -z $binary ]]; then
  (cd "$root" && cargo build --release --locked --quiet --bin consul-dns-bridge)
  binary=$root/target/release/consul-dns-bridge
fi
tree=$(mktemp -d)
trap 'rm -rf "$tree"' EXIT
install -D -m 0755 "$binary" "$tree/usr/bin/consul-dns-bridge"
strip "$tree/usr/bin/consul-dns-bridge" 2>/dev/null || true
install -D -m 0644 "$root/scripts/debian/consul-dns-bridge.service" \
  "$tree/lib/systemd/system/consul-dns-bridge.service"
install -D -m 0644 "$root/scripts/debian/config.toml" "$tree/etc/consul-dns-bridge/config.toml"
install -D -m 0644 "$root/README.md" "$tree/usr/share/doc/consul-dns-bridge/README.md"
{
  echo "Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/"
  echo "Upstream-Name: consul-dns-bridge"
  echo
  echo "Files: *"
  echo "License: MIT or Apache-2.0"
  echo
  cat "$root/LICENSE-MIT"
} | install -D -m 0644 /dev/stdin "$tree/usr/share/doc/consul-dns-bridge/copyright"
mkdir -p "$tree/DEBIAN"
sed -e "s/@VERSION@/$version/" -e "s/@ARCH@/$arch/" "$root/scripts/debian/control" >"$tree/DEBIAN/control"
echo "/etc/consul-dns-bridge/config.toml" >"$tree/DEBIAN/conffiles"
for script in postinst prerm postrm; do
  install -m 0755 "$root/scripts/debian/$script" "$tree/DEBIAN/$script"
done
mkdir -p "$out"
deb="$out/consul-dns-bridge_${version}_${arch}.deb"
dpkg-deb --root-owner-group --build "$tree" "$deb" >/dev/null
echo "$deb"
