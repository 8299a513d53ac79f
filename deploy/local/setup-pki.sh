#!/usr/bin/env bash
# Creates the PKI deploy/local's configs expect, in deploy/local/pki. Run from the repository root
# after `cargo build`; EXCHANGE may point at another build of the binary.
set -euo pipefail
cd "$(dirname "$0")"
exchange=${EXCHANGE:-../../target/debug/exchange}
"$exchange" pki init --dir pki --trust-domain exchange.local
"$exchange" pki server --dir pki --name registry --dns localhost --ip 127.0.0.1
"$exchange" pki issue --dir pki --dept js.dsj --role admin
for dept in gongan scjg zrzy; do
  "$exchange" pki issue --dir pki --dept js.$dept --role node --dns localhost --ip 127.0.0.1
  "$exchange" pki issue --dir pki --dept js.$dept --role system
done
