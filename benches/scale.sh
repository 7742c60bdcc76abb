#!/usr/bin/env bash
# Scale: a Consul dev agent with 10,000 services x 5 instances (registered through /v1/txn), the
# bridge (release) asked for every one of them, then: peak RSS, health-flip time, and Consul
# requests per minute while nothing changes. Needs python3 and curl.
# Usage: benches/scale.sh [services]   (default 10000)
set -euo pipefail
cd "$(dirname "$0")/.."
services=${1:-10000}
CONSUL=$(scripts/install-consul.sh)
cargo build --release --quiet
HTTP=19510 DNS=19663 METRICS=19664
source scripts/on-exit-cleanup.sh
# One blocking query per watched service holds one HTTP connection: the agent's default of 200
# connections per client address must be raised for a bridge watching thousands of services.
cat >"$work/agent.hcl" <<HCL
dns_config { only_passing = true }
limits { http_max_conns_per_client = 15000 }
HCL
"$CONSUL" agent -dev -client 127.0.0.1 -bind 127.0.0.1 -http-port $HTTP -dns-port 19610 \
  -serf-lan-port 19311 -serf-wan-port 19312 -server-port 19310 -grpc-port -1 \
  -config-file "$work/agent.hcl" >"$work/consul.log" 2>&1 &
pids+=($!)
for _ in $(seq 150); do curl -sf "127.0.0.1:$HTTP/v1/catalog/services" | grep -q consul && break; sleep 0.2; done
target/release/consul-dns-bridge --listen 127.0.0.1:$DNS --http-listen 127.0.0.1:$METRICS \
  --zones-dir "$work" --consul-addr "http://127.0.0.1:$HTTP" --log-level warn >"$work/bridge.log" 2>&1 &
pids+=($!)
bridge_pid=$!
sleep 0.5
echo "date: $(date -u +%F)  machine: $(nproc) cores"
python3 benches/scale.py "http://127.0.0.1:$HTTP" $DNS "http://127.0.0.1:$METRICS/metrics" $bridge_pid "$services"
if [[ -s $work/bridge.log ]]; then echo "bridge warnings:"; sort "$work/bridge.log" | cut -c1-200 | uniq -c | head; fi
