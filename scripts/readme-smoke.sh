#!/usr/bin/env bash
# Runs the README's examples as a newcomer would: starts the gateway on
# examples/demo.toml, then the curl examples (Chat Completions, Responses,
# Messages), the OpenAI SDK example and the metrics endpoints.
# Only touches 127.0.0.1. Builds the gateway first (release; only a link
# after the test suite): `cargo test` does not build the `switchyard` binary,
# since no test of its own package runs it.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release -q -p switchyard
bin=target/release/switchyard
port=${SMOKE_PORT:-4000}
log=$(mktemp)
store_dir=$(mktemp -d)
export SWITCHYARD_ADMIN_TOKEN=smoke-admin-token
"$bin" serve --config examples/demo.toml --listen "127.0.0.1:$port" --store "$store_dir/switchyard.db" >"$log" 2>&1 &
pid=$!
trap 'kill $pid 2>/dev/null || true; wait $pid 2>/dev/null || true; rm -rf "$store_dir"' EXIT
for _ in $(seq 1 100); do
  curl -fsS "http://127.0.0.1:$port/healthz" >/dev/null 2>&1 && break
  if ! kill -0 "$pid" 2>/dev/null; then
    echo "the gateway exited before answering:" >&2
    cat "$log" >&2
    exit 1
  fi
  sleep 0.1
done

echo "== README curl example"
out=$(curl -fsS "http://127.0.0.1:$port/v1/chat/completions" \
  -H "Authorization: Bearer sk-switchyard-demo" \
  -H "Content-Type: application/json" \
  -d '{"model": "claude-haiku-4-5", "messages": [{"role": "user", "content": "Hello!"}]}')
echo "$out"
echo "$out" | python3 -c 'import json,sys; b=json.load(sys.stdin); assert b["choices"][0]["message"]["content"]; assert b["switchyard"]["provider"]'

echo "== README Responses and Messages examples"
out=$(curl -fsS "http://127.0.0.1:$port/v1/responses" \
  -H "Authorization: Bearer sk-switchyard-demo" \
  -H "Content-Type: application/json" \
  -d '{"model": "claude-haiku-4-5", "input": "Hello!"}')
echo "$out"
echo "$out" | python3 -c 'import json,sys; b=json.load(sys.stdin); assert b["object"] == "response" and b["status"] == "completed"; assert b["output"][0]["content"][0]["text"]'
out=$(curl -fsS "http://127.0.0.1:$port/v1/messages" \
  -H "x-api-key: sk-switchyard-demo" -H "anthropic-version: 2023-06-01" \
  -H "Content-Type: application/json" \
  -d '{"model": "gpt-5-mini", "max_tokens": 256, "messages": [{"role": "user", "content": "Hello!"}], "routing": {"models": ["claude-haiku-4-5"]}}')
echo "$out"
echo "$out" | python3 -c 'import json,sys; b=json.load(sys.stdin); assert b["type"] == "message" and b["stop_reason"] == "end_turn"; assert b["content"][0]["text"]'

echo "== README OpenAI SDK example"
if ! python3 -c "import openai" 2>/dev/null; then
  python3 -m pip install --quiet --disable-pip-version-check openai
fi
SWITCHYARD_URL="http://127.0.0.1:$port/v1" python3 examples/openai_sdk.py

echo "== README metrics endpoint"
# Read the whole page before grep: `grep -q` stops at the first match, and
# curl would fail writing the rest into a closed pipe.
metrics=$(curl -fsS "http://127.0.0.1:$port/metrics")
grep -q '^switchyard_requests_total{team="demo"' <<<"$metrics"
curl -fsS -H "Authorization: Bearer smoke-admin-token" "http://127.0.0.1:$port/admin/v1/metrics?window=1h" \
  | python3 -c 'import json,sys; b=json.load(sys.stdin); assert b["window_seconds"] == 3600; assert any(c["requests"] > 0 for c in b["candidates"]), b'

echo "== README spend report"
curl -fsS "http://127.0.0.1:$port/admin/v1/spend?team=demo&period=today" \
  -H "Authorization: Bearer smoke-admin-token" \
  | python3 -c 'import json,sys; b=json.load(sys.stdin); assert b["requests"] >= 1 and b["spend_usd"] > 0 and "savings_usd" in b and b["by_model"], b'

echo "== README request log"
curl -fsS "http://127.0.0.1:$port/admin/v1/log?team=demo&limit=5" \
  -H "Authorization: Bearer smoke-admin-token" \
  | python3 -c 'import json,sys; b=json.load(sys.stdin); r=b["data"][0]; assert b["schema"] == 1 and r["team"] == "demo" and r["result"]["status"] == 200 and r["decision"]["plan"], b'
"$bin" log export --url "http://127.0.0.1:$port" --token smoke-admin-token --team demo --since 7d > "$store_dir/log.jsonl"
python3 -c 'import json,sys; rows=[json.loads(l) for l in open(sys.argv[1])]; assert len(rows) >= 3 and all(r["schema"] == 1 for r in rows), rows' "$store_dir/log.jsonl"

echo "== README teams and policies at runtime"
A="Authorization: Bearer $SWITCHYARD_ADMIN_TOKEN"
base="http://127.0.0.1:$port"
curl -fsS "$base/admin/v1/teams" -H "$A" \
  -d '{"name": "growth", "allowed_models": ["claude-haiku-4-5", "gpt-5-mini"]}' >/dev/null
key=$(curl -fsS "$base/admin/v1/teams/growth/keys" -H "$A" -d '{"label": "web"}' \
  | python3 -c 'import json,sys; print(json.load(sys.stdin)["key"])')
curl -fsS "$base/admin/v1/teams/growth/keys" -H "$A" -d '{"scope": "admin"}' >/dev/null
cargo build --quiet --manifest-path plugins/Cargo.toml --release --target wasm32-wasip2 \
    --target-dir target/guests -p intent-router
export SWITCHYARD_URL=$base
"$bin" policy push --team growth target/guests/wasm32-wasip2/release/intent_router.wasm \
    --cases examples/intent-router/cases.json --notes "intent routing"
"$bin" policy push --team growth builtin:default --notes "the default, as a version"
"$bin" policy list --team growth
# (Not `tee /dev/stderr`: that reopens CI's log file with O_TRUNC and wipes it.)
out=$("$bin" policy rollback --team growth)
echo "$out"
grep -q "active:      v1 (intent-router" <<<"$out"
curl -fsS "$base/v1/chat/completions" -H "Authorization: Bearer $key" \
  -H "Content-Type: application/json" \
  -d '{"model": "auto", "messages": [{"role": "user", "content": "Classify: hello"}], "metadata": {"step_type": "classification"}}' \
  | python3 -c 'import json,sys; b=json.load(sys.stdin); assert b["switchyard"]["label"].startswith("intent:"), b'

out=$(echo '{"model": "auto", "messages": [{"role": "user", "content": "Classify: hello"}]}' \
  | "$bin" policy explain --team growth -)
echo "$out"
grep -q "^policy v1 (0.2.0)" <<<"$out"
grep -q "^first attempt: " <<<"$out"

echo "== README changing a policy safely"
for i in 1 2 3; do
  curl -fsS "$base/v1/chat/completions" -H "Authorization: Bearer $key" \
    -H "Content-Type: application/json" \
    -d '{"model": "auto", "messages": [{"role": "user", "content": "Summarise: hello"}]}' >/dev/null
done
"$bin" log export --team growth --since 7d > "$store_dir/growth.jsonl"
out=$("$bin" policy replay builtin:default --log "$store_dir/growth.jsonl" --out "$store_dir/decisions.jsonl")
echo "$out"
grep -q "^agreement with the live decisions" <<<"$out"
python3 -c 'import json,sys; rows=[json.loads(l) for l in open(sys.argv[1])]; assert len(rows) >= 3 and all(r["plan"] for r in rows), rows' "$store_dir/decisions.jsonl"
"$bin" policy replay builtin:default --url "$base" --team growth --since 1d --json \
  | python3 -c 'import json,sys; b=json.load(sys.stdin); assert b["replayed"] >= 3 and not b["faults"], b'
"$bin" policy push --team growth builtin:default --no-activate --notes "candidate"
"$bin" policy list --team growth
"$bin" policy shadow attach --team growth 3 --sample 0.5
for i in 1 2 3 4; do
  curl -fsS "$base/v1/chat/completions" -H "Authorization: Bearer $key" \
    -H "Content-Type: application/json" \
    -d '{"model": "auto", "messages": [{"role": "user", "content": "Classify: hello"}], "metadata": {"step_type": "classification"}}' >/dev/null
done
out=$("$bin" policy shadow status --team growth)
echo "$out"
grep -q "shadow v3 beside v1" <<<"$out"
out=$("$bin" policy shadow promote --team growth)
echo "$out"
grep -q "active:      v3" <<<"$out"
out=$("$bin" policy rollback --team growth)
echo "$out"
grep -q "active:      v1 (intent-router" <<<"$out"

echo "== graceful stop"
kill -TERM $pid
wait $pid
grep -q "stopped" "$log"
echo "README examples: 6 passed, 0 failed"

