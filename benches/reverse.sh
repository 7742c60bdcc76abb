#!/usr/bin/env bash
# Reverse lookups against a growing catalog: the bridge's CPU per query for PTR questions that
# match nothing (the lookup a PTR flood forces), beside cached A questions (the UDP fast path),
# with 200 and with 2,000 watched instances. A PTR costs two hash lookups (node and service
# addresses, indexed on the watch side), so its cost must not grow with the catalog.
# Installs dnsperf (Debian) and Consul (scripts/install-consul.sh) if missing.
# Usage: benches/reverse.sh [seconds]   (default 5 s per run)
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${1:-5}
scripts/install-debian-tools.sh dnsperf:dnsperf curl:curl
CONSUL=$(scripts/install-consul.sh)
cargo build --release --quiet
HTTP=19520 DNS=19673
source scripts/on-exit-cleanup.sh
source benches/lib.sh
echo 'limits { http_max_conns_per_client = 5000 }' >"$work/agent.hcl"
echo "date: $(date -u +%F)  machine: $(nproc) cores, dnsperf -c 4 -T 1 -q 200 -l $seconds"
echo "instances  question      queries   cpu_us/query"


for services in 40 400; do
  rm -rf "$work/data"
  "$CONSUL" agent -dev -client 127.0.0.1 -bind 127.0.0.1 -http-port $HTTP -dns-port 19620 \
    -serf-lan-port 19321 -serf-wan-port 19322 -server-port 19320 -grpc-port -1 \
    -config-file "$work/agent.hcl" >"$work/consul.log" 2>&1 &
  consul_pid=$!
  pids+=("$consul_pid")
  for _ in $(seq 150); do curl -sf "127.0.0.1:$HTTP/v1/catalog/services" | grep -q consul && break; sleep 0.2; done
  target/release/consul-dns-bridge --listen 127.0.0.1:$DNS --http-listen off \
    --zones-dir "$work" --consul-addr "http://127.0.0.1:$HTTP" --log-level warn \
    >"$work/bridge.log" 2>&1 &
  bridge_pid=$!
  pids+=("$bridge_pid")
  python3 benches/reverse.py "http://127.0.0.1:$HTTP" $DNS "$services" "$work"
  ticks_per_second=$(getconf CLK_TCK)
  for kind in a ptr; do
    before=$(cpu_ticks "$bridge_pid")
    out=$(dnsperf -s 127.0.0.1 -p $DNS -d "$work/$kind.txt" -c 4 -T 1 -q 200 -l "$seconds" 2>&1)
    after=$(cpu_ticks "$bridge_pid")
    done_queries=$(echo "$out" | awk '/Queries completed/ {print $3}')
    awk -v i=$((services * 5)) -v k="$kind" -v q="$done_queries" -v t=$((after - before)) \
      -v hz="$ticks_per_second" 'BEGIN { printf "%9d  %-10s %10d   %8.2f\n", i, k, q, t / hz * 1e6 / q }'
  done
  kill "$bridge_pid" "$consul_pid"
  wait "$bridge_pid" "$consul_pid" 2>/dev/null || true
done
