#!/usr/bin/env bash
# Load benchmark of the control API: `GET /api/v1/coordinator/status` with a viewer token while
# the server trades on the simulated market (paper mode, no exchange or model keys).
#
# Usage: benches/load.sh
# Environment:
#   DURATION     wrk duration (default 20s: within the limiter's budget, see below)
#   THREADS      wrk threads (default 2)
#   CONNECTIONS  wrk connections (default 64)
#   PROFILE      cargo profile of the server build: release (default) or dev (to check the script)
#   DATABASE_URL optional: PostgreSQL for the server; without it the in-memory store is used
#
# Needs wrk (Debian: apt-get install -y wrk) and python3 (to find a free port).
set -euo pipefail

DURATION=${DURATION:-20s}
THREADS=${THREADS:-2}
CONNECTIONS=${CONNECTIONS:-64}
PROFILE=${PROFILE:-release}
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}

command -v wrk >/dev/null || { echo "wrk not found: apt-get install -y wrk" >&2; exit 1; }

case "$PROFILE" in
  release) BIN="$TARGET_DIR/release/triplegain" ;;
  dev) BIN="$TARGET_DIR/debug/triplegain" ;;
  *) echo "PROFILE must be release or dev" >&2; exit 1 ;;
esac

echo "== building the server ($PROFILE)"
(cd "$ROOT" && nice -n 5 cargo build --profile "$PROFILE" --bin triplegain)

PORT=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()')
TOKEN="bench-viewer-$(od -An -N16 -tx1 /dev/urandom | tr -d ' \n')"
WORK=$(mktemp -d)
SERVER_PID=""
cleanup() {
  if [[ -n "$SERVER_PID" ]] && kill -0 "$SERVER_PID" 2>/dev/null; then
    kill -TERM "$SERVER_PID" 2>/dev/null || true
    wait "$SERVER_PID" 2>/dev/null || true
  fi
  rm -rf "$WORK"
}
trap cleanup EXIT

# The shipped settings plus a local.yaml for the run: a viewer token, quiet logs, and a read limit
# that does not throttle. The default (60 reads a minute per token) would answer nearly every
# request of one token with 429 and measure the refusal path instead of the route. 1 000 000 a
# minute (the largest accepted) keeps the limiter on the measured path (every request is checked
# against it) while its burst of 1 000 000 requests plus the refill covers a 20 s run up to about
# 66 000 requests/s (a 30 s run only up to about 50 000); a run that goes beyond shows as non-2xx
# responses below.
cp -r "$ROOT/config" "$WORK/config"
cat > "$WORK/config/local.yaml" <<EOF
logging:
  format: json
  level: warn
api:
  tokens:
    - { name: bench-viewer, token: "$TOKEN", role: viewer }
  rate_limit:
    reads_per_minute: 1000000
    control_per_minute: 10
app:
  mode: paper
market:
  source: simulated
EOF

echo "== starting the server on 127.0.0.1:$PORT (paper, simulated market)"
env -u KRAKEN_API_KEY -u KRAKEN_API_SECRET -u DEEPSEEK_API_KEY -u ANTHROPIC_API_KEY \
  -u OPENAI_API_KEY -u XAI_API_KEY -u TRIPLEGAIN_API_TOKEN TRIPLEGAIN_ENV=local \
  "$BIN" --config "$WORK/config" serve --bind "127.0.0.1:$PORT" >"$WORK/server.log" 2>&1 &
SERVER_PID=$!

for _ in $(seq 1 120); do
  if curl -fsS "http://127.0.0.1:$PORT/readyz" >/dev/null 2>&1; then break; fi
  if ! kill -0 "$SERVER_PID" 2>/dev/null; then
    echo "server exited:" >&2; tail -n 50 "$WORK/server.log" >&2; exit 1
  fi
  sleep 0.5
done
curl -fsS "http://127.0.0.1:$PORT/readyz" >/dev/null || { echo "server not ready" >&2; tail -n 50 "$WORK/server.log" >&2; exit 1; }
STATUS=$(curl -fsS -H "Authorization: Bearer $TOKEN" "http://127.0.0.1:$PORT/api/v1/coordinator/status")
echo "== coordinator: $STATUS" | cut -c1-200

echo "== wrk -t$THREADS -c$CONNECTIONS -d$DURATION --latency GET /api/v1/coordinator/status"
echo "   load average before: $(cut -d' ' -f1-3 /proc/loadavg)"
OUT=$(wrk -t"$THREADS" -c"$CONNECTIONS" -d"$DURATION" --latency \
  -H "Authorization: Bearer $TOKEN" "http://127.0.0.1:$PORT/api/v1/coordinator/status")
echo "$OUT"
echo "   load average after: $(cut -d' ' -f1-3 /proc/loadavg)"

# Trading went on during the run: the simulated market kept publishing.
MESSAGES=$(curl -fsS "http://127.0.0.1:$PORT/metrics" | grep '^triplegain_bus_messages_total{topic="candles"}' || true)
echo "== bus during the run: ${MESSAGES:-no candle counter}"

RPS=$(awk '/^Requests\/sec:/ {print $2}' <<<"$OUT")
P99=$(awk '$1 == "99%" {print $2}' <<<"$OUT")
NON2XX=$(awk '/Non-2xx or 3xx responses:/ {print $5}' <<<"$OUT")
echo "== result: requests/s ${RPS:-?}, p99 ${P99:-?}, non-2xx ${NON2XX:-0}"
if [[ -n "$NON2XX" && "$NON2XX" != "0" ]]; then
  echo "warning: $NON2XX responses were not 2xx (rate limit reached or errors): the numbers do not measure the route alone" >&2
  exit 3
fi
