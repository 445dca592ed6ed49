//! State in a Redis every replica shares. Each operation is one round trip:
//! a Lua script runs it atomically, on Redis's own clock (`TIME`), so replicas
//! with skewed clocks still count one window.
//!
//! Keys (under the configured prefix):
//! - `P:rl:ID:r` / `P:rl:ID:t`: hashes second → requests / tokens counted in
//!   that second, for limit key ID (`account:NAME`, `team:NAME`); fields older
//!   than the window are deleted as they are read, and the hash expires.
//! - `P:cooldowns`: hash account → `KIND:UNTIL_MS`.
//! - `P:circuits`: hash `account/model` → `open:UNTIL_MS`.
//! - `P:spend:KEY`: a float counter of dollars per budget and period.

use std::time::Duration;

use futures_util::future::{BoxFuture, FutureExt};
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{Script, Value};

use super::{
    Admission, Admitted, Backend, Cooldown, CooldownKind, LimitKey, StateError, View, ViewQuery,
    WINDOW_SECS, WindowUsage, wait_for,
};

/// Checks both limits of one key and, if the request fits both, counts it.
/// KEYS: requests hash, tokens hash. ARGV: rpm, tpm (0: none), requests,
/// tokens, window. Returns {1, now_ms, second} or {0, now_ms, limit, used,
/// {second, amount, ...}}.
const ACQUIRE: &str = r#"
local t = redis.call('TIME')
local sec = tonumber(t[1])
local now_ms = sec * 1000 + math.floor(tonumber(t[2]) / 1000)
local window = tonumber(ARGV[5])
local function live(key)
  local all = redis.call('HGETALL', key)
  local total, out = 0, {}
  for i = 1, #all, 2 do
    local s, c = tonumber(all[i]), tonumber(all[i + 1])
    if s <= sec - window then
      redis.call('HDEL', key, all[i])
    else
      total = total + c
      out[#out + 1] = s
      out[#out + 1] = c
    end
  end
  return total, out
end
local checks = {
  {KEYS[1], tonumber(ARGV[1]), tonumber(ARGV[3]), 'rpm'},
  {KEYS[2], tonumber(ARGV[2]), tonumber(ARGV[4]), 'tpm'},
}
for _, c in ipairs(checks) do
  if c[2] > 0 then
    local used, buckets = live(c[1])
    if used + c[3] > c[2] then
      return {0, now_ms, c[4], used, buckets}
    end
  end
end
for _, c in ipairs(checks) do
  if c[2] > 0 and c[3] > 0 then
    redis.call('HINCRBY', c[1], sec, c[3])
    redis.call('EXPIRE', c[1], window + 5)
  end
end
return {1, now_ms, sec}
"#;

/// Corrects the tokens counted in one second. KEYS: tokens hash. ARGV:
/// second, delta.
const ADJUST: &str = r#"
local v = redis.call('HGET', KEYS[1], ARGV[1])
if not v then return 0 end
local n = tonumber(v) + tonumber(ARGV[2])
if n < 0 then n = 0 end
redis.call('HSET', KEYS[1], ARGV[1], n)
return n
"#;

/// Adds admissions made elsewhere to one second of a window. KEYS: requests
/// hash, tokens hash. ARGV: second, requests, tokens, window. Seconds
/// already outside the window (on Redis's clock) are dropped.
const ADD_USAGE: &str = r#"
local sec = tonumber(redis.call('TIME')[1])
local at = tonumber(ARGV[1])
local window = tonumber(ARGV[4])
if at <= sec - window then return 0 end
if tonumber(ARGV[2]) > 0 then
  redis.call('HINCRBY', KEYS[1], at, ARGV[2])
  redis.call('EXPIRE', KEYS[1], window + 5)
end
if tonumber(ARGV[3]) > 0 then
  redis.call('HINCRBY', KEYS[2], at, ARGV[3])
  redis.call('EXPIRE', KEYS[2], window + 5)
end
return 1
"#;

/// What a request reads before routing. KEYS: cooldowns, circuits, then the
/// requests and tokens hash of each limit key, then budget counters. ARGV:
/// number of limit keys, window. Returns {now_ms, cooldowns, circuits,
/// {requests, tokens, ...}, {spend, ...}}.
const VIEW: &str = r#"
local t = redis.call('TIME')
local sec = tonumber(t[1])
local now_ms = sec * 1000 + math.floor(tonumber(t[2]) / 1000)
local n = tonumber(ARGV[1])
local window = tonumber(ARGV[2])
local function sum(key)
  local all = redis.call('HGETALL', key)
  local total = 0
  for i = 1, #all, 2 do
    if tonumber(all[i]) > sec - window then total = total + tonumber(all[i + 1]) end
  end
  return total
end
local function running(key)
  local all = redis.call('HGETALL', key)
  local out = {}
  for i = 1, #all, 2 do
    local until_ms = tonumber(string.match(all[i + 1], '(%d+)$'))
    if until_ms and until_ms > now_ms then
      out[#out + 1] = all[i]
      out[#out + 1] = all[i + 1]
    end
  end
  return out
end
local usage = {}
for i = 3, 2 + 2 * n do usage[#usage + 1] = sum(KEYS[i]) end
local spend = {}
for i = 3 + 2 * n, #KEYS do spend[#spend + 1] = redis.call('GET', KEYS[i]) or '0' end
return {now_ms, running(KEYS[1]), running(KEYS[2]), usage, spend}
"#;

/// Sets a hash field `KIND:UNTIL_MS` unless it already runs longer. KEYS:
/// the hash. ARGV: field, kind, until_ms.
const LENGTHEN: &str = r#"
local cur = redis.call('HGET', KEYS[1], ARGV[1])
if cur then
  local u = tonumber(string.match(cur, '(%d+)$'))
  if u and u >= tonumber(ARGV[3]) then return 0 end
end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2] .. ':' .. ARGV[3])
return 1
"#;

/// Adds to a budget counter and keeps it for a while. KEYS: the counter.
/// ARGV: dollars, seconds to keep. Returns the new total (a string).
const ADD_SPEND: &str = r#"
local v = redis.call('INCRBYFLOAT', KEYS[1], ARGV[1])
redis.call('EXPIRE', KEYS[1], ARGV[2])
return v
"#;

/// Redis-backed state.
pub struct RedisBackend {
    connection: ConnectionManager,
    prefix: String,
    acquire: Script,
    adjust: Script,
    add_usage: Script,
    view: Script,
    lengthen: Script,
    add_spend: Script,
}

fn error(e: redis::RedisError) -> StateError {
    StateError(e.to_string())
}

fn int(v: &Value) -> Option<i64> {
    match v {
        Value::Int(n) => Some(*n),
        Value::BulkString(b) => std::str::from_utf8(b).ok()?.parse().ok(),
        Value::SimpleString(s) => s.parse().ok(),
        Value::Double(d) => Some(*d as i64),
        _ => None,
    }
}

fn float(v: &Value) -> Option<f64> {
    match v {
        Value::Int(n) => Some(*n as f64),
        Value::BulkString(b) => std::str::from_utf8(b).ok()?.parse().ok(),
        Value::SimpleString(s) => s.parse().ok(),
        Value::Double(d) => Some(*d),
        _ => None,
    }
}

fn text(v: &Value) -> Option<&str> {
    match v {
        Value::BulkString(b) => std::str::from_utf8(b).ok(),
        Value::SimpleString(s) => Some(s),
        _ => None,
    }
}

fn array(v: &Value) -> Option<&[Value]> {
    match v {
        Value::Array(items) | Value::Set(items) => Some(items),
        Value::Nil => Some(&[]),
        _ => None,
    }
}

fn malformed(what: &str) -> StateError {
    StateError(format!("unexpected reply from Redis to {what}"))
}

/// Reads `KIND:UNTIL_MS` pairs.
fn running(v: &Value) -> Vec<(String, String, u64)> {
    array(v)
        .unwrap_or_default()
        .chunks_exact(2)
        .filter_map(|pair| {
            let field = text(&pair[0])?;
            let (kind, until) = text(&pair[1])?.rsplit_once(':')?;
            Some((field.to_string(), kind.to_string(), until.parse().ok()?))
        })
        .collect()
}

impl RedisBackend {
    /// A backend on `url`, connected lazily (the first call connects).
    pub fn new(url: &str, prefix: &str, timeout: Duration) -> Result<RedisBackend, StateError> {
        let client = redis::Client::open(url).map_err(error)?;
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(timeout))
            .set_response_timeout(Some(timeout))
            .set_number_of_retries(1)
            .set_max_delay(Duration::from_millis(500));
        let connection = client.get_connection_manager_lazy(config).map_err(error)?;
        Ok(RedisBackend {
            connection,
            prefix: prefix.to_string(),
            acquire: Script::new(ACQUIRE),
            adjust: Script::new(ADJUST),
            add_usage: Script::new(ADD_USAGE),
            view: Script::new(VIEW),
            lengthen: Script::new(LENGTHEN),
            add_spend: Script::new(ADD_SPEND),
        })
    }

    fn rate_keys(&self, key: &LimitKey) -> [String; 2] {
        [
            format!("{}:rl:{}:r", self.prefix, key.id),
            format!("{}:rl:{}:t", self.prefix, key.id),
        ]
    }

    async fn acquire_inner(
        &self,
        key: &LimitKey,
        requests: u64,
        tokens: u64,
    ) -> Result<Admission, StateError> {
        let [r, t] = self.rate_keys(key);
        let mut con = self.connection.clone();
        let reply: Value = self
            .acquire
            .key(r)
            .key(t)
            .arg(key.limits.rpm.unwrap_or(0))
            .arg(key.limits.tpm.unwrap_or(0))
            .arg(requests)
            .arg(tokens)
            .arg(WINDOW_SECS)
            .invoke_async(&mut con)
            .await
            .map_err(error)?;
        let items = array(&reply).ok_or_else(|| malformed("acquire"))?;
        let field = |i: usize| items.get(i).ok_or_else(|| malformed("acquire"));
        let now_ms = int(field(1)?).unwrap_or(0).max(0) as u64;
        if int(field(0)?) == Some(1) {
            let second = int(field(2)?).ok_or_else(|| malformed("acquire"))?.max(0) as u64;
            return Ok(Admission::Admitted(Admitted {
                key: key.clone(),
                second,
                tokens,
            }));
        }
        let limit = if text(field(2)?) == Some("tpm") {
            "tpm"
        } else {
            "rpm"
        };
        let used = int(field(3)?).unwrap_or(0).max(0) as u64;
        let mut buckets: Vec<(u64, u64)> = array(field(4)?)
            .unwrap_or_default()
            .chunks_exact(2)
            .filter_map(|p| Some((int(&p[0])?.max(0) as u64, int(&p[1])?.max(0) as u64)))
            .collect();
        let (cap, need) = if limit == "tpm" {
            (key.limits.tpm.unwrap_or(0), tokens)
        } else {
            (key.limits.rpm.unwrap_or(0), requests)
        };
        Ok(Admission::Denied {
            limit,
            used,
            cap,
            retry_after: wait_for(&mut buckets, used, need, cap, now_ms),
        })
    }

    async fn view_inner(&self, query: &ViewQuery) -> Result<View, StateError> {
        let mut invocation = self.view.prepare_invoke();
        invocation
            .key(format!("{}:cooldowns", self.prefix))
            .key(format!("{}:circuits", self.prefix));
        for key in &query.limits {
            for k in self.rate_keys(key) {
                invocation.key(k);
            }
        }
        for budget in &query.budgets {
            invocation.key(format!("{}:spend:{budget}", self.prefix));
        }
        invocation.arg(query.limits.len()).arg(WINDOW_SECS);
        let mut con = self.connection.clone();
        let reply: Value = invocation.invoke_async(&mut con).await.map_err(error)?;
        let items = array(&reply).ok_or_else(|| malformed("view"))?;
        if items.len() != 5 {
            return Err(malformed("view"));
        }
        let now_ms = int(&items[0]).unwrap_or(0).max(0) as u64;
        let cooldowns = running(&items[1])
            .into_iter()
            .filter_map(|(account, kind, until_ms)| {
                Some((
                    account,
                    Cooldown {
                        kind: CooldownKind::parse(&kind)?,
                        until_ms,
                    },
                ))
            })
            .collect();
        let circuits = running(&items[2])
            .into_iter()
            .map(|(id, _, until)| (id, until))
            .collect();
        let usage = array(&items[3])
            .unwrap_or_default()
            .chunks_exact(2)
            .map(|p| WindowUsage {
                requests: int(&p[0]).unwrap_or(0).max(0) as u64,
                tokens: int(&p[1]).unwrap_or(0).max(0) as u64,
            })
            .collect();
        let spend = array(&items[4])
            .unwrap_or_default()
            .iter()
            .map(|v| float(v).unwrap_or(0.0))
            .collect();
        Ok(View {
            now_ms,
            usage,
            cooldowns,
            circuits,
            spend,
        })
    }

    async fn lengthen_inner(
        &self,
        hash: &str,
        field: &str,
        kind: &str,
        until_ms: u64,
    ) -> Result<(), StateError> {
        let mut con = self.connection.clone();
        let _: Value = self
            .lengthen
            .key(format!("{}:{hash}", self.prefix))
            .arg(field)
            .arg(kind)
            .arg(until_ms)
            .invoke_async(&mut con)
            .await
            .map_err(error)?;
        Ok(())
    }
}

impl Backend for RedisBackend {
    fn name(&self) -> &'static str {
        "redis"
    }

    fn view<'a>(&'a self, query: &'a ViewQuery) -> BoxFuture<'a, Result<View, StateError>> {
        self.view_inner(query).boxed()
    }

    fn acquire<'a>(
        &'a self,
        key: &'a LimitKey,
        requests: u64,
        tokens: u64,
    ) -> BoxFuture<'a, Result<Admission, StateError>> {
        self.acquire_inner(key, requests, tokens).boxed()
    }

    fn adjust<'a>(
        &'a self,
        key: &'a LimitKey,
        second: u64,
        delta: i64,
    ) -> BoxFuture<'a, Result<(), StateError>> {
        async move {
            let [_, t] = self.rate_keys(key);
            let mut con = self.connection.clone();
            let _: Value = self
                .adjust
                .key(t)
                .arg(second)
                .arg(delta)
                .invoke_async(&mut con)
                .await
                .map_err(error)?;
            Ok(())
        }
        .boxed()
    }

    fn set_cooldown<'a>(
        &'a self,
        account: &'a str,
        cooldown: Cooldown,
    ) -> BoxFuture<'a, Result<(), StateError>> {
        self.lengthen_inner(
            "cooldowns",
            account,
            cooldown.kind.name(),
            cooldown.until_ms,
        )
        .boxed()
    }

    fn set_circuit_open<'a>(
        &'a self,
        id: &'a str,
        until_ms: u64,
    ) -> BoxFuture<'a, Result<(), StateError>> {
        self.lengthen_inner("circuits", id, "open", until_ms)
            .boxed()
    }

    fn clear_circuit<'a>(&'a self, id: &'a str) -> BoxFuture<'a, Result<(), StateError>> {
        async move {
            let mut con = self.connection.clone();
            let _: Value = redis::cmd("HDEL")
                .arg(format!("{}:circuits", self.prefix))
                .arg(id)
                .query_async(&mut con)
                .await
                .map_err(error)?;
            Ok(())
        }
        .boxed()
    }

    fn add_spend<'a>(
        &'a self,
        key: &'a str,
        usd: f64,
        ttl: Duration,
    ) -> BoxFuture<'a, Result<f64, StateError>> {
        async move {
            let mut con = self.connection.clone();
            let reply: Value = self
                .add_spend
                .key(format!("{}:spend:{key}", self.prefix))
                .arg(usd)
                .arg(ttl.as_secs().max(1))
                .invoke_async(&mut con)
                .await
                .map_err(error)?;
            float(&reply).ok_or_else(|| malformed("add_spend"))
        }
        .boxed()
    }

    fn add_usage<'a>(
        &'a self,
        key: &'a LimitKey,
        second: u64,
        requests: u64,
        tokens: u64,
    ) -> BoxFuture<'a, Result<(), StateError>> {
        async move {
            let [r, t] = self.rate_keys(key);
            let mut con = self.connection.clone();
            let _: Value = self
                .add_usage
                .key(r)
                .key(t)
                .arg(second)
                .arg(if key.limits.rpm.is_some() {
                    requests
                } else {
                    0
                })
                .arg(if key.limits.tpm.is_some() { tokens } else { 0 })
                .arg(WINDOW_SECS)
                .invoke_async(&mut con)
                .await
                .map_err(error)?;
            Ok(())
        }
        .boxed()
    }

    fn ping(&self) -> BoxFuture<'_, Result<(), StateError>> {
        async move {
            let mut con = self.connection.clone();
            let _: Value = redis::cmd("PING")
                .query_async(&mut con)
                .await
                .map_err(error)?;
            Ok(())
        }
        .boxed()
    }
}
