#!/usr/bin/env bash
# Runs the whole test suite: installs the Consul agent and the Debian tools (dnsmasq) the
# integration tests start, then checks formatting and lints, then `cargo test`.
set -euo pipefail
cd "$(dirname "$0")/.."
export CONSUL_BIN=${CONSUL_BIN:-$(scripts/install-consul.sh)}
scripts/install-debian-tools.sh dnsmasq:dnsmasq-base
cargo fmt --check
cargo clippy --all-targets --quiet -- -D warnings
cargo test --all-targets
