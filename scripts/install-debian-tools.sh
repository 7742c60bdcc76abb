#!/usr/bin/env bash
# Installs Debian packages for the commands that are missing, from the system's apt sources
# (needs root, or sudo). Arguments are COMMAND:PACKAGE pairs, e.g. dnsmasq:dnsmasq-base (the
# binary without the system service), dig:bind9-dnsutils.
# Usage: scripts/install-debian-tools.sh COMMAND:PACKAGE...
set -euo pipefail
need_root() { if [[ $(id -u) -eq 0 ]]; then "$@"; else sudo "$@"; fi; }
missing=()
for pair in "$@"; do
  command -v "${pair%%:*}" >/dev/null || missing+=("${pair#*:}")
done
if ((${#missing[@]})); then
  echo "installing ${missing[*]}" >&2
  need_root apt-get install -y -qq "${missing[@]}" >/dev/null 2>&1 ||
    { need_root apt-get update -qq >/dev/null && need_root apt-get install -y -qq "${missing[@]}" >/dev/null; }
fi
