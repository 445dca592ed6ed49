#!/usr/bin/env bash
# Gateway overhead on loopback (DESIGN §9), reproducible from a clean clone:
#
#   bash bench/overhead.sh            # about 4 minutes
#   DURATION=5 bash bench/overhead.sh # shorter runs
#
# Starts the instant mock provider (bench/mock) and the gateway (release build)
# on 127.0.0.1 only, then drives them with wrk at 1, 32 and 256 concurrent
# connections for DURATION seconds each: first straight at the mock (the
# baseline), then through the gateway (Chat Completions, streamed and not, and
# the Responses and Messages APIs, which the gateway translates to the
# provider's Chat Completions). Prints throughput, p50 and p99, and the added
# latency (through the gateway minus direct), and the CPU time the serving
# process (the mock for direct rows, the gateway alone for gateway rows) spent
# per request answered. Then measures the gateway's resident memory idle and
# while 1,000 streams are open at once.
#
# PARTS=allocs (not run by default) counts heap allocations per request on
# each route, with a build of the gateway that has the `alloc-count` feature
# (its counter on /metrics); the cargo build back to the plain one follows,
# so target/ is left as it was. Its CPU figures are not comparable (every
# allocation then bumps a shared atomic), so it reports allocations only.
#
# PARTS=chunks (not run by default) states the CPU cost of one relayed SSE
# chunk: the chat stream at 32 connections against two mocks whose streams
# differ only in length (3 and 63 content chunks), ROUNDS times alternately,
# the gateway pinned to core 0 and the mock and wrk to core 1 (taskset); the
# cost of a chunk is the difference in CPU per request over 60. CHUNK_DELAY_MS
# spaces the chunks, so each arrives in its own read and leaves in its own
# write (by default the mock sends a stream at once). PARTS=allocs then also
# counts the allocations of the 63-chunk stream, and so per chunk.
#
# REQUEST_LOG=false runs the gateway with the request log off ([log] enabled),
# to measure what the log costs on the request path (default: on, as shipped).
#
# BIN=path/to/switchyard measures another build of the gateway (e.g. the one
# before a change, built from another checkout), so two builds can be compared
# in one session, alternating runs.
#
# Installs what it needs (wrk, from Debian's packages) and builds what it
# runs. Every run is bounded by DURATION; the whole script by `timeout`.
set -euo pipefail
cd "$(dirname "$0")/.."

DURATION=${DURATION:-10}
CONCURRENCY=${CONCURRENCY:-"1 32 256"}
STREAMS=${STREAMS:-1000}
PARTS=${PARTS:-"overhead memory"}  # which parts to run
MOCK_PORT=${MOCK_PORT:-9501}
GATEWAY_PORT=${GATEWAY_PORT:-9502}
MEM_MOCK_PORT=${MEM_MOCK_PORT:-9503}
MEM_GATEWAY_PORT=${MEM_GATEWAY_PORT:-9504}
ALLOC_MOCK_PORT=${ALLOC_MOCK_PORT:-9505}
ALLOC_GATEWAY_PORT=${ALLOC_GATEWAY_PORT:-9506}
ALLOC_DURATION=${ALLOC_DURATION:-4}
REQUEST_LOG=${REQUEST_LOG:-true}
CHUNK_MOCK_PORT=${CHUNK_MOCK_PORT:-9507}
CHUNK_GATEWAY_PORT=${CHUNK_GATEWAY_PORT:-9508}
ROUNDS=${ROUNDS:-3}
CHUNK_DELAY_MS=${CHUNK_DELAY_MS:-0}
LONG_CHUNKS=63

if ! command -v wrk >/dev/null || ! command -v ss >/dev/null || ! command -v curl >/dev/null; then
  echo "== installing wrk, iproute2 and curl (Debian packages)"
  if [ "$(id -u)" = 0 ]; then SUDO=""; else SUDO="sudo"; fi
  $SUDO apt-get update -qq >/dev/null && $SUDO apt-get install -y -qq wrk iproute2 curl >/dev/null
fi
rustup target add wasm32-wasip2 >/dev/null 2>&1 || true

echo "== building (release)"
cargo build --release -q -p switchyard -p switchyard-bench-mock
bin=${BIN:-target/release/switchyard}
mock=target/release/bench-mock

work=$(mktemp -d)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT
# 1,000 client connections in and 1,000 upstream connections out.
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)"

key="sk-bench-$(date +%s)"
key_sha=$(printf %s "$key" | sha256sum | cut -d' ' -f1)

# Writes a gateway config routing model gpt-5-mini to one OpenAI account at the mock.
config() { # $1 gateway port, $2 mock port, $3 file
  cat >"$3" <<TOML
[server]
listen = "127.0.0.1:$1"

[providers.bench]
kind = "openai"
base_url = "http://127.0.0.1:$2/v1"
api_key_env = "BENCH_PROVIDER_KEY"
models = ["gpt-5-mini"]

[teams.bench]
key_sha256 = ["$key_sha"]

[store]
path = "$work/switchyard-$1.db"

[log]
enabled = $REQUEST_LOG
TOML
}

wait_http() { # $1 url
  for _ in $(seq 1 200); do
    if curl -s -o /dev/null "$1"; then return 0; fi
    sleep 0.05
  done
  echo "nothing answers at $1" >&2
  exit 1
}

start_pair() { # $1 mock port, $2 gateway port, extra mock args...
  local mp=$1 gp=$2
  shift 2
  "$mock" "127.0.0.1:$mp" "$@" 2>>"$work/mock.log" &
  mock_pid=$!
  pids+=($mock_pid)
  config "$gp" "$mp" "$work/gateway-$gp.toml"
  BENCH_PROVIDER_KEY=sk-upstream RUST_LOG=warn "$bin" serve --config "$work/gateway-$gp.toml" 2>>"$work/gateway.log" &
  gateway_pid=$!
  pids+=($gateway_pid)
  wait_http "http://127.0.0.1:$mp/"
  wait_http "http://127.0.0.1:$gp/healthz"
}

# wrk request scripts: one per body.
lua() { # $1 name, $2 path-less body, $3 extra header line (lua) or empty
  cat >"$work/$1.lua" <<LUA
wrk.method = "POST"
wrk.body = [[$2]]
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer $key"
$3
LUA
}
chat='{"model":"gpt-5-mini","messages":[{"role":"user","content":"Say hello."}],"max_tokens":64}'
chat_stream='{"model":"gpt-5-mini","messages":[{"role":"user","content":"Say hello."}],"max_tokens":64,"stream":true}'
responses='{"model":"gpt-5-mini","input":"Say hello.","max_output_tokens":64}'
messages='{"model":"gpt-5-mini","max_tokens":64,"messages":[{"role":"user","content":"Say hello."}]}'
lua chat "$chat" ""
lua chat_stream "$chat_stream" ""
lua responses "$responses" ""
lua messages "$messages" 'wrk.headers["anthropic-version"] = "2023-06-01"'

# Checks that each body gets a 200 before it is measured.
check() { # $1 url, $2 body, $3 expected text
  local out
  out=$(curl -sS -X POST "$1" -H "Authorization: Bearer $key" -H "Content-Type: application/json" \
    -H "anthropic-version: 2023-06-01" -d "$2" -w '\n%{http_code}')
  if [ "$(tail -n1 <<<"$out")" != 200 ] || ! grep -q "$3" <<<"$out"; then
    echo "unexpected answer from $1:" >&2
    echo "$out" >&2
    exit 1
  fi
}

results="$work/results.tsv"
: >"$results"
# CPU time (user + system, in clock ticks) a process has used so far.
cpu_ticks() { # $1 pid
  awk '{print $14 + $15}' "/proc/$1/stat"
}
run() { # $1 label, $2 url, $3 lua, $4 connections, $5 pid of the process serving $2
  local threads=2
  [ "$4" -lt 2 ] && threads=1
  local out="$work/wrk-$1-$4.txt"
  local before after
  before=$(cpu_ticks "$5")
  timeout $((DURATION + 30)) ${WRK_PIN:-} wrk -t"$threads" -c"$4" -d"${DURATION}s" --timeout 10s --latency \
    -s "$work/$3.lua" "$2" >"$out"
  after=$(cpu_ticks "$5")
  python3 - "$1" "$4" "$out" "$((after - before))" "$(getconf CLK_TCK)" >>"$results" <<'PY'
import re, sys
label, conns, path = sys.argv[1], sys.argv[2], sys.argv[3]
cpu_us = int(sys.argv[4]) * 1e6 / int(sys.argv[5])
text = open(path).read()
def us(v):
    n, unit = re.match(r"([\d.]+)(us|ms|s)", v).groups()
    return float(n) * {"us": 1, "ms": 1e3, "s": 1e6}[unit]
rps = float(re.search(r"Requests/sec:\s+([\d.]+)", text).group(1))
p50 = us(re.search(r"\s50%\s+(\S+)", text).group(1))
p99 = us(re.search(r"\s99%\s+(\S+)", text).group(1))
total = int(re.search(r"(\d+) requests in", text).group(1))
bad = re.search(r"Non-2xx or 3xx responses: (\d+)", text)
errors = re.search(r"Socket errors: (.*)", text)
if bad or errors:
    sys.stderr.write(f"{label} at {conns}: {bad.group(0) if bad else ''} {errors.group(0) if errors else ''}\n")
    sys.exit(1)
print(f"{label}\t{conns}\t{rps:.0f}\t{p50:.0f}\t{p99:.0f}\t{total}\t{cpu_us / total:.1f}")
PY
}

if [[ " $PARTS " == *" overhead "* ]]; then
echo "== overhead: ${DURATION}s per run at concurrency $CONCURRENCY"
start_pair "$MOCK_PORT" "$GATEWAY_PORT"
direct="http://127.0.0.1:$MOCK_PORT/v1/chat/completions"
gw="http://127.0.0.1:$GATEWAY_PORT"
check "$direct" "$chat" "benchmark provider"
check "$gw/v1/chat/completions" "$chat" "benchmark provider"
check "$gw/v1/chat/completions" "$chat_stream" "DONE"
check "$gw/v1/responses" "$responses" "benchmark provider"
check "$gw/v1/messages" "$messages" "benchmark provider"
for c in $CONCURRENCY; do
  run "direct chat" "$direct" chat "$c" "$mock_pid"
  run "gateway chat" "$gw/v1/chat/completions" chat "$c" "$gateway_pid"
  run "direct chat stream" "$direct" chat_stream "$c" "$mock_pid"
  run "gateway chat stream" "$gw/v1/chat/completions" chat_stream "$c" "$gateway_pid"
  run "gateway responses" "$gw/v1/responses" responses "$c" "$gateway_pid"
  run "gateway messages" "$gw/v1/messages" messages "$c" "$gateway_pid"
done
idle_rss=$(awk '/VmRSS/ {print $2}' "/proc/$gateway_pid/status")

python3 - "$results" <<'PY'
import sys
rows = [l.rstrip("\n").split("\t") for l in open(sys.argv[1]) if l.strip()]
by = {(r[0], r[1]): r for r in rows}
print()
print("| path | conc | req/s | p50 µs | p99 µs | added p50 µs | added p99 µs | throughput vs direct | CPU µs/req |")
print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
for label, conns, rps, p50, p99, total, cpu in rows:
    base = by.get(("direct chat stream" if "stream" in label else "direct chat", conns))
    if label.startswith("direct") or base is None:
        added = ("", "", "")
    else:
        added = (str(int(p50) - int(base[3])), str(int(p99) - int(base[4])),
                 f"{100 * float(rps) / float(base[2]):.0f}%")
    print(f"| {label} | {conns} | {rps} | {p50} | {p99} | {added[0]} | {added[1]} | {added[2]} | {cpu} |")
PY
kill "$gateway_pid" 2>/dev/null || true
fi

if [[ " $PARTS " == *" allocs "* ]]; then
echo
echo "== allocations per request (the alloc-count build, ${ALLOC_DURATION}s per route at 32 connections)"
cargo build --release -q -p switchyard --features alloc-count
cp target/release/switchyard "$work/switchyard-counting"
cargo build --release -q -p switchyard
plain_bin=$bin
bin="$work/switchyard-counting"
start_pair "$ALLOC_MOCK_PORT" "$ALLOC_GATEWAY_PORT"
bin=$plain_bin
agw="http://127.0.0.1:$ALLOC_GATEWAY_PORT"
check "$agw/v1/chat/completions" "$chat" "benchmark provider"
allocations() {
  curl -s "$agw/metrics" | awk '/^switchyard_allocations_total / {printf "%d", $2}'
}
# What one read of /metrics allocates, taken off each route's count.
a0=$(allocations); a1=$(allocations); scrape=$((a1 - a0))
echo
echo "| route | requests | allocations/request |"
echo "|---|---:|---:|"
for route in "chat /v1/chat/completions chat" "chat_stream /v1/chat/completions chat_stream" \
  "responses /v1/responses responses" "messages /v1/messages messages"; do
  read -r name path script <<<"$route"
  before=$(allocations)
  timeout $((ALLOC_DURATION + 30)) wrk -t1 -c32 -d"${ALLOC_DURATION}s" --timeout 10s \
    -s "$work/$script.lua" "$agw$path" >"$work/wrk-alloc-$name.txt"
  after=$(allocations)
  total=$(awk '/requests in/ {print $1}' "$work/wrk-alloc-$name.txt")
  awk -v n="$name" -v t="$total" -v d="$((after - before - scrape))" \
    'BEGIN { printf "| %s | %d | %.1f |\n", n, t, d / t }' | tee -a "$work/allocs.md"
done
kill "$gateway_pid" 2>/dev/null || true
# The same stream with LONG_CHUNKS content chunks instead of 3: the
# difference is what relaying one chunk allocates.
bin="$work/switchyard-counting"
start_pair "$((ALLOC_MOCK_PORT + 10))" "$((ALLOC_GATEWAY_PORT + 10))" --stream-chunks "$LONG_CHUNKS"
bin=$plain_bin
agw="http://127.0.0.1:$((ALLOC_GATEWAY_PORT + 10))"
check "$agw/v1/chat/completions" "$chat_stream" "DONE"
a0=$(allocations); a1=$(allocations); scrape=$((a1 - a0))
before=$(allocations)
timeout $((ALLOC_DURATION + 30)) wrk -t1 -c32 -d"${ALLOC_DURATION}s" --timeout 10s \
  -s "$work/chat_stream.lua" "$agw/v1/chat/completions" >"$work/wrk-alloc-long.txt"
after=$(allocations)
total=$(awk '/requests in/ {print $1}' "$work/wrk-alloc-long.txt")
short=$(awk -F'|' '$2 ~ /^ chat_stream / {print $4}' "$work/allocs.md")
awk -v t="$total" -v d="$((after - before - scrape))" -v s="$short" -v n="$LONG_CHUNKS" \
  'BEGIN { printf "| chat_stream, %d content chunks | %d | %.1f |\n\nper relayed chunk: %.2f allocations\n", n, t, d / t, (d / t - s) / (n - 3) }'
kill "$gateway_pid" 2>/dev/null || true
fi

if [[ " $PARTS " == *" chunks "* ]]; then
echo
echo "== CPU per relayed chunk: chat stream at 32 connections, 3 vs $LONG_CHUNKS content chunks," \
  "${DURATION}s per run, $ROUNDS rounds, chunks ${CHUNK_DELAY_MS} ms apart"
delay=()
[ "$CHUNK_DELAY_MS" != 0 ] && delay=(--chunk-delay-ms "$CHUNK_DELAY_MS")
start_pair "$CHUNK_MOCK_PORT" "$CHUNK_GATEWAY_PORT" "${delay[@]}"
short_mock=$mock_pid short_gw=$gateway_pid
start_pair "$((CHUNK_MOCK_PORT + 10))" "$((CHUNK_GATEWAY_PORT + 10))" "${delay[@]}" --stream-chunks "$LONG_CHUNKS"
long_mock=$mock_pid long_gw=$gateway_pid
check "http://127.0.0.1:$CHUNK_GATEWAY_PORT/v1/chat/completions" "$chat_stream" "DONE"
check "http://127.0.0.1:$((CHUNK_GATEWAY_PORT + 10))/v1/chat/completions" "$chat_stream" "DONE"
WRK_PIN=""
if command -v taskset >/dev/null && [ "$(nproc)" -ge 2 ]; then
  taskset -apc 0 "$short_gw" >/dev/null && taskset -apc 0 "$long_gw" >/dev/null
  taskset -apc 1 "$short_mock" >/dev/null && taskset -apc 1 "$long_mock" >/dev/null
  WRK_PIN="taskset -c 1"
fi
: >"$results"
for _ in $(seq 1 "$ROUNDS"); do
  run "short" "http://127.0.0.1:$CHUNK_GATEWAY_PORT/v1/chat/completions" chat_stream 32 "$short_gw"
  run "long" "http://127.0.0.1:$((CHUNK_GATEWAY_PORT + 10))/v1/chat/completions" chat_stream 32 "$long_gw"
done
WRK_PIN=""
python3 - "$results" "$LONG_CHUNKS" <<'PY'
import statistics, sys
rows = [l.rstrip("\n").split("\t") for l in open(sys.argv[1]) if l.strip()]
long_n = int(sys.argv[2])
print()
print("| round | 3 chunks: req/s | CPU µs/req | %d chunks: req/s | CPU µs/req | CPU µs per chunk |" % long_n)
print("|---:|---:|---:|---:|---:|---:|")
per = []
for i in range(0, len(rows) - 1, 2):
    s, l = rows[i], rows[i + 1]
    d = (float(l[6]) - float(s[6])) / (long_n - 3)
    per.append(d)
    print(f"| {i // 2 + 1} | {s[2]} | {s[6]} | {l[2]} | {l[6]} | {d:.2f} |")
print()
print(f"median CPU per relayed chunk: {statistics.median(per):.2f} µs")
PY
kill "$short_gw" "$long_gw" 2>/dev/null || true
fi

if [[ " $PARTS " == *" memory "* ]]; then
echo
echo "== memory: idle, and with $STREAMS streams open at once"
# A mock whose streams last about 12 s (6 gaps of 2 s), so every connection
# of the load generator holds one stream open through the measurement.
start_pair "$MEM_MOCK_PORT" "$MEM_GATEWAY_PORT" --chunk-delay-ms 2000
check "http://127.0.0.1:$MEM_GATEWAY_PORT/v1/chat/completions" "$chat" "benchmark provider"
sleep 1
fresh_rss=$(awk '/VmRSS/ {print $2}' "/proc/$gateway_pid/status")
timeout 60 wrk -t2 -c"$STREAMS" -d20s --timeout 30s -s "$work/chat_stream.lua" \
  "http://127.0.0.1:$MEM_GATEWAY_PORT/v1/chat/completions" >"$work/wrk-mem.txt" &
wrk_pid=$!
peak_rss=0
peak_open=0
for _ in $(seq 1 36); do
  sleep 0.5
  rss=$(awk '/VmRSS/ {print $2}' "/proc/$gateway_pid/status")
  open=$(ss -Htn state established "( dport = :$MEM_MOCK_PORT )" | wc -l)
  [ "$rss" -gt "$peak_rss" ] && peak_rss=$rss
  [ "$open" -gt "$peak_open" ] && peak_open=$open
done
wait "$wrk_pid" || true
echo
echo "| gateway resident memory | MiB |"
echo "|---|---:|"
mib() { awk -v k="$1" 'BEGIN { printf "%.1f", k / 1024 }'; }
echo "| idle (after one request) | $(mib "$fresh_rss") |"
[ -n "${idle_rss:-}" ] && echo "| after the overhead runs | $(mib "$idle_rss") |"
echo "| peak with $STREAMS streams open ($peak_open upstream streams seen open at once) | $(mib "$peak_rss") |"
if [ "$peak_open" -lt "$STREAMS" ]; then
  echo "note: only $peak_open of $STREAMS streams were open at once" >&2
fi
fi
echo
echo "(machine: $(nproc) cores, $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo); $(date -u +%Y-%m-%d); wrk ${DURATION}s per run)"
