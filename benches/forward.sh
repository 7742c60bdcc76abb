#!/usr/bin/env bash
# Forwarding under load: dnsperf at the bridge for names outside the Consul domain (forwarded to
# a local dnsmasq), beside dnsperf at that dnsmasq directly. Prints QPS, lost queries and average
# latency per round and the medians. Installs dnsperf and dnsmasq-base if missing (Debian).
# Usage: benches/forward.sh [rounds]   (default 3; each run is `dnsperf -c 4 -T 1 -q 200 -l 5`)
set -euo pipefail
cd "$(dirname "$0")/.."
rounds=${1:-3}
scripts/install-debian-tools.sh dnsperf:dnsperf dnsmasq:dnsmasq-base
cargo build --release --quiet

UPSTREAM_PORT=18753 BRIDGE_PORT=18653 HTTP_PORT=18654
source scripts/on-exit-cleanup.sh
source benches/lib.sh

# The upstream answers every name under example.test itself (no further forwarding).
dnsmasq --keep-in-foreground --conf-file=/dev/null --no-resolv --no-hosts --bind-interfaces \
  --listen-address=127.0.0.1 --port=$UPSTREAM_PORT --pid-file= --cache-size=10000 \
  --dns-forward-max=1000 --address=/example.test/10.7.0.1 >/dev/null 2>&1 &
pids+=($!)
# No Consul is needed for outside names; the bridge logs that it cannot reach one.
target/release/consul-dns-bridge --listen 127.0.0.1:$BRIDGE_PORT --http-listen 127.0.0.1:$HTTP_PORT \
  --consul-addr http://127.0.0.1:1 --zones-dir "$work" --recursor 127.0.0.1:$UPSTREAM_PORT \
  --log-level error >"$work/bridge.log" 2>&1 &
pids+=($!)
sleep 1

# 1,000 distinct names, A queries.
for i in $(seq 1 1000); do echo "host$i.example.test A"; done > "$work/queries.txt"

run() { # port -> "qps lost latency_ms"
  dnsperf -s 127.0.0.1 -p "$1" -d "$work/queries.txt" -c 4 -T 1 -q 200 -l 5 2>&1 |
    awk '/Queries lost:/ {lost=$3} /Queries per second:/ {qps=$4} /Average Latency/ {lat=$4*1000}
         END {printf "%.0f %d %.3f\n", qps, lost, lat}'
}

echo "date: $(date -u +%F)  machine: $(nproc) cores, $(uname -m)  dnsperf -c 4 -T 1 -q 200 -l 5, 1,000 names"
printf '%-7s %-22s %10s %8s %12s\n' round target qps lost avg_ms
: >"$work/results"
for r in $(seq 1 "$rounds"); do
  for target in dnsmasq bridge; do
    port=$([[ $target == dnsmasq ]] && echo $UPSTREAM_PORT || echo $BRIDGE_PORT)
    read -r qps lost lat < <(run "$port")
    printf '%-7s %-22s %10s %8s %12s\n' "$r" "$target" "$qps" "$lost" "$lat"
    echo "$target $qps $lost $lat" >>"$work/results"
  done
done
for target in dnsmasq bridge; do
  qps=$(awk -v t=$target '$1==t {print $2}' "$work/results" | median)
  lost=$(awk -v t=$target '$1==t {print $3}' "$work/results" | median)
  lat=$(awk -v t=$target '$1==t {print $4}' "$work/results" | median)
  printf 'median  %-22s %10s %8s %12s\n' "$target" "$qps" "$lost" "$lat"
done
total=$(awk '$1=="bridge" {s+=$2*5} END {print s}' "$work/results")
lost=$(awk '$1=="bridge" {s+=$3} END {print s}' "$work/results")
awk -v l="$lost" -v t="$total" 'BEGIN {printf "bridge: %d lost of about %d sent (%.4f%%)\n", l, t, (t>0 ? 100*l/t : 0)}'
