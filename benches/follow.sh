#!/usr/bin/env bash
# What following Consul costs per change (benches/follow.py) at 1,000 and 10,000 services on a
# dev agent at its default limits, the bridge (release) at its defaults. Needs python3 and curl.
# Usage: benches/follow.sh [services ...]   (default: 1000 10000)
set -euo pipefail
cd "$(dirname "$0")/.."
CONSUL=$(scripts/install-consul.sh)
cargo build --release --quiet
HTTP=19520 DNS=19673 METRICS=19674
source scripts/on-exit-cleanup.sh
echo "date: $(date -u +%F)  machine: $(nproc) cores"
for services in "${@:-1000 10000}"; do
  for count in $services; do
    rm -rf "$work/data"
    "$CONSUL" agent -dev -client 127.0.0.1 -bind 127.0.0.1 -http-port $HTTP -dns-port 19620 \
      -serf-lan-port 19321 -serf-wan-port 19322 -server-port 19320 -grpc-port -1 \
      >"$work/consul.log" 2>&1 &
    consul_pid=$!
    pids+=("$consul_pid")
    for _ in $(seq 150); do curl -sf "127.0.0.1:$HTTP/v1/catalog/services" | grep -q consul && break; sleep 0.2; done
    target/release/consul-dns-bridge --listen 127.0.0.1:$DNS --http-listen 127.0.0.1:$METRICS \
      --zones-dir "$work" --consul-addr "http://127.0.0.1:$HTTP" --log-level warn \
      >"$work/bridge.log" 2>&1 &
    bridge_pid=$!
    pids+=("$bridge_pid")
    sleep 0.5
    echo
    echo "== $count services"
    python3 benches/follow.py "http://127.0.0.1:$HTTP" $DNS "http://127.0.0.1:$METRICS/metrics" "$count"
    kill "$bridge_pid" "$consul_pid"
    wait "$bridge_pid" "$consul_pid" 2>/dev/null || true
  done
done
