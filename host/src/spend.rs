//! Spend: what each served request cost (actual usage × price, cached input at
//! its own price), what it would have cost on the team's baseline model, the
//! ledger in the embedded store (per day, team, account, model and policy
//! label), budget counters per account and team in the shared state, and
//! threshold alerts (log + optional webhook).
//!
//! Recording never blocks a request: ledger rows go to a writer thread that
//! batches them into one SQLite transaction (and keeps them, retrying, while
//! the disk refuses), budget counters and alerts run on spawned tasks.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::json;

use crate::catalog::{Model, Rates};
use crate::config::{Budget, BudgetPeriod, Config, Team};
use crate::state::{Admitted, SharedState, now_ms};
use crate::store::{SpendRow, Store};
use crate::telemetry::Family;
use switchyard_wire::Usage;

/// (year, month, day) of a Unix time in seconds, UTC.
pub fn civil(unix_secs: u64) -> (i64, u32, u32) {
    // Howard Hinnant's days-to-civil algorithm.
    let z = (unix_secs / 86_400) as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

/// `YYYY-MM-DD` of a Unix time.
pub fn day_id(unix_secs: u64) -> String {
    let (y, m, d) = civil(unix_secs);
    format!("{y:04}-{m:02}-{d:02}")
}

/// The budget period a Unix time falls in: `YYYY-MM` or `YYYY-MM-DD`.
pub fn period_id(period: BudgetPeriod, unix_secs: u64) -> String {
    let (y, m, d) = civil(unix_secs);
    match period {
        BudgetPeriod::Month => format!("{y:04}-{m:02}"),
        BudgetPeriod::Day => format!("{y:04}-{m:02}-{d:02}"),
    }
}

/// The key of a budget counter: `SCOPE:NAME:PERIOD`.
pub fn budget_key(scope: &str, name: &str, budget: &Budget, unix_secs: u64) -> String {
    format!("{scope}:{name}:{}", period_id(budget.period, unix_secs))
}

/// How long a budget counter is kept (past its period, for reports).
fn counter_ttl(period: BudgetPeriod) -> Duration {
    match period {
        BudgetPeriod::Month => Duration::from_secs(40 * 86_400),
        BudgetPeriod::Day => Duration::from_secs(3 * 86_400),
    }
}

/// The model a team's savings are measured against: its configured baseline,
/// else the most expensive model (input + output price per 1M tokens) it may
/// use at an account it may use.
pub fn baseline_model<'a>(config: &'a Config, team: &Team) -> Option<&'a Model> {
    if let Some(model) = team
        .baseline_model
        .as_deref()
        .and_then(|slug| config.catalog.get(slug))
    {
        return Some(model);
    }
    config
        .providers
        .iter()
        .filter(|a| team.allows_account(&a.name) && (!team.zdr || a.zdr))
        .flat_map(|a| a.models.iter())
        .filter(|slug| team.allows_model(slug))
        .filter_map(|slug| config.catalog.get(slug))
        .max_by(|a, b| {
            (a.input + a.output)
                .total_cmp(&(b.input + b.output))
                .then_with(|| b.slug.cmp(&a.slug))
        })
}

/// One served request's spend.
#[derive(Debug, Clone)]
pub struct SpendEvent {
    pub team: String,
    pub account: String,
    pub model: String,
    pub label: String,
    pub usage: Usage,
    pub cost_usd: f64,
    pub baseline_usd: f64,
}

/// What settling a served request needs once its usage is known: spend to
/// record, and rate-limit estimates to correct with the real token count.
pub struct Charge {
    pub spending: Arc<Spending>,
    pub state: Arc<SharedState>,
    pub team: String,
    pub account: String,
    pub model: String,
    pub label: String,
    /// Prices of the team's baseline model, for the counterfactual cost.
    pub baseline: Option<Rates>,
    /// Where the account's (and the team's) limits counted the request.
    pub admitted: Vec<Admitted>,
}

impl Charge {
    /// Records the spend (ledger, budgets, alerts) and corrects the token
    /// estimates; neither waits.
    pub fn settle(self, usage: &Usage, cost_usd: f64) {
        let baseline_usd = self.baseline.as_ref().map_or(cost_usd, |m| m.cost(usage));
        if !self.admitted.is_empty()
            && let Ok(handle) = tokio::runtime::Handle::try_current()
        {
            let actual = usage.prompt_tokens.saturating_add(usage.completion_tokens);
            let (state, admitted) = (self.state.clone(), self.admitted);
            handle.spawn(async move {
                for a in &admitted {
                    state.adjust(a, actual).await;
                }
            });
        }
        self.spending.record(SpendEvent {
            team: self.team,
            account: self.account,
            model: self.model,
            label: self.label,
            usage: *usage,
            cost_usd,
            baseline_usd,
        });
    }
}

/// A request to write now, answered when done.
struct FlushRequest(mpsc::SyncSender<Result<(), String>>);

/// The writer thread's handle. Rows are appended to a shared buffer (no
/// wake-up per request: waking the thread for each row cost a quarter of the
/// gateway's CPU under load); the thread takes them once per interval, or
/// when asked to flush.
struct Ledger {
    rows: Arc<Mutex<Vec<SpendRow>>>,
    tx: Mutex<mpsc::Sender<FlushRequest>>,
    errors: Arc<AtomicU64>,
    pending: Arc<AtomicU64>,
}

/// Rows are written at least this often.
const LEDGER_INTERVAL: Duration = Duration::from_millis(250);

impl Ledger {
    fn start(store: Arc<Store>) -> Ledger {
        let (tx, rx) = mpsc::channel::<FlushRequest>();
        let rows = Arc::new(Mutex::new(Vec::new()));
        let errors = Arc::new(AtomicU64::new(0));
        let pending = Arc::new(AtomicU64::new(0));
        let (shared, errs, pend) = (rows.clone(), errors.clone(), pending.clone());
        let spawned = std::thread::Builder::new()
            .name("spend-ledger".into())
            .spawn(move || ledger_thread(&store, &shared, &rx, &errs, &pend));
        if let Err(e) = spawned {
            tracing::error!(error = %e, "cannot start the spend ledger writer");
        }
        Ledger {
            rows,
            tx: Mutex::new(tx),
            errors,
            pending,
        }
    }

    fn add(&self, row: SpendRow) {
        self.rows
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(row);
    }

    fn flush(&self) -> Result<(), String> {
        let (reply, answer) = mpsc::sync_channel(1);
        let sent = {
            let tx = self.tx.lock().unwrap_or_else(|e| e.into_inner());
            tx.send(FlushRequest(reply)).is_ok()
        };
        if !sent {
            return Err("the spend ledger writer is gone".into());
        }
        answer
            .recv_timeout(Duration::from_secs(10))
            .map_err(|_| "the spend ledger did not answer".to_string())?
    }
}

/// Sums rows with the same key, so a batch is one upsert per key.
fn merge(into: &mut HashMap<(String, String, String, String, String), SpendRow>, row: SpendRow) {
    let key = (
        row.day.clone(),
        row.team.clone(),
        row.account.clone(),
        row.model.clone(),
        row.label.clone(),
    );
    match into.get_mut(&key) {
        Some(r) => r.add(&row),
        None => {
            into.insert(key, row);
        }
    }
}

fn ledger_thread(
    store: &Store,
    rows: &Mutex<Vec<SpendRow>>,
    rx: &mpsc::Receiver<FlushRequest>,
    errors: &AtomicU64,
    pending: &AtomicU64,
) {
    let mut batch = HashMap::new();
    let mut failing = false;
    loop {
        // Rows are summed in memory and written once per interval (one
        // transaction, one fsync), not once per request.
        let (flush, closed) = match rx.recv_timeout(LEDGER_INTERVAL) {
            Ok(request) => (Some(request), false),
            Err(mpsc::RecvTimeoutError::Timeout) => (None, false),
            Err(mpsc::RecvTimeoutError::Disconnected) => (None, true),
        };
        let taken = std::mem::take(&mut *rows.lock().unwrap_or_else(|e| e.into_inner()));
        for row in taken {
            merge(&mut batch, row);
        }
        pending.store(batch.len() as u64, Ordering::Relaxed);
        let mut result = Ok(());
        if !batch.is_empty() {
            let list: Vec<SpendRow> = batch.values().cloned().collect();
            match store.record_spend(&list) {
                Ok(()) => {
                    batch.clear();
                    pending.store(0, Ordering::Relaxed);
                    if failing {
                        failing = false;
                        tracing::info!("spend ledger writes succeed again; kept rows written");
                    }
                }
                Err(e) => {
                    errors.fetch_add(1, Ordering::Relaxed);
                    if !failing {
                        failing = true;
                        tracing::error!(error = %e, rows = list.len(), "cannot write the spend ledger; keeping the rows and retrying");
                    }
                    result = Err(e.to_string());
                }
            }
        }
        if let Some(FlushRequest(reply)) = flush {
            let _ = reply.send(result);
        }
        if closed {
            if !batch.is_empty() {
                tracing::error!(
                    rows = batch.len(),
                    "spend ledger closed with rows it could not write"
                );
            }
            return;
        }
    }
}

/// A budget threshold crossed.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Alert {
    /// `account` or `team`.
    pub scope: String,
    pub name: String,
    /// `YYYY-MM` or `YYYY-MM-DD`.
    pub period: String,
    /// Fraction of the budget crossed (0.8 for 80 %).
    pub threshold: f64,
    pub budget_usd: f64,
    pub spent_usd: f64,
}

/// Budget utilisation last seen, per (scope, name).
type Utilisation = BTreeMap<(String, String), (f64, f64)>;

/// Spend recording, budgets and alerts.
pub struct Spending {
    config: Arc<Config>,
    state: Arc<SharedState>,
    ledger: Ledger,
    client: reqwest::Client,
    utilisation: Mutex<Utilisation>,
    alerts_sent: Mutex<BTreeMap<(String, String, String), u64>>,
    webhook_failures: Arc<AtomicU64>,
}

impl Spending {
    /// Starts the ledger writer, and seeds the local budget counters of the
    /// current periods from the ledger, so a restart does not forget spend.
    pub fn start(config: Arc<Config>, state: Arc<SharedState>, store: Arc<Store>) -> Spending {
        let now = now_ms() / 1000;
        let scopes = config
            .providers
            .iter()
            .filter_map(|a| a.budget.map(|b| ("account", a.name.as_str(), b)))
            .chain(
                config
                    .teams
                    .iter()
                    .filter_map(|t| t.budget.map(|b| ("team", t.name.as_str(), b))),
            );
        let mut utilisation = BTreeMap::new();
        for (scope, name, budget) in scopes {
            let (from, to) = match budget.period {
                BudgetPeriod::Month => {
                    let month = period_id(BudgetPeriod::Month, now);
                    (format!("{month}-01"), format!("{month}-31"))
                }
                BudgetPeriod::Day => (day_id(now), day_id(now)),
            };
            match store.spend_total(scope, name, &from, &to) {
                Ok(total) if total > 0.0 => {
                    state.seed_local_spend(&budget_key(scope, name, &budget, now), total);
                    utilisation.insert((scope.to_string(), name.to_string()), (total, budget.usd));
                }
                Ok(_) => {}
                Err(e) => tracing::warn!(error = %e, "cannot read the spend ledger"),
            }
        }
        Spending {
            config,
            state,
            ledger: Ledger::start(store),
            // Redirects are not followed: the alert goes where the operator
            // said, nowhere else.
            client: reqwest::Client::builder()
                .timeout(Duration::from_secs(5))
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .unwrap_or_default(),
            utilisation: Mutex::new(utilisation),
            alerts_sent: Mutex::new(BTreeMap::new()),
            webhook_failures: Arc::new(AtomicU64::new(0)),
        }
    }

    /// Records one served request: a ledger row now, budget counters and
    /// alerts on a spawned task.
    pub fn record(self: &Arc<Self>, event: SpendEvent) {
        let now = now_ms() / 1000;
        let row = SpendRow {
            day: day_id(now),
            team: event.team.clone(),
            account: event.account.clone(),
            model: event.model.clone(),
            label: event.label.clone(),
            requests: 1,
            input_tokens: event.usage.prompt_tokens,
            output_tokens: event.usage.completion_tokens,
            cached_tokens: event.usage.cached_tokens,
            cost_usd: event.cost_usd,
            baseline_usd: event.baseline_usd,
        };
        self.ledger.add(row);
        let account_budget = self
            .config
            .providers
            .iter()
            .find(|a| a.name == event.account)
            .and_then(|a| a.budget);
        let team_budget = self
            .config
            .teams
            .iter()
            .find(|t| t.name == event.team)
            .and_then(|t| t.budget);
        if (account_budget.is_none() && team_budget.is_none()) || event.cost_usd <= 0.0 {
            return;
        }
        let Ok(handle) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let this = self.clone();
        handle.spawn(async move {
            for (scope, name, budget) in [
                ("account", &event.account, account_budget),
                ("team", &event.team, team_budget),
            ] {
                if let Some(budget) = budget {
                    this.count(scope, name, &budget, event.cost_usd, now).await;
                }
            }
        });
    }

    /// Adds spend to one budget counter and announces thresholds crossed.
    async fn count(&self, scope: &str, name: &str, budget: &Budget, usd: f64, now: u64) {
        let key = budget_key(scope, name, budget, now);
        let (before, after) = self
            .state
            .add_spend(&key, usd, counter_ttl(budget.period))
            .await;
        self.note_utilisation(scope, name, after, budget.usd);
        for &threshold in &self.config.alerts.thresholds {
            let line = threshold * budget.usd;
            if before < line && after >= line {
                self.alert(Alert {
                    scope: scope.to_string(),
                    name: name.to_string(),
                    period: period_id(budget.period, now),
                    threshold,
                    budget_usd: budget.usd,
                    spent_usd: after,
                });
            }
        }
    }

    /// Keeps a budget's latest total, for `/metrics`.
    fn note_utilisation(&self, scope: &str, name: &str, spent: f64, budget: f64) {
        let mut u = self.utilisation.lock().unwrap_or_else(|e| e.into_inner());
        u.insert((scope.to_string(), name.to_string()), (spent, budget));
    }

    fn alert(&self, alert: Alert) {
        tracing::warn!(
            scope = %alert.scope,
            name = %alert.name,
            period = %alert.period,
            threshold = alert.threshold,
            budget_usd = alert.budget_usd,
            spent_usd = alert.spent_usd,
            "budget threshold crossed"
        );
        {
            let mut sent = self.alerts_sent.lock().unwrap_or_else(|e| e.into_inner());
            *sent
                .entry((
                    alert.scope.clone(),
                    alert.name.clone(),
                    format!("{}", alert.threshold),
                ))
                .or_default() += 1;
        }
        let Some(url) = self.config.alerts.webhook_url.clone() else {
            return;
        };
        // The URL is a secret (a Slack-style URL is the credential): logs
        // name its host only.
        let host = crate::config::url_host(url.expose());
        let attempts = self.config.alerts.webhook_attempts;
        let client = self.client.clone();
        let body = json!({
            "event": "budget_threshold",
            "scope": alert.scope,
            "name": alert.name,
            "period": alert.period,
            "threshold": alert.threshold,
            "budget_usd": alert.budget_usd,
            "spent_usd": alert.spent_usd,
            "time": now_ms() / 1000,
        });
        let failures = self.webhook_failures.clone();
        let Ok(handle) = tokio::runtime::Handle::try_current() else {
            return;
        };
        handle.spawn(async move {
            let mut last = String::new();
            for attempt in 0..attempts {
                if attempt > 0 {
                    let wait = Duration::from_millis(250u64 << attempt.min(5));
                    tokio::time::sleep(wait).await;
                }
                match client.post(url.expose()).json(&body).send().await {
                    Ok(r) if r.status().is_success() => return,
                    Ok(r) => last = format!("status {}", r.status()),
                    // reqwest names the URL in its errors: drop it.
                    Err(e) => last = e.without_url().to_string(),
                }
            }
            failures.fetch_add(1, Ordering::Relaxed);
            tracing::error!(host = %host, attempts, error = %last, "budget alert webhook failed every attempt; the alert is in the log only");
        });
    }

    /// Waits until every row recorded so far is in the store.
    pub fn flush(&self) -> Result<(), String> {
        self.ledger.flush()
    }

    /// `/metrics` families of spend and budgets.
    pub fn families(&self) -> Vec<Family> {
        let utilisation = self.utilisation.lock().unwrap_or_else(|e| e.into_inner());
        let sent = self.alerts_sent.lock().unwrap_or_else(|e| e.into_inner());
        vec![
            Family {
                name: "switchyard_budget_utilisation",
                help: "Share of the current period's budget spent (1.0 = all), per provider account or team with a budget.",
                kind: "gauge",
                labels: &["scope", "name"],
                samples: utilisation
                    .iter()
                    .map(|((scope, name), (spent, budget))| {
                        let share = if *budget > 0.0 { spent / budget } else { 1.0 };
                        (vec![scope.clone(), name.clone()], share)
                    })
                    .collect(),
            },
            Family {
                name: "switchyard_budget_spent_usd",
                help: "Dollars spent in the current budget period, per provider account or team with a budget.",
                kind: "gauge",
                labels: &["scope", "name"],
                samples: utilisation
                    .iter()
                    .map(|((scope, name), (spent, _))| (vec![scope.clone(), name.clone()], *spent))
                    .collect(),
            },
            Family {
                name: "switchyard_budget_alerts_total",
                help: "Budget threshold crossings announced (log and webhook).",
                kind: "counter",
                labels: &["scope", "name", "threshold"],
                samples: sent
                    .iter()
                    .map(|((scope, name, t), n)| {
                        (vec![scope.clone(), name.clone(), t.clone()], *n as f64)
                    })
                    .collect(),
            },
            Family {
                name: "switchyard_budget_webhook_failures_total",
                help: "Budget alerts whose webhook failed every attempt.",
                kind: "counter",
                labels: &[],
                samples: vec![(
                    Vec::new(),
                    self.webhook_failures.load(Ordering::Relaxed) as f64,
                )],
            },
            Family {
                name: "switchyard_spend_ledger_errors_total",
                help: "Failed writes of the spend ledger (rows are kept and retried).",
                kind: "counter",
                labels: &[],
                samples: vec![(
                    Vec::new(),
                    self.ledger.errors.load(Ordering::Relaxed) as f64,
                )],
            },
            Family {
                name: "switchyard_spend_ledger_pending_rows",
                help: "Spend ledger rows waiting to be written.",
                kind: "gauge",
                labels: &[],
                samples: vec![(
                    Vec::new(),
                    self.ledger.pending.load(Ordering::Relaxed) as f64,
                )],
            },
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn civil_dates() {
        assert_eq!(civil(0), (1970, 1, 1));
        assert_eq!(day_id(951_782_400), "2000-02-29");
        // 2026-11-21T23:41:16Z
        assert_eq!(day_id(1_795_304_476), "2026-11-21");
        assert_eq!(period_id(BudgetPeriod::Month, 1_795_304_476), "2026-11");
        assert_eq!(day_id(1_798_761_599), "2026-12-31");
        assert_eq!(day_id(1_798_761_600), "2027-01-01");
    }
}
