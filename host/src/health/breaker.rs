//! Circuit breakers, one per (provider account, model).
//!
//! *Closed*: attempts flow; outcomes are counted over a rolling window. When at
//! least `min_requests` attempts in the window failed at `failure_rate` or
//! more, the circuit *opens*: the candidate is removed before the policy runs
//! and no request reaches it. After `recovery`, the circuit is *half-open*:
//! the candidate is offered again (health `half-open`) and up to
//! `half_open_probes` attempts at a time probe it. A successful probe closes
//! the circuit; a failed one opens it for another `recovery`.
//!
//! Rate limits (429, 402) and the caller's own 4xx are neither successes nor
//! failures here: cooldowns handle the first, and the second says nothing
//! about the provider.

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use crate::metrics::Clock;

pub use crate::config::BreakerSettings;

/// Where a circuit stands.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum CircuitState {
    /// Attempts flow. `degraded` when the window holds failures at half the
    /// opening rate or more.
    Closed { degraded: bool },
    /// Probing: `probe_free` when another probe may start now.
    HalfOpen { probe_free: bool },
    /// No attempts until `retry_in` has passed.
    Open { retry_in: Duration },
}

impl CircuitState {
    /// `closed`, `half_open`, `open`.
    pub fn name(&self) -> &'static str {
        match self {
            CircuitState::Closed { .. } => "closed",
            CircuitState::HalfOpen { .. } => "half_open",
            CircuitState::Open { .. } => "open",
        }
    }

    /// Prometheus gauge value: 0 closed, 1 half-open, 2 open.
    pub fn gauge(&self) -> u8 {
        match self {
            CircuitState::Closed { .. } => 0,
            CircuitState::HalfOpen { .. } => 1,
            CircuitState::Open { .. } => 2,
        }
    }
}

const SLOTS: usize = 10;

#[derive(Debug, Default)]
struct Circuit {
    /// `Some(until)` while open (half-open once `now >= until`).
    open_until: Option<u64>,
    probes_in_flight: u32,
    /// Rolling window: (slot start, ok, failed).
    slots: [(u64, u32, u32); SLOTS],
    opens: u64,
}

impl Circuit {
    fn totals(&self, now: u64, window_ms: u64) -> (u32, u32) {
        let from = now.saturating_sub(window_ms);
        self.slots
            .iter()
            .filter(|(start, _, _)| *start + window_ms / SLOTS as u64 > from && *start <= now)
            .fold((0, 0), |(ok, failed), s| (ok + s.1, failed + s.2))
    }

    fn count(&mut self, now: u64, window_ms: u64, ok: bool) {
        let width = (window_ms / SLOTS as u64).max(1);
        let start = now - now % width;
        let slot = &mut self.slots[((now / width) % SLOTS as u64) as usize];
        if slot.0 != start {
            *slot = (start, 0, 0);
        }
        if ok {
            slot.1 += 1;
        } else {
            slot.2 += 1;
        }
    }
}

/// Every circuit of the gateway.
pub struct Breakers {
    settings: BreakerSettings,
    clock: Arc<dyn Clock>,
    index: crate::metrics::IdIndex,
    ids: Vec<String>,
    circuits: Vec<Mutex<Circuit>>,
}

/// Permission to make one attempt; say how it went with [`Ticket::finish`].
/// Dropped unfinished (the request was abandoned), it frees its probe slot.
pub struct Ticket<'a> {
    breakers: &'a Breakers,
    circuit: Option<usize>,
    probe: bool,
}

/// Where a result comes from: an attempt's ticket, or a health check / a
/// stream broken after content (which probes a half-open circuit).
#[derive(Clone, Copy)]
enum Source {
    Ticket { probe: bool },
    Untracked,
}

/// An attempt's result as a breaker sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Success,
    Failure,
    /// Neither (rate limited, the caller's error).
    Neutral,
}

impl Ticket<'_> {
    /// Whether this attempt probes a half-open circuit.
    pub fn is_probe(&self) -> bool {
        self.probe
    }

    pub fn finish(mut self, verdict: Verdict) {
        if let Some(i) = self.circuit.take() {
            self.breakers
                .settle(i, Source::Ticket { probe: self.probe }, verdict);
        }
    }
}

impl Drop for Ticket<'_> {
    fn drop(&mut self) {
        if let Some(i) = self.circuit.take()
            && self.probe
        {
            let mut c = self.breakers.lock(i);
            c.probes_in_flight = c.probes_in_flight.saturating_sub(1);
        }
    }
}

impl Breakers {
    pub fn new(
        settings: BreakerSettings,
        ids: impl IntoIterator<Item = String>,
        clock: Arc<dyn Clock>,
    ) -> Self {
        let (index, list) = crate::metrics::index_ids(ids);
        let circuits = (0..list.len()).map(|_| Mutex::default()).collect();
        Self {
            settings,
            clock,
            index,
            ids: list,
            circuits,
        }
    }

    pub fn settings(&self) -> &BreakerSettings {
        &self.settings
    }

    fn lock(&self, i: usize) -> MutexGuard<'_, Circuit> {
        self.circuits[i].lock().unwrap_or_else(|e| e.into_inner())
    }

    fn window_ms(&self) -> u64 {
        self.settings.window.as_millis() as u64
    }

    fn state_of(&self, c: &Circuit, now: u64) -> CircuitState {
        match c.open_until {
            Some(until) if now < until => CircuitState::Open {
                retry_in: Duration::from_millis(until - now),
            },
            Some(_) => CircuitState::HalfOpen {
                probe_free: c.probes_in_flight < self.settings.half_open_probes,
            },
            None => {
                let (ok, failed) = c.totals(now, self.window_ms());
                let total = ok + failed;
                let degraded = failed > 0
                    && f64::from(failed) / f64::from(total) >= self.settings.failure_rate / 2.0;
                CircuitState::Closed { degraded }
            }
        }
    }

    /// The state of the circuit of `id` (`account/model`) now.
    pub fn state(&self, id: &str) -> CircuitState {
        let Some(&i) = self.index.get(id).filter(|_| self.settings.enabled) else {
            return CircuitState::Closed { degraded: false };
        };
        let now = self.clock.now_ms();
        let c = self.lock(i);
        self.state_of(&c, now)
    }

    /// Asks to attempt `id`: `None` while its circuit is open (or half-open
    /// with every probe slot taken).
    pub fn begin(&self, id: &str) -> Option<Ticket<'_>> {
        let Some(&i) = self.index.get(id).filter(|_| self.settings.enabled) else {
            return Some(Ticket {
                breakers: self,
                circuit: None,
                probe: false,
            });
        };
        let now = self.clock.now_ms();
        let mut c = self.lock(i);
        match self.state_of(&c, now) {
            CircuitState::Closed { .. } => Some(Ticket {
                breakers: self,
                circuit: Some(i),
                probe: false,
            }),
            CircuitState::HalfOpen { probe_free: true } => {
                c.probes_in_flight += 1;
                Some(Ticket {
                    breakers: self,
                    circuit: Some(i),
                    probe: true,
                })
            }
            CircuitState::HalfOpen { probe_free: false } | CircuitState::Open { .. } => None,
        }
    }

    /// Records a result that did not come through a ticket: an active health
    /// check, or a stream that broke after its first token. While half-open
    /// it acts as a probe.
    pub fn record(&self, id: &str, verdict: Verdict) {
        if let Some(&i) = self.index.get(id).filter(|_| self.settings.enabled) {
            self.settle(i, Source::Untracked, verdict);
        }
    }

    fn settle(&self, i: usize, source: Source, verdict: Verdict) {
        let now = self.clock.now_ms();
        let window = self.window_ms();
        let recovery = self.settings.recovery.as_millis() as u64;
        let mut c = self.lock(i);
        let (as_probe, release) = match source {
            Source::Ticket { probe } => (probe, probe),
            Source::Untracked => (
                matches!(self.state_of(&c, now), CircuitState::HalfOpen { .. }),
                false,
            ),
        };
        if release {
            c.probes_in_flight = c.probes_in_flight.saturating_sub(1);
        }
        if as_probe {
            match verdict {
                Verdict::Success => {
                    c.open_until = None;
                    c.slots = Default::default();
                    tracing::info!(circuit = %self.ids[i], "circuit closed: probe succeeded");
                }
                Verdict::Failure => {
                    c.open_until = Some(now + recovery);
                    c.opens += 1;
                    tracing::warn!(circuit = %self.ids[i], "circuit re-opened: probe failed");
                }
                Verdict::Neutral => {}
            }
            return;
        }
        if c.open_until.is_some() || verdict == Verdict::Neutral {
            // Results of attempts begun before the circuit opened change nothing.
            return;
        }
        c.count(now, window, verdict == Verdict::Success);
        let (ok, failed) = c.totals(now, window);
        let total = ok + failed;
        if total >= self.settings.min_requests
            && f64::from(failed) / f64::from(total.max(1)) >= self.settings.failure_rate
        {
            c.open_until = Some(now + recovery);
            c.opens += 1;
            c.slots = Default::default();
            tracing::warn!(circuit = %self.ids[i], failed, total, "circuit opened");
        }
    }

    /// Every circuit: id, state, and how often it opened.
    pub fn all(&self) -> Vec<(String, CircuitState, u64)> {
        let now = self.clock.now_ms();
        self.ids
            .iter()
            .enumerate()
            .map(|(i, id)| {
                let c = self.lock(i);
                let state = if self.settings.enabled {
                    self.state_of(&c, now)
                } else {
                    CircuitState::Closed { degraded: false }
                };
                (id.clone(), state, c.opens)
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::ManualClock;

    fn breakers(clock: &ManualClock) -> Breakers {
        Breakers::new(
            BreakerSettings {
                min_requests: 4,
                ..BreakerSettings::default()
            },
            ["a/m".to_string()],
            Arc::new(clock.clone()),
        )
    }

    fn attempt(b: &Breakers, verdict: Verdict) -> bool {
        match b.begin("a/m") {
            Some(t) => {
                t.finish(verdict);
                true
            }
            None => false,
        }
    }

    #[test]
    fn opens_half_opens_and_closes() {
        let clock = ManualClock::new(1_000_000);
        let b = breakers(&clock);
        // Below the minimum volume nothing opens, however bad.
        for _ in 0..3 {
            assert!(attempt(&b, Verdict::Failure));
        }
        assert!(matches!(
            b.state("a/m"),
            CircuitState::Closed { degraded: true }
        ));
        assert!(attempt(&b, Verdict::Failure));
        assert!(matches!(b.state("a/m"), CircuitState::Open { .. }));
        assert!(!attempt(&b, Verdict::Success), "open: no attempt allowed");
        clock.advance(Duration::from_secs(29));
        assert!(b.begin("a/m").is_none());
        clock.advance(Duration::from_secs(1));
        assert_eq!(b.state("a/m"), CircuitState::HalfOpen { probe_free: true });
        let probe = b.begin("a/m").expect("probe");
        assert!(probe.is_probe());
        assert!(b.begin("a/m").is_none(), "one probe at a time");
        probe.finish(Verdict::Failure);
        assert!(matches!(b.state("a/m"), CircuitState::Open { .. }));
        clock.advance(Duration::from_secs(30));
        let probe = b.begin("a/m").expect("probe");
        drop(probe); // abandoned: the slot is free again
        let probe = b.begin("a/m").expect("probe again");
        probe.finish(Verdict::Success);
        assert_eq!(b.state("a/m"), CircuitState::Closed { degraded: false });
    }

    #[test]
    fn rate_limits_and_old_failures_do_not_open() {
        let clock = ManualClock::new(1_000_000);
        let b = breakers(&clock);
        for _ in 0..10 {
            assert!(attempt(&b, Verdict::Neutral));
        }
        for _ in 0..3 {
            assert!(attempt(&b, Verdict::Failure));
        }
        // Those three leave the window; ten successes dilute the next four.
        clock.advance(Duration::from_secs(61));
        for _ in 0..10 {
            assert!(attempt(&b, Verdict::Success));
        }
        for _ in 0..4 {
            assert!(attempt(&b, Verdict::Failure));
        }
        assert!(matches!(b.state("a/m"), CircuitState::Closed { .. }));
        // 4 of 14 is below half; 10 of 20 is not.
        for _ in 0..6 {
            assert!(attempt(&b, Verdict::Failure));
        }
        assert!(matches!(b.state("a/m"), CircuitState::Open { .. }));
    }
}
