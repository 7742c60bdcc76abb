#!/usr/bin/env bash
# The busy-catalog test (tests/it/churn.rs) in release, at more services and for longer than in
# the suite: wrong answers 1 s after the churn stops, change -> answer by kind (p50, p99, max;
# none lost), Consul reads by cause, and the bridge's RSS over the churn.
# Usage: benches/churn.sh [long-lived rolling seconds [qps]]   (default: 300 200 60 1000)
# e.g. benches/churn.sh 3000 2000 60; benches/churn.sh 300 200 600 (memory over 10 minutes)
set -euo pipefail
cd "$(dirname "$0")/.."
export CONSUL_BIN=${CONSUL_BIN:-$(scripts/install-consul.sh)}
echo "date: $(date -u +%F)  machine: $(nproc) cores"
CHURN_LONG_LIVED=${1:-300} CHURN_ROLLING=${2:-200} CHURN_SECONDS=${3:-60} CHURN_QPS=${4:-1000} \
  cargo test --release --quiet --test it churn -- --nocapture --test-threads 1 2>&1 |
  grep -E '^(churn|by kind|bridge RSS|consul_dns_bridge|test result)'
