#!/usr/bin/env bash
# A fleet on loopback: 3 Consul servers (127.0.0.2-4) and 2 client agents (127.0.0.5, .6), at
# Consul's default limits, with Prometheus telemetry; N bridges per client agent, each asked
# for all S services; F health flips. Reports, per run: Consul's executions of the flipped
# services' health queries per flip and their split leader / followers, flip -> answer
# latency per class of service (parked, read on demand), connections per agent, RSS per
# bridge; and the same flips seen through the agents' own DNS (allow_stale, use_cache) as the
# anchor. BRIDGE_FLAGS="..." adds flags to every bridge (e.g. "--use-cache false").
# Usage: benches/fleet.sh [bridges per agent] [services] [flips]   (default 4 1000 20)
set -euo pipefail
cd "$(dirname "$0")/.."
per_agent=${1:-4} services=${2:-1000} flips=${3:-20}
CONSUL=$(scripts/install-consul.sh)
scripts/install-debian-tools.sh curl:curl ss:iproute2
cargo build --release --quiet
source scripts/on-exit-cleanup.sh
HTTP=19530 DNS=19630 SERF_LAN=19331 SERF_WAN=19332 SERVER=19330
SERVERS=(127.0.0.2 127.0.0.3 127.0.0.4) CLIENTS=(127.0.0.5 127.0.0.6)
cat >"$work/telemetry.hcl" <<HCL
telemetry { prometheus_retention_time = "600s" }
dns_config {
  only_passing = true
  allow_stale  = true
  use_cache    = true
}
HCL
agent() { # ip name extra...
  local ip=$1 name=$2; shift 2
  mkdir -p "$work/$name"
  "$CONSUL" agent -node "$name" -bind "$ip" -client "$ip" -data-dir "$work/$name" \
    -http-port $HTTP -dns-port $DNS -serf-lan-port $SERF_LAN -serf-wan-port $SERF_WAN \
    -server-port $SERVER -grpc-port -1 -retry-interval 1s \
    -retry-join 127.0.0.2:$SERF_LAN -retry-join 127.0.0.3:$SERF_LAN -retry-join 127.0.0.4:$SERF_LAN \
    -config-file "$work/telemetry.hcl" "$@" >"$work/$name.log" 2>&1 &
  pids+=($!)
}
for i in 0 1 2; do agent "${SERVERS[$i]}" "server$((i + 1))" -server -bootstrap-expect 3 \
  -hcl 'performance { raft_multiplier = 1 }'; done
for i in 0 1; do agent "${CLIENTS[$i]}" "client$((i + 1))"; done
for _ in $(seq 200); do
  leader=$(curl -sf "127.0.0.5:$HTTP/v1/status/leader" || true)
  [[ $leader == \"*\" ]] && curl -sf "127.0.0.6:$HTTP/v1/catalog/services" >/dev/null && break
  sleep 0.2
done
echo "date: $(date -u +%F)  machine: $(nproc) cores; leader $leader"
echo "bridge flags: ${BRIDGE_FLAGS:-(defaults)}"

bridge_ports=()
bridge_pids=()
read -r -a extra <<<"${BRIDGE_FLAGS:-}"
port=19700
for client in "${CLIENTS[@]}"; do
  for _ in $(seq "$per_agent"); do
    target/release/consul-dns-bridge --listen "127.0.0.1:$port" --http-listen "127.0.0.1:$((port + 1))" \
      --zones-dir "$work" --consul-addr "http://$client:$HTTP" --log-level warn "${extra[@]}" \
      >"$work/bridge-$port.log" 2>&1 &
    pids+=($!); bridge_pids+=($!); bridge_ports+=("$client:$port")
    port=$((port + 2))
  done
done
python3 benches/fleet.py --http-port $HTTP --dns-port $DNS --services "$services" --flips "$flips" \
  --servers "${SERVERS[*]}" --clients "${CLIENTS[*]}" --bridges "${bridge_ports[*]}" \
  --bridge-pids "${bridge_pids[*]}"
for log in "$work"/bridge-*.log; do
  if [[ -s $log ]]; then echo "$(basename "$log"):"; sort "$log" | cut -c1-200 | uniq -c | head -5; fi
done
