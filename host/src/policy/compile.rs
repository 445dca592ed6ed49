//! Compiling uploaded components in a worker process.
//!
//! Cranelift cannot be interrupted, and what it needs grows with what a
//! component declares. The structural limits ([`super::structure`]) refuse
//! the worst shapes before anything is compiled; what passes is compiled by
//! a child process running this same program (`switchyard policy
//! compile-worker`), so that the compilation
//! - has a wall-clock budget: past it the child is killed;
//! - has a memory ceiling (`RLIMIT_DATA`) and a CPU-time limit
//!   (`RLIMIT_CPU`) the kernel enforces;
//! - runs at a lower scheduling priority (nice 10), so the threads serving
//!   `/v1` keep the CPU they need;
//! - never runs on those threads, nor in their address space.
//!
//! The child writes the compiled artifact (`Component::serialize`) to its
//! standard output, and the gateway loads it with `Component::deserialize`.
//! Deserialising is `unsafe` because it trusts the artifact to be what
//! wasmtime produced: it comes from this same program, built from the same
//! source with the same engine settings, over a pipe nobody else holds; and
//! wasmtime checks its version and settings before using it.

use std::ffi::OsString;
use std::io::{Read, Write};
use std::path::PathBuf;
use std::process::{Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use wasmtime::Engine;
use wasmtime::component::Component;

use super::LoadError;

/// How uploaded components are compiled: which program to run as the
/// worker, and the budget of one compilation.
#[derive(Debug, Clone, PartialEq)]
pub struct CompileWorker {
    /// The `switchyard` executable (or a build of the same CLI).
    pub program: PathBuf,
    /// Arguments that make it a compile worker.
    pub args: Vec<OsString>,
    /// Wall-clock time one compilation may take.
    pub timeout: Duration,
    /// Memory the worker may allocate (`RLIMIT_DATA`), in bytes.
    pub memory_bytes: u64,
}

impl CompileWorker {
    /// This very program, run as `switchyard policy compile-worker`: on
    /// Linux through `/proc/self/exe`, which stays the running binary even
    /// when an upgrade has replaced the file (a newer build would compile
    /// for another wasmtime).
    pub fn this_program(timeout: Duration, memory_bytes: u64) -> std::io::Result<Self> {
        let own = std::path::Path::new("/proc/self/exe");
        let program = if own.exists() {
            own.to_path_buf()
        } else {
            std::env::current_exe()?
        };
        Ok(Self::program(program, timeout, memory_bytes))
    }

    /// `program` (a `switchyard` CLI), run as `policy compile-worker`.
    pub fn program(program: PathBuf, timeout: Duration, memory_bytes: u64) -> Self {
        Self {
            program,
            args: vec!["policy".into(), "compile-worker".into()],
            timeout,
            memory_bytes,
        }
    }
}

/// Nice value of the worker: below the gateway's own threads.
const WORKER_NICE: libc::c_int = 10;

/// Largest artifact read back from a worker.
const MAX_ARTIFACT_BYTES: usize = 512 << 20;

/// Compiles `bytes` in a worker process and loads the artifact into `engine`.
pub(super) fn compile(
    worker: &CompileWorker,
    engine: &Engine,
    fuel: bool,
    bytes: &[u8],
) -> Result<Component, LoadError> {
    let artifact = run_worker(worker, fuel, bytes)?;
    // SAFETY: see the module documentation: the artifact comes from this
    // program's own compilation, and wasmtime checks that it matches the engine.
    unsafe { Component::deserialize(engine, &artifact) }
        .map_err(|e| LoadError::Engine(format!("cannot load the compiled component: {e:#}")))
}

fn run_worker(worker: &CompileWorker, fuel: bool, bytes: &[u8]) -> Result<Vec<u8>, LoadError> {
    let mut command = Command::new(&worker.program);
    command
        .args(&worker.args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    if fuel {
        command.arg("--fuel");
    }
    let memory = worker.memory_bytes;
    // Whole seconds of CPU, at least one more than the wall-clock budget:
    // the kernel's own backstop.
    let cpu_secs = worker.timeout.as_secs() + 2;
    // SAFETY: the closure runs in the child between fork and exec, and only
    // makes async-signal-safe system calls (setrlimit, setpriority).
    unsafe {
        use std::os::unix::process::CommandExt;
        command.pre_exec(move || {
            let data = libc::rlimit {
                rlim_cur: memory,
                rlim_max: memory,
            };
            let cpu = libc::rlimit {
                rlim_cur: cpu_secs,
                rlim_max: cpu_secs + 1,
            };
            if libc::setrlimit(libc::RLIMIT_DATA, &data) != 0
                || libc::setrlimit(libc::RLIMIT_CPU, &cpu) != 0
            {
                return Err(std::io::Error::last_os_error());
            }
            libc::setpriority(libc::PRIO_PROCESS, 0, WORKER_NICE);
            Ok(())
        });
    }
    let started = Instant::now();
    let mut child = command.spawn().map_err(|e| {
        LoadError::Engine(format!(
            "cannot start the compile worker {}: {e}",
            worker.program.display()
        ))
    })?;
    let (Some(mut stdin), Some(stdout), Some(stderr)) =
        (child.stdin.take(), child.stdout.take(), child.stderr.take())
    else {
        let _ = child.kill();
        return Err(LoadError::Engine("the compile worker has no pipes".into()));
    };
    let outcome = std::thread::scope(|scope| {
        scope.spawn(move || {
            // A worker that died early closes the pipe: its status says why.
            let _ = stdin.write_all(bytes);
        });
        let out = scope.spawn(move || read_capped(stdout, MAX_ARTIFACT_BYTES));
        let err = scope.spawn(move || read_capped(stderr, 16 << 10));
        let status = wait(&mut child, worker.timeout);
        (status, out.join(), err.join())
    });
    let (status, out, err) = outcome;
    let elapsed = started.elapsed();
    let stderr = err
        .ok()
        .map(|e| String::from_utf8_lossy(&e).trim().to_string())
        .unwrap_or_default();
    match status {
        Waited::TimedOut => Err(LoadError::CompileBudget(format!(
            "compiling took longer than its {} ms budget (plugins.compile_timeout_ms) and was stopped",
            worker.timeout.as_millis()
        ))),
        Waited::Failed(e) => Err(LoadError::Engine(format!(
            "cannot wait for the compile worker: {e}"
        ))),
        Waited::Exited(status) if status.success() => {
            let artifact = out.unwrap_or_default();
            if artifact.is_empty() || artifact.len() >= MAX_ARTIFACT_BYTES {
                return Err(LoadError::Engine(
                    "the compile worker returned no usable artifact".into(),
                ));
            }
            tracing::debug!(
                ms = elapsed.as_millis() as u64,
                bytes = artifact.len(),
                "component compiled by the worker"
            );
            Ok(artifact)
        }
        Waited::Exited(status) => Err(worker_failure(worker, status, &stderr)),
    }
}

/// Why a worker that ran to an end did not produce an artifact.
fn worker_failure(worker: &CompileWorker, status: ExitStatus, stderr: &str) -> LoadError {
    use std::os::unix::process::ExitStatusExt;
    let out_of_memory = stderr.contains("memory allocation of")
        || stderr.contains("out of memory")
        || matches!(
            status.signal(),
            Some(libc::SIGABRT | libc::SIGSEGV | libc::SIGBUS)
        );
    if status.signal() == Some(libc::SIGXCPU) || status.signal() == Some(libc::SIGKILL) {
        return LoadError::CompileBudget(format!(
            "compiling used more CPU time than its budget ({} ms, plugins.compile_timeout_ms) and was stopped",
            worker.timeout.as_millis()
        ));
    }
    if out_of_memory {
        return LoadError::CompileBudget(format!(
            "compiling needed more memory than its ceiling of {} MiB (plugins.compile_memory_mib) and was stopped",
            worker.memory_bytes >> 20
        ));
    }
    match stderr.strip_prefix(COMPILE_ERROR) {
        Some(message) => LoadError::Compile(message.trim().to_string()),
        None => LoadError::Engine(format!(
            "the compile worker failed ({status}): {}",
            switchyard_wire::text::printable(stderr, 500)
        )),
    }
}

enum Waited {
    Exited(ExitStatus),
    TimedOut,
    Failed(std::io::Error),
}

/// Waits for the child, killing it once `timeout` has passed.
fn wait(child: &mut std::process::Child, timeout: Duration) -> Waited {
    let deadline = Instant::now() + timeout;
    let mut pause = Duration::from_millis(1);
    loop {
        match child.try_wait() {
            Ok(Some(status)) => return Waited::Exited(status),
            Ok(None) if Instant::now() >= deadline => {
                let _ = child.kill();
                let _ = child.wait();
                return Waited::TimedOut;
            }
            Ok(None) => {
                std::thread::sleep(pause);
                pause = (pause * 2).min(Duration::from_millis(20));
            }
            Err(e) => {
                let _ = child.kill();
                return Waited::Failed(e);
            }
        }
    }
}

fn read_capped(mut from: impl Read, cap: usize) -> Vec<u8> {
    let mut out = Vec::new();
    let _ = from.by_ref().take(cap as u64).read_to_end(&mut out);
    // Drain the rest so the writer is not blocked on a full pipe.
    let _ = std::io::copy(&mut from, &mut std::io::sink());
    out
}

/// How the worker reports a component that does not compile (as opposed to
/// a crash): this prefix on its standard error, then the message.
const COMPILE_ERROR: &str = "compile error:";

/// The worker's side: reads a component from standard input, compiles it
/// with the engine settings the gateway uses (`fuel` when the gateway counts
/// fuel), and writes the artifact to standard output. Exit code 0 on
/// success, 3 when the component does not compile, 2 on any other failure.
pub fn worker_main(fuel: bool) -> std::process::ExitCode {
    let limits = super::Limits {
        fuel: fuel.then_some(0),
        ..super::Limits::default()
    };
    let mut bytes = Vec::new();
    if let Err(e) = std::io::stdin()
        .take(limits.max_component_bytes as u64 + 1)
        .read_to_end(&mut bytes)
    {
        eprintln!("cannot read the component: {e}");
        return std::process::ExitCode::from(2);
    }
    let engine = match Engine::new(&super::engine_config(&limits, false)) {
        Ok(engine) => engine,
        Err(e) => {
            eprintln!("cannot create the engine: {e:#}");
            return std::process::ExitCode::from(2);
        }
    };
    let artifact = match Component::new(&engine, &bytes).and_then(|c| c.serialize()) {
        Ok(artifact) => artifact,
        Err(e) => {
            eprintln!("{COMPILE_ERROR} {e:#}");
            return std::process::ExitCode::from(3);
        }
    };
    let mut out = std::io::stdout().lock();
    if out.write_all(&artifact).and_then(|()| out.flush()).is_err() {
        return std::process::ExitCode::from(2);
    }
    std::process::ExitCode::SUCCESS
}
