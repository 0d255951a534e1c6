#!/usr/bin/env bash
# Runs published Paystack and Flutterwave client libraries against a fresh
# gateway-sim and fails if any of them cannot use its answers.
#
#   bash examples/gateway-sim/conformance/run.sh [path/to/gateway-sim]
#
# Default binary: ${CARGO_TARGET_DIR:-target}/debug/gateway-sim, relative to
# the repository root. Needs python3 (with venv), node >= 18 and npm, and
# reaches PyPI and the npm registry; everything is installed into a
# `mktemp -d` folder that is removed on exit (CONFORMANCE_KEEP=1 keeps it).
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/../../.." && pwd)

if [[ $# -ge 1 ]]; then
  BIN=$1
else
  BIN=${CARGO_TARGET_DIR:-target}/debug/gateway-sim
  [[ $BIN == /* ]] || BIN=$ROOT/$BIN
fi
if [[ ! -x $BIN ]]; then
  echo "run.sh: no gateway-sim binary at $BIN (build it with: cargo build -p gateway-sim)" >&2
  exit 2
fi
for tool in python3 node npm timeout; do
  command -v "$tool" >/dev/null || { echo "run.sh: $tool is required" >&2; exit 2; }
done

SCRATCH=$(mktemp -d "${TMPDIR:-/tmp}/gateway-sim-conformance.XXXXXX")
SIM_PID=
cleanup() {
  if [[ -n $SIM_PID ]]; then
    kill "$SIM_PID" 2>/dev/null || true
    wait "$SIM_PID" 2>/dev/null || true
  fi
  if [[ ${CONFORMANCE_KEEP:-0} == 1 ]]; then
    echo "run.sh: kept $SCRATCH"
  else
    rm -rf "$SCRATCH"
  fi
}
trap cleanup EXIT

# --- the simulator ---------------------------------------------------------
# --auto-settle-ms: transfers and refunds settle by themselves shortly after
# creation, as on a live account, so verify calls see conclusive states.
"$BIN" --addr 127.0.0.1:0 --auto-settle-ms 200 >"$SCRATCH/sim.out" 2>"$SCRATCH/sim.err" &
SIM_PID=$!
URL=
for _ in $(seq 100); do
  URL=$(head -n 1 "$SCRATCH/sim.out" 2>/dev/null || true)
  [[ -n $URL ]] && break
  kill -0 "$SIM_PID" 2>/dev/null || break
  sleep 0.1
done
if [[ $URL != http://* ]]; then
  echo "run.sh: gateway-sim did not print its URL; stderr:" >&2
  cat "$SCRATCH/sim.err" >&2
  exit 1
fi
echo "run.sh: gateway-sim at $URL ($BIN)"

# Loopback must never go through a proxy that the environment may set for
# the registries (requests, httpx and the `request` npm module honour
# HTTP_PROXY).
export NO_PROXY="127.0.0.1,localhost${NO_PROXY:+,$NO_PROXY}"
export no_proxy=$NO_PROXY
# The Flutterwave SDK caches its telemetry identity in os.tmpdir() unless
# told otherwise: keep it in the scratch folder.
export FLW_SDK_STATE_PATH=$SCRATCH/flw_sdk.json

# --- the client libraries, pinned ------------------------------------------
echo "run.sh: installing pypaystack2==3.4.0 paystackapi==2.1.3 (PyPI)"
python3 -m venv "$SCRATCH/venv"
timeout 150 "$SCRATCH/venv/bin/pip" install --quiet --disable-pip-version-check \
  "pypaystack2==3.4.0" "paystackapi==2.1.3"
echo "run.sh: installing flutterwave-node-v3@1.4.1 paystack@2.0.1 (npm)"
timeout 150 npm install --prefix "$SCRATCH/node" --no-audit --no-fund --loglevel=error \
  --save-exact flutterwave-node-v3@1.4.1 paystack@2.0.1 >/dev/null

# --- the clients against the simulator -------------------------------------
# Each under `timeout`: a client stuck on a socket (the Flutterwave SDK's
# telemetry calls hosts that are unreachable here) fails instead of hanging.
failed=()
run() {
  local name=$1
  shift
  echo "run.sh: --- $name"
  local status=0
  timeout 60 "$@" || status=$?
  if [[ $status -eq 124 ]]; then
    echo "FAIL $name: timed out after 60 s"
  fi
  if [[ $status -ne 0 ]]; then
    failed+=("$name")
  fi
}
run paystack_clients.py "$SCRATCH/venv/bin/python" "$HERE/paystack_clients.py" "$URL"
run flutterwave_client.js env NODE_PATH="$SCRATCH/node/node_modules" node "$HERE/flutterwave_client.js" "$URL"

if ! kill -0 "$SIM_PID" 2>/dev/null; then
  echo "FAIL gateway-sim exited during the run; stderr:"
  cat "$SCRATCH/sim.err"
  failed+=(gateway-sim)
fi

if [[ ${#failed[@]} -gt 0 ]]; then
  echo "run.sh: FAILED: ${failed[*]}"
  exit 1
fi
echo "run.sh: all client conformance checks passed"
