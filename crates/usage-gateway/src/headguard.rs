//! The request-head guard: every HTTP/1 request head on a connection is read and checked against
//! the gateway's own bounds before actix-http's codec sees it.
//!
//! actix-http's h1 codec has limits of its own that nothing configures (compile-time constants in
//! actix-http 3: more than 96 header lines, 128 KiB of head without its end, and the `http`
//! crate's 64 KiB request target). Past them it answers by itself: a bare 400 or 431 with no body,
//! content type or request id, no access-log line, and an `ERROR` log line per request. The guard
//! keeps every head that would get there away from the codec: it buffers a head until its end
//! (the codec can do nothing with part of one anyway), checks it, and hands it on only when it is
//! within the bounds; otherwise it ends the connection's input there, and once actix has answered
//! the requests before it and shuts the connection down, writes a problem+json 400/431 itself
//! (with an `x-request-id`, an access-log line and the HTTP metrics of any other request).
//!
//! The bounds are the gateway's `[server]` settings: more than `max_headers` header lines is 431;
//! a request line longer than `max_query_bytes` + 4 KiB is 400 naming `(query)`; header lines
//! taking more than `max_header_bytes` + 4 KiB on the wire (separators included) is 431. Heads
//! within them are checked again, exactly, by [`crate::limits::check`]. Config validation keeps
//! these bounds below the codec's. Heads are parsed with `httparse`, the codec's own parser; one
//! it cannot read goes to the codec as it is (which answers it with its own bare 400).
//!
//! Framing follows the codec's: after a head without a body the next head starts at once, after
//! one with a single valid `Content-Length` after that many bytes. A head with anything else that
//! frames a body (`Transfer-Encoding`, an upgrade, `CONNECT`, a malformed or repeated
//! `Content-Length`) ends the guarding of that connection: the rest goes to actix unread.
//!
//! Side effect: a head is handed on only whole, so actix's keep-alive timer (5 s) keeps running
//! while the next head on a connection is still arriving, where it used to stop at its first byte.

use std::future::Future;
use std::io;
use std::mem::MaybeUninit;
use std::pin::Pin;
use std::task::{Context, Poll, ready};
use std::time::{Duration, Instant};

use actix_web::rt::time::{Sleep, sleep};
use bytes::{Buf, Bytes, BytesMut};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use crate::config::ServerConfig;
use crate::error::{ApiError, PROBLEM_JSON, ParamError};

/// Room beyond `max_query_bytes` for the method, path and version of a request line, and beyond
/// `max_header_bytes` for the separators (`: `, line ends, optional whitespace) of header lines.
pub const HEAD_SLACK: usize = 4 * 1024;

/// The most header lines any configuration accepts (actix-http's own cap is 96).
pub const MAX_HEADER_LINES: usize = 96;

/// The largest `server.max_query_bytes` accepted: with [`HEAD_SLACK`], a request line stays
/// well within the 65 534 bytes the codec takes as a request target.
pub const QUERY_BYTES_CAP: usize = 32 * 1024;

/// The largest `server.max_header_bytes` accepted: with [`HEAD_SLACK`], a header line stays
/// within the 64 KiB the codec takes as a header name, and a whole head (with the longest
/// request line) within the 128 KiB it buffers.
pub const HEADER_BYTES_CAP: usize = 48 * 1024;

const _: () = assert!(
    QUERY_BYTES_CAP + HEAD_SLACK < 65_534
        && HEADER_BYTES_CAP + HEAD_SLACK < 65_535
        && QUERY_BYTES_CAP + HEADER_BYTES_CAP + 2 * HEAD_SLACK < 128 * 1024
);

/// How long, and for how many bytes, a refused connection's input is still read (and dropped)
/// after the answer: closing a socket with unread input resets it, which can destroy the answer
/// before the client has read it.
const DRAIN_TIME: Duration = Duration::from_secs(1);
const DRAIN_BYTES: usize = 256 * 1024;

/// How much is read from the socket at a time.
const READ_CHUNK: usize = 8 * 1024;

/// The bounds a request head is checked against, from `[server]`.
#[derive(Debug, Clone, Copy)]
pub struct HeadLimits {
    /// `server.max_headers`.
    pub max_headers: usize,
    /// `server.max_query_bytes` (named in the 400).
    pub max_query_bytes: usize,
    /// `server.max_header_bytes` (named in the 431).
    pub max_header_bytes: usize,
}

impl HeadLimits {
    /// The bounds of `server`.
    pub fn new(server: &ServerConfig) -> Self {
        Self {
            max_headers: server.max_headers.min(MAX_HEADER_LINES),
            max_query_bytes: server.max_query_bytes,
            max_header_bytes: server.max_header_bytes,
        }
    }

    /// The longest request line accepted on the wire (leading empty lines included).
    fn max_line(&self) -> usize {
        self.max_query_bytes + HEAD_SLACK
    }

    /// The most bytes the header lines of a head may take on the wire (final empty line included).
    fn max_header_section(&self) -> usize {
        self.max_header_bytes + HEAD_SLACK
    }
}

/// How the bytes after a head are framed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Body {
    /// No body: the next head follows at once.
    None,
    /// `Content-Length` bytes of body.
    Length(u64),
    /// Anything else (chunked, upgrade, `CONNECT`, a malformed or repeated `Content-Length`):
    /// the guard stops reading heads on this connection.
    Unframed,
}

/// What a head refused by the guard is answered with and logged as.
#[derive(Debug)]
pub struct Refusal {
    /// The problem.
    pub error: ApiError,
    /// The request method, when the start of the request line reads as one (`-` otherwise).
    pub method: String,
    /// The request path without its query (at most 256 bytes), likewise.
    pub path: String,
}

/// The verdict on the bytes buffered for one head.
#[derive(Debug)]
pub enum Verdict {
    /// Not a whole head yet, and within the bounds so far.
    Partial,
    /// A whole head of `len` bytes within the bounds.
    Complete {
        /// The head's length, its final empty line included.
        len: usize,
        /// How the bytes after it are framed.
        body: Body,
    },
    /// Refused.
    Refused(Refusal),
    /// Not HTTP/1 as `httparse` reads it: left to the codec, which answers it with its own 400
    /// and closes the connection.
    Malformed,
}

/// The checks on one head, kept between reads so each byte is looked at about once.
#[derive(Debug, Default)]
pub struct HeadScan {
    /// How many bytes of the head earlier calls saw.
    seen: usize,
    /// The end of the request line (after its `\n`), once seen.
    line_end: Option<usize>,
}

impl HeadScan {
    /// Checks `buf`, which starts at a head and holds everything read since (for a whole head,
    /// possibly more: a body or further requests). `buf` only ever grows between calls.
    pub fn check(&mut self, buf: &[u8], limits: &HeadLimits) -> Verdict {
        let from = self.seen.min(buf.len());
        self.seen = buf.len();
        let new_line = buf[from..].contains(&b'\n');
        if self.line_end.is_none() && new_line {
            // The request line ends at the first `\n` after any empty lines before it.
            let start = buf
                .iter()
                .position(|b| !matches!(b, b'\r' | b'\n'))
                .unwrap_or(buf.len());
            self.line_end = buf[start..]
                .iter()
                .position(|&b| b == b'\n')
                .map(|i| start + i + 1);
        }
        if new_line && self.line_end.is_some() {
            // Only a new line end can complete a head or add a header line: parse only then.
            let mut headers =
                [const { MaybeUninit::<httparse::Header<'_>>::uninit() }; MAX_HEADER_LINES];
            let mut req = httparse::Request::new(&mut []);
            match req.parse_with_uninit_headers(buf, &mut headers[..limits.max_headers]) {
                Ok(httparse::Status::Complete(len)) => {
                    if let Some(refusal) = over_size(buf, self.line_end, len, limits) {
                        return Verdict::Refused(refusal);
                    }
                    let body = framing(req.method, req.headers);
                    return Verdict::Complete { len, body };
                }
                Ok(httparse::Status::Partial) => {}
                Err(httparse::Error::TooManyHeaders) => {
                    return Verdict::Refused(refusal(
                        buf,
                        ApiError::HeadersTooLarge(format!(
                            "the request has more than {0} header lines; at most {0} are accepted",
                            limits.max_headers
                        )),
                    ));
                }
                // Not HTTP/1: the codec refuses it the same way (its own bare 400).
                Err(_) => return Verdict::Malformed,
            }
        }
        // A part of a head: everything in `buf` belongs to it.
        match over_size(buf, self.line_end, buf.len(), limits) {
            Some(refusal) => Verdict::Refused(refusal),
            None => Verdict::Partial,
        }
    }
}

/// Refuses a head of `len` bytes (so far) when its request line (ending at `line_end`, or not
/// ended yet) or its header lines are over their bound.
fn over_size(
    buf: &[u8],
    line_end: Option<usize>,
    len: usize,
    limits: &HeadLimits,
) -> Option<Refusal> {
    let line = line_end.unwrap_or(len);
    if line > limits.max_line() {
        return Some(refusal(
            buf,
            ApiError::BadRequest(vec![ParamError::new(
                "(query)",
                format!(
                    "the request line takes more than {} bytes; the query string may have at most {}",
                    limits.max_line(),
                    limits.max_query_bytes
                ),
            )]),
        ));
    }
    if len - line > limits.max_header_section() {
        return Some(refusal(
            buf,
            ApiError::HeadersTooLarge(format!(
                "the request header lines take more than {} bytes; at most {} bytes of header \
                 names and values are accepted",
                limits.max_header_section(),
                limits.max_header_bytes
            )),
        ));
    }
    None
}

/// A refusal of the head at the start of `buf`, with its method and path for the log when the
/// start of its request line reads as one.
fn refusal(buf: &[u8], error: ApiError) -> Refusal {
    let (method, path) = request_line(&buf[..buf.len().min(1024)])
        .unwrap_or_else(|| ("-".to_owned(), "-".to_owned()));
    Refusal {
        error,
        method,
        path,
    }
}

/// The method and path (no query, at most 256 bytes) at the start of a request line, when they
/// are plain.
fn request_line(start: &[u8]) -> Option<(String, String)> {
    let start = start.trim_ascii_start();
    let line = start.split(|&b| b == b'\n').next()?;
    let line = String::from_utf8_lossy(line);
    let mut parts = line.split(' ');
    let method = parts
        .next()
        .filter(|m| !m.is_empty() && m.len() <= 16 && m.bytes().all(|b| b.is_ascii_alphabetic()))?;
    let target = parts.next()?;
    let path = target.split('?').next().unwrap_or("");
    let path = &path[..path.floor_char_boundary(256)];
    if path.is_empty() || !path.bytes().all(|b| b.is_ascii_graphic()) {
        return None;
    }
    Some((method.to_owned(), path.to_owned()))
}

/// How the bytes after a parsed head are framed, as actix-http frames them for heads it accepts.
fn framing(method: Option<&str>, headers: &[httparse::Header<'_>]) -> Body {
    if method == Some("CONNECT") {
        return Body::Unframed;
    }
    let mut length = None;
    for h in headers {
        if h.name.eq_ignore_ascii_case("transfer-encoding")
            || h.name.eq_ignore_ascii_case("upgrade")
        {
            return Body::Unframed;
        }
        if h.name.eq_ignore_ascii_case("content-length") {
            let value = std::str::from_utf8(h.value).map(str::trim);
            match value {
                Ok(v)
                    if length.is_none()
                        && !v.is_empty()
                        && v.bytes().all(|b| b.is_ascii_digit()) =>
                {
                    match v.parse::<u64>() {
                        Ok(n) => length = Some(n),
                        Err(_) => return Body::Unframed,
                    }
                }
                _ => return Body::Unframed,
            }
        }
    }
    match length {
        None | Some(0) => Body::None,
        Some(n) => Body::Length(n),
    }
}

/// Where the guard is on its connection's input.
#[derive(Debug)]
enum State {
    /// Buffering a head.
    Head(HeadScan),
    /// Passing this many more body bytes.
    Body(u64),
    /// No longer guarding: everything is passed on.
    Unguarded,
    /// A head was refused; the answer goes out when actix shuts the connection down.
    Refused(Answer),
}

/// The answer to a refused head and how far writing it got.
#[derive(Debug)]
struct Answer {
    bytes: Bytes,
    written: usize,
    stage: Stage,
}

#[derive(Debug)]
enum Stage {
    Write,
    Flush,
    Shutdown,
    Drain { until: Pin<Box<Sleep>>, left: usize },
    Done,
}

/// An I/O stream (a `TcpStream`) whose request heads are checked before anything reads them.
#[derive(Debug)]
pub struct HeadGuard<T> {
    io: T,
    limits: HeadLimits,
    /// Read from `io`, not yet handed on: `buf[..ready]` is checked, the rest is the head
    /// being buffered (or, in `Body`, not yet counted).
    buf: BytesMut,
    ready: usize,
    state: State,
    /// `io` reached its end.
    eof: bool,
}

impl<T> HeadGuard<T> {
    /// Guards `io` with `limits`.
    pub fn new(io: T, limits: HeadLimits) -> Self {
        Self {
            io,
            limits,
            buf: BytesMut::new(),
            ready: 0,
            state: State::Head(HeadScan::default()),
            eof: false,
        }
    }

    /// The guarded stream.
    pub fn get_ref(&self) -> &T {
        &self.io
    }

    /// Moves what the buffered bytes allow from "read" to "checked", as far as the state goes.
    fn advance(&mut self) {
        loop {
            let pending = &self.buf[self.ready..];
            if pending.is_empty() {
                return;
            }
            match &mut self.state {
                State::Head(scan) => match scan.check(pending, &self.limits) {
                    Verdict::Partial => return,
                    Verdict::Complete { len, body } => {
                        self.ready += len;
                        self.state = match body {
                            Body::None => State::Head(HeadScan::default()),
                            Body::Length(n) => State::Body(n),
                            Body::Unframed => State::Unguarded,
                        };
                    }
                    Verdict::Refused(refusal) => {
                        self.buf.truncate(self.ready);
                        self.state = State::Refused(Answer::new(&refusal));
                        return;
                    }
                    Verdict::Malformed => self.state = State::Unguarded,
                },
                State::Body(left) => {
                    let n = usize::try_from(*left)
                        .unwrap_or(usize::MAX)
                        .min(pending.len());
                    self.ready += n;
                    *left -= n as u64;
                    if *left == 0 {
                        self.state = State::Head(HeadScan::default());
                    }
                }
                State::Unguarded => self.ready = self.buf.len(),
                State::Refused(_) => return,
            }
        }
    }
}

impl Answer {
    /// Builds the problem+json answer to `refusal`, and logs and counts it as a request.
    fn new(refusal: &Refusal) -> Self {
        let started = Instant::now();
        let id = crate::obs::new_request_id();
        let mut problem = refusal.error.problem();
        problem.instance = Some(crate::obs::instance_uri(&id));
        let body = serde_json::to_vec(&problem).unwrap_or_default();
        let status = actix_web::ResponseError::status_code(&refusal.error);
        let head = format!(
            "HTTP/1.1 {} {}\r\ncontent-type: {PROBLEM_JSON}\r\ncache-control: no-store\r\n\
             x-request-id: {id}\r\nconnection: close\r\ncontent-length: {}\r\ndate: {}\r\n\r\n",
            status.as_str(),
            status.canonical_reason().unwrap_or(""),
            body.len(),
            chrono::Utc::now().format("%a, %d %b %Y %H:%M:%S GMT"),
        );
        let mut bytes = BytesMut::with_capacity(head.len() + body.len());
        bytes.extend_from_slice(head.as_bytes());
        bytes.extend_from_slice(&body);
        crate::obs::access_log(
            &id,
            &refusal.method,
            &refusal.path,
            crate::obs::HEAD_ROUTE,
            status.as_u16(),
            started,
            "-",
        );
        Self {
            bytes: bytes.freeze(),
            written: 0,
            stage: Stage::Write,
        }
    }
}

impl<T: AsyncRead + AsyncWrite + Unpin> AsyncRead for HeadGuard<T> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        out: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        loop {
            if this.ready > 0 {
                let n = this.ready.min(out.remaining());
                out.put_slice(&this.buf[..n]);
                this.buf.advance(n);
                this.ready -= n;
                return Poll::Ready(Ok(()));
            }
            if this.eof || matches!(this.state, State::Refused(_)) {
                // The end of input (a refused head and what followed it are never handed on).
                return Poll::Ready(Ok(()));
            }
            if this.buf.is_empty() && matches!(this.state, State::Unguarded) {
                return Pin::new(&mut this.io).poll_read(cx, out);
            }
            this.buf.reserve(READ_CHUNK);
            let n = ready!(tokio_util::io::poll_read_buf(
                Pin::new(&mut this.io),
                cx,
                &mut this.buf
            ))?;
            if n == 0 {
                // The client ended its side; a head it left unfinished is dropped, as the codec
                // would drop it.
                this.eof = true;
                if !matches!(this.state, State::Head(_)) {
                    this.ready = this.buf.len();
                }
                continue;
            }
            this.advance();
        }
    }
}

impl<T: AsyncRead + AsyncWrite + Unpin> AsyncWrite for HeadGuard<T> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write(cx, data)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_flush(cx)
    }

    /// Shuts the stream down; after a refused head, first writes its answer, and afterwards
    /// drops what the client still sends for a moment.
    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let State::Refused(answer) = &mut this.state else {
            return Pin::new(&mut this.io).poll_shutdown(cx);
        };
        let mut io = Pin::new(&mut this.io);
        loop {
            match &mut answer.stage {
                Stage::Write => {
                    while answer.written < answer.bytes.len() {
                        let n =
                            ready!(io.as_mut().poll_write(cx, &answer.bytes[answer.written..]))?;
                        if n == 0 {
                            return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
                        }
                        answer.written += n;
                    }
                    answer.stage = Stage::Flush;
                }
                Stage::Flush => {
                    ready!(io.as_mut().poll_flush(cx))?;
                    answer.stage = Stage::Shutdown;
                }
                Stage::Shutdown => {
                    ready!(io.as_mut().poll_shutdown(cx))?;
                    answer.stage = Stage::Drain {
                        until: Box::pin(sleep(DRAIN_TIME)),
                        left: DRAIN_BYTES,
                    };
                }
                Stage::Drain { until, left } => {
                    let mut scratch = [0u8; 4096];
                    loop {
                        let mut rb = ReadBuf::new(&mut scratch);
                        match io.as_mut().poll_read(cx, &mut rb) {
                            Poll::Ready(Ok(())) if !rb.filled().is_empty() => {
                                *left = left.saturating_sub(rb.filled().len());
                                if *left == 0 {
                                    break;
                                }
                            }
                            Poll::Ready(_) => break,
                            Poll::Pending => {
                                if until.as_mut().poll(cx).is_ready() {
                                    break;
                                }
                                return Poll::Pending;
                            }
                        }
                    }
                    answer.stage = Stage::Done;
                }
                Stage::Done => return Poll::Ready(Ok(())),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::VecDeque;
    use std::sync::{Arc, Mutex};

    use super::*;

    fn limits() -> HeadLimits {
        HeadLimits::new(&ServerConfig::default())
    }

    fn head(extra: &str) -> String {
        format!("GET /v1/usage?a=b HTTP/1.1\r\nhost: x\r\n{extra}\r\n")
    }

    fn lines(n: usize) -> String {
        (0..n)
            .map(|i| format!("x-h{i}: 1\r\n"))
            .collect::<Vec<_>>()
            .concat()
    }

    /// Feeds `bytes` to one scan `chunk` bytes at a time; returns the first verdict that is not
    /// `Partial` (or `Partial`).
    fn scan(bytes: &[u8], chunk: usize) -> Verdict {
        let mut s = HeadScan::default();
        let mut end = 0;
        while end < bytes.len() {
            end = (end + chunk).min(bytes.len());
            match s.check(&bytes[..end], &limits()) {
                Verdict::Partial => {}
                v => return v,
            }
        }
        Verdict::Partial
    }

    fn complete(v: &Verdict) -> Option<(usize, Body)> {
        match v {
            Verdict::Complete { len, body } => Some((*len, *body)),
            _ => None,
        }
    }

    fn refused(v: Verdict) -> Refusal {
        match v {
            Verdict::Refused(r) => r,
            other => panic!("not refused: {other:?}"),
        }
    }

    #[test]
    fn heads_within_the_bounds_pass_with_their_framing() {
        for chunk in [1, 7, 4096] {
            let h = head("");
            assert_eq!(
                complete(&scan(h.as_bytes(), chunk)),
                Some((h.len(), Body::None))
            );
            // A pipelined request after it is not part of it.
            let two = format!("{h}{h}");
            assert_eq!(
                complete(&scan(two.as_bytes(), chunk)),
                Some((h.len(), Body::None))
            );
            let h = head(&lines(63)); // 64 lines with `host`
            assert_eq!(
                complete(&scan(h.as_bytes(), chunk)),
                Some((h.len(), Body::None))
            );
            // Empty lines before a request line are skipped, as the codec skips them.
            let h = format!("\r\n\r\n{}", head(""));
            assert_eq!(
                complete(&scan(h.as_bytes(), chunk)),
                Some((h.len(), Body::None))
            );
        }
        for (extra, body) in [
            ("content-length: 12\r\n", Body::Length(12)),
            ("Content-Length:  7 \r\n", Body::Length(7)),
            ("content-length: 0\r\n", Body::None),
            ("content-length: 1\r\ncontent-length: 1\r\n", Body::Unframed),
            ("content-length: +1\r\n", Body::Unframed),
            (
                "content-length: 99999999999999999999999\r\n",
                Body::Unframed,
            ),
            ("transfer-encoding: chunked\r\n", Body::Unframed),
            (
                "connection: upgrade\r\nupgrade: websocket\r\n",
                Body::Unframed,
            ),
        ] {
            let h = head(extra);
            assert_eq!(
                complete(&scan(h.as_bytes(), 4096)),
                Some((h.len(), body)),
                "{extra}"
            );
        }
        let connect = "CONNECT x:443 HTTP/1.1\r\nhost: x\r\n\r\n";
        assert_eq!(
            complete(&scan(connect.as_bytes(), 4096)),
            Some((connect.len(), Body::Unframed))
        );
        let bad = "GET / HTTP/1.1\r\nbad header: x\r\n\r\n";
        assert!(matches!(scan(bad.as_bytes(), 4096), Verdict::Malformed));
    }

    #[test]
    fn heads_over_the_bounds_are_refused_naming_them() {
        for chunk in [1, 1000, 64 * 1024] {
            let r = refused(scan(head(&lines(64)).as_bytes(), chunk));
            assert!(
                matches!(&r.error, ApiError::HeadersTooLarge(d) if d.contains("64 header lines"))
            );
            assert_eq!((r.method.as_str(), r.path.as_str()), ("GET", "/v1/usage"));

            let big = head(&format!("x-big: {}\r\n", "b".repeat(70 * 1024)));
            let r = refused(scan(big.as_bytes(), chunk));
            assert!(matches!(&r.error, ApiError::HeadersTooLarge(d) if d.contains("16384")));

            let long = format!(
                "GET /v1/usage?{} HTTP/1.1\r\nhost: x\r\n\r\n",
                "q".repeat(20 * 1024)
            );
            let r = refused(scan(long.as_bytes(), chunk));
            assert!(
                matches!(&r.error, ApiError::BadRequest(e) if e[0].parameter == "(query)" && e[0].message.contains("8192"))
            );
            assert_eq!((r.method.as_str(), r.path.as_str()), ("GET", "/v1/usage"));

            // Endless empty lines, or a line without end, are a request line over its bound.
            let empty = "\r\n".repeat(8 * 1024);
            assert!(matches!(
                refused(scan(empty.as_bytes(), chunk)).error,
                ApiError::BadRequest(_)
            ));
        }
        // Up to the bounds, nothing is refused: 16 KiB of header values plus separators.
        let at = head(&format!("x-big: {}\r\n", "b".repeat(16 * 1024)));
        assert!(complete(&scan(at.as_bytes(), 4096)).is_some());
        let at = format!(
            "GET /v1/usage?{} HTTP/1.1\r\nhost: x\r\n\r\n",
            "q".repeat(8 * 1024)
        );
        assert!(complete(&scan(at.as_bytes(), 4096)).is_some());
    }

    /// A socket that hands out `input` in the given pieces, then its end, and keeps what is
    /// written to it.
    #[derive(Default)]
    struct Mock {
        input: VecDeque<Vec<u8>>,
        written: Vec<u8>,
        shut: bool,
    }

    impl AsyncRead for Mock {
        fn poll_read(
            mut self: Pin<&mut Self>,
            _: &mut Context<'_>,
            out: &mut ReadBuf<'_>,
        ) -> Poll<io::Result<()>> {
            if let Some(mut piece) = self.input.pop_front() {
                let n = piece.len().min(out.remaining());
                out.put_slice(&piece[..n]);
                if n < piece.len() {
                    self.input.push_front(piece.split_off(n));
                }
            }
            Poll::Ready(Ok(()))
        }
    }

    impl AsyncWrite for Mock {
        fn poll_write(
            mut self: Pin<&mut Self>,
            _: &mut Context<'_>,
            data: &[u8],
        ) -> Poll<io::Result<usize>> {
            self.written.extend_from_slice(data);
            Poll::Ready(Ok(data.len()))
        }
        fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
            Poll::Ready(Ok(()))
        }
        fn poll_shutdown(mut self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
            self.shut = true;
            Poll::Ready(Ok(()))
        }
    }

    /// Reads everything the guard hands on, then shuts it down; returns what was handed on and
    /// what was written.
    fn run(pieces: &[&[u8]]) -> (Vec<u8>, Mock) {
        let mock = Mock {
            input: pieces.iter().map(|p| p.to_vec()).collect(),
            ..Mock::default()
        };
        let mut guard = HeadGuard::new(mock, limits());
        let mut cx = Context::from_waker(std::task::Waker::noop());
        let mut seen = Vec::new();
        loop {
            let mut space = [0u8; 2048];
            let mut rb = ReadBuf::new(&mut space);
            match Pin::new(&mut guard).poll_read(&mut cx, &mut rb) {
                Poll::Ready(Ok(())) if rb.filled().is_empty() => break,
                Poll::Ready(Ok(())) => seen.extend_from_slice(rb.filled()),
                other => panic!("{other:?}"),
            }
        }
        assert!(Pin::new(&mut guard).poll_shutdown(&mut cx).is_ready());
        (seen, guard.io)
    }

    #[actix_web::test]
    async fn requests_before_a_refused_head_pass_and_its_answer_closes_the_connection() {
        let good = head("");
        let body = "a\n".repeat(200); // a body with more lines than any head may have
        let with_body = format!(
            "{}{body}",
            head(&format!("content-length: {}\r\n", body.len()))
        );
        let over = head(&lines(100));
        let input = format!("{good}{with_body}{good}{over}{good}");
        // In one piece, and in pieces that split heads and bodies anywhere.
        for pieces in [
            vec![input.as_bytes()],
            input.as_bytes().chunks(5).collect::<Vec<_>>(),
        ] {
            let (seen, io) = run(&pieces);
            assert_eq!(
                String::from_utf8(seen).unwrap(),
                format!("{good}{with_body}{good}")
            );
            let answer = String::from_utf8(io.written).unwrap();
            let (head, body) = answer.split_once("\r\n\r\n").unwrap();
            assert!(
                head.starts_with("HTTP/1.1 431 Request Header Fields Too Large\r\n"),
                "{head}"
            );
            assert!(head.contains("\r\ncontent-type: application/problem+json\r\n"));
            assert!(head.contains("\r\nconnection: close\r\n"));
            assert!(head.contains(&format!("\r\ncontent-length: {}\r\n", body.len())));
            let id = head
                .lines()
                .find_map(|l| l.strip_prefix("x-request-id: "))
                .unwrap();
            let problem: serde_json::Value = serde_json::from_str(body).unwrap();
            assert_eq!(problem["status"], 431);
            assert_eq!(problem["instance"], format!("urn:request-id:{id}"));
            assert!(io.shut);
        }
        // Without a refusal, shutting down writes nothing.
        let (seen, io) = run(&[good.as_bytes()]);
        assert_eq!(seen, good.as_bytes());
        assert!(io.written.is_empty() && io.shut);
    }

    #[test]
    fn a_refused_head_has_its_access_log_line() {
        #[derive(Clone, Default)]
        struct Lines(Arc<Mutex<Vec<u8>>>);
        impl io::Write for Lines {
            fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
                self.0.lock().unwrap().extend_from_slice(buf);
                Ok(buf.len())
            }
            fn flush(&mut self) -> io::Result<()> {
                Ok(())
            }
        }
        let log = Lines::default();
        let writer = log.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_writer(move || writer.clone())
            .with_ansi(false)
            .finish();
        // A second, idle dispatcher: see `tests/gateway/common.rs`, `scoped_subscriber`.
        let _idle = tracing::Dispatch::new(tracing::subscriber::NoSubscriber::default());
        let _guard = tracing::subscriber::set_default(subscriber);
        let r = refused(scan(head(&lines(70)).as_bytes(), 4096));
        drop(Answer::new(&r));
        let text = String::from_utf8(log.0.lock().unwrap().clone()).unwrap();
        assert!(text.contains(" INFO "), "{text}");
        for field in [
            "method=\"GET\"",
            "path=\"/v1/usage\"",
            "route=\"(head)\"",
            "status=431",
        ] {
            assert!(text.contains(field), "{field}: {text}");
        }
    }
}
