#!/usr/bin/env bash
# One bridge (release build), the same query mix asked over UDP, TCP, DoT and DoH (HTTP/2 and
# HTTP/1.1) in the same run, several rounds: QPS, average latency and the bridge's CPU per 100k
# queries per transport, their medians and the ratio of each to UDP. UDP, TCP and DoT are asked
# by dnsperf (-c 4 connections, -q 200 queries outstanding); DoH by benches/doh_load.rs (200
# requests outstanding: one HTTP/2 connection, or 200 HTTP/1.1 ones), as dnsperf 2.10's DoH mode
# waits for each answer before the next query. Connections stay open: this is the cost of
# answering over TLS and HTTP, not of handshakes. The clients differ, so compare CPU per query
# more than QPS. The connection caps are raised so that one client may hold 200 connections
# (the default share, 32, would close HTTP/1.1 ones as designed). A self-signed certificate.
# Installs dnsperf (Debian) and Consul (scripts/install-consul.sh) if missing.
# Usage: benches/encrypted.sh [rounds] [seconds]   (default 3 rounds of 5 s)
set -euo pipefail
cd "$(dirname "$0")/.."
rounds=${1:-3} seconds=${2:-5}
scripts/install-debian-tools.sh dnsperf:dnsperf dig:bind9-dnsutils curl:curl openssl:openssl
CONSUL=$(scripts/install-consul.sh)
cargo build --release --quiet
cargo bench --quiet --bench doh_load --no-run 2>/dev/null
HTTP=19530 DNS=19683 DOT=19684 DOH=19685
source scripts/on-exit-cleanup.sh
source benches/lib.sh

"$CONSUL" agent -dev -client 127.0.0.1 -bind 127.0.0.1 -http-port $HTTP -dns-port 19630 \
  -serf-lan-port 19331 -serf-wan-port 19332 -server-port 19330 -grpc-port -1 \
  >"$work/consul.log" 2>&1 &
pids+=($!)
for _ in $(seq 150); do curl -sf "127.0.0.1:$HTTP/v1/catalog/services" | grep -q consul && break; sleep 0.2; done
register() { curl -sf -X PUT "127.0.0.1:$HTTP/v1/agent/service/register" -d "$1" >/dev/null; }
for i in 1 2 3; do register "{\"Name\":\"web\",\"ID\":\"web$i\",\"Address\":\"10.1.0.$i\",\"Port\":808$i,\"Check\":{\"TTL\":\"1h\",\"Status\":\"passing\"}}"; done
register '{"Name":"db","ID":"db1","Address":"10.2.0.1","Port":5432,"Tags":["primary"],"Check":{"TTL":"1h","Status":"passing"}}'
register '{"Name":"api","ID":"api1","Address":"10.3.0.1","Port":9000,"Check":{"TTL":"1h","Status":"passing"}}'

openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 1 -subj /CN=localhost \
  -keyout "$work/key.pem" -out "$work/cert.pem" 2>/dev/null
target/release/consul-dns-bridge --listen 127.0.0.1:$DNS --tls-listen 127.0.0.1:$DOT \
  --https-listen 127.0.0.1:$DOH --tls-cert "$work/cert.pem" --tls-key "$work/key.pem" \
  --tcp-max-connections 500 --tcp-max-connections-per-client 250 \
  --http-listen off --zones-dir "$work" --consul-addr "http://127.0.0.1:$HTTP" --log-level warn \
  >"$work/bridge.log" 2>&1 &
pids+=($!); bridge_pid=$!

cat >"$work/queries.txt" <<Q
web.service.consul A
web.service.consul SRV
db.service.consul A
primary.db.service.consul A
_api._tcp.service.consul SRV
nope.service.consul A
Q
for _ in $(seq 50); do dig +short @127.0.0.1 -p $DNS web.service.consul A | grep -q 10.1.0 && break; sleep 0.1; done
while read -r name type; do dig @127.0.0.1 -p $DNS "$name" "$type" >/dev/null; done <"$work/queries.txt"

run() { # transport -> "qps lost lat_ms cpu_s_per_100k"
  local mode=(-m udp -p $DNS) before after out
  case $1 in
    tcp) mode=(-m tcp -p $DNS) ;;
    dot) mode=(-m dot -p $DOT) ;;
  esac
  before=$(cpu_ticks $bridge_pid)
  case $1 in
    doh-h2 | doh-h1)
      local http=2
      [[ $1 == doh-h1 ]] && http=1.1
      out=$(DOH_LOAD_URL="https://127.0.0.1:$DOH/dns-query" DOH_LOAD_SECONDS=$seconds \
        DOH_LOAD_HTTP=$http cargo bench --quiet --bench doh_load 2>/dev/null |
        awk '{printf "Queries completed: %s\nQueries lost: %s\nQueries per second: %s\nAverage Latency (s): %s\n", $2, $3, $1, $4/1000}')
      ;;
    *) out=$(dnsperf -s 127.0.0.1 "${mode[@]}" -d "$work/queries.txt" -c 4 -T 1 -q 200 -l "$seconds" 2>&1) ;;
  esac
  after=$(cpu_ticks $bridge_pid)
  dnsperf_figures "$before" "$after" <<<"$out"
}

transports=(udp tcp dot doh-h2 doh-h1)
echo "date: $(date -u +%F)  machine: $(nproc) cores, dnsperf -c 4 -T 1 -q 200 -l $seconds, $rounds rounds"
printf '%-6s %-9s %10s %8s %10s %12s\n' round transport qps lost avg_ms cpu_s/100k
: >"$work/results"
for r in $(seq 1 "$rounds"); do
  for t in "${transports[@]}"; do
    read -r qps lost lat cpu < <(run "$t")
    printf '%-6s %-9s %10s %8s %10s %12s\n' "$r" "$t" "$qps" "$lost" "$lat" "$cpu"
    echo "$t $qps $lost $lat $cpu" >>"$work/results"
  done
done
fill_medians "${transports[@]}"
for t in "${transports[@]}"; do
  printf 'median %-9s %10s %8s %10s %12s\n' "$t" "${med[$t,2]}" "${med[$t,3]}" "${med[$t,4]}" "${med[$t,5]}"
done
for t in "${transports[@]:1}"; do
  echo "ratio $t/udp: QPS $(ratio "${med[$t,2]}" "${med[udp,2]}")×, CPU per query $(ratio "${med[$t,5]}" "${med[udp,5]}")×"
done
