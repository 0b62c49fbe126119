//! The load engine: one current-thread tokio runtime per core, each driving
//! its share of the keep-alive connections; one task per connection, sending
//! the pre-built request bytes and skipping through the response.

use std::cell::RefCell;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio::task::LocalSet;
use tokio::time::Sleep;

use super::http1::{ReadError, ResponseReader};
use super::schedule::Dispenser;
use super::stats::{ErrorKind, Stats, micros};

/// The serialised request(s), sent as they are: one request on every connection, or
/// (`--body-list`) a list that all connections of all threads take in turn, cycling.
#[derive(Debug, Clone)]
pub struct Requests {
    list: Arc<[Box<[u8]>]>,
    /// Index of the next request of a list (shared by the threads; unused for one request).
    next: Arc<AtomicUsize>,
}

impl Requests {
    pub fn one(request: Vec<u8>) -> Self {
        Requests {
            list: vec![request.into_boxed_slice()].into(),
            next: Arc::default(),
        }
    }

    pub fn list(requests: Vec<Vec<u8>>) -> anyhow::Result<Self> {
        if requests.is_empty() {
            bail!("the request list is empty");
        }
        Ok(Requests {
            list: requests.into_iter().map(Vec::into_boxed_slice).collect(),
            next: Arc::default(),
        })
    }

    /// The request to send next: one atomic increment per request for a list, none otherwise.
    #[inline]
    pub fn next_request(&self) -> &[u8] {
        let n = self.list.len();
        let i = if n == 1 {
            0
        } else {
            self.next.fetch_add(1, Ordering::Relaxed) % n
        };
        &self.list[i]
    }
}

/// Everything the engine needs; built by [`super::run`].
#[derive(Debug, Clone)]
pub struct EngineConfig {
    pub addrs: Vec<SocketAddr>,
    pub requests: Requests,
    pub head_request: bool,
    pub connections: usize,
    pub threads: usize,
    /// Measured period (after the warmup); `-d`, or the hard cap for `-n` runs.
    pub run: Duration,
    /// `-n`: measured requests in total.
    pub limit: Option<u64>,
    /// `--rate`: requests/s in total.
    pub rate: Option<f64>,
    pub timeout: Duration,
    pub warmup: Duration,
    pub stop: Arc<AtomicBool>,
    /// Show the progress line (stderr).
    pub progress: bool,
}

/// Merged result of all threads.
#[derive(Debug)]
pub struct EngineOutput {
    pub stats: Stats,
    /// From the end of the warmup to the last completed request.
    pub measured: Duration,
    pub threads: usize,
}

/// Live counters of one thread, read by the progress line. Single writer.
#[repr(align(128))]
#[derive(Debug, Default)]
struct Slot {
    done: AtomicU64,
    errors: AtomicU64,
}

impl Slot {
    #[inline]
    fn bump(c: &AtomicU64) {
        // Only this slot's thread writes, so a plain load + store is enough.
        c.store(c.load(Ordering::Relaxed) + 1, Ordering::Relaxed);
    }
}

struct Ctx {
    addr: SocketAddr,
    requests: Requests,
    head_request: bool,
    timeout: Duration,
    dispenser: Dispenser,
    stats: RefCell<Stats>,
    slot: Arc<Slot>,
}

/// Picks the first address that accepts a TCP connection.
fn preflight(addrs: &[SocketAddr], timeout: Duration) -> anyhow::Result<SocketAddr> {
    let mut last = None;
    for a in addrs {
        match std::net::TcpStream::connect_timeout(a, timeout) {
            Ok(_) => return Ok(*a),
            Err(e) => last = Some(format!("{a}: {e}")),
        }
    }
    bail!(
        "cannot connect to the target ({})",
        last.unwrap_or_else(|| "no address".into())
    )
}

async fn connect(addr: SocketAddr, timeout: Duration) -> io::Result<TcpStream> {
    let s = tokio::time::timeout(timeout, TcpStream::connect(addr))
        .await
        .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "connect timed out"))??;
    s.set_nodelay(true)?;
    Ok(s)
}

/// Why one request failed.
enum Failure {
    Connect(io::Error),
    Write(io::Error),
    Read(ReadError),
    Timeout(Duration),
}

impl Failure {
    fn kind(&self) -> ErrorKind {
        match self {
            Failure::Connect(_) => ErrorKind::Connect,
            Failure::Write(e) | Failure::Read(ReadError::Io(e)) => ErrorKind::of_io(e),
            Failure::Read(ReadError::Closed { .. }) => ErrorKind::Closed,
            Failure::Read(ReadError::Protocol(_)) => ErrorKind::Other,
            Failure::Timeout(_) => ErrorKind::Timeout,
        }
    }

    fn message(&self, addr: SocketAddr) -> String {
        match self {
            Failure::Connect(e) => format!("connecting to {addr}: {e}"),
            Failure::Write(e) => format!("sending the request: {e}"),
            Failure::Read(e) => e.to_string(),
            Failure::Timeout(t) => format!("no complete response within {t:?}"),
        }
    }
}

/// Runs `fut` until `deadline`. `timer` is reused across requests and only
/// re-armed when it fires early, so a request costs no timer registration.
/// Invariant: the timer's deadline is never later than `deadline`.
async fn with_deadline<F: Future>(
    timer: &mut Pin<Box<Sleep>>,
    deadline: Instant,
    fut: F,
) -> Option<F::Output> {
    let mut fut = std::pin::pin!(fut);
    loop {
        tokio::select! {
            biased;
            out = &mut fut => return Some(out),
            () = timer.as_mut() => {
                if Instant::now() >= deadline {
                    return None;
                }
                timer.as_mut().reset(deadline.into());
            }
        }
    }
}

async fn exchange(
    s: &mut TcpStream,
    reader: &mut ResponseReader,
    request: &[u8],
    head_request: bool,
    sample: &mut Vec<u8>,
) -> Result<super::http1::ResponseMeta, Failure> {
    s.write_all(request).await.map_err(Failure::Write)?;
    reader
        .read_response(s, head_request, Some(sample))
        .await
        .map_err(Failure::Read)
}

/// A connection unused for this long is checked for a server-side close before reuse.
const IDLE_CHECK: Duration = Duration::from_millis(250);
/// Longest single sleep while waiting for a scheduled slot (stop is checked in between).
const SLOT_NAP: Duration = Duration::from_millis(100);

/// One keep-alive connection and what is known about it.
struct Conn {
    stream: Option<TcpStream>,
    reader: ResponseReader,
    /// Responses received on the current TCP connection.
    served: u64,
    last_used: Instant,
}

impl Conn {
    fn attach(&mut self, s: TcpStream) {
        self.stream = Some(s);
        self.reader.reset();
        self.served = 0;
        self.last_used = Instant::now();
    }

    fn drop_stream(&mut self) {
        self.stream = None;
        self.reader.reset();
    }
}

/// False when the server has closed (or written garbage to) an idle connection.
fn still_open(s: &TcpStream) -> bool {
    let mut b = [0u8; 1];
    matches!(s.try_read(&mut b), Err(e) if e.kind() == io::ErrorKind::WouldBlock)
}

/// Waits for a scheduled slot; false if the run was stopped meanwhile.
async fn wait_for_slot(ctx: &Ctx, at: Instant) -> bool {
    loop {
        let now = Instant::now();
        if now >= at {
            return true;
        }
        if ctx.dispenser.stop_requested() {
            return false;
        }
        tokio::time::sleep_until(at.min(now + SLOT_NAP).into()).await;
    }
}

/// Sends the request for one ticket, reconnecting (once) when a reused
/// keep-alive connection turns out to be closed before any response byte:
/// the server dropped it while idle, so the request was never handled.
async fn send_one(
    ctx: &Ctx,
    request: &[u8],
    c: &mut Conn,
    timer: &mut Pin<Box<Sleep>>,
    sample: &mut Vec<u8>,
) -> Result<super::http1::ResponseMeta, Failure> {
    let mut retried = false;
    loop {
        let Some(s) = c.stream.as_mut() else {
            let s = connect(ctx.addr, ctx.timeout)
                .await
                .map_err(Failure::Connect)?;
            c.attach(s);
            continue;
        };
        if c.served > 0 && c.last_used.elapsed() > IDLE_CHECK && !still_open(s) {
            c.drop_stream();
            continue;
        }
        let send = Instant::now();
        let r = with_deadline(
            timer,
            send + ctx.timeout,
            exchange(s, &mut c.reader, request, ctx.head_request, sample),
        )
        .await
        .unwrap_or(Err(Failure::Timeout(ctx.timeout)));
        c.last_used = Instant::now();
        match r {
            Ok(meta) => {
                c.served += 1;
                if !meta.keep_alive {
                    c.drop_stream();
                }
                return Ok(meta);
            }
            Err(f) => {
                c.drop_stream();
                let stale = matches!(
                    f,
                    Failure::Write(_)
                        | Failure::Read(ReadError::Closed {
                            mid_response: false
                        })
                );
                if stale && c.served > 0 && !retried {
                    retried = true;
                    sample.clear();
                    continue;
                }
                return Err(f);
            }
        }
    }
}

async fn conn_loop(ctx: Rc<Ctx>, first: TcpStream) {
    let mut c = Conn {
        stream: None,
        reader: ResponseReader::new(),
        served: 0,
        last_used: Instant::now(),
    };
    c.attach(first);
    let mut timer = Box::pin(tokio::time::sleep_until(tokio::time::Instant::now()));
    let mut sample = Vec::new();
    let mut connect_failures = 0u32;
    loop {
        if c.stream.is_none() {
            // Reconnect before taking a ticket (the server closed, or a request failed).
            if Instant::now() >= ctx.dispenser.deadline() || ctx.dispenser.stopped() {
                break;
            }
            match connect(ctx.addr, ctx.timeout).await {
                Ok(s) => {
                    connect_failures = 0;
                    c.attach(s);
                }
                Err(e) => {
                    {
                        let mut st = ctx.stats.borrow_mut();
                        if Instant::now() >= ctx.dispenser.warmup_end() {
                            st.record_error(ErrorKind::Connect, || {
                                format!("connecting to {}: {e}", ctx.addr)
                            });
                        } else {
                            st.warmup_requests += 1;
                        }
                    }
                    Slot::bump(&ctx.slot.errors);
                    connect_failures = connect_failures.saturating_add(1);
                    let backoff = Duration::from_millis(10u64 << connect_failures.min(6));
                    tokio::time::sleep(backoff).await;
                    continue;
                }
            }
        }

        let now = Instant::now();
        let Some(ticket) = ctx.dispenser.take(now) else {
            break;
        };
        let start = match ticket.at {
            None => now,
            Some(at) if at > now => {
                if !wait_for_slot(&ctx, at).await {
                    ctx.dispenser.abandon(ticket);
                    break;
                }
                // Timer granularity is the tool's, not the server's: measure from the real send.
                Instant::now()
            }
            Some(at) => {
                // Every connection was busy when this slot came due: the wait counts.
                if ticket.measured && now.duration_since(at) > Duration::from_millis(1) {
                    ctx.stats.borrow_mut().late_sends += 1;
                }
                at
            }
        };
        let request = ctx.requests.next_request();
        let result = send_one(&ctx, request, &mut c, &mut timer, &mut sample).await;
        let end = Instant::now();

        let mut st = ctx.stats.borrow_mut();
        match result {
            Ok(meta) => {
                if ticket.measured {
                    st.record_response(
                        meta.status,
                        micros(end.saturating_duration_since(start)),
                        meta.bytes,
                    );
                    if !(200..400).contains(&meta.status)
                        && !st.status_samples.contains_key(&meta.status)
                    {
                        st.status_samples
                            .insert(meta.status, String::from_utf8_lossy(&sample).into_owned());
                    }
                } else {
                    st.warmup_requests += 1;
                }
                Slot::bump(&ctx.slot.done);
            }
            Err(f) => {
                if ticket.measured {
                    st.record_error(f.kind(), || f.message(ctx.addr));
                } else {
                    st.warmup_requests += 1;
                }
                Slot::bump(&ctx.slot.errors);
            }
        }
        sample.clear();
    }
}

/// Start line: every thread reports ready (connections open), then the
/// engine says go (with the common start instant) or abort.
#[derive(Default)]
struct Gate {
    state: Mutex<GateState>,
    cv: Condvar,
}

#[derive(Default)]
struct GateState {
    ready: usize,
    setup_errors: Vec<String>,
    /// `None`: not yet; `Some(None)`: abort; `Some(Some(t0))`: start at t0.
    go: Option<Option<Instant>>,
}

impl Gate {
    fn lock(&self) -> MutexGuard<'_, GateState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Called by a load thread; blocks until the engine decides. Returns t0, or None to abort.
    fn ready(&self, setup_error: Option<String>) -> Option<Instant> {
        let mut st = self.lock();
        st.ready += 1;
        st.setup_errors.extend(setup_error);
        self.cv.notify_all();
        loop {
            if let Some(go) = st.go {
                return go;
            }
            st = self.cv.wait(st).unwrap_or_else(|p| p.into_inner());
        }
    }

    /// Called by the engine: waits for `n` threads, returns their setup errors.
    fn wait_ready(&self, n: usize) -> Vec<String> {
        let mut st = self.lock();
        while st.ready < n {
            st = self.cv.wait(st).unwrap_or_else(|p| p.into_inner());
        }
        std::mem::take(&mut st.setup_errors)
    }

    fn go(&self, t0: Option<Instant>) {
        self.lock().go = Some(t0);
        self.cv.notify_all();
    }
}

struct ThreadPlan {
    conns: usize,
    limit: Option<u64>,
    rate: Option<(f64, Duration)>,
}

fn thread_main(
    cfg: &EngineConfig,
    addr: SocketAddr,
    plan: ThreadPlan,
    gate: &Gate,
    slot: Arc<Slot>,
) -> (Stats, u64, Instant) {
    let setup = || -> anyhow::Result<(tokio::runtime::Runtime, LocalSet, Vec<TcpStream>)> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .context("cannot start a tokio runtime")?;
        let local = LocalSet::new();
        let timeout = cfg.timeout;
        let streams = local.block_on(&rt, async move {
            let all =
                futures::future::join_all((0..plan.conns).map(|_| connect(addr, timeout))).await;
            all.into_iter().collect::<io::Result<Vec<_>>>()
        });
        let streams = streams.map_err(|e| {
            let hint = if e.raw_os_error() == Some(24) {
                " (too many open files: raise `ulimit -n` or lower -c)"
            } else {
                ""
            };
            anyhow::anyhow!(
                "opening {} connections to {addr}: {e}{hint}",
                cfg.connections
            )
        })?;
        Ok((rt, local, streams))
    };
    let (ready, error) = match setup() {
        Ok(r) => (Some(r), None),
        Err(e) => (None, Some(format!("{e:#}"))),
    };
    let (Some(t0), Some((rt, local, streams))) = (gate.ready(error), ready) else {
        return (Stats::new(), 0, Instant::now());
    };
    let ctx = Rc::new(Ctx {
        addr,
        requests: cfg.requests.clone(),
        head_request: cfg.head_request,
        timeout: cfg.timeout,
        dispenser: Dispenser::new(
            t0,
            cfg.warmup,
            cfg.run,
            plan.limit,
            plan.rate,
            cfg.stop.clone(),
        ),
        stats: RefCell::new(Stats::new()),
        slot,
    });
    local.block_on(&rt, async {
        let tasks: Vec<_> = streams
            .into_iter()
            .map(|s| tokio::task::spawn_local(conn_loop(ctx.clone(), s)))
            .collect();
        for t in tasks {
            let _ = t.await;
        }
    });
    let end = Instant::now();
    drop(local);
    drop(rt);
    let unsent = ctx.dispenser.unsent();
    let stats = ctx.stats.replace(Stats::new());
    (stats, unsent, end)
}

/// Splits `total` in proportion to `part/whole`, cumulatively so the shares add up.
fn share(total: u64, before: usize, upto: usize, whole: usize) -> u64 {
    let f = |k: usize| (u128::from(total) * k as u128 / whole as u128) as u64;
    f(upto) - f(before)
}

/// Runs the load; blocks the calling thread until the run is over.
pub fn run_engine(cfg: EngineConfig) -> anyhow::Result<EngineOutput> {
    let addr = preflight(&cfg.addrs, cfg.timeout)?;
    let threads = cfg.threads.clamp(1, cfg.connections.max(1));
    let gate = Arc::new(Gate::default());
    let slots: Vec<Arc<Slot>> = (0..threads).map(|_| Arc::new(Slot::default())).collect();
    let cfg = Arc::new(cfg);
    let mut handles = Vec::with_capacity(threads);
    let mut before = 0usize;
    for (k, slot) in slots.iter().enumerate() {
        let conns = cfg.connections / threads + usize::from(k < cfg.connections % threads);
        let plan = ThreadPlan {
            conns,
            limit: cfg
                .limit
                .map(|n| share(n, before, before + conns, cfg.connections)),
            rate: cfg.rate.map(|r| {
                let phase = Duration::from_secs_f64(k as f64 / r).min(Duration::from_secs(1));
                (r * conns as f64 / cfg.connections as f64, phase)
            }),
        };
        before += conns;
        let (thread_cfg, thread_gate, slot) = (cfg.clone(), gate.clone(), slot.clone());
        let h = std::thread::Builder::new()
            .name(format!("qps-{k}"))
            .spawn(move || thread_main(&thread_cfg, addr, plan, &thread_gate, slot));
        match h {
            Ok(h) => handles.push(h),
            Err(e) => {
                gate.go(None);
                bail!("cannot start thread {k}: {e}");
            }
        }
    }
    let setup_errors = gate.wait_ready(threads);
    if !setup_errors.is_empty() {
        gate.go(None);
        for h in handles {
            let _ = h.join();
        }
        bail!("{}", setup_errors.join("; "));
    }
    let t0 = Instant::now();
    gate.go(Some(t0));

    let bar = cfg.progress.then(|| progress_bar(&cfg));
    // (time, responses) samples of the last second, for the current rate.
    let mut recent: std::collections::VecDeque<(Instant, u64)> = std::collections::VecDeque::new();
    while handles.iter().any(|h| !h.is_finished()) {
        std::thread::sleep(Duration::from_millis(100));
        if let Some(bar) = &bar {
            let now = Instant::now();
            let done: u64 = slots.iter().map(|s| s.done.load(Ordering::Relaxed)).sum();
            let errs: u64 = slots.iter().map(|s| s.errors.load(Ordering::Relaxed)).sum();
            recent.push_back((now, done));
            while recent.len() > 2
                && recent
                    .front()
                    .is_some_and(|(t, _)| now.duration_since(*t) > Duration::from_secs(1))
            {
                recent.pop_front();
            }
            let rate = match recent.front() {
                Some((t, d)) if now > *t => {
                    (done - d) as f64 / now.duration_since(*t).as_secs_f64()
                }
                _ => 0.0,
            };
            let phase = if now.duration_since(t0) < cfg.warmup {
                "warmup "
            } else {
                ""
            };
            bar.set_message(format!("{phase}{done} req, {rate:.0}/s, {errs} err"));
            match cfg.limit {
                Some(n) if cfg.run >= super::args::MAX_DURATION => bar.set_position(done.min(n)),
                _ => bar.set_position(now.duration_since(t0).as_millis() as u64),
            }
        }
    }
    if let Some(bar) = bar {
        bar.finish_and_clear();
    }

    let mut stats = Stats::new();
    let mut end = t0 + cfg.warmup;
    for h in handles {
        let (s, unsent, e) = h
            .join()
            .map_err(|_| anyhow::anyhow!("a load thread panicked"))?;
        stats.merge(&s);
        stats.unsent += unsent;
        end = end.max(e);
    }
    Ok(EngineOutput {
        stats,
        measured: end.saturating_duration_since(t0 + cfg.warmup),
        threads,
    })
}

fn progress_bar(cfg: &EngineConfig) -> indicatif::ProgressBar {
    use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
    let len = match cfg.limit {
        Some(n) if cfg.run >= super::args::MAX_DURATION => n,
        _ => (cfg.warmup + cfg.run).as_millis() as u64,
    };
    let bar = ProgressBar::with_draw_target(Some(len), ProgressDrawTarget::stderr_with_hz(4));
    if let Ok(style) = ProgressStyle::with_template("{elapsed_precise} [{bar:20}] {wide_msg}") {
        bar.set_style(style.progress_chars("=> "));
    }
    bar
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_list_cycles() {
        let one = Requests::one(b"GET / HTTP/1.1\r\n\r\n".to_vec());
        assert_eq!(one.next_request(), one.next_request());
        assert!(Requests::list(Vec::new()).is_err());
        let list =
            Requests::list(vec![b"a".to_vec(), b"b".to_vec(), b"c".to_vec()]).expect("non-empty");
        let other_thread = list.clone();
        let got: Vec<&[u8]> = (0..4)
            .map(|i| {
                if i % 2 == 0 {
                    list.next_request()
                } else {
                    other_thread.next_request()
                }
            })
            .collect();
        assert_eq!(got, vec![&b"a"[..], b"b", b"c", b"a"]);
    }

    #[test]
    fn shares_add_up() {
        let parts = [(0, 22), (22, 43), (43, 64)];
        let total: u64 = parts.iter().map(|&(a, b)| share(1001, a, b, 64)).sum();
        assert_eq!(total, 1001);
        assert_eq!(share(10, 0, 1, 1), 10);
    }

    #[tokio::test]
    async fn lazy_deadline_fires_and_rearms() {
        let mut timer = Box::pin(tokio::time::sleep_until(tokio::time::Instant::now()));
        let r = with_deadline(
            &mut timer,
            Instant::now() + Duration::from_millis(50),
            async { 7 },
        )
        .await;
        assert_eq!(r, Some(7));
        let t = Instant::now();
        let r = with_deadline(
            &mut timer,
            Instant::now() + Duration::from_millis(30),
            tokio::time::sleep(Duration::from_secs(5)),
        )
        .await;
        assert!(r.is_none());
        assert!(t.elapsed() >= Duration::from_millis(30) && t.elapsed() < Duration::from_secs(1));
        let r = with_deadline(
            &mut timer,
            Instant::now() + Duration::from_millis(200),
            tokio::time::sleep(Duration::from_millis(20)),
        )
        .await;
        assert_eq!(r, Some(()));
    }
}
