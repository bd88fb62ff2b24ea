//! The transport under the HTTP application: TCP connections accepted within limits,
//! served by hyper (HTTP/1.1 and HTTP/2 with prior knowledge), and closed when they
//! stall.
//!
//! - **Admission.** At most `max_connections` open connections, and at most
//!   `max_connections_per_address` from one client address (an IPv6 client by its
//!   /64). Past either, the connection gets a short `503` or `429` in the OCI envelope
//!   and is closed, without a task or buffer of its own beyond that answer.
//! - **Deadlines.** A watchdog per connection closes it when request headers take
//!   longer than `header_timeout` (from the connection's start or from the first byte
//!   after the last response), when it has been idle between requests for
//!   `idle_timeout`, or when the client has not taken response bytes for
//!   `send_timeout`. A request being handled, however long, is never cut off here.
//! - **Slow bodies.** A request body must arrive at `min_body_rate` bytes per second on
//!   average over each `body_rate_window` the server spends waiting for it (time the
//!   server is busy elsewhere does not count); a slower one fails, and with it the
//!   request and its connection. Long transfers at any reasonable speed go on.
//!
//! - **TLS.** With a certificate, each connection's handshake runs in its own task
//!   under the header deadline, and HTTP/2 or HTTP/1.1 is chosen by ALPN. The
//!   deadlines above watch the encrypted stream.
//!
//! Shutdown asks every connection to finish its requests and close.

use std::collections::HashMap;
use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::{Request, Response};
use bytes::Bytes;
use futures::future::BoxFuture;
use http_body::{Body as HttpBody, Frame, SizeHint};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Notify, Semaphore, watch};
use tower::ServiceExt;

use crate::config::Limits;
use crate::http::limits::MAX_HEADER_BYTES;
use crate::http::origin::address_key;
use crate::ops::metrics::ConnectionCounters;

/// Refusals being written at once; past this, refused connections are just closed.
const MAX_REFUSALS_IN_FLIGHT: usize = 256;
/// How long writing a refusal may take.
const REFUSAL_TIMEOUT: Duration = Duration::from_secs(2);
/// The most a connection buffers of what it reads: twice the documented header limit.
const READ_BUFFER: usize = 2 * MAX_HEADER_BYTES;
/// `u64` marker for "not set" in [`Activity`]'s millisecond fields.
const NONE: u64 = u64::MAX;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// How connections are served.
pub struct Options {
    pub limits: Limits,
    /// Where connections and their bytes are counted.
    pub counters: ConnectionCounters,
    /// HTTPS (`None`: plain HTTP).
    pub tls: Option<tokio_rustls::TlsAcceptor>,
}

/// Serves `app` on `listener` until `shutdown` resolves, then lets every connection
/// finish its requests and returns once all are closed.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    options: Options,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> io::Result<()> {
    let Options {
        limits,
        counters,
        tls,
    } = options;
    let limits = Arc::new(limits);
    let admission = Arc::new(Admission::new(&limits));
    let refusals = Arc::new(Semaphore::new(MAX_REFUSALS_IN_FLIGHT));
    let mut builder = auto::Builder::new(TokioExecutor::new());
    // The read buffer bounds a request head (hyper answers 431 past it) and the memory
    // of each connection.
    builder
        .http1()
        .header_read_timeout(None)
        .max_buf_size(READ_BUFFER);
    builder
        .http2()
        .max_header_list_size(2 * MAX_HEADER_BYTES as u32);
    let builder = Arc::new(builder);
    let (stop, stopping) = watch::channel(false);
    tokio::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    // Out of file descriptors, or a connection reset before accept: keep
                    // serving the others, and do not spin.
                    tracing::warn!(error = %e, "accepting a connection failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        match admission.admit(address_key(Some(peer.ip()))) {
            Ok(admitted) => {
                let connection = Connection {
                    app: app.clone(),
                    peer,
                    limits: limits.clone(),
                    builder: builder.clone(),
                    stopping: stopping.clone(),
                    counters: counters.clone(),
                    _open: OpenConnection::new(&counters),
                    _admitted: admitted,
                };
                tokio::spawn(connection.run(stream, tls.clone()));
            }
            Err(refusal) => {
                if matches!(refusal, Refusal::Address) {
                    counters.refused_per_address.inc();
                }
                if let Ok(permit) = refusals.clone().try_acquire_owned() {
                    tokio::spawn(async move {
                        refusal.write(stream).await;
                        drop(permit);
                    });
                }
            }
        }
    }
    drop(listener);
    let _ = stop.send(true);
    admission.all_closed().await;
    Ok(())
}

// ------------------------------------------------------------------ admission

/// Open connections, overall and per client address.
struct Admission {
    max_total: usize,
    max_per_address: usize,
    open: Mutex<(usize, HashMap<String, usize>)>,
    closed: Notify,
}

/// One admitted connection; dropping it frees its place.
struct Admitted {
    admission: Arc<Admission>,
    address: String,
}

/// Why a connection was not admitted.
enum Refusal {
    /// The server holds `max_connections` already.
    Full,
    /// This address holds `max_connections_per_address` already.
    Address,
}

impl Admission {
    fn new(limits: &Limits) -> Admission {
        Admission {
            max_total: limits.max_connections.max(1),
            max_per_address: limits.max_connections_per_address.max(1),
            open: Mutex::new((0, HashMap::new())),
            closed: Notify::new(),
        }
    }

    fn admit(self: &Arc<Self>, address: String) -> Result<Admitted, Refusal> {
        let mut open = self.open.lock().unwrap_or_else(|e| e.into_inner());
        if open.0 >= self.max_total {
            return Err(Refusal::Full);
        }
        let per_address = open.1.entry(address.clone()).or_insert(0);
        if *per_address >= self.max_per_address {
            return Err(Refusal::Address);
        }
        *per_address += 1;
        open.0 += 1;
        Ok(Admitted {
            admission: self.clone(),
            address,
        })
    }

    async fn all_closed(&self) {
        loop {
            let notified = self.closed.notified();
            if self.open.lock().unwrap_or_else(|e| e.into_inner()).0 == 0 {
                return;
            }
            notified.await;
        }
    }
}

impl Drop for Admitted {
    fn drop(&mut self) {
        let mut open = self
            .admission
            .open
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        open.0 = open.0.saturating_sub(1);
        if let Some(count) = open.1.get_mut(&self.address) {
            *count -= 1;
            if *count == 0 {
                open.1.remove(&self.address);
            }
        }
        if open.0 == 0 {
            self.admission.closed.notify_waiters();
        }
    }
}

impl Refusal {
    /// Answers with a short error and closes, reading (and discarding) a little of the
    /// request first so the client sees the answer rather than a reset.
    async fn write(self, mut stream: TcpStream) {
        let (status, code, message) = match self {
            Refusal::Full => (
                "503 Service Unavailable",
                "UNAVAILABLE",
                "the server has too many open connections; retry shortly",
            ),
            Refusal::Address => (
                "429 Too Many Requests",
                "TOOMANYREQUESTS",
                "too many open connections from this address; close some and retry",
            ),
        };
        let body = serde_json::json!({
            "errors": [{ "code": code, "message": message, "detail": null }]
        })
        .to_string();
        let answer = format!(
            "HTTP/1.1 {status}\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\
             retry-after: 1\r\nconnection: close\r\n\r\n{body}",
            body.len()
        );
        let _ = tokio::time::timeout(REFUSAL_TIMEOUT, async {
            stream.write_all(answer.as_bytes()).await?;
            stream.shutdown().await?;
            let mut sink = [0u8; 4096];
            let mut read = 0;
            while read < 64 * 1024 {
                match tokio::io::AsyncReadExt::read(&mut stream, &mut sink).await? {
                    0 => break,
                    n => read += n,
                }
            }
            io::Result::Ok(())
        })
        .await;
    }
}

// ------------------------------------------------------------------ one connection

struct Connection {
    app: Router,
    peer: SocketAddr,
    limits: Arc<Limits>,
    builder: Arc<auto::Builder<TokioExecutor>>,
    stopping: watch::Receiver<bool>,
    counters: ConnectionCounters,
    _open: OpenConnection,
    _admitted: Admitted,
}

/// A connection counted open until dropped.
struct OpenConnection(prometheus_client::metrics::gauge::Gauge);

impl OpenConnection {
    fn new(counters: &ConnectionCounters) -> OpenConnection {
        counters.open.inc();
        OpenConnection(counters.open.clone())
    }
}

impl Drop for OpenConnection {
    fn drop(&mut self) {
        self.0.dec();
    }
}

impl Connection {
    async fn run(self, stream: TcpStream, tls: Option<tokio_rustls::TlsAcceptor>) {
        let _ = stream.set_nodelay(true);
        let activity = Arc::new(Activity::new());
        let watched = Watched {
            inner: stream,
            activity: activity.clone(),
            counters: self.counters.clone(),
        };
        match tls {
            None => self.serve(TokioIo::new(watched), activity).await,
            Some(acceptor) => {
                // The handshake is the first thing the client sends: it gets the
                // header deadline.
                let handshake = acceptor.accept(watched);
                match tokio::time::timeout(self.limits.header_timeout, handshake).await {
                    Ok(Ok(stream)) => self.serve(TokioIo::new(stream), activity).await,
                    Ok(Err(e)) => {
                        tracing::debug!(peer = %self.peer, error = %e, "TLS handshake failed");
                    }
                    Err(_) => tracing::debug!(peer = %self.peer, "TLS handshake timed out"),
                }
            }
        }
    }

    async fn serve<I>(mut self, io: TokioIo<I>, activity: Arc<Activity>)
    where
        I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let service = ConnectionService {
            app: self.app.clone(),
            peer: self.peer,
            activity: activity.clone(),
            min_body_rate: self.limits.min_body_rate,
            body_rate_window: self.limits.body_rate_window,
        };
        let builder = self.builder.clone();
        let conn =
            builder.serve_connection(io, hyper_util::service::TowerToHyperService::new(service));
        tokio::pin!(conn);
        let mut watchdog = tokio::time::interval(check_period(&self.limits));
        watchdog.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut closing = *self.stopping.borrow();
        if closing {
            conn.as_mut().graceful_shutdown();
        }
        loop {
            tokio::select! {
                _ = conn.as_mut() => return,
                _ = watchdog.tick() => {
                    if let Some(reason) = activity.expired(&self.limits) {
                        tracing::debug!(peer = %self.peer, reason, "closing a connection");
                        return;
                    }
                }
                changed = self.stopping.changed(), if !closing => {
                    if changed.is_err() || *self.stopping.borrow() {
                        conn.as_mut().graceful_shutdown();
                        closing = true;
                    }
                }
            }
        }
    }
}

/// How often a connection's deadlines are checked: often enough to close it within a
/// quarter of its shortest timeout.
fn check_period(limits: &Limits) -> Duration {
    let shortest = limits
        .header_timeout
        .min(limits.idle_timeout)
        .min(limits.send_timeout);
    (shortest / 4).clamp(Duration::from_millis(50), Duration::from_secs(5))
}

/// What a connection is doing, in milliseconds since it opened, updated by its IO and
/// its requests and read by its watchdog.
struct Activity {
    opened: Instant,
    /// Requests whose responses have not been sent completely yet.
    in_flight: AtomicUsize,
    /// When the connection last had no request in flight.
    idle_since: AtomicU64,
    /// When the first byte of the next request head arrived (`NONE`: none yet). The
    /// connection's start counts as such: the first request is awaited from then on.
    reading_head_since: AtomicU64,
    /// When a write started waiting for the client to take bytes (`NONE`: it is not).
    write_blocked_since: AtomicU64,
}

impl Activity {
    fn new() -> Activity {
        Activity {
            opened: Instant::now(),
            in_flight: AtomicUsize::new(0),
            idle_since: AtomicU64::new(0),
            reading_head_since: AtomicU64::new(0),
            write_blocked_since: AtomicU64::new(NONE),
        }
    }

    fn now(&self) -> u64 {
        self.opened.elapsed().as_millis() as u64
    }

    fn request_started(&self) {
        self.in_flight.fetch_add(1, Ordering::AcqRel);
        self.reading_head_since.store(NONE, Ordering::Release);
    }

    fn request_finished(&self) {
        if self.in_flight.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.idle_since.store(self.now(), Ordering::Release);
        }
    }

    fn bytes_read(&self) {
        if self.in_flight.load(Ordering::Acquire) == 0 {
            let now = self.now();
            let _ = self.reading_head_since.compare_exchange(
                NONE,
                now,
                Ordering::AcqRel,
                Ordering::Acquire,
            );
        }
    }

    fn write_blocked(&self) {
        let now = self.now();
        let _ = self.write_blocked_since.compare_exchange(
            NONE,
            now,
            Ordering::AcqRel,
            Ordering::Acquire,
        );
    }

    fn write_progressed(&self) {
        self.write_blocked_since.store(NONE, Ordering::Release);
    }

    /// Why the connection should be closed now, if it should.
    fn expired(&self, limits: &Limits) -> Option<&'static str> {
        let now = self.now();
        let past = |since: u64, limit: Duration| {
            since != NONE && now.saturating_sub(since) >= limit.as_millis() as u64
        };
        if past(
            self.write_blocked_since.load(Ordering::Acquire),
            limits.send_timeout,
        ) {
            return Some("the client stopped reading the response");
        }
        if self.in_flight.load(Ordering::Acquire) > 0 {
            return None;
        }
        let reading = self.reading_head_since.load(Ordering::Acquire);
        if reading != NONE {
            return past(reading, limits.header_timeout).then_some("request headers took too long");
        }
        past(self.idle_since.load(Ordering::Acquire), limits.idle_timeout)
            .then_some("idle between requests")
    }
}

/// The TCP stream, reporting reads and blocked writes to the connection's [`Activity`].
struct Watched {
    inner: TcpStream,
    activity: Arc<Activity>,
    counters: ConnectionCounters,
}

impl AsyncRead for Watched {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.inner).poll_read(cx, buf);
        let read = buf.filled().len() - before;
        if matches!(polled, Poll::Ready(Ok(()))) && read > 0 {
            self.activity.bytes_read();
            self.counters.received.inc_by(read as u64);
        }
        polled
    }
}

impl Watched {
    fn note_write(&self, polled: &Poll<io::Result<usize>>) {
        match polled {
            Poll::Pending => self.activity.write_blocked(),
            Poll::Ready(written) => {
                self.activity.write_progressed();
                if let Ok(n) = written {
                    self.counters.sent.inc_by(*n as u64);
                }
            }
        }
    }
}

impl AsyncWrite for Watched {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let polled = Pin::new(&mut self.inner).poll_write(cx, buf);
        self.note_write(&polled);
        polled
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let polled = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        self.note_write(&polled);
        polled
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// The application as one connection serves it: the peer's address for handlers,
/// requests counted in flight until their responses are sent, bodies held to the
/// minimum rate.
#[derive(Clone)]
struct ConnectionService {
    app: Router,
    peer: SocketAddr,
    activity: Arc<Activity>,
    min_body_rate: u64,
    body_rate_window: Duration,
}

impl tower::Service<Request<Incoming>> for ConnectionService {
    type Response = Response<Body>;
    type Error = Infallible;
    type Future = BoxFuture<'static, Result<Response<Body>, Infallible>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: Request<Incoming>) -> Self::Future {
        self.activity.request_started();
        let in_flight = InFlight(self.activity.clone());
        let (mut parts, body) = request.into_parts();
        parts.extensions.insert(ConnectInfo(self.peer));
        let http1 = parts.version <= axum::http::Version::HTTP_11;
        let read_to_end = Arc::new(AtomicBool::new(body.is_end_stream()));
        let mut body = RateFloor::new(body, self.min_body_rate, self.body_rate_window);
        body.read_to_end = Some(read_to_end.clone());
        let body = Body::new(body);
        let app = self.app.clone();
        Box::pin(async move {
            let response = app
                .oneshot(Request::from_parts(parts, body))
                .await
                .unwrap_or_else(|never| match never {});
            let (mut parts, body) = response.into_parts();
            // Answered before the body was read (a refusal, an early error): hyper will
            // close the connection rather than read the rest, so say so, and the client
            // sends its next request on a new one instead of finding this one gone.
            if http1 && !read_to_end.load(Ordering::Acquire) {
                parts.headers.insert(
                    axum::http::header::CONNECTION,
                    axum::http::HeaderValue::from_static("close"),
                );
            }
            Ok(Response::from_parts(
                parts,
                Body::new(Counted {
                    inner: body,
                    _in_flight: in_flight,
                }),
            ))
        })
    }
}

/// A request in flight until dropped (with its response body, once sent).
struct InFlight(Arc<Activity>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.request_finished();
    }
}

/// A response body that keeps its request counted in flight until it is dropped.
struct Counted {
    inner: Body,
    _in_flight: InFlight,
}

impl HttpBody for Counted {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        Pin::new(&mut self.inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// A request body that fails when it arrives slower than a minimum average rate over
/// the time the server spends waiting for it.
struct RateFloor<B> {
    inner: B,
    /// Bytes per second; 0 turns the floor off.
    min_rate: u64,
    window: Duration,
    /// Time waited for the client in the current window, before `waiting_since`.
    waited: Duration,
    /// Bytes received in the current window.
    received: u64,
    /// Since when the server has been waiting, if it is now.
    waiting_since: Option<tokio::time::Instant>,
    timer: Option<Pin<Box<tokio::time::Sleep>>>,
    /// Set once the whole body has been read.
    read_to_end: Option<Arc<AtomicBool>>,
}

impl<B> RateFloor<B> {
    fn new(inner: B, min_rate: u64, window: Duration) -> RateFloor<B> {
        RateFloor {
            inner,
            min_rate,
            window: window.max(Duration::from_millis(100)),
            waited: Duration::ZERO,
            received: 0,
            waiting_since: None,
            timer: None,
            read_to_end: None,
        }
    }

    /// Closes the window if the server has waited a whole one: too slow is an error,
    /// otherwise a new window starts.
    fn check(&mut self, now: tokio::time::Instant) -> Result<(), BoxError> {
        let waiting = self
            .waiting_since
            .map_or(Duration::ZERO, |since| now - since);
        if self.waited + waiting < self.window {
            return Ok(());
        }
        let needed = (self.min_rate as f64 * self.window.as_secs_f64()) as u64;
        if self.received < needed {
            return Err(Box::new(io::Error::new(
                io::ErrorKind::TimedOut,
                format!(
                    "the request body arrived slower than {} bytes per second",
                    self.min_rate
                ),
            )));
        }
        self.waited = Duration::ZERO;
        self.received = 0;
        if self.waiting_since.is_some() {
            self.waiting_since = Some(now);
        }
        Ok(())
    }
}

impl<B> HttpBody for RateFloor<B>
where
    B: HttpBody<Data = Bytes> + Unpin,
    B::Error: Into<BoxError>,
{
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = &mut *self;
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(frame) => {
                if (frame.is_none() || this.inner.is_end_stream())
                    && let Some(done) = &this.read_to_end
                {
                    done.store(true, Ordering::Release);
                }
                if this.min_rate > 0 {
                    let now = tokio::time::Instant::now();
                    if let Some(since) = this.waiting_since.take() {
                        this.waited += now - since;
                    }
                    if let Some(Ok(frame)) = &frame
                        && let Some(data) = frame.data_ref()
                    {
                        this.received += data.len() as u64;
                    }
                    if let Err(e) = this.check(now) {
                        return Poll::Ready(Some(Err(e)));
                    }
                }
                Poll::Ready(frame.map(|r| r.map_err(Into::into)))
            }
            Poll::Pending if this.min_rate == 0 => Poll::Pending,
            Poll::Pending => {
                let now = tokio::time::Instant::now();
                this.waiting_since.get_or_insert(now);
                if let Err(e) = this.check(now) {
                    return Poll::Ready(Some(Err(e)));
                }
                let waiting = this
                    .waiting_since
                    .map_or(Duration::ZERO, |since| now - since);
                let left = this.window.saturating_sub(this.waited + waiting);
                let deadline = now + left;
                let timer = this
                    .timer
                    .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(deadline)));
                timer.as_mut().reset(deadline);
                // Registers the wake-up; when it fires, the next poll closes the window.
                if timer.as_mut().poll(cx).is_ready() {
                    cx.waker().wake_by_ref();
                }
                Poll::Pending
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn limits() -> Limits {
        Limits {
            header_timeout: Duration::from_millis(200),
            idle_timeout: Duration::from_millis(300),
            send_timeout: Duration::from_millis(400),
            ..Limits::default()
        }
    }

    #[test]
    fn the_watchdog_knows_which_deadline_applies() {
        let limits = limits();
        let activity = Activity::new();
        assert_eq!(activity.expired(&limits), None);
        std::thread::sleep(Duration::from_millis(220));
        assert_eq!(
            activity.expired(&limits),
            Some("request headers took too long"),
            "the first request is awaited from the start"
        );
        activity.request_started();
        assert_eq!(
            activity.expired(&limits),
            None,
            "a request in flight is never cut"
        );
        activity.request_finished();
        std::thread::sleep(Duration::from_millis(220));
        assert_eq!(activity.expired(&limits), None, "idle, but not for long");
        std::thread::sleep(Duration::from_millis(100));
        assert_eq!(activity.expired(&limits), Some("idle between requests"));
        activity.bytes_read();
        assert_eq!(activity.expired(&limits), None, "a new request head began");
        activity.request_started();
        activity.write_blocked();
        std::thread::sleep(Duration::from_millis(420));
        assert_eq!(
            activity.expired(&limits),
            Some("the client stopped reading the response")
        );
        activity.write_progressed();
        assert_eq!(activity.expired(&limits), None);
    }

    #[test]
    fn admission_counts_per_address_and_overall() {
        let admission = Arc::new(Admission::new(&Limits {
            max_connections: 3,
            max_connections_per_address: 2,
            ..Limits::default()
        }));
        let a1 = admission.admit("a".into()).ok().unwrap();
        let _a2 = admission.admit("a".into()).ok().unwrap();
        assert!(matches!(admission.admit("a".into()), Err(Refusal::Address)));
        let _b1 = admission.admit("b".into()).ok().unwrap();
        assert!(matches!(admission.admit("c".into()), Err(Refusal::Full)));
        drop(a1);
        assert!(admission.admit("a".into()).is_ok());
    }

    #[tokio::test(start_paused = true)]
    async fn a_trickling_body_fails_and_a_steady_one_does_not() {
        use futures::{SinkExt, StreamExt};
        let (mut tx, rx) = futures::channel::mpsc::channel::<io::Result<Bytes>>(1);
        let body = Body::new(RateFloor::new(
            Body::from_stream(rx),
            100,
            Duration::from_secs(10),
        ));
        let reader = tokio::spawn(async move {
            let mut stream = body.into_data_stream();
            let mut total = 0;
            while let Some(chunk) = stream.next().await {
                match chunk {
                    Ok(bytes) => total += bytes.len(),
                    Err(e) => return Err((total, e.to_string())),
                }
            }
            Ok(total)
        });
        // 2,000 bytes in the first 10 s: fast enough. Then 10 bytes per 10 s: too slow.
        for _ in 0..10 {
            tx.send(Ok(Bytes::from(vec![0u8; 200]))).await.unwrap();
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
        tx.send(Ok(Bytes::from(vec![0u8; 10]))).await.unwrap();
        let outcome = reader.await.unwrap();
        let (received, why) = outcome.unwrap_err();
        assert_eq!(received, 2010);
        assert!(why.contains("slower than 100 bytes per second"), "{why}");
    }
}
