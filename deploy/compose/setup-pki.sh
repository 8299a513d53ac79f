#!/usr/bin/env bash
# Creates deploy/compose/pki with certificates naming the compose services (and localhost, for
# clients on the host). Run from the repository root after `cargo build`.
set -euo pipefail
cd "$(dirname "$0")"
exchange=${EXCHANGE:-../../target/debug/exchange}
"$exchange" pki init --dir pki --trust-domain exchange.local
"$exchange" pki server --dir pki --name registry --dns registry --dns localhost --ip 127.0.0.1
"$exchange" pki issue --dir pki --dept js.dsj --role admin
for dept in gongan scjg zrzy; do
  "$exchange" pki issue --dir pki --dept js.$dept --role node --dns node-$dept --dns localhost --ip 127.0.0.1
  "$exchange" pki issue --dir pki --dept js.$dept --role system
done
# Keys stay mode 0600; hand them to the image's user (uid 10001, see deploy/Dockerfile):
echo "now run: sudo chown -R 10001 $(pwd)/pki"
