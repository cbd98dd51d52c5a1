//! The log sink: lines are collected in memory and written to the output in batches.
//!
//! A request appends its line under a short lock: no system call and no write. The line that
//! fills a batch ([`BATCH_BYTES`]) queues it and wakes a flusher thread (one wake-up per batch,
//! not per line), which writes the queued batches one at a time, the batch being filled every
//! [`FLUSH_INTERVAL`], and everything once more when the [`FlushGuard`] drops at exit. Only
//! the flusher writes, so a blocked output (a stderr pipe nobody reads for a while) holds up
//! the flusher and no request: batches queue in memory meanwhile. Nothing is dropped: a line
//! that would take the pending lines past [`MAX_PENDING_BYTES`] waits until the flusher has
//! taken a batch, so an output slower than the logging throttles requests batch by batch.
//!
//! This replaces `tracing-appender`'s non-blocking writer, whose channel wakes its writer thread
//! for nearly every line under a steady load: on two cores those wake-ups (a futex, a yield and
//! a `write` per line) cost more than answering a cached request. The first version of this
//! sink had the request that filled a batch write it: when stderr stopped being read, every
//! worker stopped answering after one batch (BENCHMARKS.md, "Socket timeouts under load").
//!
//! [`JsonLine`] formats `--log-format json` lines: the same fields as `tracing-subscriber`'s JSON
//! format (flattened event fields, the current span's fields under `span`), written straight
//! into the line instead of through a serde map, which made the access log line a seventh of a
//! cached request's cost.

use std::collections::VecDeque;
use std::fmt::Write as _;
use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use tracing::field::{Field, Visit};
use tracing::{Event, Subscriber};
use tracing_subscriber::field::RecordFields;
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields, FormattedFields, MakeWriter};
use tracing_subscriber::registry::LookupSpan;

/// A batch this large is queued for the flusher at once.
pub const BATCH_BYTES: usize = 64 * 1024;

/// The longest a line waits in a batch.
pub const FLUSH_INTERVAL: Duration = Duration::from_millis(100);

/// The most bytes of lines kept while the output is blocked: about 60 000 access-log lines in
/// JSON (80 000 in the default format), over a second of logging at 50 000 requests/s. A line
/// that would go past it waits for the flusher. Memory that only a blocked output fills.
pub const MAX_PENDING_BYTES: usize = 16 * 1024 * 1024;

type Output = Box<dyn Write + Send>;

/// The lines not written yet.
struct Pending {
    /// The batch lines are appended to.
    batch: Vec<u8>,
    /// Full batches waiting for the flusher, oldest first.
    full: VecDeque<Vec<u8>>,
    /// Bytes in `full` and `batch`.
    bytes: usize,
}

impl Pending {
    /// Takes every pending line, oldest first.
    fn take_all(&mut self) -> Vec<Vec<u8>> {
        let mut all: Vec<Vec<u8>> = self.full.drain(..).collect();
        if !self.batch.is_empty() {
            all.push(std::mem::replace(
                &mut self.batch,
                Vec::with_capacity(BATCH_BYTES),
            ));
        }
        self.bytes = 0;
        all
    }
}

struct Shared {
    pending: Mutex<Pending>,
    output: Mutex<Output>,
    /// Set under the `pending` lock at exit: lines are written through from then on.
    stop: AtomicBool,
    /// Wakes the flusher: a full batch, or exit.
    wake: Condvar,
    /// Wakes lines waiting for room once the flusher took a batch.
    room: Condvar,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while holding a lock leaves bytes, never a broken invariant: keep logging.
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Writes batches taken while `pending` was locked. The output lock is taken before the
/// `pending` lock is released, so batches reach the output in the order they were taken. A
/// failing output (a closed stderr) loses those lines rather than failing anything else.
fn write_taken(output: &Mutex<Output>, pending: MutexGuard<'_, Pending>, taken: &[Vec<u8>]) {
    let mut out = lock(output);
    drop(pending);
    if !taken.is_empty() {
        for batch in taken {
            let _ = out.write_all(batch);
        }
        let _ = out.flush();
    }
}

impl Shared {
    /// Takes every pending line and writes it.
    fn flush(&self) {
        let mut pending = lock(&self.pending);
        let taken = pending.take_all();
        self.room.notify_all();
        write_taken(&self.output, pending, &taken);
    }

    /// The flusher thread, until exit: writes each full batch as soon as there is one, one at
    /// a time (so that lines waiting for room get it back batch by batch, as a slow output
    /// takes them), and the batch being filled every `interval`.
    fn run_flusher(&self, interval: Duration) {
        loop {
            let pending = lock(&self.pending);
            let (mut pending, _) = self
                .wake
                .wait_timeout_while(pending, interval, |p| {
                    p.full.is_empty() && !self.stop.load(Ordering::Acquire)
                })
                .unwrap_or_else(PoisonError::into_inner);
            let taken = match pending.full.pop_front() {
                Some(batch) => {
                    pending.bytes -= batch.len();
                    vec![batch]
                }
                None => pending.take_all(),
            };
            self.room.notify_all();
            write_taken(&self.output, pending, &taken);
            if self.stop.load(Ordering::Acquire) {
                return;
            }
        }
    }
}

/// A [`MakeWriter`] that appends each formatted line to the shared batch.
#[derive(Clone)]
pub struct BatchWriter {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for BatchWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BatchWriter").finish_non_exhaustive()
    }
}

/// Flushes the last lines and stops the flusher thread when dropped; keep it until exit.
#[must_use = "dropping the guard stops the flusher; keep it until exit"]
pub struct FlushGuard {
    shared: Arc<Shared>,
    flusher: Option<std::thread::JoinHandle<()>>,
}

impl std::fmt::Debug for FlushGuard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FlushGuard").finish_non_exhaustive()
    }
}

impl BatchWriter {
    /// Starts the flusher thread for `output` and returns the writer and its guard.
    pub fn new(output: impl Write + Send + 'static) -> std::io::Result<(Self, FlushGuard)> {
        Self::with_interval(output, FLUSH_INTERVAL)
    }

    /// [`BatchWriter::new`] with a flush interval other than [`FLUSH_INTERVAL`].
    fn with_interval(
        output: impl Write + Send + 'static,
        interval: Duration,
    ) -> std::io::Result<(Self, FlushGuard)> {
        let shared = Arc::new(Shared {
            pending: Mutex::new(Pending {
                batch: Vec::with_capacity(BATCH_BYTES),
                full: VecDeque::new(),
                bytes: 0,
            }),
            output: Mutex::new(Box::new(output)),
            stop: AtomicBool::new(false),
            wake: Condvar::new(),
            room: Condvar::new(),
        });
        let flusher = {
            let shared = Arc::clone(&shared);
            std::thread::Builder::new()
                .name("log-flusher".into())
                .spawn(move || shared.run_flusher(interval))?
        };
        Ok((
            Self {
                shared: Arc::clone(&shared),
            },
            FlushGuard {
                shared,
                flusher: Some(flusher),
            },
        ))
    }

    /// Writes whatever is pending now (tests; the flusher does it on its own).
    pub fn flush_now(&self) {
        self.shared.flush();
    }
}

impl Drop for FlushGuard {
    fn drop(&mut self) {
        // Under the `pending` lock, so that the flusher cannot miss it between its check and its
        // wait.
        {
            let _pending = lock(&self.shared.pending);
            self.shared.stop.store(true, Ordering::Release);
        }
        self.shared.wake.notify_all();
        self.shared.room.notify_all();
        if let Some(t) = self.flusher.take() {
            let _ = t.join();
        }
        self.shared.flush();
    }
}

/// One event's writer: appends to the batch.
#[derive(Debug)]
pub struct LineWriter<'a> {
    writer: &'a BatchWriter,
}

impl Write for LineWriter<'_> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let shared = &self.writer.shared;
        let mut pending = lock(&shared.pending);
        while pending.bytes >= MAX_PENDING_BYTES && !shared.stop.load(Ordering::Acquire) {
            pending = shared
                .room
                .wait(pending)
                .unwrap_or_else(PoisonError::into_inner);
        }
        pending.batch.extend_from_slice(buf);
        pending.bytes += buf.len();
        if shared.stop.load(Ordering::Acquire) {
            // The flusher has stopped (exit): write through, after whatever is pending.
            let taken = pending.take_all();
            write_taken(&shared.output, pending, &taken);
        } else if pending.batch.len() >= BATCH_BYTES {
            let full = std::mem::replace(&mut pending.batch, Vec::with_capacity(BATCH_BYTES));
            pending.full.push_back(full);
            shared.wake.notify_one();
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> MakeWriter<'a> for BatchWriter {
    type Writer = LineWriter<'a>;

    fn make_writer(&'a self) -> Self::Writer {
        LineWriter { writer: self }
    }
}

/// Installs the process-wide subscriber: `RUST_LOG`-style filter (default `info`), `json` lines
/// ([`JsonLine`]) or the human `pretty` format, written to `writer`.
pub fn install<W>(format: &str, writer: W)
where
    W: for<'w> MakeWriter<'w> + Send + Sync + 'static,
{
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(writer);
    if format == "json" {
        builder.fmt_fields(JsonLine).event_format(JsonLine).init();
    } else {
        // Colours only for a terminal: a file or a log collector would get escape codes.
        builder
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .init();
    }
}

/// Returns a JSON-lines subscriber writing to `writer`, for tests that capture what the
/// binary would log (`--log-format json`).
pub fn json_subscriber<W>(writer: W) -> impl Subscriber + Send + Sync
where
    W: for<'w> MakeWriter<'w> + Send + Sync + 'static,
{
    tracing_subscriber::fmt()
        .with_writer(writer)
        .fmt_fields(JsonLine)
        .event_format(JsonLine)
        .finish()
}

/// One JSON object per event: `timestamp` (RFC 3339, UTC, microseconds), `level`, the event's
/// fields (`message` among them), `target`, and the current span's `name` and fields under
/// `span`, e.g. the request id. Also the span field formatter, so that span fields are written
/// once, as JSON, when the span is made.
#[derive(Debug, Clone, Copy, Default)]
pub struct JsonLine;

impl<S, N> FormatEvent<S, N> for JsonLine
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> std::fmt::Result {
        let meta = event.metadata();
        writer.write_str("{\"timestamp\":\"")?;
        write_timestamp(&mut writer, chrono::Utc::now())?;
        write!(writer, "\",\"level\":\"{}\"", meta.level())?;
        let mut fields = JsonVisitor {
            out: &mut writer,
            result: Ok(()),
        };
        event.record(&mut fields);
        fields.result?;
        writer.write_str(",\"target\":")?;
        write_json_str(&mut writer, meta.target())?;
        if let Some(span) = ctx.lookup_current() {
            writer.write_str(",\"span\":{\"name\":")?;
            write_json_str(&mut writer, span.name())?;
            // The span's fields, as `JsonLine` formatted them: `,"key":value` each.
            if let Some(f) = span.extensions().get::<FormattedFields<N>>() {
                writer.write_str(&f.fields)?;
            }
            writer.write_char('}')?;
        }
        writer.write_str("}\n")
    }
}

/// Writes `at` as RFC 3339 in UTC with microseconds (`2026-12-02T07:10:11.123456Z`), the
/// date and time of day formatted once per second and thread.
fn write_timestamp(w: &mut Writer<'_>, at: chrono::DateTime<chrono::Utc>) -> std::fmt::Result {
    thread_local! {
        static SECOND: std::cell::RefCell<(i64, String)> =
            const { std::cell::RefCell::new((i64::MIN, String::new())) };
    }
    // chrono marks a leap second with 1 000 000 µs or more; the system clock never reports
    // one, and this keeps the field at six digits if it ever did.
    let micros = at.timestamp_subsec_micros().min(999_999);
    SECOND.with_borrow_mut(|(second, text)| {
        if *second != at.timestamp() {
            *second = at.timestamp();
            text.clear();
            write!(text, "{}", at.format("%Y-%m-%dT%H:%M:%S"))?;
        }
        w.write_str(text)?;
        write!(w, ".{micros:06}Z")
    })
}

/// Span fields are kept as `,"name":value` pairs, spliced into each line under `span`.
impl<'w> FormatFields<'w> for JsonLine {
    fn format_fields<R: RecordFields>(
        &self,
        mut writer: Writer<'w>,
        fields: R,
    ) -> std::fmt::Result {
        let mut visitor = JsonVisitor {
            out: &mut writer,
            result: Ok(()),
        };
        fields.record(&mut visitor);
        visitor.result
    }

    fn add_fields(
        &self,
        current: &'w mut FormattedFields<Self>,
        fields: &tracing::span::Record<'_>,
    ) -> std::fmt::Result {
        self.format_fields(current.as_writer(), fields)
    }
}

/// Writes each event field as `,"name":value`.
struct JsonVisitor<'a, 'w> {
    out: &'a mut Writer<'w>,
    result: std::fmt::Result,
}

impl JsonVisitor<'_, '_> {
    fn field(&mut self, field: &Field, value: impl FnOnce(&mut Writer<'_>) -> std::fmt::Result) {
        if self.result.is_err() {
            return;
        }
        self.result = (|| {
            self.out.write_char(',')?;
            write_json_str(self.out, field.name())?;
            self.out.write_char(':')?;
            value(self.out)
        })();
    }
}

impl Visit for JsonVisitor<'_, '_> {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.field(field, |w| write_json_str(w, value));
    }
    fn record_bool(&mut self, field: &Field, value: bool) {
        self.field(field, |w| write!(w, "{value}"));
    }
    fn record_u64(&mut self, field: &Field, value: u64) {
        self.field(field, |w| write!(w, "{value}"));
    }
    fn record_i64(&mut self, field: &Field, value: i64) {
        self.field(field, |w| write!(w, "{value}"));
    }
    fn record_f64(&mut self, field: &Field, value: f64) {
        if value.is_finite() {
            self.field(field, |w| write!(w, "{value}"));
        } else {
            self.field(field, |w| write_json_str(w, &value.to_string()));
        }
    }
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        self.field(field, |w| {
            w.write_char('"')?;
            write!(Escaped(w), "{value:?}")?;
            w.write_char('"')
        });
    }
}

/// Writes `s` as a JSON string.
fn write_json_str(w: &mut Writer<'_>, s: &str) -> std::fmt::Result {
    w.write_char('"')?;
    Escaped(w).write_str(s)?;
    w.write_char('"')
}

/// Escapes what it is given for the inside of a JSON string (RFC 8259 §7).
struct Escaped<'a, 'w>(&'a mut Writer<'w>);

impl std::fmt::Write for Escaped<'_, '_> {
    fn write_str(&mut self, s: &str) -> std::fmt::Result {
        let mut plain = 0;
        for (i, b) in s.bytes().enumerate() {
            let esc: Option<&str> = match b {
                b'"' => Some("\\\""),
                b'\\' => Some("\\\\"),
                b'\n' => Some("\\n"),
                b'\r' => Some("\\r"),
                b'\t' => Some("\\t"),
                0..0x20 | 0x7f => None,
                _ => continue,
            };
            self.0.write_str(&s[plain..i])?;
            match esc {
                Some(e) => self.0.write_str(e)?,
                None => write!(self.0, "\\u{b:04x}")?,
            }
            plain = i + 1;
        }
        self.0.write_str(&s[plain..])
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::AtomicUsize;

    use super::*;

    #[test]
    fn timestamps_match_rfc3339_with_microseconds() {
        use chrono::TimeZone;
        let base = chrono::Utc
            .with_ymd_and_hms(2026, 12, 31, 23, 59, 59)
            .unwrap();
        let instants = [
            base,
            base + chrono::Duration::microseconds(7),
            base + chrono::Duration::microseconds(999_999),
            base + chrono::Duration::seconds(1),
            base + chrono::Duration::microseconds(1_000_042),
            base - chrono::Duration::days(400),
        ];
        for at in instants {
            let mut out = String::new();
            write_timestamp(&mut Writer::new(&mut out), at).unwrap();
            assert_eq!(
                out,
                at.to_rfc3339_opts(chrono::SecondsFormat::Micros, true),
                "{at:?}"
            );
        }
    }

    /// An output the test can read back.
    #[derive(Clone, Default)]
    struct Capture(Arc<Mutex<Vec<u8>>>);

    impl Write for Capture {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    fn line(w: &BatchWriter, text: &str) {
        w.make_writer().write_all(text.as_bytes()).unwrap();
    }

    #[test]
    fn lines_wait_for_the_batch_then_arrive_in_order() {
        let out = Capture::default();
        let (w, guard) = BatchWriter::new(out.clone()).unwrap();
        line(&w, "one\n");
        line(&w, "two\n");
        w.flush_now();
        assert_eq!(&*out.0.lock().unwrap(), b"one\ntwo\n");
        line(&w, "three\n");
        drop(guard);
        assert_eq!(&*out.0.lock().unwrap(), b"one\ntwo\nthree\n");
    }

    #[test]
    fn the_flusher_writes_within_its_interval() {
        let out = Capture::default();
        let (w, _guard) = BatchWriter::new(out.clone()).unwrap();
        line(&w, "late\n");
        let deadline = std::time::Instant::now() + FLUSH_INTERVAL * 20;
        while out.0.lock().unwrap().is_empty() {
            assert!(std::time::Instant::now() < deadline, "never flushed");
            std::thread::sleep(Duration::from_millis(5));
        }
        assert_eq!(&*out.0.lock().unwrap(), b"late\n");
    }

    #[test]
    fn a_full_batch_wakes_the_flusher_before_its_interval() {
        let out = Capture::default();
        let (w, guard) =
            BatchWriter::with_interval(out.clone(), Duration::from_secs(3600)).unwrap();
        line(&w, &"x".repeat(BATCH_BYTES));
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        while out.0.lock().unwrap().len() < BATCH_BYTES {
            assert!(
                std::time::Instant::now() < deadline,
                "the full batch waited"
            );
            std::thread::sleep(Duration::from_millis(5));
        }
        drop(guard);
        assert_eq!(out.0.lock().unwrap().len(), BATCH_BYTES);
    }

    /// An output whose writes wait for a permit each: a stderr pipe nobody reads until it is
    /// opened, or one read a little at a time.
    #[derive(Clone, Default)]
    struct Gate {
        permits: Arc<(Mutex<usize>, Condvar)>,
        out: Capture,
    }

    impl Gate {
        fn grant(&self, n: usize) {
            let mut permits = self.permits.0.lock().unwrap();
            *permits = permits.saturating_add(n);
            self.permits.1.notify_all();
        }

        fn open(&self) {
            self.grant(usize::MAX);
        }
    }

    /// Opens the gate when dropped, so that a failing test unwinds instead of hanging in the
    /// [`FlushGuard`]'s last write (declare it after the guard: it drops first).
    struct OpenOnDrop(Gate);

    impl Drop for OpenOnDrop {
        fn drop(&mut self) {
            self.0.open();
        }
    }

    impl Write for Gate {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            let (permits, granted) = &*self.permits;
            let mut permits = granted
                .wait_while(permits.lock().unwrap(), |p| *p == 0)
                .unwrap();
            if *permits != usize::MAX {
                *permits -= 1;
            }
            drop(permits);
            self.out.write(buf)
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    /// Logs `lines` numbered lines of 100 bytes from a new thread; the receiver hears when the
    /// last one was logged, the counter how many were.
    fn log_from_thread(
        w: &BatchWriter,
        lines: usize,
    ) -> (std::sync::mpsc::Receiver<()>, Arc<AtomicUsize>) {
        let (done, finished) = std::sync::mpsc::channel();
        let logged = Arc::new(AtomicUsize::new(0));
        let w = w.clone();
        let count = Arc::clone(&logged);
        std::thread::spawn(move || {
            for i in 0..lines {
                line(&w, &format!("{i:>99}\n"));
                count.fetch_add(1, Ordering::Relaxed);
            }
            let _ = done.send(());
        });
        (finished, logged)
    }

    /// Waits (up to 30 s) until `done` holds.
    fn wait_for(what: &str, done: impl Fn() -> bool) {
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        while !done() {
            assert!(std::time::Instant::now() < deadline, "{what}");
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// Whether the pending lines reached the bound. `try_lock`: a sink whose lines wait for
    /// the output may hold the lock meanwhile.
    fn at_the_bound(w: &BatchWriter) -> bool {
        w.shared
            .pending
            .try_lock()
            .is_ok_and(|p| p.bytes >= MAX_PENDING_BYTES)
    }

    fn numbered(out: &Capture) -> Vec<usize> {
        String::from_utf8(out.0.lock().unwrap().clone())
            .unwrap()
            .lines()
            .map(|l| l.trim().parse().unwrap())
            .collect()
    }

    #[test]
    fn a_blocked_output_holds_up_no_line_below_the_bound() {
        let gate = Gate::default();
        let (w, guard) = BatchWriter::new(gate.clone()).unwrap();
        let _open = OpenOnDrop(gate.clone());
        // Eight batches, while not one byte can be written.
        let lines = 8 * BATCH_BYTES / 100;
        let (finished, _) = log_from_thread(&w, lines);
        let logged = finished.recv_timeout(Duration::from_secs(10));
        gate.open();
        assert!(
            logged.is_ok(),
            "a line waited for the blocked output, {} bytes pending",
            lock(&w.shared.pending).bytes
        );
        drop(guard);
        assert_eq!(numbered(&gate.out), (0..lines).collect::<Vec<_>>());
    }

    #[test]
    fn past_the_bound_lines_wait_and_none_is_lost() {
        let gate = Gate::default();
        let (w, guard) = BatchWriter::new(gate.clone()).unwrap();
        let _open = OpenOnDrop(gate.clone());
        // Twice the bound: more than the bound is left even after the flusher took a batch
        // (it then waits at the gate with it).
        let lines = 2 * MAX_PENDING_BYTES / 100;
        let (finished, _) = log_from_thread(&w, lines);
        wait_for("never reached the bound", || at_the_bound(&w));
        assert!(
            finished.recv_timeout(Duration::from_millis(200)).is_err(),
            "a line went past the bound"
        );
        gate.open();
        finished.recv_timeout(Duration::from_secs(30)).unwrap();
        drop(guard);
        assert_eq!(numbered(&gate.out), (0..lines).collect::<Vec<_>>());
    }

    #[test]
    fn a_slow_output_makes_room_batch_by_batch() {
        let gate = Gate::default();
        let (w, guard) = BatchWriter::new(gate.clone()).unwrap();
        let _open = OpenOnDrop(gate.clone());
        let lines = 3 * MAX_PENDING_BYTES / 100;
        let (finished, logged) = log_from_thread(&w, lines);
        // Each batch the output takes lets the waiting lines go on (a batch holds 655 of
        // them). Had the flusher taken all pending lines at once, they would wait until all of
        // it was written (16 s for a reader of 1 MB/s), here for 256 more writes.
        for write in 1..=3 {
            wait_for("never reached the bound", || at_the_bound(&w));
            let before = logged.load(Ordering::Relaxed);
            gate.grant(1);
            wait_for(&format!("no line went on after write {write}"), || {
                logged.load(Ordering::Relaxed) > before + 100
            });
        }
        gate.open();
        finished.recv_timeout(Duration::from_secs(30)).unwrap();
        drop(guard);
        assert_eq!(numbered(&gate.out), (0..lines).collect::<Vec<_>>());
    }

    #[test]
    fn lines_after_exit_are_written_through() {
        let out = Capture::default();
        let (w, guard) = BatchWriter::new(out.clone()).unwrap();
        line(&w, "before\n");
        drop(guard);
        line(&w, "after\n");
        assert_eq!(&*out.0.lock().unwrap(), b"before\nafter\n");
    }

    #[test]
    fn many_threads_lose_nothing() {
        let out = Capture::default();
        let (w, guard) = BatchWriter::new(out.clone()).unwrap();
        let threads: Vec<_> = (0..4)
            .map(|t| {
                let w = w.clone();
                std::thread::spawn(move || {
                    for i in 0..5_000 {
                        line(&w, &format!("{t}-{i}\n"));
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        drop(guard);
        let text = String::from_utf8(out.0.lock().unwrap().clone()).unwrap();
        assert_eq!(text.lines().count(), 20_000);
        for t in 0..4 {
            let mine: Vec<usize> = text
                .lines()
                .filter_map(|l| l.strip_prefix(&format!("{t}-")))
                .map(|i| i.parse().unwrap())
                .collect();
            assert_eq!(mine, (0..5_000).collect::<Vec<_>>(), "thread {t} in order");
        }
    }

    #[test]
    fn json_lines_parse_and_escape_everything() {
        let out = Capture::default();
        let sink = out.clone();
        let subscriber = json_subscriber(move || sink.clone());
        tracing::subscriber::with_default(subscriber, || {
            let span = tracing::info_span!(
                "request",
                request_id = %"r-\"1\"",
                late = tracing::field::Empty
            );
            span.record("late", 7_u64);
            span.in_scope(|| {
                tracing::info!(
                    path = %"/v1/usage?a=\"b\"\n\t\u{1}\u{e9}",
                    status = 200_u64,
                    delta = -3_i64,
                    ratio = 0.5_f64,
                    nan = f64::NAN,
                    ok = true,
                    name = "plain",
                    "request"
                );
            });
            tracing::warn!("no span \\ here");
        });
        let text = String::from_utf8(out.0.lock().unwrap().clone()).unwrap();
        let lines: Vec<serde_json::Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
            .collect();
        assert_eq!(lines.len(), 2, "{text}");
        let r = &lines[0];
        assert_eq!(r["level"], "INFO");
        assert_eq!(r["message"], "request");
        assert_eq!(r["path"], "/v1/usage?a=\"b\"\n\t\u{1}\u{e9}");
        assert_eq!(r["status"], 200);
        assert_eq!(r["delta"], -3);
        assert_eq!(r["ratio"], 0.5);
        assert_eq!(r["nan"], "NaN");
        assert_eq!(r["ok"], true);
        assert_eq!(r["name"], "plain");
        assert_eq!(r["span"]["request_id"], "r-\"1\"");
        assert_eq!(r["span"]["name"], "request");
        assert_eq!(
            r["span"]["late"], 7,
            "fields recorded after the span was made"
        );
        assert!(r["target"].as_str().unwrap().contains("logsink"));
        chrono::DateTime::parse_from_rfc3339(r["timestamp"].as_str().unwrap()).unwrap();
        assert_eq!(lines[1]["level"], "WARN");
        assert_eq!(lines[1]["message"], "no span \\ here");
        assert!(lines[1].get("span").is_none());
    }
}
