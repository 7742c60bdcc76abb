#!/usr/bin/env bash
# Scale: a Consul dev agent with 10,000 services x 5 instances (registered through /v1/txn), the
# bridge (release) asked for every one of them, then: peak RSS, health-flip time, connections to
# Consul, and Consul requests while nothing changes. Run twice, with a fresh agent each time: the
# bridge talking plain HTTP (HTTP/1.1, one connection per parked blocking query) and HTTPS
# (HTTP/2, parked queries share connections). Needs python3, curl and openssl.
# Usage: benches/scale.sh [services]   (default 10000; SCALE_SCHEMES=https for one of the two)
set -euo pipefail
cd "$(dirname "$0")/.."
services=${1:-10000}
CONSUL=$(scripts/install-consul.sh)
cargo build --release --quiet
HTTP=19510 HTTPS=19511 DNS=19663 METRICS=19664
source scripts/on-exit-cleanup.sh
# A throwaway CA and a certificate for 127.0.0.1, for the agent's HTTPS port.
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2 \
  -subj "/CN=scale CA" -keyout "$work/ca.key" -out "$work/ca.pem" 2>/dev/null
openssl req -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -subj "/CN=127.0.0.1" \
  -keyout "$work/agent.key" -out "$work/agent.csr" 2>/dev/null
echo "subjectAltName=IP:127.0.0.1" >"$work/san.cnf"
openssl x509 -req -in "$work/agent.csr" -CA "$work/ca.pem" -CAkey "$work/ca.key" \
  -CAcreateserial -days 2 -extfile "$work/san.cnf" -out "$work/agent.pem" 2>/dev/null
# Over HTTP/1.1 one blocking query per watched service holds one HTTP connection: the agent's
# default of 200 connections per client address must be raised for thousands of services.
cat >"$work/agent.hcl" <<HCL
dns_config { only_passing = true }
limits { http_max_conns_per_client = 15000 }
ports { https = $HTTPS }
cert_file = "$work/agent.pem"
key_file = "$work/agent.key"
ca_file = "$work/ca.pem"
HCL
echo "date: $(date -u +%F)  machine: $(nproc) cores"

# run_once SCHEME PORT: a fresh agent (parked queries of the last bridge end with their agent),
# the catalog, a bridge reaching the agent by SCHEME, the measurements; then both are stopped.
run_once() {
  local scheme=$1 port=$2
  rm -rf "$work/data"
  "$CONSUL" agent -dev -client 127.0.0.1 -bind 127.0.0.1 -http-port $HTTP -dns-port 19610 \
    -serf-lan-port 19311 -serf-wan-port 19312 -server-port 19310 -grpc-port -1 \
    -config-file "$work/agent.hcl" >"$work/consul.log" 2>&1 &
  local consul_pid=$!
  pids+=("$consul_pid")
  for _ in $(seq 150); do curl -sf "127.0.0.1:$HTTP/v1/catalog/services" | grep -q consul && break; sleep 0.2; done
  target/release/consul-dns-bridge --listen 127.0.0.1:$DNS --http-listen 127.0.0.1:$METRICS \
    --zones-dir "$work" --consul-addr "$scheme://127.0.0.1:$port" --ca-file "$work/ca.pem" \
    --log-level warn >"$work/bridge.log" 2>&1 &
  local bridge_pid=$!
  pids+=("$bridge_pid")
  sleep 0.5
  echo
  echo "== bridge -> Consul over $scheme"
  SCALE_CONSUL_PORT=$port python3 benches/scale.py "http://127.0.0.1:$HTTP" $DNS \
    "http://127.0.0.1:$METRICS/metrics" $bridge_pid "$services"
  if [[ -s $work/bridge.log ]]; then echo "bridge warnings:"; sort "$work/bridge.log" | cut -c1-200 | uniq -c | head; fi
  kill "$bridge_pid" "$consul_pid"
  wait "$bridge_pid" "$consul_pid" 2>/dev/null || true
}
# SCALE_SCHEMES="https" runs one of the two.
for scheme in ${SCALE_SCHEMES:-http https}; do
  case $scheme in
    http) run_once http $HTTP ;;
    https) run_once https $HTTPS ;;
    *) echo "SCALE_SCHEMES: unknown scheme $scheme (http, https)" >&2; exit 2 ;;
  esac
done
