#!/usr/bin/env bash
# The main job, end to end on a fresh machine: installs Consul and dig if missing, builds the
# bridge, starts a Consul dev agent with example services and the bridge on loopback, and shows
# dig answers from both (Consul's own DNS beside ours), including a health flip.
# Usage: scripts/demo.sh [--keep]   (--keep: leave both running until Ctrl-C)
set -euo pipefail
cd "$(dirname "$0")/.."
keep=${1:-}
HTTP=18500 CONSUL_DNS=18600 BRIDGE=127.0.0.1:8653

scripts/install-debian-tools.sh dig:bind9-dnsutils
CONSUL=$(scripts/install-consul.sh)
echo "== building the bridge (release)"
cargo build --release --quiet

source scripts/on-exit-cleanup.sh

echo 'dns_config { only_passing = true }' > "$work/dns.hcl"
echo "== starting Consul dev agent (HTTP 127.0.0.1:$HTTP, its DNS on port $CONSUL_DNS)"
"$CONSUL" agent -dev -client 127.0.0.1 -bind 127.0.0.1 -http-port $HTTP -dns-port $CONSUL_DNS \
  -serf-lan-port 18301 -serf-wan-port 18302 -server-port 18300 -grpc-port -1 \
  -config-file "$work/dns.hcl" >"$work/consul.log" 2>&1 &
pids+=($!)
for _ in $(seq 100); do curl -sf "127.0.0.1:$HTTP/v1/catalog/services" | grep -q consul && break; sleep 0.2; done

register() { curl -sf -X PUT "127.0.0.1:$HTTP/v1/agent/service/register" -d "$1" >/dev/null; }
register '{"Name":"web","ID":"web1","Address":"10.1.0.1","Port":8080,"Tags":["v1"],"Check":{"TTL":"1h","Status":"passing"}}'
register '{"Name":"web","ID":"web2","Address":"10.1.0.2","Port":8081,"Tags":["v2"],"Check":{"TTL":"1h","Status":"passing"}}'
register '{"Name":"web","ID":"web3","Address":"10.1.0.3","Port":8082,"Check":{"TTL":"1h","Status":"critical"}}'
register '{"Name":"db","ID":"db1","Port":5432,"Check":{"TTL":"1h","Status":"passing"}}'
curl -sf -X POST "127.0.0.1:$HTTP/v1/query" -d '{"Name":"web-v1","Service":{"Service":"web","Tags":["v1"]},"DNS":{"TTL":"10s"}}' >/dev/null
echo "   registered web (2 passing, 1 critical), db (on the node's address) and the prepared query web-v1"

echo "== starting consul-dns-bridge on $BRIDGE"
target/release/consul-dns-bridge --listen $BRIDGE --consul-addr "http://127.0.0.1:$HTTP" >"$work/bridge.log" 2>&1 &
pids+=($!)
sleep 0.5

show() { echo; echo "\$ dig @127.0.0.1 -p ${BRIDGE##*:} $*"; dig @127.0.0.1 -p "${BRIDGE##*:}" "$@" +noall +answer +authority +additional +comments | grep -E 'status|IN' ; }
show web.service.consul A
show _web._tcp.service.consul SRV
show v2.web.service.consul A
show db.service.consul SRV
show 0a010001.addr.dc1.consul A
show web-v1.query.consul A
show -x 10.1.0.1
show nope.service.consul A
echo; echo "== Consul's own DNS, same question:"
echo "\$ dig @127.0.0.1 -p $CONSUL_DNS web.service.consul A +short"
dig @127.0.0.1 -p $CONSUL_DNS web.service.consul A +short
echo; echo "== web1 fails its check; the bridge sees it through a blocking query:"
curl -sf -X PUT "127.0.0.1:$HTTP/v1/agent/check/fail/service:web1" >/dev/null
sleep 0.05
echo "\$ dig @127.0.0.1 -p ${BRIDGE##*:} web.service.consul A +short"
dig @127.0.0.1 -p "${BRIDGE##*:}" web.service.consul A +short

if [[ $keep == --keep ]]; then
  echo; echo "== both keep running (bridge on $BRIDGE, Consul UI/API on 127.0.0.1:$HTTP); Ctrl-C stops them"
  wait
fi
