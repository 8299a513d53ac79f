#!/usr/bin/env bash
# Measures a department node's memory (resident set size) as its own process, the way it runs in
# production: idle after start, while RECORDS population records are published to it, and while
# they are queried back (owner in clear, consumer masked). Uses deploy/local's configs in a
# temporary directory, on ports PORT..PORT+3.
#
#   cargo build --release
#   deploy/local/measure-memory.sh [RECORDS] [CACHE_MIB]
#
# RECORDS defaults to 200000; CACHE_MIB sets the node's [store] cache_mib (default: the
# built-in default). EXCHANGE may point at another build, PORT (default 7600) moves the ports.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
exchange=$(realpath "${EXCHANGE:-$here/../../target/release/exchange}")
records=${1:-200000}
cache=${2:-}
port=${PORT:-7600}
work=$(mktemp -d)
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

for name in registry.toml node-gongan.toml node-scjg.toml setup-pki.sh; do
  sed -e "s/:7500/:$port/g" -e "s/:7501/:$((port + 1))/g" -e "s/:7502/:$((port + 2))/g" \
    "$here/$name" >"$work/$name"
done
if [ -n "$cache" ]; then
  printf '\n[store]\ncache_mib = %s\n' "$cache" >>"$work/node-gongan.toml"
fi
cd "$work"
EXCHANGE=$exchange bash setup-pki.sh >/dev/null

as() { # as WHO ARGS...: the CLI as a principal of deploy/local's PKI
  local who=$1
  shift
  "$exchange" --registry "https://localhost:$port" --node "https://localhost:$((port + 1))" \
    --ca pki/ca.pem --cert "pki/$who.pem" --key "pki/$who-key.pem" "$@"
}

# wait_for WHAT COMMAND...: runs COMMAND until it succeeds, for at most 30 s
wait_for() {
  local what=$1 deadline=$((SECONDS + 30))
  shift
  until "$@" >/dev/null 2>&1; do
    if [ "$SECONDS" -ge "$deadline" ]; then
      echo "gave up waiting for $what; logs in $work" >&2
      trap - EXIT
      exit 1
    fi
    sleep 0.1
  done
}
node_current() { as js.gongan-system --json status 2>/dev/null | grep -q '"latestVersion": *1'; }

"$exchange" registry --config registry.toml >registry.log 2>&1 &
pids+=($!)
wait_for "the registry" as js.dsj-admin whoami
for dept in js.gongan js.scjg; do
  as js.dsj-admin dept register --id "$dept" --name "$dept" --level province --region 320000 >/dev/null
done
as js.gongan-system dataset register --id js.gongan/population --title 人口基础信息 \
  --classification conditional --key-field id_number >/dev/null
as js.gongan-system schema publish js.gongan/population "$here/../../schemas/population.json" >/dev/null
grant=$(as js.scjg-system --json grant request --dataset js.gongan/population \
  --fields name,birth_date,household_register_region --purpose business-licensing \
  --legal-basis "《优化营商环境条例》" --expires 30d | sed -n 's/.*"id": *"\([^"]*\)".*/\1/p' | head -1)
as js.gongan-system grant approve "$grant" >/dev/null

"$exchange" node --config node-gongan.toml >node.log 2>&1 &
node=$!
pids+=($node)
wait_for "the node to follow the registry" node_current

kib() { awk -v f="$1" '$1 == f":" { print $2 }' "/proc/$node/status"; }
mib() { echo $(( $1 / 1024 )); }
# peak RSS while a command runs, sampled every 100 ms
peak_during() {
  local peak=0 rss
  "$@" >>commands.log 2>&1 &
  local job=$!
  while kill -0 "$job" 2>/dev/null; do
    rss=$(kib VmRSS)
    [ "$rss" -gt "$peak" ] && peak=$rss
    sleep 0.1
  done
  wait "$job"
  echo "$peak"
}

sleep 2
idle=$(kib VmRSS)
"$exchange" gen population --count "$records" --out people.ndjson
start=$(date +%s.%N)
publish_peak=$(peak_during as js.gongan-system publish js.gongan/population people.ndjson)
publish_secs=$(awk -v a="$start" -v b="$(date +%s.%N)" "BEGIN { printf \"%.1f\", b - a }")
after_publish=$(kib VmRSS)
query() {
  for _ in 1 2 3; do
    as js.gongan-system query js.gongan/population --purpose self-check --limit 100000 >/dev/null
    as js.scjg-system query js.gongan/population --purpose business-licensing --limit 100000 >/dev/null
  done
}
query_peak=$(peak_during query)
sleep 2
settled=$(kib VmRSS)
hwm=$(kib VmHWM)
# A restart: the store is reopened with everything in it.
kill "$node"
wait "$node" 2>/dev/null || true
"$exchange" node --config node-gongan.toml >>node.log 2>&1 &
node=$!
pids+=($node)
wait_for "the node to follow the registry" node_current
as js.gongan-system get js.gongan/population "$(head -1 people.ndjson | sed 's/.*"id_number":"\([^"]*\)".*/\1/')" --purpose self-check >/dev/null
sleep 2
restarted=$(kib VmRSS)

echo "node RSS, MiB (cache_mib ${cache:-default}, $records records published in $publish_secs s)"
echo "  idle after start:        $(mib "$idle")"
echo "  peak while publishing:   $(mib "$publish_peak")"
echo "  after publishing:        $(mib "$after_publish")"
echo "  peak while querying:     $(mib "$query_peak")"
echo "  settled after queries:   $(mib "$settled")"
echo "  high-water mark (VmHWM): $(mib "$hwm")"
echo "  idle after a restart:    $(mib "$restarted")"
echo "  store on disk:           $(du -sm data/node-gongan/store | cut -f1)"
echo "publish: $(grep -m1 ' stored, ' commands.log || true)"
echo "records at the node: $(as js.gongan-system --json status | tr -d ' \n' | sed -n 's/.*"records":"\{0,1\}\([0-9]*\).*/\1/p')"
