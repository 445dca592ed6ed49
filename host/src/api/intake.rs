//! Reading request bodies without letting one client (or many) exhaust the
//! gateway's memory: a size limit per route, a pause limit while the body
//! arrives, a gateway-wide budget of memory held by bodies being read and
//! parsed, and a cheap pre-scan that bounds nesting depth and the number of
//! JSON values before `serde_json` builds them (a parsed value costs far more
//! than its bytes: 15 MiB of `[0,0,...]` would take ~480 MiB).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use axum::http::{HeaderMap, header};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::errors::{RequestCode, ServerCode};
use crate::route::RouteError;

/// JSON nested deeper than this is refused before it is parsed.
pub const MAX_JSON_DEPTH: usize = 64;

/// Why a request body was not read whole.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyError {
    /// Larger than the limit: the size declared or seen (at least).
    TooLarge(usize),
    /// The client stopped sending midway.
    Broken,
    /// The client paused longer than the body read timeout.
    TimedOut(Duration),
    /// The gateway's budget of memory for request bodies is spent.
    Overloaded,
}

impl BodyError {
    /// The caller's error: 413 naming the limit, 408, 503 or 400.
    pub fn to_error(self, limit: usize, what: &str) -> RouteError {
        match self {
            BodyError::TooLarge(_) => RouteError::new(
                RequestCode::RequestTooLarge,
                format!("The {what} exceeds the {limit} byte limit."),
            ),
            BodyError::Broken => RouteError::invalid(
                "body",
                format!("The {what} could not be read: the client stopped sending it."),
            ),
            BodyError::TimedOut(pause) => RouteError::new(
                RequestCode::RequestTimeout,
                format!(
                    "The {what} stopped arriving for {} ms (server.body_read_timeout_ms).",
                    pause.as_millis()
                ),
            ),
            BodyError::Overloaded => overloaded(
                "The gateway is holding as many request bodies as its memory budget allows (server.max_request_memory_bytes); retry shortly.",
            ),
        }
    }
}

/// 503 `overloaded` with `retry-after: 1`: the gateway's own capacity, not
/// the caller's fault.
pub fn overloaded(message: &str) -> RouteError {
    let mut e = RouteError::new(ServerCode::Overloaded, message);
    e.retry_after = Some(Duration::from_secs(1));
    e
}

/// The memory request bodies may hold at once, in KiB permits of a
/// semaphore. A request's [`Charge`] gives its share back when dropped.
#[derive(Debug)]
pub struct MemoryBudget {
    permits: Arc<Semaphore>,
    total_kib: usize,
    /// Charges refused for want of room.
    refusals: AtomicU64,
}

/// Memory charged to one request; returned to the budget on drop.
#[derive(Debug, Default)]
pub struct Charge {
    permit: Option<OwnedSemaphorePermit>,
    bytes: usize,
}

impl Charge {
    /// Bytes charged so far.
    pub fn bytes(&self) -> usize {
        self.bytes
    }
}

impl MemoryBudget {
    pub fn new(bytes: usize) -> Self {
        let total_kib = bytes.div_ceil(1024).min(Semaphore::MAX_PERMITS);
        Self {
            permits: Arc::new(Semaphore::new(total_kib)),
            total_kib,
            refusals: AtomicU64::new(0),
        }
    }

    /// Adds `bytes` to `charge`; false (and nothing added, a refusal
    /// counted) when the budget has no room for them.
    pub fn charge(&self, charge: &mut Charge, bytes: usize) -> bool {
        let kib = bytes.div_ceil(1024);
        if kib == 0 {
            return true;
        }
        let acquired = u32::try_from(kib)
            .ok()
            .filter(|_| kib <= self.total_kib)
            .and_then(|kib| self.permits.clone().try_acquire_many_owned(kib).ok());
        let Some(permit) = acquired else {
            self.refusals.fetch_add(1, Ordering::Relaxed);
            return false;
        };
        match &mut charge.permit {
            Some(held) => held.merge(permit),
            None => charge.permit = Some(permit),
        }
        charge.bytes += bytes;
        true
    }

    /// Charges refused so far (each one a request answered 503).
    pub fn refusals(&self) -> u64 {
        self.refusals.load(Ordering::Relaxed)
    }

    /// Bytes charged to requests right now.
    pub fn in_use(&self) -> usize {
        (self.total_kib - self.permits.available_permits()) * 1024
    }
}

/// How bodies are read: the pause limit and the memory budget they are
/// charged to.
#[derive(Debug)]
pub struct Intake {
    pub pause_timeout: Duration,
    pub budget: MemoryBudget,
}

/// Bodies are charged to the budget in steps of at least this much.
const CHARGE_STEP: usize = 64 << 10;

impl Intake {
    /// Reads a request body of at most `limit` bytes, charging what it holds
    /// to the memory budget. A larger one is read on and discarded, up to
    /// `limit` bytes more, so that the 413 which follows reaches a client that
    /// is still sending (answering at once would close the connection under
    /// it, and it would see a broken pipe instead of the error); a body
    /// declared or found larger than that is refused at once. A pause longer
    /// than the intake's timeout ends the read.
    pub async fn read_body(
        &self,
        headers: &HeaderMap,
        body: axum::body::Body,
        limit: usize,
    ) -> Result<(bytes::Bytes, Charge), BodyError> {
        use futures_util::{FutureExt, StreamExt};
        let drain_up_to = limit.saturating_mul(2);
        let declared = headers
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<usize>().ok());
        if let Some(n) = declared.filter(|&n| n > drain_up_to) {
            return Err(BodyError::TooLarge(n));
        }
        let mut charge = Charge::default();
        if let Some(n) = declared.filter(|&n| n <= limit)
            && !self.budget.charge(&mut charge, n)
        {
            return Err(BodyError::Overloaded);
        }
        let mut stream = body.into_data_stream();
        let mut kept = bytes::BytesMut::with_capacity(declared.unwrap_or(0).min(limit));
        let mut seen = 0usize;
        loop {
            // Most bodies are already here: a timer only for a wait.
            let next = match stream.next().now_or_never() {
                Some(next) => next,
                None => match tokio::time::timeout(self.pause_timeout, stream.next()).await {
                    Ok(next) => next,
                    Err(_) => return Err(BodyError::TimedOut(self.pause_timeout)),
                },
            };
            let Some(chunk) = next else { break };
            let chunk = chunk.map_err(|_| BodyError::Broken)?;
            seen = seen.saturating_add(chunk.len());
            if seen <= limit {
                let uncharged = seen.saturating_sub(charge.bytes());
                if uncharged > 0 && !self.budget.charge(&mut charge, uncharged.max(CHARGE_STEP)) {
                    return Err(BodyError::Overloaded);
                }
                kept.extend_from_slice(&chunk);
            } else if seen > drain_up_to {
                return Err(BodyError::TooLarge(seen));
            }
        }
        if seen > limit {
            return Err(BodyError::TooLarge(seen));
        }
        Ok((kept.freeze(), charge))
    }
}

/// What a pre-scan of a JSON text found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct JsonShape {
    /// Values, counted as separators plus containers plus one: an upper
    /// estimate of the values `serde_json` would build.
    pub values: usize,
}

/// Why a body was refused by the pre-scan.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ShapeError {
    TooDeep { depth: usize },
    TooManyValues { limit: usize },
}

impl ShapeError {
    pub fn to_error(&self) -> RouteError {
        match self {
            ShapeError::TooDeep { depth } => RouteError::invalid(
                "body",
                format!("The request body nests JSON deeper than {depth} levels."),
            ),
            ShapeError::TooManyValues { limit } => RouteError::new(
                RequestCode::RequestTooLarge,
                format!(
                    "The request body holds more than {limit} JSON values (server.max_json_values)."
                ),
            ),
        }
    }
}

/// Scans a JSON text for its nesting depth and number of values without
/// building anything: strings are skipped at `memchr` speed, so a prompt
/// costs little. It does not validate; the parser that follows does.
pub fn json_shape(bytes: &[u8], max_values: usize) -> Result<JsonShape, ShapeError> {
    let mut depth = 0usize;
    let mut values = 1usize;
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'"' => {
                // Skip to the closing quote, past escaped characters.
                i += 1;
                loop {
                    match memchr::memchr2(b'"', b'\\', &bytes[i.min(bytes.len())..]) {
                        Some(at) if bytes[i + at] == b'\\' => i += at + 2,
                        Some(at) => {
                            i += at + 1;
                            break;
                        }
                        // Unterminated: the parser will say so.
                        None => return Ok(JsonShape { values }),
                    }
                }
                continue;
            }
            b'[' | b'{' => {
                depth += 1;
                if depth > MAX_JSON_DEPTH {
                    return Err(ShapeError::TooDeep {
                        depth: MAX_JSON_DEPTH,
                    });
                }
                values += 1;
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            b',' => values += 1,
            _ => {}
        }
        if values > max_values {
            return Err(ShapeError::TooManyValues { limit: max_values });
        }
        i += 1;
    }
    Ok(JsonShape { values })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shape_counts_values_and_skips_strings() {
        let shape = json_shape(
            br#"{"a": [1, 2, 3], "b": "x,[{y\"]", "c": {"d": null}}"#,
            100,
        );
        // Commas: 2 in the array, 2 between members; containers: 3; plus one.
        assert_eq!(shape, Ok(JsonShape { values: 8 }));
        assert_eq!(json_shape(b"[]", 10), Ok(JsonShape { values: 2 }));
        // Unterminated string: left to the parser.
        assert!(json_shape(br#"{"a": "abc"#, 10).is_ok());
        assert!(json_shape(br#"{"a": "abc\"#, 10).is_ok());
    }

    #[test]
    fn shape_refuses_deep_nesting_and_too_many_values() {
        let deep = "[".repeat(MAX_JSON_DEPTH + 1);
        assert_eq!(
            json_shape(deep.as_bytes(), 1_000_000),
            Err(ShapeError::TooDeep {
                depth: MAX_JSON_DEPTH
            })
        );
        let ok = "[".repeat(MAX_JSON_DEPTH);
        assert!(json_shape(ok.as_bytes(), 1_000_000).is_ok());
        let many = format!("[{}0]", "0,".repeat(1000));
        assert_eq!(
            json_shape(many.as_bytes(), 500),
            Err(ShapeError::TooManyValues { limit: 500 })
        );
        // Brackets inside strings do not count.
        let quoted = format!("[\"{}\"]", "[".repeat(1000));
        assert!(json_shape(quoted.as_bytes(), 10).is_ok());
    }

    #[test]
    fn the_budget_is_shared_and_given_back() {
        let budget = MemoryBudget::new(10 << 10);
        let mut a = Charge::default();
        assert!(budget.charge(&mut a, 6 << 10));
        let mut b = Charge::default();
        assert!(!budget.charge(&mut b, 6 << 10));
        assert!(budget.charge(&mut b, 4 << 10));
        assert_eq!(budget.in_use(), 10 << 10);
        drop(a);
        assert!(budget.charge(&mut b, 6 << 10));
        assert!(!budget.charge(&mut Charge::default(), 11 << 10));
    }
}
