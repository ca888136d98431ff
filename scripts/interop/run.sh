#!/usr/bin/env bash
# SDK interop check (issue #4 "Proof"): requests signed by the providers'
# official SDKs are sent to a running gateway and must be accepted (and a
# resend must be a duplicate); for SDKs that only verify, the SDK must accept
# what `hookgate sign` produces. Installs what it needs (a venv under
# target/interop, npm packages under target/interop/node; `target` is
# $CARGO_TARGET_DIR when set, as for cargo), starts the gateway (that
# target's debug binary) on embedded SQLite, stops it at the end.
set -euo pipefail
cd "$(dirname "$0")/../.."
root=$PWD
target=${CARGO_TARGET_DIR:-target}
# A relative CARGO_TARGET_DIR is relative to here, where cargo runs.
case $target in /*) ;; *) target=$root/$target ;; esac
work=$target/interop
mkdir -p "$work"

bin=$target/debug/hookgate
# Always (a no-op when it is up to date): never test a stale binary.
cargo build --locked --quiet --bin hookgate

if [ ! -x "$work/venv/bin/python" ]; then
  python3 -m venv "$work/venv"
fi
"$work/venv/bin/pip" install --quiet --disable-pip-version-check -r scripts/interop/requirements.txt

if command -v npm >/dev/null 2>&1; then
  if [ ! -d "$work/node/node_modules/@octokit/webhooks-methods" ]; then
    mkdir -p "$work/node"
    (cd "$work/node" && npm install --silent --no-audit --no-fund @octokit/webhooks-methods@5.1.1 >/dev/null)
  fi
  export INTEROP_NODE_MODULES=$work/node/node_modules
fi

export INTEROP_STRIPE="whsec_interop_$(od -An -N8 -tx1 /dev/urandom | tr -d ' \n')"
export INTEROP_SW="whsec_$(head -c 24 /dev/urandom | base64)"
export INTEROP_SLACK="slack-$(od -An -N8 -tx1 /dev/urandom | tr -d ' \n')"
export INTEROP_TWILIO="twilio-$(od -An -N8 -tx1 /dev/urandom | tr -d ' \n')"
export INTEROP_BRAINTREE="interop_public:interop_private_$(od -An -N4 -tx1 /dev/urandom | tr -d ' \n')"
export INTEROP_PADDLE="pdl_ntfset_interop_$(od -An -N8 -tx1 /dev/urandom | tr -d ' \n')"
export INTEROP_GITHUB="gh-$(od -An -N8 -tx1 /dev/urandom | tr -d ' \n')"
# Adyen HMAC keys are 32 bytes, shown as hex in the Customer Area.
export INTEROP_ADYEN="$(od -An -N32 -tx1 /dev/urandom | tr -d ' \n' | tr a-f A-F)"
export HOOKGATE_STORAGE__URL="sqlite://$work/interop-$$.db"
export HOOKGATE_LOG__LEVEL=warn

log=$work/gateway-$$.log
"$bin" serve --config scripts/interop/hookgate.toml >"$log" 2>&1 &
gateway=$!
cleanup() { kill "$gateway" 2>/dev/null || true; wait "$gateway" 2>/dev/null || true; rm -f "$work"/interop-$$.db*; }
trap cleanup EXIT
for _ in $(seq 1 100); do
  url=$(sed -n 's/^hookgate listening on \(http:[^ ]*\)$/\1/p' "$log" | head -1)
  [ -n "$url" ] && break
  sleep 0.1
done
[ -n "${url:-}" ] || { echo "gateway did not start:"; cat "$log"; exit 1; }

INTEROP_URL=$url INTEROP_BIN=$bin INTEROP_ROOT=$root "$work/venv/bin/python" scripts/interop/interop.py
