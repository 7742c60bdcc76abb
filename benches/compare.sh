#!/usr/bin/env bash
# Side by side on one machine: Consul's own DNS (tuned as its docs advise: allow_stale, use_cache),
# NSD serving a static zone with the very same answers (the machine's practical ceiling, RRL off),
# and the bridge (release build), each hit by the same dnsperf run, several rounds in one go.
# Prints per run: QPS, lost queries, average latency, server CPU seconds per 100k queries; then the
# medians and the median ratios bridge/Consul and bridge/NSD.
# Installs dnsperf and nsd (Debian) and Consul (scripts/install-consul.sh) if missing.
# Usage: benches/compare.sh [rounds] [seconds]   (default 3 rounds of 5 s)
# COMPARE_VARIANT="--flag value ..." adds a second bridge started with those flags to every
# round ("variant"), and prints its ratio to the plain bridge: the cost of a feature, measured
# side by side. E.g. rate limiting applied to every answer (dnsperf's loopback is exempt by
# default): COMPARE_VARIANT="--rrl-exempt none --rrl-ratelimit 60000"; access rules on every
# answer: COMPARE_VARIANT="--allow-query 127.0.0.0/8 --visibility-meta-key bench-allow"; the
# query log: COMPARE_VARIANT="--query-log /tmp/bench-queries.log".
# COMPARE_MIX=labelled: the names in the local datacenter as labelled names (see below).
# COMPARE_DNSPERF="..." adds dnsperf flags for every server, e.g. an EDNS option on every
# question: a client cookie, COMPARE_DNSPERF="-E 10:0102030405060708".
set -euo pipefail
cd "$(dirname "$0")/.."
rounds=${1:-3} seconds=${2:-5}
DNSPERF_FLAGS=(-c 4 -T 1 -q 200 -l "$seconds")
read -r -a dnsperf_extra <<<"${COMPARE_DNSPERF:-}"
DNSPERF_FLAGS+=("${dnsperf_extra[@]}")
scripts/install-debian-tools.sh dnsperf:dnsperf nsd:nsd dig:bind9-dnsutils curl:curl
CONSUL=$(scripts/install-consul.sh)
cargo build --release --quiet

HTTP=19500 CONSUL_DNS=19600 BRIDGE=19653 VARIANT=19654 NSD_PORT=19753
read -r -a variant_flags <<<"${COMPARE_VARIANT:-}"
servers=(consul nsd bridge)
source scripts/on-exit-cleanup.sh
source benches/lib.sh

# Consul's DNS tuned as its documentation advises for performance.
cat >"$work/consul.hcl" <<HCL
dns_config {
  only_passing = true
  allow_stale  = true
  max_stale    = "87600h"
  use_cache    = true
  cache_max_age = "10s"
}
HCL
"$CONSUL" agent -dev -client 127.0.0.1 -bind 127.0.0.1 -http-port $HTTP -dns-port $CONSUL_DNS \
  -serf-lan-port 19301 -serf-wan-port 19302 -server-port 19300 -grpc-port -1 \
  -config-file "$work/consul.hcl" >"$work/consul.log" 2>&1 &
pids+=($!); consul_pid=$!
for _ in $(seq 150); do curl -sf "127.0.0.1:$HTTP/v1/catalog/services" | grep -q consul && break; sleep 0.2; done

# Every instance carries a visibility rule under the key bench-allow, which only a variant
# started with --visibility-meta-key bench-allow reads (Consul and the plain bridge ignore it).
register() {
  curl -sf -X PUT "127.0.0.1:$HTTP/v1/agent/service/register" \
    -d "{\"Meta\":{\"bench-allow\":\"10.0.0.0/8, 127.0.0.0/8\"},${1#\{}" >/dev/null
}
for i in 1 2 3; do register "{\"Name\":\"web\",\"ID\":\"web$i\",\"Address\":\"10.1.0.$i\",\"Port\":808$i,\"Check\":{\"TTL\":\"1h\",\"Status\":\"passing\"}}"; done
register '{"Name":"web","ID":"web9","Address":"10.1.0.9","Port":8089,"Check":{"TTL":"1h","Status":"critical"}}'
register '{"Name":"db","ID":"db1","Address":"10.2.0.1","Port":5432,"Tags":["primary"],"Check":{"TTL":"1h","Status":"passing"}}'
register '{"Name":"db","ID":"db2","Address":"10.2.0.2","Port":5432,"Tags":["replica"],"Check":{"TTL":"1h","Status":"passing"}}'
register '{"Name":"api","ID":"api1","Address":"10.3.0.1","Port":9000,"Check":{"TTL":"1h","Status":"passing"}}'
register '{"Name":"api","ID":"api2","Address":"10.3.0.2","Port":9000,"Check":{"TTL":"1h","Status":"passing"}}'

target/release/consul-dns-bridge --listen 127.0.0.1:$BRIDGE --http-listen off --zones-dir "$work" \
  --consul-addr "http://127.0.0.1:$HTTP" --log-level warn >"$work/bridge.log" 2>&1 &
pids+=($!); bridge_pid=$!
if ((${#variant_flags[@]})); then
  target/release/consul-dns-bridge --listen 127.0.0.1:$VARIANT --http-listen off --zones-dir "$work" \
    --consul-addr "http://127.0.0.1:$HTTP" --log-level warn "${variant_flags[@]}" >"$work/variant.log" 2>&1 &
  pids+=($!); variant_pid=$!
  servers+=(variant)
  echo "variant: ${variant_flags[*]}"
fi

# The query mix: A and SRV of a few services, a tag form, an RFC 2782 form, one NXDOMAIN.
cat >"$work/queries.txt" <<Q
web.service.consul A
web.service.consul SRV
db.service.consul A
db.service.consul SRV
api.service.consul A
_api._tcp.service.consul SRV
primary.db.service.consul A
_db._primary.service.consul SRV
_web._tcp.service.consul SRV
nope.service.consul A
Q
# COMPARE_MIX=labelled asks the same names in the local datacenter, labelled as current Consul
# writes it (web.service.dc1.dc.consul): to compare with a run of the legacy mix (Consul 1.8.7
# itself answers those NXDOMAIN; NSD serves the bridge's answers under the labelled names).
if [[ ${COMPARE_MIX:-} == labelled ]]; then
  sed -i 's/\.consul /.dc1.dc.consul /' "$work/queries.txt"
  echo "mix: labelled (.dc1.dc.consul)"
fi
for port in $BRIDGE ${variant_pid:+$VARIANT}; do
  for _ in $(seq 50); do dig +short @127.0.0.1 -p $port web.service.consul A | grep -q 10.1.0 && break; sleep 0.1; done
  while read -r name type; do dig @127.0.0.1 -p $port "$name" "$type" >/dev/null; done <"$work/queries.txt"
done

# NSD's zone: exactly the records the bridge answers with (answer and additional sections).
{
  echo '$ORIGIN consul.'
  echo '@ 0 IN SOA ns.consul. hostmaster.consul. 1 3600 600 86400 0'
  echo '@ 0 IN NS ns.consul.'
  echo 'ns 0 IN A 127.0.0.1'
  while read -r name type; do
    dig @127.0.0.1 -p $BRIDGE "$name" "$type" +noall +answer +additional | { grep -v -e '^;' -e OPT || true; }
  done <"$work/queries.txt" | sort -u
} >"$work/consul.zone"
cat >"$work/nsd.conf" <<CONF
server:
  ip-address: 127.0.0.1
  port: $NSD_PORT
  username: ""
  chroot: ""
  zonesdir: "$work"
  database: ""
  pidfile: "$work/nsd.pid"
  xfrdfile: "$work/xfrd.state"
  zonelistfile: "$work/zone.list"
  server-count: $(nproc)
  reuseport: yes
  rrl-ratelimit: 0
  verbosity: 0
remote-control:
  control-enable: no
zone:
  name: consul
  zonefile: consul.zone
CONF
nsd -d -c "$work/nsd.conf" >"$work/nsd.log" 2>&1 &
pids+=($!); nsd_pid=$!
sleep 1
for _ in $(seq 50); do dig +short @127.0.0.1 -p $NSD_PORT web.service.consul A | grep -q 10.1.0 && break; sleep 0.1; done

# The same answers from all three, or the comparison means nothing.
for port in $CONSUL_DNS $NSD_PORT $BRIDGE ${variant_pid:+$VARIANT}; do
  while read -r name type; do
    dig @127.0.0.1 -p $port "$name" "$type" +noall +answer +comments | { grep -E 'status|IN' || true; } |
      sed -E 's/id: [0-9]+//; s/[[:space:]]+/ /g' | sort
  done <"$work/queries.txt" >"$work/answers.$port"
done
for port in $CONSUL_DNS $NSD_PORT ${variant_pid:+$VARIANT}; do
  if ! diff -q "$work/answers.$port" "$work/answers.$BRIDGE" >/dev/null; then
    echo "note: answers on port $port differ from the bridge's (record order or TTL may differ):"
    { diff "$work/answers.$port" "$work/answers.$BRIDGE" || true; } | head -10
  fi
done
for port in $CONSUL_DNS $NSD_PORT $BRIDGE ${variant_pid:+$VARIANT}; do
  echo "port $port: $(grep -c ' IN ' "$work/answers.$port" || true) records, $(grep -c 'status: NOERROR' "$work/answers.$port" || true) NOERROR of $(wc -l <"$work/queries.txt") questions"
done

run() { # name port pid -> "qps lost lat_ms cpu_s_per_100k"
  local before after out
  before=$(cpu_ticks "$3")
  out=$(dnsperf -s 127.0.0.1 -p "$2" -d "$work/queries.txt" "${DNSPERF_FLAGS[@]}" 2>&1)
  after=$(cpu_ticks "$3")
  dnsperf_figures "$before" "$after" <<<"$out"
}

echo "date: $(date -u +%F)  machine: $(nproc) cores, $(awk -F: '/model name/ {print $2; exit}' /proc/cpuinfo | sed 's/^ *//')"
echo "dnsperf ${DNSPERF_FLAGS[*]}, $(wc -l <"$work/queries.txt") query names, $rounds rounds"
printf '%-6s %-8s %10s %8s %10s %16s\n' round server qps lost avg_ms cpu_s/100k
: >"$work/results"
for r in $(seq 1 "$rounds"); do
  for server in "${servers[@]}"; do
    case $server in
      consul) port=$CONSUL_DNS pid=$consul_pid ;;
      nsd) port=$NSD_PORT pid=$nsd_pid ;;
      bridge) port=$BRIDGE pid=$bridge_pid ;;
      variant) port=$VARIANT pid=$variant_pid ;;
    esac
    read -r qps lost lat cpu < <(run $server $port $pid)
    printf '%-6s %-8s %10s %8s %10s %16s\n' "$r" "$server" "$qps" "$lost" "$lat" "$cpu"
    echo "$server $qps $lost $lat $cpu" >>"$work/results"
  done
done
fill_medians "${servers[@]}"
for server in "${servers[@]}"; do
  printf 'median %-8s %10s %8s %10s %16s\n' "$server" "${med[$server,2]}" "${med[$server,3]}" "${med[$server,4]}" "${med[$server,5]}"
done
echo "ratio bridge/consul: QPS $(ratio "${med[bridge,2]}" "${med[consul,2]}")×"
echo "ratio bridge/nsd:    QPS $(ratio "${med[bridge,2]}" "${med[nsd,2]}")×, latency $(ratio "${med[bridge,4]}" "${med[nsd,4]}")×, CPU per query $(ratio "${med[bridge,5]}" "${med[nsd,5]}")×"
if [[ -n ${variant_pid:-} ]]; then
  echo "ratio variant/bridge: QPS $(ratio "${med[variant,2]}" "${med[bridge,2]}")×, latency $(ratio "${med[variant,4]}" "${med[bridge,4]}")×, CPU per query $(ratio "${med[variant,5]}" "${med[bridge,5]}")×"
fi
