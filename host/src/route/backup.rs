//! Shadow backups (seed 002, "test a backup before trusting it"). A
//! `[[backups]]` entry names a backup candidate for a team's requests, or
//! for a logical model's. Once the primary has answered, a sampled share of
//! those requests is sent again to the backup, in a task of its own. The
//! caller already has its answer, and the backup's never reaches anyone.
//!
//! Its answer is checked: did it answer, and does it have the request's
//! shape (`switchyard_wire::shape`: JSON under `response_format`, tool calls
//! that parse against the tool schemas, the primary's finish reason). It is
//! also compared with the primary's on latency, time to first token (streams)
//! and cost. The mirrored calls are real calls: they are charged to the team
//! in the spend ledger (label `backup-check`) and stop for the UTC day at
//! `daily_usd`. They are kept out of the live metrics and circuit breakers,
//! which steer real traffic.
//!
//! A backup that fails `fail_after` checks in a row is flagged, and as many
//! passes in a row clear the flag. With `exclude_failing`, a flagged backup
//! is left out of the candidates of the requests it backs up, unless it is
//! the last one left.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use serde_json::{Value, json};
use switchyard_wire::completion::Completion;
use switchyard_wire::shape::{self, Problem};
use switchyard_wire::{Api, CanonicalRequest, Usage};

use super::candidates::{Filter, Removed};
use super::{Executor, Served};
use crate::config::{BackupSettings, Team};
use crate::policy::Candidate;
use crate::providers::{ChatCall, ChatResponse};
use crate::spend::SpendEvent;
use crate::telemetry::Family;

/// Mirrored calls of one backup that may be in flight at once; more are
/// skipped (counted).
const MAX_IN_FLIGHT: u32 = 4;

/// Every configured backup.
pub struct Backups {
    list: Vec<Arc<Backup>>,
}

/// One backup and what its checks found.
pub struct Backup {
    pub settings: BackupSettings,
    stats: Mutex<Stats>,
}

/// Running sums of one backup's checks.
#[derive(Default)]
struct Stats {
    mirrored: u64,
    answered: u64,
    passed: u64,
    failed: u64,
    /// Answers that missed a shape check, by check.
    problems: BTreeMap<&'static str, u64>,
    /// Calls that got no answer, by error kind.
    errors: BTreeMap<String, u64>,
    /// The primary's answers that missed a check (of those checked).
    primary_failed: u64,
    fail_streak: u32,
    pass_streak: u32,
    flagged: bool,
    in_flight: u32,
    skipped_daily_cap: u64,
    skipped_busy: u64,
    skipped_served_by_backup: u64,
    /// The UTC day `spent_today` counts.
    day: u64,
    spent_today: f64,
    spent_total: f64,
    /// What the primaries of the checked answers cost.
    primary_cost: f64,
    backup_cost: f64,
    /// Latency sums (ms) over the answered checks, with their count.
    latency: (f64, f64, u64),
    /// Time-to-first-token sums (ms) over the answered streamed checks.
    ttft: (f64, f64, u64),
    last_failure: Option<String>,
}

/// The primary's answer, as the comparison needs it.
struct Primary {
    latency_ms: Option<f64>,
    cost_usd: Option<f64>,
    finish: Option<String>,
}

/// What a mirrored call brought back.
struct Mirrored {
    completion: Value,
    usage: Option<Usage>,
    latency_ms: f64,
    ttft_ms: Option<f64>,
}

fn utc_day() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() / 86_400)
}

impl Backups {
    pub fn new(settings: &[BackupSettings]) -> Backups {
        Backups {
            list: settings
                .iter()
                .map(|s| {
                    Arc::new(Backup {
                        settings: s.clone(),
                        stats: Mutex::new(Stats::default()),
                    })
                })
                .collect(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.list.is_empty()
    }

    /// The backups whose scope covers a request of `team` for `logical`.
    fn covering<'a>(
        &'a self,
        team: &'a str,
        logical: Option<&'a str>,
    ) -> impl Iterator<Item = &'a Arc<Backup>> + 'a {
        self.list.iter().filter(move |b| {
            let s = &b.settings;
            s.team.as_deref().is_none_or(|t| t == team)
                && s.logical_model
                    .as_deref()
                    .is_none_or(|l| Some(l) == logical)
        })
    }

    /// Leaves out of `candidates` (and their `accounts`, index by index)
    /// the flagged backups that exclude themselves from this request's
    /// fallbacks, unless nothing else would be left.
    pub(super) fn exclude<T>(
        &self,
        team: &Team,
        logical: Option<&str>,
        candidates: &mut Vec<Candidate>,
        accounts: &mut Vec<T>,
        removals: Option<&mut Vec<Removed>>,
    ) {
        if self.list.is_empty() {
            return;
        }
        let excluded: Vec<&BackupSettings> = self
            .covering(&team.name, logical)
            .filter(|b| b.settings.exclude_failing && b.lock().flagged)
            .map(|b| &b.settings)
            .collect();
        if excluded.is_empty() {
            return;
        }
        let keep: Vec<bool> = candidates
            .iter()
            .map(|c| {
                !excluded
                    .iter()
                    .any(|s| s.account == c.provider && s.model == c.model)
            })
            .collect();
        if !keep.iter().any(|k| *k) {
            return;
        }
        if let Some(removals) = removals {
            removals.extend(
                candidates
                    .iter()
                    .zip(&keep)
                    .filter(|(_, k)| !**k)
                    .map(|(c, _)| Removed {
                        id: c.id.clone(),
                        filter: Filter::BackupFailing,
                    }),
            );
        }
        let mut i = 0;
        candidates.retain(|_| {
            i += 1;
            keep[i - 1]
        });
        let mut i = 0;
        accounts.retain(|_| {
            i += 1;
            keep.get(i - 1).copied().unwrap_or(true)
        });
    }

    /// Every backup's report, for `GET /admin/v1/backups`.
    pub fn reports(&self) -> Vec<Value> {
        self.list.iter().map(|b| b.report()).collect()
    }

    /// The backups' counters for `/metrics`.
    pub fn families(&self) -> Vec<Family> {
        let mut checks = Vec::new();
        let mut flagged = Vec::new();
        let mut spent = Vec::new();
        let mut latency = Vec::new();
        for b in &self.list {
            let name = b.settings.name.clone();
            let s = b.lock();
            checks.push((vec![name.clone(), "passed".into()], s.passed as f64));
            for kind in Problem::KINDS {
                let n = s.problems.get(kind).copied().unwrap_or(0);
                checks.push((vec![name.clone(), kind.into()], n as f64));
            }
            let errors: u64 = s.errors.values().sum();
            checks.push((vec![name.clone(), "no_answer".into()], errors as f64));
            flagged.push((vec![name.clone()], f64::from(u8::from(s.flagged))));
            spent.push((vec![name.clone()], s.spent_total));
            if s.latency.2 > 0 {
                let n = s.latency.2 as f64;
                latency.push((vec![name.clone(), "backup".into()], s.latency.0 / n));
                latency.push((vec![name, "primary".into()], s.latency.1 / n));
            }
        }
        vec![
            Family {
                name: "switchyard_backup_checks_total",
                help: "Mirrored calls to a shadow backup by result: passed, the shape check it failed, or no_answer.",
                kind: "counter",
                labels: &["backup", "result"],
                samples: checks,
            },
            Family {
                name: "switchyard_backup_flagged",
                help: "1 while a shadow backup is flagged for failing its checks ([[backups]] fail_after in a row).",
                kind: "gauge",
                labels: &["backup"],
                samples: flagged,
            },
            Family {
                name: "switchyard_backup_spend_usd_total",
                help: "What the calls mirrored to a shadow backup cost.",
                kind: "counter",
                labels: &["backup"],
                samples: spent,
            },
            Family {
                name: "switchyard_backup_latency_ms",
                help: "Mean latency of the checked answers: the backup's and the primary's on the same requests.",
                kind: "gauge",
                labels: &["backup", "of"],
                samples: latency,
            },
        ]
    }
}

impl Backup {
    fn lock(&self) -> std::sync::MutexGuard<'_, Stats> {
        self.stats.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// What its checks found, as the admin API shows it.
    pub fn report(&self) -> Value {
        let s = &self.settings;
        let st = self.lock();
        let mean = |(a, b, n): (f64, f64, u64)| {
            if n == 0 {
                json!(null)
            } else {
                json!({ "backup": a / n as f64, "primary": b / n as f64, "answers": n })
            }
        };
        json!({
            "object": "backup",
            "name": s.name,
            "team": s.team,
            "logical_model": s.logical_model,
            "candidate": format!("{}/{}", s.account, s.model),
            "sample": s.sample,
            "daily_usd": s.daily_usd,
            "fail_after": s.fail_after,
            "exclude_failing": s.exclude_failing,
            "flagged": st.flagged,
            "excluded": st.flagged && s.exclude_failing,
            "mirrored": st.mirrored,
            "answered": st.answered,
            "passed": st.passed,
            "failed": st.failed,
            "checks_failed": st.problems,
            "errors": st.errors,
            "primary_failed": st.primary_failed,
            "fail_streak": st.fail_streak,
            "latency_ms": mean(st.latency),
            "ttft_ms": mean(st.ttft),
            "cost_usd": { "backup": st.backup_cost, "primary": st.primary_cost },
            "spent_today_usd": if st.day == utc_day() { st.spent_today } else { 0.0 },
            "spent_total_usd": st.spent_total,
            "skipped": {
                "daily_cap": st.skipped_daily_cap,
                "busy": st.skipped_busy,
                "served_by_backup": st.skipped_served_by_backup,
            },
            "last_failure": st.last_failure,
        })
    }

    /// Whether to mirror this request: in the sample, under the day's cap,
    /// and with room in flight; counts it as in flight when so.
    fn admit(&self) -> bool {
        if self.settings.sample < 1.0 && fastrand::f64() >= self.settings.sample {
            return false;
        }
        let mut st = self.lock();
        let today = utc_day();
        if st.day != today {
            st.day = today;
            st.spent_today = 0.0;
        }
        if st.spent_today >= self.settings.daily_usd {
            st.skipped_daily_cap += 1;
            return false;
        }
        if st.in_flight >= MAX_IN_FLIGHT {
            st.skipped_busy += 1;
            return false;
        }
        st.in_flight += 1;
        st.mirrored += 1;
        true
    }

    /// Records a mirrored call's outcome.
    fn settle(
        &self,
        primary: &Primary,
        primary_problems: usize,
        outcome: Result<(Mirrored, Vec<Problem>, Option<f64>), String>,
    ) {
        let mut st = self.lock();
        st.in_flight = st.in_flight.saturating_sub(1);
        let failure = match outcome {
            Err(kind) => {
                *st.errors.entry(kind.clone()).or_default() += 1;
                Some(format!("no answer: {kind}"))
            }
            Ok((answer, problems, cost)) => {
                st.answered += 1;
                st.primary_failed += u64::from(primary_problems > 0);
                if let Some(cost) = cost {
                    if st.day != utc_day() {
                        st.day = utc_day();
                        st.spent_today = 0.0;
                    }
                    st.spent_today += cost;
                    st.spent_total += cost;
                    st.backup_cost += cost;
                    st.primary_cost += primary.cost_usd.unwrap_or(0.0);
                }
                if let Some(p) = primary.latency_ms {
                    st.latency.0 += answer.latency_ms;
                    st.latency.1 += p;
                    st.latency.2 += 1;
                    if let Some(t) = answer.ttft_ms {
                        st.ttft.0 += t;
                        st.ttft.1 += p;
                        st.ttft.2 += 1;
                    }
                }
                for p in &problems {
                    *st.problems.entry(p.kind()).or_default() += 1;
                }
                problems.first().map(ToString::to_string)
            }
        };
        let fail_after = self.settings.fail_after;
        match failure {
            Some(why) => {
                st.failed += 1;
                st.fail_streak += 1;
                st.pass_streak = 0;
                if st.fail_streak >= fail_after && !st.flagged {
                    st.flagged = true;
                    tracing::warn!(backup = %self.settings.name, reason = %why, "shadow backup flagged: {} failed checks in a row", st.fail_streak);
                }
                st.last_failure = Some(why);
            }
            None => {
                st.passed += 1;
                st.pass_streak += 1;
                st.fail_streak = 0;
                if st.flagged && st.pass_streak >= fail_after {
                    st.flagged = false;
                    tracing::info!(backup = %self.settings.name, "shadow backup passes its checks again; flag cleared");
                }
            }
        }
    }
}

impl Executor {
    /// Mirrors a served request to the backups covering it, in tasks of
    /// their own; returns at once.
    pub(super) fn mirror_to_backups(
        self: &Arc<Self>,
        team: &str,
        body: &Arc<CanonicalRequest>,
        api: Api,
        stream: bool,
        served: &Served,
    ) {
        let (info, answer) = match served {
            Served::Complete { body, info } => (info, Some(body)),
            Served::Stream { info, .. } => (info, None),
        };
        // Read into a value once, and only when a backup takes the request.
        let mut parsed: Option<Option<Value>> = None;
        for backup in self.backups.covering(team, info.logical_model.as_deref()) {
            let s = &backup.settings;
            if info.provider == s.account && info.model == s.model {
                backup.lock().skipped_served_by_backup += 1;
                continue;
            }
            let (Some(account), Some(provider), Some(model)) = (
                self.config.providers.iter().find(|a| a.name == s.account),
                self.providers.get(&s.account),
                self.config.catalog.get(&s.model),
            ) else {
                continue;
            };
            if !backup.admit() {
                continue;
            }
            let completion = parsed
                .get_or_insert_with(|| answer.map(Completion::to_value))
                .as_ref();
            let primary = Primary {
                latency_ms: info
                    .trail
                    .iter()
                    .rev()
                    .find(|a| a.reason == "ok")
                    .and_then(|a| a.latency_ms),
                cost_usd: info.cost_usd,
                finish: completion.and_then(|c| shape::finish_reason(c).map(str::to_owned)),
            };
            let primary_problems = completion.map_or(0, |c| shape::check(body, c, None).len());
            let call = ChatCall {
                body: body.clone(),
                model: account
                    .upstream_model(&self.config.catalog, &s.model)
                    .to_string(),
                stream,
                timeout: account.timeout,
                api,
                on_malformed: None,
            };
            let deadline = account.timeout + Duration::from_secs(5);
            let (provider, model, backup, body) = (
                provider.clone(),
                model.clone(),
                backup.clone(),
                body.clone(),
            );
            let (spending, team) = (self.spending.clone(), team.to_owned());
            tokio::spawn(async move {
                let started = Instant::now();
                let answer = tokio::time::timeout(deadline, async {
                    match provider.chat(call).await {
                        Ok(ChatResponse::Complete { body, usage }) => Ok(Mirrored {
                            completion: body.into_value(),
                            usage: Some(usage),
                            latency_ms: started.elapsed().as_secs_f64() * 1e3,
                            ttft_ms: None,
                        }),
                        Ok(ChatResponse::Stream(mut chunks)) => {
                            let mut all = Vec::new();
                            let mut ttft = None;
                            while let Some(chunk) = chunks.next().await {
                                let chunk =
                                    chunk.map_err(|e| e.class.name().to_owned())?.into_value();
                                if ttft.is_none()
                                    && chunk["choices"][0]["delta"].as_object().is_some_and(|d| {
                                        d.get("content")
                                            .and_then(Value::as_str)
                                            .is_some_and(|t| !t.is_empty())
                                            || d.contains_key("tool_calls")
                                    })
                                {
                                    ttft = Some(started.elapsed().as_secs_f64() * 1e3);
                                }
                                all.push(chunk);
                            }
                            let completion = shape::assemble(&all);
                            let usage = Usage::from_openai(&completion["usage"]);
                            Ok(Mirrored {
                                completion,
                                usage,
                                latency_ms: started.elapsed().as_secs_f64() * 1e3,
                                ttft_ms: ttft,
                            })
                        }
                        Err(e) => Err(e.class.name().to_owned()),
                    }
                })
                .await
                .unwrap_or_else(|_| Err("timeout".into()));
                let outcome = answer.map(|mirrored| {
                    let problems =
                        shape::check(&body, &mirrored.completion, primary.finish.as_deref());
                    let cost = mirrored.usage.map(|u| model.cost(&u));
                    if let (Some(usage), Some(cost)) = (mirrored.usage, cost) {
                        spending.record(SpendEvent {
                            team,
                            account: backup.settings.account.clone(),
                            model: backup.settings.model.clone(),
                            label: "backup-check".into(),
                            usage,
                            cost_usd: cost,
                            baseline_usd: cost,
                        });
                    }
                    (mirrored, problems, cost)
                });
                backup.settle(&primary, primary_problems, outcome);
            });
        }
    }
}
