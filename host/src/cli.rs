//! The `switchyard` command: the gateway and its policy tools. The binary's
//! `main` is [`main`]; it lives in the library so that test builds can run
//! the very same command (as a compile worker, or a gateway in its own
//! process).

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use crate::client::{AdminClient, ClientError};
use crate::config::Config;
use crate::policy::{DEFAULT_POLICY_WASM, Limits, Runtime};
use crate::request_log::{self, Record};
use crate::{api, harness};
use anyhow::{Context, Result};
use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "switchyard",
    version,
    about = "LLM gateway with sandboxed, team-owned routing policies"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the gateway.
    Serve {
        /// The configuration file (TOML; see examples/demo.toml).
        #[arg(long, short, env = "SWITCHYARD_CONFIG")]
        config: PathBuf,
        /// Listen address, overriding `server.listen` of the config.
        #[arg(long)]
        listen: Option<std::net::SocketAddr>,
        /// The embedded store's SQLite file, overriding `store.path` of the
        /// config (created on first start).
        #[arg(long, env = "SWITCHYARD_STORE")]
        store: Option<PathBuf>,
    },
    /// Work with routing-policy components offline.
    #[command(subcommand)]
    Policy(PolicyCommand),
    /// Team API keys.
    #[command(subcommand)]
    Key(KeyCommand),
    /// The request log.
    #[command(subcommand)]
    Log(LogCommand),
}

#[derive(Subcommand)]
enum LogCommand {
    /// Write the request log as JSON Lines, oldest first, one record per
    /// line (docs/request-log.md): `switchyard log export --team T --since 7d > log.jsonl`.
    Export {
        #[command(flatten)]
        admin: AdminArgs,
        /// Only this team's records (required with a team admin token).
        #[arg(long)]
        team: Option<String>,
        /// Records from this age (`30m`, `12h`, `7d`) or Unix millisecond on.
        #[arg(long)]
        since: Option<String>,
        /// Records before this age or Unix millisecond.
        #[arg(long)]
        until: Option<String>,
        /// Write to this file instead of standard output.
        #[arg(long)]
        out: Option<PathBuf>,
    },
}

#[derive(Subcommand)]
enum KeyCommand {
    /// Print the sha256 of an API key, as `key_sha256` in a team's config.
    Hash {
        /// The key.
        key: String,
    },
}

#[derive(Subcommand)]
enum PolicyCommand {
    /// Run a policy against a case file; exits non-zero if any case fails.
    Test {
        /// The policy component (.wasm), or `builtin:default` for the bundled one.
        plugin: String,
        /// The case file (JSON; see docs/policy-cases.md).
        cases: PathBuf,
        #[command(flatten)]
        limits: LimitArgs,
        /// Instructions each case may execute.
        #[arg(long, default_value_t = 100_000_000)]
        fuel: u64,
    },
    /// Measure decisions per second and decision time on synthetic candidates.
    Bench {
        /// The policy component (.wasm), or `builtin:default` for the bundled
        /// one (measured in both builds: 0.2, which the gateway runs, and 0.1).
        plugin: String,
        /// Number of candidates offered per decision.
        #[arg(long, default_value_t = 20)]
        candidates: usize,
        /// Sort metric of the synthetic requests.
        #[arg(long, default_value = "p50_latency")]
        metric: String,
        /// Give each request a prompt of this many bytes (for a 0.2 policy
        /// that reads content); 0: none.
        #[arg(long, default_value_t = 0)]
        prompt_bytes: usize,
        /// The team config the policy gets (a JSON file); default `{}`.
        #[arg(long)]
        config: Option<PathBuf>,
        /// How long to measure, in seconds.
        #[arg(long, default_value_t = 3.0)]
        seconds: f64,
        #[command(flatten)]
        limits: LimitArgs,
    },
    /// Compile a component read from standard input and write the compiled
    /// artifact to standard output: what the gateway runs, in its own
    /// process and budget, for every uploaded policy.
    #[command(hide = true)]
    CompileWorker {
        /// Compile for an engine that counts fuel.
        #[arg(long)]
        fuel: bool,
    },
    /// Create a standalone policy project (Rust, switchyard:policy@0.2.0):
    /// the contract, a policy, a case file it passes, and a README with the
    /// build, test, bench and push commands.
    New {
        /// The policy's name (a Cargo package name: lowercase letters,
        /// digits, `-`, `_`).
        name: String,
        /// Where to create it; default: `./NAME`.
        #[arg(long)]
        dir: Option<PathBuf>,
    },
    /// Load a policy and print what it says about itself.
    Describe {
        /// The policy component (.wasm), or `builtin:default` for the bundled one.
        plugin: String,
    },
    /// Upload a policy for a team (validated by the gateway, then activated
    /// unless --no-activate).
    Push {
        #[command(flatten)]
        admin: AdminArgs,
        /// The team.
        #[arg(long)]
        team: String,
        /// The policy component (.wasm), or `builtin:default` for the bundled one.
        plugin: String,
        /// A case file the policy must pass before it is stored.
        #[arg(long)]
        cases: Option<PathBuf>,
        /// Notes kept with the version.
        #[arg(long, default_value = "")]
        notes: String,
        /// Store the version without activating it.
        #[arg(long)]
        no_activate: bool,
    },
    /// List a team's policy versions.
    List {
        #[command(flatten)]
        admin: AdminArgs,
        /// The team.
        #[arg(long)]
        team: String,
    },
    /// Activate one of a team's policy versions.
    Activate {
        #[command(flatten)]
        admin: AdminArgs,
        /// The team.
        #[arg(long)]
        team: String,
        /// The version number.
        version: u32,
    },
    /// Show how the gateway would route a request for a team, as a dry run
    /// that calls no provider: the features it uses, each candidate a hard
    /// filter removed and why, the candidates offered, the policy's plan,
    /// and the first attempt.
    Explain {
        #[command(flatten)]
        admin: AdminArgs,
        /// The team.
        #[arg(long)]
        team: String,
        /// The API the request is written for: chat, responses or messages.
        #[arg(long, default_value = "chat")]
        api: String,
        /// Print the gateway's JSON answer as is.
        #[arg(long)]
        json: bool,
        /// The request body (a JSON file; `-` reads standard input).
        request: PathBuf,
    },
    /// Run a policy offline on logged decisions and compare it with what
    /// was served: agreement (first attempt, whole plan), cost at the
    /// recorded prices and token counts, traffic per model and label,
    /// faults, decision time. Exits 1 if the policy faulted on any record.
    Replay {
        /// The policy component (.wasm), or `builtin:default` for the bundled one.
        plugin: String,
        /// A request log exported by `switchyard log export` (JSON Lines;
        /// `-` reads standard input).
        #[arg(long, conflicts_with = "url", required_unless_present = "url")]
        log: Option<PathBuf>,
        /// Read the log from this gateway's admin API instead.
        #[arg(long)]
        url: Option<String>,
        /// The admin token (or the team's admin token) for --url.
        #[arg(long, env = "SWITCHYARD_ADMIN_TOKEN", hide_env_values = true)]
        token: Option<String>,
        /// With --url: only this team's records (required with a team
        /// admin token). With --log: only this team's lines.
        #[arg(long)]
        team: Option<String>,
        /// With --url: records from this age (`30m`, `12h`, `7d`) or Unix
        /// millisecond on.
        #[arg(long, requires = "url")]
        since: Option<String>,
        /// With --url: records before this age or Unix millisecond.
        #[arg(long, requires = "url")]
        until: Option<String>,
        /// The team config the policy gets (a JSON file); default `{}` (a
        /// log does not record it).
        #[arg(long)]
        config: Option<PathBuf>,
        /// Prompt text (when the log holds it) is cut to this many bytes
        /// for a policy that reads content, as the gateway's
        /// `content_text_bytes`.
        #[arg(long, default_value_t = 4096)]
        content_bytes: usize,
        /// Write one line per replayed record (id, plan, label, score,
        /// explanation, agreement, cost) to this file.
        #[arg(long)]
        out: Option<PathBuf>,
        /// Print the summary as JSON.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        limits: LimitArgs,
    },
    /// A team's shadow policy: an uploaded version deciding beside the
    /// active one on live requests, never routing them.
    Shadow {
        #[command(subcommand)]
        command: ShadowCommand,
    },
    /// Re-activate the version a team used before the current one.
    Rollback {
        #[command(flatten)]
        admin: AdminArgs,
        /// The team.
        #[arg(long)]
        team: String,
    },
}

#[derive(Subcommand)]
enum ShadowCommand {
    /// Attach one of the team's uploaded versions as its shadow (replacing
    /// any attached before); its counts start afresh.
    Attach {
        #[command(flatten)]
        admin: AdminArgs,
        #[arg(long)]
        team: String,
        /// The version number (`switchyard policy list`).
        version: u32,
        /// Share of the team's requests it decides on, above 0 and at most 1.
        #[arg(long, default_value_t = 1.0)]
        sample: f64,
    },
    /// What the shadow decided since it was attached: agreement with the
    /// live policy, estimated cost, faults, decision time.
    Status {
        #[command(flatten)]
        admin: AdminArgs,
        #[arg(long)]
        team: String,
        /// Print the gateway's JSON answer as is.
        #[arg(long)]
        json: bool,
    },
    /// Detach the team's shadow.
    Detach {
        #[command(flatten)]
        admin: AdminArgs,
        #[arg(long)]
        team: String,
    },
    /// Make the shadow the team's active version, in one call (`switchyard
    /// policy rollback` returns to the version it replaced).
    Promote {
        #[command(flatten)]
        admin: AdminArgs,
        #[arg(long)]
        team: String,
    },
}

/// Where the admin API is and how to authenticate.
#[derive(clap::Args)]
struct AdminArgs {
    /// The gateway's base URL.
    #[arg(long, env = "SWITCHYARD_URL", default_value = "http://127.0.0.1:4000")]
    url: String,
    /// The admin token, or the team's admin token.
    #[arg(long, env = "SWITCHYARD_ADMIN_TOKEN", hide_env_values = true)]
    token: String,
}

impl AdminArgs {
    fn client(&self) -> AdminClient {
        AdminClient::new(&self.url, &self.token)
    }
}

/// The admin log query that pages through a team's (or every) record
/// between `since` and `until`, oldest first, a thousand at a time.
fn log_query(
    team: Option<String>,
    since: Option<String>,
    until: Option<String>,
) -> Vec<(&'static str, String)> {
    let mut query = vec![
        ("order", "oldest".to_string()),
        ("limit", "1000".to_string()),
    ];
    query.extend(team.map(|t| ("team", t)));
    query.extend(since.map(|t| ("since", t)));
    query.extend(until.map(|t| ("until", t)));
    query
}

/// Pages through the request log, oldest first, handing each record to
/// `each`; gives back how many were read.
async fn read_log(
    client: &AdminClient,
    mut query: Vec<(&str, String)>,
    mut each: impl FnMut(Record) -> Result<()>,
) -> Result<u64> {
    let mut read = 0;
    loop {
        let page = client.log_page(&query).await?;
        let records = page["data"].as_array().cloned().unwrap_or_default();
        for value in records {
            let schema = value["schema"].as_u64().unwrap_or(0);
            if schema != u64::from(request_log::SCHEMA) {
                anyhow::bail!(
                    "the gateway wrote a record of schema {schema}; this switchyard reads schema {}: use the gateway's own version",
                    request_log::SCHEMA
                );
            }
            let record: Record =
                serde_json::from_value(value).context("a record does not match its schema")?;
            each(record)?;
            read += 1;
        }
        match page["next_cursor"].as_i64() {
            Some(cursor) if page["has_more"].as_bool() == Some(true) => {
                query.retain(|(k, _)| *k != "cursor");
                query.push(("cursor", cursor.to_string()));
            }
            _ => return Ok(read),
        }
    }
}

/// Reads an exported log line by line, handing each record to `each`; a
/// line that is not a record of the schema this build reads stops it,
/// naming the line.
fn read_log_file(
    input: impl std::io::BufRead,
    name: &str,
    mut each: impl FnMut(Record) -> Result<()>,
) -> Result<u64> {
    let mut read = 0;
    for (n, line) in input.lines().enumerate() {
        let line = line.with_context(|| format!("cannot read {name}"))?;
        if line.trim().is_empty() {
            continue;
        }
        let record: Record = match serde_json::from_str(&line) {
            Ok(record) => record,
            Err(e) => {
                #[derive(serde::Deserialize)]
                struct Schema {
                    schema: Option<u64>,
                }
                return Err(match serde_json::from_str::<Schema>(&line) {
                    Ok(Schema { schema: Some(v) }) if v != u64::from(request_log::SCHEMA) => {
                        anyhow::anyhow!(
                            "{name} line {}: a record of schema {v}; this switchyard reads schema {}",
                            n + 1,
                            request_log::SCHEMA
                        )
                    }
                    _ => anyhow::anyhow!("{name} line {}: not a request-log record: {e}", n + 1),
                });
            }
        };
        if record.schema != request_log::SCHEMA {
            anyhow::bail!(
                "{name} line {}: a record of schema {}; this switchyard reads schema {}",
                n + 1,
                record.schema,
                request_log::SCHEMA
            );
        }
        each(record)?;
        read += 1;
    }
    Ok(read)
}

/// Runs one admin call on a small runtime.
fn admin_call<F: std::future::Future<Output = Result<serde_json::Value, ClientError>>>(
    call: F,
) -> Result<serde_json::Value> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    Ok(runtime.block_on(call)?)
}

fn print_policy(view: &serde_json::Value) {
    let p = &view["policy"];
    match p["active_version"].as_u64() {
        Some(v) => {
            println!(
                "active:      v{v} ({} {}, sha256 {})",
                p["name"].as_str().unwrap_or("?"),
                p["plugin_version"].as_str().unwrap_or("?"),
                p["sha256"].as_str().map_or("?", |s| &s[..s.len().min(12)])
            );
            if let Some(reason) = p["set_aside"].as_str() {
                println!("set aside:   {reason}");
            }
        }
        None => println!("active:      the bundled default policy"),
    }
}

#[derive(clap::Args)]
struct LimitArgs {
    /// Deadline of one decision, in milliseconds.
    #[arg(long, default_value_t = 10)]
    deadline_ms: u64,
    /// Memory cap of one decision, in MiB.
    #[arg(long, default_value_t = 32)]
    memory_mib: usize,
}

impl LimitArgs {
    fn limits(&self, fuel: Option<u64>) -> Limits {
        Limits {
            deadline: Duration::from_millis(self.deadline_ms),
            max_memory_bytes: self.memory_mib << 20,
            fuel,
            ..Limits::default()
        }
    }
}

fn read_plugin(plugin: &str) -> Result<Vec<u8>> {
    if plugin == "builtin:default" {
        return Ok(DEFAULT_POLICY_WASM.to_vec());
    }
    std::fs::read(Path::new(plugin))
        .with_context(|| format!("cannot read policy component {plugin}"))
}

/// Runs the `switchyard` command with the process's arguments.
pub fn main() -> ExitCode {
    small_pages();
    match run(Cli::parse()) {
        Ok(code) => code,
        Err(err) => {
            eprintln!("error: {err:#}");
            ExitCode::from(2)
        }
    }
}

/// Keeps the process's memory in 4 KiB pages. The binaries' allocator
/// (mimalloc) asks for transparent huge pages on its arenas, and a 2 MiB page
/// is resident as soon as one byte of it is touched: the gateway held 64 MiB
/// idle and 149 MiB at 1,000 streams that way, against 40 and 93 without
/// (BENCHMARKS.md §8c). The kernel checks the flag at each fault, so it
/// covers the arenas reserved before `main` too. `MIMALLOC_ALLOW_THP` set in
/// the environment leaves the choice to the allocator.
fn small_pages() {
    #[cfg(target_os = "linux")]
    if std::env::var_os("MIMALLOC_ALLOW_THP").is_none() {
        // SAFETY: PR_SET_THP_DISABLE takes integer arguments and touches no
        // memory of ours.
        let rc = unsafe { libc::prctl(libc::PR_SET_THP_DISABLE, 1, 0, 0, 0) };
        if rc != 0 {
            eprintln!(
                "warning: cannot turn transparent huge pages off ({}); resident memory will be higher",
                std::io::Error::last_os_error()
            );
        }
    }
}

async fn wait_for_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
}

fn serve(
    config_path: &Path,
    listen: Option<std::net::SocketAddr>,
    store: Option<PathBuf>,
) -> Result<ExitCode> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .init();
    // Every client connection is a descriptor (and often an upstream one):
    // take the hard limit, as servers do. The connection cap is derived
    // from what this leaves, unless the config sets it.
    match api::server::raise_fd_limit() {
        Ok(limit) => tracing::info!(open_files = limit, "file descriptor limit"),
        Err(e) => tracing::warn!(error = %e, "cannot read or raise the file descriptor limit"),
    }
    let mut config = Config::load(config_path)?;
    if let Some(addr) = listen {
        config.server.listen = addr;
    }
    if let Some(path) = store {
        config.store_path = path;
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        let addr = config.server.listen;
        let grace = config.server.shutdown_grace;
        let state = api::app_state(config)?;
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .with_context(|| format!("cannot listen on {addr}"))?;
        let local = listener.local_addr()?;
        tracing::info!("switchyard listening on http://{local}");
        println!("switchyard listening on http://{local}");
        api::serve(listener, state, grace, wait_for_signal()).await?;
        tracing::info!("stopped");
        Ok(ExitCode::SUCCESS)
    })
}

fn run(cli: Cli) -> Result<ExitCode> {
    match cli.command {
        Command::Serve {
            config,
            listen,
            store,
        } => serve(&config, listen, store),
        Command::Key(KeyCommand::Hash { key }) => {
            println!("{}", crate::config::hash_key(&key));
            Ok(ExitCode::SUCCESS)
        }
        Command::Policy(PolicyCommand::Test {
            plugin,
            cases,
            limits,
            fuel,
        }) => {
            let limits = limits.limits(Some(fuel));
            let memory_limit = limits.max_memory_bytes;
            let runtime = Runtime::new(limits)?;
            let policy = runtime
                .load(&read_plugin(&plugin)?)
                .with_context(|| format!("cannot load {plugin}"))?;
            let text = std::fs::read_to_string(&cases)
                .with_context(|| format!("cannot read case file {}", cases.display()))?;
            let file = harness::parse_case_file(&text)
                .map_err(anyhow::Error::msg)
                .with_context(|| cases.display().to_string())?;
            let info = policy.info();
            println!(
                "policy {} {} (switchyard:policy@{}, sha256 {}), {} cases from {}\n",
                info.name,
                info.version,
                policy.wit_version(),
                &policy.sha256()[..12],
                file.cases.len(),
                cases.display()
            );
            let reports = harness::run_cases(&policy, &file);
            print!(
                "{}",
                harness::render_report(&reports, memory_limit, Some(fuel))
            );
            let ok = !reports.is_empty() && reports.iter().all(|r| r.passed());
            Ok(if ok {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            })
        }
        Command::Policy(PolicyCommand::Bench {
            plugin,
            candidates,
            metric,
            prompt_bytes,
            config,
            seconds,
            limits,
        }) => {
            anyhow::ensure!(candidates > 0, "--candidates must be at least 1");
            anyhow::ensure!(
                seconds.is_finite() && seconds > 0.0,
                "--seconds must be positive"
            );
            let config = match &config {
                Some(path) => Some(
                    std::fs::read_to_string(path)
                        .with_context(|| format!("cannot read {}", path.display()))?,
                ),
                None => None,
            };
            let runtime = Runtime::new(limits.limits(None))?;
            let policy = runtime
                .load(&read_plugin(&plugin)?)
                .with_context(|| format!("cannot load {plugin}"))?;
            println!(
                "policy {} {}: single thread, sort by {metric}\n",
                policy.info().name,
                policy.info().version
            );
            let mut policies = vec![policy];
            if plugin == "builtin:default" {
                policies.push(runtime.load_default_v0_1()?);
            }
            let mut reports = Vec::new();
            for policy in &policies {
                reports.extend(harness::bench(
                    policy,
                    candidates,
                    &metric,
                    prompt_bytes,
                    config.as_deref(),
                    Duration::from_secs_f64(seconds),
                ));
            }
            print!("{}", harness::render_bench(&reports));
            Ok(if reports.iter().all(|r| r.faults == 0) {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            })
        }
        Command::Policy(PolicyCommand::Replay {
            plugin,
            log,
            url,
            token,
            team,
            since,
            until,
            config,
            content_bytes,
            out,
            json,
            limits,
        }) => {
            let config = match &config {
                Some(path) => {
                    let text = std::fs::read_to_string(path)
                        .with_context(|| format!("cannot read {}", path.display()))?;
                    Some(
                        serde_json::from_str::<serde_json::Value>(&text)
                            .with_context(|| format!("{} is not JSON", path.display()))?,
                    )
                }
                None => None,
            };
            let runtime = Runtime::new(limits.limits(None))?;
            let policy = runtime
                .load(&read_plugin(&plugin)?)
                .with_context(|| format!("cannot load {plugin}"))?;
            let mut replay = crate::replay::Replay::new(policy, config, content_bytes);
            let mut lines = match &out {
                Some(path) => Some(std::io::BufWriter::new(
                    std::fs::File::create(path)
                        .with_context(|| format!("cannot create {}", path.display()))?,
                )),
                None => None,
            };
            let mut each = |record: Record| -> Result<()> {
                if team.as_ref().is_some_and(|t| *t != record.team) {
                    return Ok(());
                }
                if let (Some(line), Some(sink)) = (replay.record(&record), lines.as_mut()) {
                    serde_json::to_writer(&mut *sink, &line)?;
                    sink.write_all(b"\n")?;
                }
                Ok(())
            };
            match (&log, &url) {
                (Some(path), _) if path.as_os_str() == "-" => {
                    read_log_file(std::io::stdin().lock(), "standard input", &mut each)?;
                }
                (Some(path), _) => {
                    let file = std::fs::File::open(path)
                        .with_context(|| format!("cannot open {}", path.display()))?;
                    read_log_file(
                        std::io::BufReader::with_capacity(1 << 20, file),
                        &path.display().to_string(),
                        &mut each,
                    )?;
                }
                (None, Some(url)) => {
                    let token = token.as_deref().context(
                        "--url needs --token (or SWITCHYARD_ADMIN_TOKEN): an admin token or the team's",
                    )?;
                    let query = log_query(team.clone(), since, until);
                    let client = AdminClient::new(url, token);
                    let runtime = tokio::runtime::Builder::new_current_thread()
                        .enable_all()
                        .build()?;
                    runtime.block_on(read_log(&client, query, &mut each))?;
                }
                (None, None) => anyhow::bail!("give the log: --log FILE, or --url URL"),
            }
            if let Some(mut sink) = lines {
                sink.flush()?;
            }
            let summary = replay.finish();
            if json {
                println!("{}", serde_json::to_string_pretty(&summary)?);
            } else {
                print!("{}", crate::replay::render(&summary));
            }
            Ok(if summary.faults.is_empty() {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            })
        }
        Command::Policy(PolicyCommand::Push {
            admin,
            team,
            plugin,
            cases,
            notes,
            no_activate,
        }) => {
            let bytes = read_plugin(&plugin)?;
            let cases = cases
                .map(|path| {
                    std::fs::read_to_string(&path)
                        .with_context(|| format!("cannot read case file {}", path.display()))
                })
                .transpose()?;
            let client = admin.client();
            let answer =
                admin_call(client.push(&team, &bytes, cases.as_deref(), &notes, !no_activate))?;
            println!(
                "uploaded {plugin} as team {team}'s version {} ({} {}, sha256 {})",
                answer["version"],
                answer["name"].as_str().unwrap_or("?"),
                answer["plugin_version"].as_str().unwrap_or("?"),
                answer["sha256"]
                    .as_str()
                    .map_or("?", |s| &s[..s.len().min(12)]),
            );
            if let Some(total) = answer["cases"]["total"].as_u64() {
                println!("cases:       {total} passed");
            }
            println!(
                "{}",
                if no_activate {
                    "not activated (switchyard policy activate to use it)"
                } else {
                    "activated: new requests use it now"
                }
            );
            Ok(ExitCode::SUCCESS)
        }
        Command::Policy(PolicyCommand::List { admin, team }) => {
            let answer = admin_call(admin.client().list(&team))?;
            println!("team {team}");
            print_policy(&answer);
            let versions = answer["data"].as_array().cloned().unwrap_or_default();
            if versions.is_empty() {
                println!("no uploaded versions");
            }
            for v in versions {
                println!(
                    "{} v{:<4} sha256 {}  wit {}  by {}  {}",
                    if v["active"] == true { "*" } else { " " },
                    v["version"],
                    v["sha256"].as_str().map_or("?", |s| &s[..s.len().min(12)]),
                    v["wit_version"].as_str().unwrap_or("?"),
                    v["uploader"].as_str().unwrap_or("?"),
                    v["notes"].as_str().unwrap_or(""),
                );
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Policy(PolicyCommand::Activate {
            admin,
            team,
            version,
        }) => {
            let answer = admin_call(admin.client().activate(&team, version))?;
            println!("team {team}");
            print_policy(&answer);
            Ok(ExitCode::SUCCESS)
        }
        Command::Policy(PolicyCommand::Explain {
            admin,
            team,
            api,
            json,
            request,
        }) => {
            let body = if request.as_os_str() == "-" {
                let mut buf = Vec::new();
                std::io::Read::read_to_end(&mut std::io::stdin(), &mut buf).map(|_| buf)
            } else {
                std::fs::read(&request)
            };
            let body = match body {
                Ok(body) => body,
                Err(e) => {
                    eprintln!("error: cannot read {}: {e}", request.display());
                    return Ok(ExitCode::from(2));
                }
            };
            let answer = admin_call(admin.client().explain(&team, &api, body))?;
            if json {
                println!(
                    "{}",
                    serde_json::to_string_pretty(&answer).unwrap_or_default()
                );
            } else {
                print!("{}", render_explanation(&answer));
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Log(LogCommand::Export {
            admin,
            team,
            since,
            until,
            out,
        }) => {
            let query = log_query(team, since, until);
            let sink: Box<dyn std::io::Write> = match &out {
                Some(path) => Box::new(
                    std::fs::File::create(path)
                        .with_context(|| format!("cannot create {}", path.display()))?,
                ),
                None => Box::new(std::io::stdout().lock()),
            };
            let mut sink = std::io::BufWriter::new(sink);
            let client = admin.client();
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            let records = runtime.block_on(read_log(&client, query, |record| {
                serde_json::to_writer(&mut sink, &record)?;
                sink.write_all(b"\n")?;
                Ok(())
            }))?;
            std::io::Write::flush(&mut sink)?;
            if let Some(path) = out {
                eprintln!("{records} records written to {}", path.display());
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Policy(PolicyCommand::Shadow { command }) => match command {
            ShadowCommand::Attach {
                admin,
                team,
                version,
                sample,
            } => {
                admin_call(admin.client().shadow_attach(&team, version, sample))?;
                println!(
                    "team {team}: v{version} attached as the shadow, deciding on {:.0}% of requests",
                    sample * 100.0
                );
                Ok(ExitCode::SUCCESS)
            }
            ShadowCommand::Status { admin, team, json } => {
                let answer = admin_call(admin.client().shadow(&team))?;
                if json {
                    println!("{}", serde_json::to_string_pretty(&answer)?);
                    return Ok(ExitCode::SUCCESS);
                }
                let report: crate::replay::shadow::ShadowReport =
                    serde_json::from_value(answer.clone())
                        .context("the gateway's shadow report does not match this switchyard")?;
                println!(
                    "team {team}: shadow v{} beside {}, attached at {} (Unix seconds), deciding on {:.0}% of requests",
                    report.version,
                    answer["active_version"]
                        .as_u64()
                        .map_or("the default policy".to_string(), |v| format!("v{v}")),
                    report.attached_at,
                    report.sample * 100.0
                );
                if report.skipped_cpu_budget + report.skipped_queue_full > 0 {
                    println!(
                        "skipped: {} over the CPU budget, {} with the queue full",
                        report.skipped_cpu_budget, report.skipped_queue_full
                    );
                }
                println!();
                print!("{}", crate::replay::render(&report.summary));
                Ok(ExitCode::SUCCESS)
            }
            ShadowCommand::Detach { admin, team } => {
                let answer = admin_call(admin.client().shadow_detach(&team))?;
                println!(
                    "team {team}: shadow v{} detached",
                    answer["version"].as_u64().unwrap_or(0)
                );
                Ok(ExitCode::SUCCESS)
            }
            ShadowCommand::Promote { admin, team } => {
                let answer = admin_call(admin.client().shadow_promote(&team))?;
                println!("team {team}: shadow promoted");
                print_policy(&answer);
                Ok(ExitCode::SUCCESS)
            }
        },
        Command::Policy(PolicyCommand::Rollback { admin, team }) => {
            let answer = admin_call(admin.client().rollback(&team))?;
            println!("team {team} rolled back");
            print_policy(&answer);
            Ok(ExitCode::SUCCESS)
        }
        Command::Policy(PolicyCommand::CompileWorker { fuel }) => {
            Ok(crate::policy::compile::worker_main(fuel))
        }
        Command::Policy(PolicyCommand::New { name, dir }) => {
            let dir = dir.unwrap_or_else(|| PathBuf::from(&name));
            let files = crate::scaffold::create(&dir, &name)?;
            println!("created {} ({} files):", dir.display(), files.len());
            for file in &files {
                println!("  {}", file.display());
            }
            println!(
                "\nnext: cd {} && cargo build --release --target wasm32-wasip2 && \\\n  switchyard policy test target/wasm32-wasip2/release/{}.wasm cases.json",
                dir.display(),
                name.replace('-', "_")
            );
            Ok(ExitCode::SUCCESS)
        }
        Command::Policy(PolicyCommand::Describe { plugin }) => {
            let runtime = Runtime::new(Limits::default())?;
            let bytes = read_plugin(&plugin)?;
            let policy = runtime
                .load(&bytes)
                .with_context(|| format!("cannot load {plugin}"))?;
            let info = policy.info();
            println!("name:        {}", info.name);
            println!("version:     {}", info.version);
            println!("wit:         switchyard:policy@{}", policy.wit_version());
            println!("sha256:      {}", policy.sha256());
            println!("size:        {} bytes", policy.size());
            let s = policy.structure();
            println!(
                "structure:   {} modules, {} functions; largest function {} bytes, most locals {}, highest locals × blocks {}",
                s.modules,
                s.functions,
                s.largest_function_bytes,
                s.most_function_locals,
                s.highest_function_complexity
            );
            println!(
                "metrics:     {}",
                if info.metrics.is_empty() {
                    "-".to_string()
                } else {
                    info.metrics.join(", ")
                }
            );
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// An `explain` answer for a terminal.
fn render_explanation(answer: &serde_json::Value) -> String {
    use std::fmt::Write as _;
    let text = |v: &serde_json::Value| v.as_str().unwrap_or("?").to_string();
    let mut out = String::new();
    let _ = writeln!(
        out,
        "team {}  model {}  ({}, ~{} input tokens)",
        text(&answer["team"]),
        text(&answer["model"]),
        text(&answer["api"]),
        answer["estimated_input_tokens"]
    );
    let features: Vec<String> = answer["features"]
        .as_array()
        .map(|f| f.iter().map(text).collect())
        .unwrap_or_default();
    let _ = writeln!(
        out,
        "features: {}",
        if features.is_empty() {
            "none".to_string()
        } else {
            features.join(", ")
        }
    );
    for removed in answer["removed"].as_array().into_iter().flatten() {
        let _ = writeln!(
            out,
            "  removed {:<32} {:<18} {}",
            text(&removed["id"]),
            text(&removed["filter"]),
            text(&removed["reason"])
        );
    }
    for c in answer["candidates"].as_array().into_iter().flatten() {
        let _ = writeln!(
            out,
            "  offered {:<32} {}",
            text(&c["id"]),
            text(&c["health"])
        );
    }
    if let Some(error) = answer.get("error") {
        let _ = writeln!(
            out,
            "refused at {}: {} {} — {}",
            text(&error["stage"]),
            error["status"],
            text(&error["code"]),
            text(&error["message"])
        );
        return out;
    }
    let policy = &answer["policy"];
    let _ = writeln!(
        out,
        "policy {} ({}), {} µs",
        text(&policy["version"]),
        text(&policy["contract"]),
        policy["decision_us"]
    );
    if let Some(fault) = policy.get("team_plugin_fault") {
        let _ = writeln!(
            out,
            "  the team's plugin faulted ({}): the default stood in",
            text(&fault["message"])
        );
    }
    if let Some(error) = policy.get("error") {
        let _ = writeln!(out, "  refused: {}", text(&error["message"]));
        return out;
    }
    let _ = writeln!(out, "  label {}", text(&policy["label"]));
    for line in policy["explanation"].as_array().into_iter().flatten() {
        let _ = writeln!(out, "  why: {}", text(line));
    }
    for (i, a) in policy["plan"].as_array().into_iter().flatten().enumerate() {
        let strip: Vec<String> = a["strip"]
            .as_array()
            .map(|s| s.iter().map(text).collect())
            .unwrap_or_default();
        let _ = writeln!(
            out,
            "  {}. {}{}",
            i + 1,
            text(&a["candidate"]),
            if strip.is_empty() {
                String::new()
            } else {
                format!("  (strips {})", strip.join(", "))
            }
        );
    }
    if let Some(first) = answer.get("first_attempt") {
        let _ = writeln!(
            out,
            "first attempt: {} as {}{}",
            text(&first["candidate"]),
            text(&first["upstream_model"]),
            if first["probe"] == true {
                " (probing a half-open circuit)"
            } else {
                ""
            }
        );
    }
    out
}
