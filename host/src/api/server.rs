//! The listener: accepts connections and serves them with hyper, HTTP/1.1
//! only unless `[server] http2` is set, under connection-level limits that
//! keep clients who need no key from starving everyone else (the defaults
//! are what Envoy, nginx and cloud load balancers do):
//!
//! - **open connections** are capped (`max_connections`, by default derived
//!   from the file-descriptor limit, which start-up raises to its hard
//!   limit). At the cap the connections idle longest are closed to make room,
//!   as nginx reuses keep-alive connections; when none is idle, a new
//!   connection gets a plain 503 and is closed.
//! - **headers** must arrive within `header_read_timeout` of their first
//!   byte, and a connection with no request (before its first, or between
//!   two) is closed after `idle_timeout`.
//! - **requests in flight** are capped (`max_in_flight`; a stream counts
//!   until it ends): past it a request is answered 503 `overloaded` with
//!   `retry-after` in its API's shape at once, never queued. `/healthz` and
//!   `/metrics` are not counted, so they answer under a flood.
//! - request bodies have a pause limit and a memory budget ([`super::intake`]).

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Body;
use axum::http::{Request, Response};
use axum::response::IntoResponse;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Notify, watch};

use super::intake::{Intake, MemoryBudget, overloaded};
use super::{AppState, router};
use crate::config::ServerSettings;
use crate::telemetry::Family;

/// File descriptors kept back from client connections for everything else
/// (the store, Redis, logs, the listener, health checks).
const RESERVED_FDS: u64 = 64;

/// Connections closed at once when the cap is reached.
const EVICT_BATCH: usize = 32;

/// Raises this process's soft limit on open files to its hard limit (as
/// servers do at start), and returns the soft limit now in force.
pub fn raise_fd_limit() -> std::io::Result<u64> {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit and setrlimit only read and write `limit`.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) != 0 {
            return Err(std::io::Error::last_os_error());
        }
        if limit.rlim_cur < limit.rlim_max {
            let raised = libc::rlimit {
                rlim_cur: limit.rlim_max,
                rlim_max: limit.rlim_max,
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &raised) == 0 {
                limit = raised;
            }
        }
    }
    Ok(limit.rlim_cur)
}

/// The soft limit on open files, now.
fn fd_limit() -> u64 {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit only writes `limit`.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } != 0 {
        return 1024;
    }
    limit.rlim_cur
}

/// The default connection cap: half of the descriptors left after the
/// reserve (each client connection may need an upstream one too), between
/// 16 and 65,536.
fn auto_max_connections() -> usize {
    let usable = fd_limit().saturating_sub(RESERVED_FDS) / 2;
    usize::try_from(usable).unwrap_or(65_536).clamp(16, 65_536)
}

/// What the gateway is carrying right now, and what it turned away: shared
/// by the listener, the request handlers (body intake) and `/metrics`.
#[derive(Debug)]
pub struct Load {
    pub intake: Intake,
    in_flight: AtomicUsize,
    max_in_flight: usize,
    connections: AtomicUsize,
    /// The connection cap in force (set when the listener starts).
    max_connections: AtomicUsize,
    rejected_in_flight: AtomicU64,
    rejected_connections: AtomicU64,
    evicted: AtomicU64,
    /// Cancelled when the shutdown grace period is about to end: open
    /// streams write an interruption event and end.
    pub interrupt: tokio_util::sync::CancellationToken,
}

/// One request counted in flight; released when its response is done.
#[derive(Debug)]
pub struct InFlight(Arc<Load>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::AcqRel);
    }
}

impl Load {
    pub fn new(settings: &ServerSettings) -> Self {
        Self {
            intake: Intake {
                pause_timeout: settings.body_read_timeout,
                budget: MemoryBudget::new(settings.max_request_memory_bytes),
            },
            in_flight: AtomicUsize::new(0),
            max_in_flight: settings.max_in_flight,
            connections: AtomicUsize::new(0),
            max_connections: AtomicUsize::new(settings.max_connections.unwrap_or(0)),
            rejected_in_flight: AtomicU64::new(0),
            rejected_connections: AtomicU64::new(0),
            evicted: AtomicU64::new(0),
            interrupt: tokio_util::sync::CancellationToken::new(),
        }
    }

    /// Counts a request in flight, or `None` at the cap.
    fn admit(self: &Arc<Self>) -> Option<InFlight> {
        let before = self.in_flight.fetch_add(1, Ordering::AcqRel);
        if before >= self.max_in_flight {
            self.in_flight.fetch_sub(1, Ordering::AcqRel);
            self.rejected_in_flight.fetch_add(1, Ordering::Relaxed);
            return None;
        }
        Some(InFlight(self.clone()))
    }

    /// `/metrics` families of the load and what was turned away.
    pub fn families(&self) -> Vec<Family> {
        let gauge = |name, help, v: usize| Family {
            name,
            help,
            kind: "gauge",
            labels: &[],
            samples: vec![(Vec::new(), v as f64)],
        };
        vec![
            gauge(
                "switchyard_open_connections",
                "Client connections open.",
                self.connections.load(Ordering::Relaxed),
            ),
            gauge(
                "switchyard_max_connections",
                "The cap on client connections in force.",
                self.max_connections.load(Ordering::Relaxed),
            ),
            gauge(
                "switchyard_requests_in_flight",
                "Requests being served (streams until they end), /healthz and /metrics aside.",
                self.in_flight.load(Ordering::Relaxed),
            ),
            gauge(
                "switchyard_request_memory_bytes",
                "Estimated memory held by request bodies being read and parsed.",
                self.intake.budget.in_use(),
            ),
            Family {
                name: "switchyard_overload_rejections_total",
                help: "Requests and connections turned away at a capacity limit (in_flight: 503 overloaded; connections: a new connection refused with 503 when none could be closed to make room; memory: 503 overloaded, the request-body memory budget spent).",
                kind: "counter",
                labels: &["limit"],
                samples: vec![
                    (
                        vec!["in_flight".to_string()],
                        self.rejected_in_flight.load(Ordering::Relaxed) as f64,
                    ),
                    (
                        vec!["connections".to_string()],
                        self.rejected_connections.load(Ordering::Relaxed) as f64,
                    ),
                    (
                        vec!["memory".to_string()],
                        self.intake.budget.refusals() as f64,
                    ),
                ],
            },
            Family {
                name: "switchyard_idle_connections_closed_total",
                help: "Idle connections closed to make room for new ones at the connection cap.",
                kind: "counter",
                labels: &[],
                samples: vec![(Vec::new(), self.evicted.load(Ordering::Relaxed) as f64)],
            },
        ]
    }
}

/// A running gateway.
pub struct Server {
    pub addr: SocketAddr,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<std::io::Result<()>>,
}

impl Server {
    /// Starts serving on `listener`.
    pub fn start(
        listener: TcpListener,
        state: AppState,
        grace: Duration,
    ) -> std::io::Result<Server> {
        let addr = listener.local_addr()?;
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(serve(listener, state, grace, async move {
            let _ = rx.await;
        }));
        Ok(Server {
            addr,
            shutdown: Some(tx),
            task,
        })
    }

    /// Stops accepting, waits for in-flight requests (up to the grace period).
    pub async fn shutdown(mut self) -> std::io::Result<()> {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        self.task.await.unwrap_or(Ok(()))
    }
}

/// Serves until `signal` resolves, then drains in-flight requests and open
/// streams for at most `grace`.
pub async fn serve(
    listener: TcpListener,
    state: AppState,
    grace: Duration,
    signal: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let (stopping_tx, stopping_rx) = watch::channel(false);
    let mut checks = crate::route::probe::spawn(state.executor.clone(), stopping_rx.clone());
    checks.push(tokio::spawn(
        state.shared.clone().monitor(Duration::from_millis(500)),
    ));
    let spending = state.spending.clone();
    let settings = state.config.server.clone();
    let max_connections = settings
        .max_connections
        .unwrap_or_else(auto_max_connections);
    state
        .load
        .max_connections
        .store(max_connections, Ordering::Relaxed);
    let shared = Arc::new(Shared {
        router: router(state.clone()),
        telemetry: state.telemetry.clone(),
        load: state.load.clone(),
        settings,
        max_connections,
        registry: Mutex::new(Registry::default()),
        epoch: Instant::now(),
        closing: AtomicUsize::new(0),
        forced: AtomicBool::new(false),
        drained: Notify::new(),
    });
    let mut signal = std::pin::pin!(signal);
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            () = &mut signal => break,
        };
        match accepted {
            Ok((stream, _peer)) => shared.clone().admit(stream),
            Err(e) if is_out_of_descriptors(&e) => {
                // Make room, then accept again.
                shared.evict_idle(EVICT_BATCH);
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            // A connection reset before it was accepted, and the like.
            Err(_) => tokio::time::sleep(Duration::from_millis(1)).await,
        }
    }
    drop(listener);
    tracing::info!("shutting down: draining in-flight requests");
    let _ = stopping_tx.send(true);
    // Idle connections close now; busy ones after their requests.
    shared.close_all();
    let drained = async {
        while shared.load.connections.load(Ordering::Acquire) > 0 {
            let notified = shared.drained.notified();
            if shared.load.connections.load(Ordering::Acquire) == 0 {
                break;
            }
            notified.await;
        }
    };
    // Streams still open near the end of the grace period are told so (an
    // error event in their API's shape) and ended, rather than cut.
    let margin = (grace / 4).min(Duration::from_secs(1));
    let mut drained = std::pin::pin!(drained);
    if tokio::time::timeout(grace - margin, &mut drained)
        .await
        .is_err()
    {
        tracing::warn!(
            grace_secs = grace.as_secs(),
            "grace period ending; interrupting open streams"
        );
        state.load.interrupt.cancel();
        if tokio::time::timeout(margin, &mut drained).await.is_err() {
            tracing::warn!(
                grace_secs = grace.as_secs(),
                "grace period over; closing remaining connections"
            );
            shared.forced.store(true, Ordering::Release);
            shared.close_all();
        }
    }
    for task in checks {
        task.abort();
    }
    // Every served request's spend reaches the ledger before we exit.
    if let Err(e) = tokio::task::spawn_blocking(move || spending.flush())
        .await
        .unwrap_or_else(|e| Err(e.to_string()))
    {
        tracing::error!(error = %e, "spend ledger not flushed at shutdown");
    }
    Ok(())
}

fn is_out_of_descriptors(e: &std::io::Error) -> bool {
    matches!(e.raw_os_error(), Some(libc::EMFILE | libc::ENFILE))
}

/// What every connection task shares.
struct Shared {
    router: Router,
    telemetry: Arc<crate::telemetry::Telemetry>,
    load: Arc<Load>,
    settings: ServerSettings,
    max_connections: usize,
    registry: Mutex<Registry>,
    epoch: Instant,
    /// Connections asked to close to make room, not gone yet: room already
    /// being made.
    closing: AtomicUsize,
    /// The grace period is over: connections close even mid-request.
    forced: AtomicBool,
    /// Notified when the last connection closes.
    drained: Notify,
}

/// Open connections, to find idle ones to close at the cap.
#[derive(Default)]
struct Registry {
    next_id: u64,
    open: std::collections::HashMap<u64, Arc<Conn>>,
}

/// One client connection's state, as its task and its requests see it.
struct Conn {
    /// Requests being served on it (service called, response not done).
    busy: AtomicUsize,
    /// When it last became idle (ms since the listener started).
    idle_since_ms: AtomicU64,
    /// When the first byte of a new request head arrived while it was idle
    /// (ms since start, 0 when none has).
    head_started_ms: AtomicU64,
    /// Asked to close: at once when idle (to make room at the cap, or at
    /// shutdown), after its requests otherwise (or at once past the grace
    /// period).
    close: Notify,
    /// Chosen to make room at the cap (and counted in `Shared::closing`).
    evicted: AtomicBool,
}

impl Shared {
    fn now_ms(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_millis())
            .unwrap_or(u64::MAX)
            .max(1)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Registry> {
        self.registry.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Takes a new connection: makes room at the cap, or refuses it.
    fn admit(self: Arc<Self>, stream: TcpStream) {
        let open = self.load.connections.load(Ordering::Acquire);
        let leaving = self.closing.load(Ordering::Acquire);
        if open.saturating_sub(leaving) >= self.max_connections && self.evict_idle(EVICT_BATCH) == 0
        {
            self.load
                .rejected_connections
                .fetch_add(1, Ordering::Relaxed);
            tokio::spawn(refuse(stream));
            return;
        }
        let _ = stream.set_nodelay(true);
        let conn = Arc::new(Conn {
            busy: AtomicUsize::new(0),
            idle_since_ms: AtomicU64::new(self.now_ms()),
            head_started_ms: AtomicU64::new(0),
            close: Notify::new(),
            evicted: AtomicBool::new(false),
        });
        let id = {
            let mut registry = self.lock();
            let id = registry.next_id;
            registry.next_id += 1;
            registry.open.insert(id, conn.clone());
            id
        };
        self.load.connections.fetch_add(1, Ordering::AcqRel);
        tokio::spawn(async move {
            self.run(stream, conn.clone()).await;
            {
                let mut registry = self.lock();
                registry.open.remove(&id);
                if conn.evicted.load(Ordering::Acquire) {
                    self.closing.fetch_sub(1, Ordering::AcqRel);
                }
            }
            if self.load.connections.fetch_sub(1, Ordering::AcqRel) == 1 {
                self.drained.notify_waiters();
            }
        });
    }

    /// Asks up to `n` connections without a request in flight, idle the
    /// longest, to close; returns how many.
    fn evict_idle(&self, n: usize) -> usize {
        // Chosen and marked under the registry's lock, which a closing
        // connection takes to leave: `closing` counts exactly the marked
        // connections still open.
        let idle = {
            let registry = self.lock();
            let mut idle: Vec<(u64, Arc<Conn>)> = registry
                .open
                .values()
                .filter(|c| {
                    c.busy.load(Ordering::Acquire) == 0 && !c.evicted.load(Ordering::Acquire)
                })
                .map(|c| (c.idle_since_ms.load(Ordering::Relaxed), c.clone()))
                .collect();
            if idle.len() > n {
                idle.select_nth_unstable_by_key(n, |(since, _)| *since);
                idle.truncate(n);
            }
            for (_, conn) in &idle {
                conn.evicted.store(true, Ordering::Release);
            }
            self.closing.fetch_add(idle.len(), Ordering::AcqRel);
            idle
        };
        for (_, conn) in &idle {
            conn.close.notify_one();
        }
        self.load
            .evicted
            .fetch_add(idle.len() as u64, Ordering::Relaxed);
        idle.len()
    }

    /// Asks every connection to close (see [`Conn::close`]).
    fn close_all(&self) {
        for conn in self.lock().open.values() {
            conn.close.notify_one();
        }
    }

    /// When the connection should be closed if it stays as it is: its
    /// header deadline while a head arrives, else its idle deadline; `None`
    /// while it serves a request.
    fn deadline_ms(&self, conn: &Conn) -> Option<u64> {
        if conn.busy.load(Ordering::Acquire) > 0 {
            return None;
        }
        let millis = |d: Duration| u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
        match conn.head_started_ms.load(Ordering::Acquire) {
            0 => Some(
                conn.idle_since_ms
                    .load(Ordering::Acquire)
                    .saturating_add(millis(self.settings.idle_timeout)),
            ),
            started => Some(started.saturating_add(millis(self.settings.header_read_timeout))),
        }
    }

    /// Serves one connection until it ends, times out or is asked to close.
    async fn run(self: &Arc<Self>, stream: TcpStream, conn: Arc<Conn>) {
        let io = TokioIo::new(Tracked {
            inner: stream,
            conn: conn.clone(),
            shared: self.clone(),
        });
        let service = Service {
            shared: self.clone(),
            conn: conn.clone(),
        };
        if self.settings.http2 {
            let mut builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
            builder
                .http1()
                .max_buf_size(MAX_HEAD_BYTES)
                .max_headers(MAX_HEADERS);
            builder
                .http2()
                .timer(TokioTimer::new())
                .max_concurrent_streams(128)
                .max_header_list_size(MAX_HEAD_BYTES as u32)
                .max_send_buf_size(1 << 20)
                .max_pending_accept_reset_streams(64)
                .max_local_error_reset_streams(256)
                .keep_alive_interval(Duration::from_secs(20))
                .keep_alive_timeout(Duration::from_secs(20));
            let connection = builder.serve_connection(io, service);
            self.drive(std::pin::pin!(connection), &conn).await;
        } else {
            let connection = hyper::server::conn::http1::Builder::new()
                .max_header_size(MAX_HEAD_BYTES)
                .max_buf_size(MAX_HEAD_BYTES)
                .max_headers(MAX_HEADERS)
                .serve_connection(io, service);
            self.drive(std::pin::pin!(connection), &conn).await;
        }
    }

    /// Polls a connection to its end, closing it when it outstays its
    /// header or idle deadline, or when asked to ([`Conn::close`]). Its
    /// errors (a client going away, a malformed request) just end it.
    async fn drive<C, E>(&self, mut connection: Pin<&mut C>, conn: &Conn)
    where
        C: Future<Output = Result<(), E>> + GracefulShutdown,
    {
        // Woken at least every header timeout, to catch a head that starts
        // arriving on an idle connection.
        let check_every = self
            .settings
            .header_read_timeout
            .min(self.settings.idle_timeout);
        let watchdog = tokio::time::sleep(check_every);
        let mut watchdog = std::pin::pin!(watchdog);
        let close = conn.close.notified();
        let mut close = std::pin::pin!(close);
        loop {
            tokio::select! {
                biased;
                _ = &mut connection => return,
                () = &mut close => {
                    if conn.busy.load(Ordering::Acquire) == 0
                        || self.forced.load(Ordering::Acquire)
                    {
                        return; // dropping the connection closes it
                    }
                    // Let its requests finish, take no new one.
                    connection.as_mut().shutdown();
                    close.set(conn.close.notified());
                }
                () = &mut watchdog => {
                    let now = self.now_ms();
                    let wait = match self.deadline_ms(conn) {
                        Some(deadline) if now >= deadline => return,
                        Some(deadline) => Duration::from_millis(deadline - now).min(check_every),
                        None => check_every,
                    };
                    watchdog.as_mut().reset(tokio::time::Instant::now() + wait);
                }
            }
        }
    }
}

/// Largest request head (request line and headers), like nginx's and
/// Envoy's defaults (32–60 KiB).
const MAX_HEAD_BYTES: usize = 64 << 10;
/// Most request headers.
const MAX_HEADERS: usize = 128;

/// A hyper connection that can be asked to finish gracefully: serve what
/// is in flight, take no new request.
trait GracefulShutdown {
    fn shutdown(self: Pin<&mut Self>);
}

impl<I, S> GracefulShutdown for hyper::server::conn::http1::Connection<I, S>
where
    S: hyper::service::HttpService<Incoming>,
    S::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    I: hyper::rt::Read + hyper::rt::Write + Unpin,
    S::ResBody: hyper::body::Body + 'static,
    <S::ResBody as hyper::body::Body>::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    fn shutdown(self: Pin<&mut Self>) {
        self.graceful_shutdown();
    }
}

impl<I, S, E, B> GracefulShutdown for hyper_util::server::conn::auto::Connection<'_, I, S, E>
where
    S: hyper::service::Service<Request<Incoming>, Response = Response<B>>,
    S::Future: 'static,
    S::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    B: hyper::body::Body + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    I: hyper::rt::Read + hyper::rt::Write + Unpin + 'static,
    E: hyper_util::server::conn::auto::HttpServerConnExec<S::Future, B>,
{
    fn shutdown(self: Pin<&mut Self>) {
        self.graceful_shutdown();
    }
}

/// Answers a connection refused at the cap with a plain 503 and closes it.
async fn refuse(mut stream: TcpStream) {
    use tokio::io::AsyncWriteExt;
    const BODY: &str = r#"{"error":{"message":"The gateway is at its connection limit (server.max_connections); retry shortly.","type":"server_error","code":"overloaded","param":null}}"#;
    let response = format!(
        "HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\nretry-after: 1\r\nconnection: close\r\ncontent-length: {}\r\n\r\n{BODY}",
        BODY.len()
    );
    let _ = tokio::time::timeout(Duration::from_secs(1), async {
        let _ = stream.write_all(response.as_bytes()).await;
        let _ = stream.shutdown().await;
    })
    .await;
}

/// The client socket, noting when a request head starts to arrive on an
/// idle connection (for the header timeout).
struct Tracked {
    inner: TcpStream,
    conn: Arc<Conn>,
    shared: Arc<Shared>,
}

impl AsyncRead for Tracked {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let polled = Pin::new(&mut this.inner).poll_read(cx, buf);
        if matches!(polled, Poll::Ready(Ok(())))
            && buf.filled().len() > before
            && this.conn.busy.load(Ordering::Relaxed) == 0
            && this.conn.head_started_ms.load(Ordering::Relaxed) == 0
        {
            this.conn
                .head_started_ms
                .store(this.shared.now_ms(), Ordering::Release);
        }
        polled
    }
}

impl AsyncWrite for Tracked {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

/// A request being served on a connection; when dropped (its response is
/// done), the connection may be idle again.
struct Active {
    conn: Arc<Conn>,
    shared: Arc<Shared>,
}

impl Drop for Active {
    fn drop(&mut self) {
        if self.conn.busy.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.conn
                .idle_since_ms
                .store(self.shared.now_ms(), Ordering::Release);
        }
    }
}

/// A response body holding what its request counts against (the
/// connection's busy mark, an in-flight slot) until hyper is done with it.
struct Guarded {
    body: Body,
    _active: Active,
    _in_flight: Option<InFlight>,
}

impl hyper::body::Body for Guarded {
    type Data = bytes::Bytes;
    type Error = axum::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<hyper::body::Frame<Self::Data>, Self::Error>>> {
        Pin::new(&mut self.get_mut().body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> hyper::body::SizeHint {
        self.body.size_hint()
    }
}

/// The per-connection hyper service: counts the request on its connection
/// and against the in-flight cap, then hands it to the router.
struct Service {
    shared: Arc<Shared>,
    conn: Arc<Conn>,
}

/// Routes not counted against the in-flight cap: cheap, and what operators
/// need most when the gateway is flooded.
fn exempt(path: &str) -> bool {
    matches!(path, "/healthz" | "/metrics")
}

impl hyper::service::Service<Request<Incoming>> for Service {
    type Response = Response<Guarded>;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Response<Guarded>, Infallible>> + Send>>;

    fn call(&self, request: Request<Incoming>) -> Self::Future {
        self.conn.busy.fetch_add(1, Ordering::AcqRel);
        self.conn.head_started_ms.store(0, Ordering::Release);
        let active = Active {
            conn: self.conn.clone(),
            shared: self.shared.clone(),
        };
        let in_flight = if exempt(request.uri().path()) {
            None
        } else {
            match self.shared.load.admit() {
                Some(slot) => Some(slot),
                None => {
                    let path = request.uri().path();
                    let response = overloaded_response(path);
                    self.shared
                        .telemetry
                        .http(route_label(path), response.status().as_u16());
                    return Box::pin(std::future::ready(Ok(response.map(|body| Guarded {
                        body,
                        _active: active,
                        _in_flight: None,
                    }))));
                }
            }
        };
        let mut router = self.shared.router.clone();
        Box::pin(async move {
            use tower_service::Service as _;
            let response = match router.call(request.map(Body::new)).await {
                Ok(response) => response,
                Err(never) => match never {},
            };
            Ok(response.map(|body| Guarded {
                body,
                _active: active,
                _in_flight: in_flight,
            }))
        })
    }
}

/// The route label of a request answered before routing: its path when it
/// is a fixed route, else a family name (path parameters stay out of labels).
fn route_label(path: &str) -> &'static str {
    if let Some(route) = crate::config::API_ROUTES.iter().find(|r| **r == path) {
        return route;
    }
    match path {
        "/v1/models" => "/v1/models",
        p if p.starts_with("/admin/") => "/admin/v1/*",
        _ => "unmatched",
    }
}

/// 503 `overloaded` in the shape of the API the request came in on.
fn overloaded_response(path: &str) -> Response<Body> {
    let error = overloaded(
        "The gateway is serving as many requests as it may at once (server.max_in_flight); retry shortly.",
    );
    if path == "/v1/messages" {
        super::messages::error_response(&error)
    } else {
        error.into_response()
    }
}
