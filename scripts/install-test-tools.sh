#!/usr/bin/env bash
# Installs the Debian tools the integration tests start beside the bridge, if missing:
# dnsmasq (dnsmasq-base: the binary without the system service) for the stub-zone and upstream
# tests. Uses the system's apt sources; needs root (or sudo).
set -euo pipefail
need_root() { if [[ $(id -u) -eq 0 ]]; then "$@"; else sudo "$@"; fi; }
missing=()
command -v dnsmasq >/dev/null || missing+=(dnsmasq-base)
if ((${#missing[@]})); then
  echo "installing ${missing[*]}" >&2
  need_root apt-get install -y -qq "${missing[@]}" >/dev/null 2>&1 ||
    { need_root apt-get update -qq >/dev/null && need_root apt-get install -y -qq "${missing[@]}" >/dev/null; }
fi
