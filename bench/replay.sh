#!/usr/bin/env bash
# `switchyard policy replay` speed on a real request log, reproducible from a
# clean clone:
#
#   bash bench/replay.sh              # 100,000 records; about 3 minutes
#   RECORDS=20000 bash bench/replay.sh
#
# Starts the instant mock provider (bench/mock) and the gateway (release
# build) on 127.0.0.1, with three provider accounts serving three models
# each, and drives it with wrk (32 connections) until the request log holds
# RECORDS records: each request offers the policy nine candidates
# (`routing.models` names two more models than the one asked for). Then
# exports the log with `switchyard log export` and replays it through the
# bundled default policy RUNS times, printing records per second (wall
# time) and CPU time per record of each run.
#
# Installs what it needs (wrk, from Debian's packages) and builds what it
# runs.
set -euo pipefail
cd "$(dirname "$0")/.."

RECORDS=${RECORDS:-100000}
RUNS=${RUNS:-3}
MOCK_PORT=${MOCK_PORT:-9511}
GATEWAY_PORT=${GATEWAY_PORT:-9512}

if ! command -v wrk >/dev/null || ! command -v curl >/dev/null; then
  echo "== installing wrk and curl (Debian packages)"
  if [ "$(id -u)" = 0 ]; then SUDO=""; else SUDO="sudo"; fi
  $SUDO apt-get update -qq >/dev/null && $SUDO apt-get install -y -qq wrk curl >/dev/null
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
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)"

key="sk-bench-$(date +%s)"
key_sha=$(printf %s "$key" | sha256sum | cut -d' ' -f1)
admin="bench-admin-$(date +%s)"
cat >"$work/gateway.toml" <<TOML
[server]
listen = "127.0.0.1:$GATEWAY_PORT"

[providers.east]
kind = "openai"
base_url = "http://127.0.0.1:$MOCK_PORT/v1"
api_key_env = "BENCH_PROVIDER_KEY"
models = ["gpt-5-mini", "gpt-4o-mini", "gpt-4o"]

[providers.west]
kind = "openai"
base_url = "http://127.0.0.1:$MOCK_PORT/v1"
api_key_env = "BENCH_PROVIDER_KEY"
models = ["gpt-5-mini", "gpt-4o-mini", "gpt-4o"]

[providers.north]
kind = "openai"
base_url = "http://127.0.0.1:$MOCK_PORT/v1"
api_key_env = "BENCH_PROVIDER_KEY"
models = ["gpt-5-mini", "gpt-4o-mini", "gpt-4o"]

[teams.bench]
key_sha256 = ["$key_sha"]

[store]
path = "$work/switchyard.db"

[log]
max_pending = 1000000
TOML

"$mock" "127.0.0.1:$MOCK_PORT" 2>>"$work/mock.log" &
pids+=($!)
BENCH_PROVIDER_KEY=sk-upstream SWITCHYARD_ADMIN_TOKEN=$admin RUST_LOG=warn \
  "$bin" serve --config "$work/gateway.toml" 2>>"$work/gateway.log" &
pids+=($!)
for _ in $(seq 1 200); do
  curl -s -o /dev/null "http://127.0.0.1:$GATEWAY_PORT/healthz" && break
  sleep 0.05
done
gw="http://127.0.0.1:$GATEWAY_PORT"

body='{"model":"gpt-5-mini","messages":[{"role":"user","content":"Say hello."}],"max_tokens":64,"routing":{"models":["gpt-4o-mini","gpt-4o"]}}'
out=$(curl -sS "$gw/v1/chat/completions" -H "Authorization: Bearer $key" \
  -H "Content-Type: application/json" -d "$body" -w '\n%{http_code}')
if [ "$(tail -n1 <<<"$out")" != 200 ]; then
  echo "unexpected answer: $out" >&2
  exit 1
fi
cat >"$work/chat.lua" <<LUA
wrk.method = "POST"
wrk.body = [[$body]]
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer $key"
LUA

written() {
  curl -s "$gw/metrics" | awk '/^switchyard_request_log_records_total / {print int($2)}'
}
echo "== filling the request log to $RECORDS records"
while :; do
  # The log is written in batches; a read of it writes what is waiting.
  curl -s -o /dev/null "$gw/admin/v1/log?limit=1" -H "Authorization: Bearer $admin"
  n=$(written)
  [ "${n:-0}" -ge "$RECORDS" ] && break
  timeout 60 wrk -t2 -c32 -d5s -s "$work/chat.lua" "$gw/v1/chat/completions" >/dev/null
done
echo "records written: $n"

"$bin" log export --url "$gw" --token "$admin" --team bench --out "$work/all.jsonl"
head -n "$RECORDS" "$work/all.jsonl" >"$work/log.jsonl"
echo "log file: $(wc -l <"$work/log.jsonl") records, $(du -m "$work/log.jsonl" | cut -f1) MiB"
python3 -c 'import json,sys; r=json.loads(open(sys.argv[1]).readline()); print("candidates per record:", len(r["candidates"]))' "$work/log.jsonl"

echo "== replaying through builtin:default, $RUNS runs"
for i in $(seq 1 "$RUNS"); do
  python3 - "$bin" "$work/log.jsonl" "$i" <<'PY'
import json, resource, subprocess, sys, time
bin, log, run = sys.argv[1:4]
start = time.monotonic()
out = subprocess.run([bin, "policy", "replay", "builtin:default", "--log", log, "--json"],
                     check=True, capture_output=True, text=True).stdout
wall = time.monotonic() - start
usage = resource.getrusage(resource.RUSAGE_CHILDREN)
s = json.loads(out)
n, records = s["replayed"], s["records"]
print(f"run {run}: {records} records, {n} replayed in {wall:.2f} s wall "
      f"({records / wall:,.0f} records/s), {(usage.ru_utime + usage.ru_stime) * 1e6 / records:.1f} µs CPU per record; "
      f"agreement first {s['agree_first']}/{n}, plan {s['agree_plan']}/{n}; faults {s['faults']}; "
      f"decision p50 {s['decision_us']['p50']:.1f} µs, p99 {s['decision_us']['p99']:.1f} µs")
PY
done
