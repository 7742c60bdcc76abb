#!/usr/bin/env bash
# Runs the whole test suite: installs the Consul agent, BIND's named (a forwarder that sends
# DNS cookies) and the Debian tools the integration tests start (dnsmasq; kdig, dig and curl
# as DoT/DoH clients; podman, podman-compose and mmdebstrap for the image, compose and
# package tests; fstrm_capture and dnstap for dnstap), then checks formatting and lints,
# then `cargo test`.
set -euo pipefail
cd "$(dirname "$0")/.."
export CONSUL_BIN=${CONSUL_BIN:-$(scripts/install-consul.sh)}
export NAMED_BIN=${NAMED_BIN:-$(scripts/install-named.sh)}
scripts/install-debian-tools.sh dnsmasq:dnsmasq-base kdig:knot-dnsutils dig:bind9-dnsutils curl:curl \
  podman:podman buildah:buildah runc:runc podman-compose:podman-compose mmdebstrap:mmdebstrap \
  fstrm_capture:fstrm-bin dnstap:golang-github-dnstap-golang-dnstap-cli
cargo fmt --check
cargo clippy --all-targets --quiet -- -D warnings
cargo test --all-targets
