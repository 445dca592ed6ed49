#!/usr/bin/env bash
# What the request log costs on the request path, as a pinned A/B:
#
#   bash bench/log-cost.sh               # 8 pairs of 8 s runs; about 3 minutes
#   PAIRS=4 DURATION=5 bash bench/log-cost.sh
#   MODE=together bash bench/log-cost.sh   # both driven at once (below)
#
# Starts the instant mock provider (bench/mock) and two gateways from the
# same build, one with the request log on ([log] enabled = true, as
# shipped) and one with it off. Both gateways run on core 0; the mock and
# wrk on core 1. wrk drives them alternately (which goes first alternates
# too) at CONNECTIONS connections with the `overhead.sh` chat body. After
# each run of the log-on gateway, a read of its log makes the writer write
# everything waiting, so the writer's CPU lands in that gateway's own run
# and not in the next one. Prints per pair: req/s and CPU µs per request
# (the gateway's user + system time over requests answered) of each, the
# part of the log-on gateway's that its writer thread spent, then the
# medians and the median paired difference.
set -euo pipefail
cd "$(dirname "$0")/.."

PAIRS=${PAIRS:-8}
DURATION=${DURATION:-8}
CONNECTIONS=${CONNECTIONS:-32}
MOCK_PORT=${MOCK_PORT:-9521}
ON_PORT=${ON_PORT:-9522}
OFF_PORT=${OFF_PORT:-9523}
ON_LOG=${ON_LOG:-true}
OFF_LOG=${OFF_LOG:-false}
ON_LABEL=${ON_LABEL:-"log on"}
# alternate: one gateway at a time, which goes first alternating.
# together: both at once, each with its own wrk, sharing core 0: the
# machine's other tenants then slow both alike, and what each answers is
# what its share of the core buys (noise that alternating runs cannot
# cancel on a busy machine).
MODE=${MODE:-alternate}
OFF_LABEL=${OFF_LABEL:-"log off"}

if ! command -v wrk >/dev/null || ! command -v curl >/dev/null || ! command -v taskset >/dev/null; then
  echo "== installing wrk, curl and util-linux (Debian packages)"
  if [ "$(id -u)" = 0 ]; then SUDO=""; else SUDO="sudo"; fi
  $SUDO apt-get update -qq >/dev/null && $SUDO apt-get install -y -qq wrk curl util-linux >/dev/null
fi
if [ "$(nproc)" -lt 2 ]; then
  echo "needs two cores (gateways on one, the mock and wrk on the other)" >&2
  exit 1
fi
rustup target add wasm32-wasip2 >/dev/null 2>&1 || true

echo "== building (release)"
cargo build --release -q -p switchyard -p switchyard-bench-mock
bin=${BIN:-target/release/switchyard}
off_bin=${OFF_BIN:-$bin}
mock=target/release/bench-mock

work=$(mktemp -d)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)"

key="sk-bench-$(date +%s)"
key_sha=$(printf %s "$key" | sha256sum | cut -d' ' -f1)
admin="bench-admin-$(date +%s)"
config() { # $1 port, $2 log enabled
  cat >"$work/gateway-$1.toml" <<TOML
[server]
listen = "127.0.0.1:$1"

[providers.bench]
kind = "openai"
base_url = "http://127.0.0.1:$MOCK_PORT/v1"
api_key_env = "BENCH_PROVIDER_KEY"
models = ["gpt-5-mini"]

[teams.bench]
key_sha256 = ["$key_sha"]

[store]
path = "$work/switchyard-$1.db"

[log]
enabled = $2
TOML
}
config "$ON_PORT" "$ON_LOG"
config "$OFF_PORT" "$OFF_LOG"

taskset -c 1 "$mock" "127.0.0.1:$MOCK_PORT" 2>>"$work/mock.log" &
pids+=($!)
start_gateway() { # $1 port, $2 binary
  BENCH_PROVIDER_KEY=sk-upstream SWITCHYARD_ADMIN_TOKEN=$admin RUST_LOG=warn \
    taskset -c 0 "$2" serve --config "$work/gateway-$1.toml" 2>>"$work/gateway-$1.log" &
  pids+=($!)
  echo $! >"$work/pid-$1"
}
start_gateway "$ON_PORT" "$bin"
start_gateway "$OFF_PORT" "$off_bin"
for port in "$MOCK_PORT" "$ON_PORT" "$OFF_PORT"; do
  for _ in $(seq 1 200); do
    curl -s -o /dev/null "http://127.0.0.1:$port/" && break
    sleep 0.05
  done
done
on_pid=$(cat "$work/pid-$ON_PORT")
off_pid=$(cat "$work/pid-$OFF_PORT")

body='{"model":"gpt-5-mini","messages":[{"role":"user","content":"Say hello."}],"max_tokens":64}'
cat >"$work/chat.lua" <<LUA
wrk.method = "POST"
wrk.body = [[$body]]
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer $key"
LUA
for port in "$ON_PORT" "$OFF_PORT"; do
  code=$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$port/v1/chat/completions" \
    -H "Authorization: Bearer $key" -H "Content-Type: application/json" -d "$body")
  [ "$code" = 200 ] || { echo "gateway on $port answered $code" >&2; exit 1; }
done

cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
# The CPU of the process's request-log writer thread alone (0 without one).
writer_ticks() {
  local t
  for t in /proc/"$1"/task/*; do
    if [ "$(cat "$t/comm" 2>/dev/null)" = request-log ]; then
      awk '{print $14 + $15}' "$t/stat"
      return
    fi
  done
  echo 0
}
results="$work/results.tsv"
: >"$results"
begin() { # $1 label, $2 port, $3 pid: starts wrk on it
  cpu_ticks "$3" >"$work/before-$1"
  writer_ticks "$3" >"$work/wbefore-$1"
  taskset -c 1 wrk -t1 -c"$CONNECTIONS" -d"${DURATION}s" --timeout 10s \
    -s "$work/chat.lua" "http://127.0.0.1:$2/v1/chat/completions" >"$work/wrk-$1.txt" &
  echo $! >"$work/wrk-pid-$1"
}
finish() { # $1 label, $2 port, $3 pid: waits for its wrk, reads its CPU
  local before after wbefore wafter out="$work/wrk-$1.txt"
  wait "$(cat "$work/wrk-pid-$1")"
  before=$(cat "$work/before-$1")
  wbefore=$(cat "$work/wbefore-$1")
  if { [ "$1" = on ] && [ "$ON_LOG" = true ]; } || { [ "$1" = off ] && [ "$OFF_LOG" = true ]; }; then
    curl -s -o /dev/null "http://127.0.0.1:$2/admin/v1/log?limit=1" -H "Authorization: Bearer $admin"
  fi
  after=$(cpu_ticks "$3")
  wafter=$(writer_ticks "$3")
  python3 - "$1" "$out" "$((after - before))" "$(getconf CLK_TCK)" "$((wafter - wbefore))" >>"$results" <<'PY'
import re, sys
label, path, ticks, hz, wticks = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
text = open(path).read()
if re.search(r"Non-2xx or 3xx responses|Socket errors", text):
    sys.exit(f"{label}: errors in the run:\n{text}")
rps = float(re.search(r"Requests/sec:\s+([\d.]+)", text).group(1))
total = int(re.search(r"(\d+) requests in", text).group(1))
print(f"{label}\t{rps:.0f}\t{ticks * 1e6 / hz / total:.1f}\t{wticks * 1e6 / hz / total:.1f}")
PY
}
run() { begin "$@"; finish "$@"; }

echo "== $PAIRS pairs of ${DURATION}s runs at $CONNECTIONS connections, $MODE (gateways on core 0; mock, wrk on core 1)"
for i in $(seq 1 "$PAIRS"); do
  if [ "$MODE" = together ]; then
    begin on "$ON_PORT" "$on_pid"; begin off "$OFF_PORT" "$off_pid"
    finish on "$ON_PORT" "$on_pid"; finish off "$OFF_PORT" "$off_pid"
  elif [ $((i % 2)) = 1 ]; then
    run on "$ON_PORT" "$on_pid"; run off "$OFF_PORT" "$off_pid"
  else
    run off "$OFF_PORT" "$off_pid"; run on "$ON_PORT" "$on_pid"
  fi
done

python3 - "$results" "$ON_LABEL" "$OFF_LABEL" <<'PY'
import statistics, sys
on_label, off_label = sys.argv[2], sys.argv[3]
print(f"on = {on_label}, off = {off_label}")
rows = [l.split("\t") for l in open(sys.argv[1]).read().split("\n") if l]
on = [(float(r), float(c)) for label, r, c, _ in rows if label == "on"]
off = [(float(r), float(c)) for label, r, c, _ in rows if label == "off"]
writer = [float(w) for label, _, _, w in rows if label == "on"]
print(f"{'pair':>4} {'off req/s':>10} {'on req/s':>10} {'on/off':>7} {'off µs/req':>11} {'on µs/req':>10} {'on writer µs/req':>17}")
for i, ((r1, c1), (r0, c0), w) in enumerate(zip(on, off, writer), 1):
    print(f"{i:>4} {r0:>10.0f} {r1:>10.0f} {r1 / r0 - 1:>+7.1%} {c0:>11.1f} {c1:>10.1f} {w:>17.1f}")
ratio = statistics.median(r1 / r0 - 1 for (r1, _), (r0, _) in zip(on, off))
cpu = statistics.median(c1 - c0 for (_, c1), (_, c0) in zip(on, off))
print(f"median req/s: off {statistics.median(r for r, _ in off):.0f}, on {statistics.median(r for r, _ in on):.0f}; "
      f"median paired req/s change {ratio:+.1%}")
print(f"median CPU µs/req: off {statistics.median(c for _, c in off):.1f}, on {statistics.median(c for _, c in on):.1f}; "
      f"median paired difference {cpu:+.1f} µs")
print(f"median CPU µs/req of the on gateway's request-log writer thread: {statistics.median(writer):.1f}")
PY
