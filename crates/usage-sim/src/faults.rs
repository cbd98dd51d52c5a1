//! Fault injection and per-route request counters.

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use tokio::sync::watch;

/// How `GET /v1/usage/list` and `GET /v1/bot/list` (ChatBotKit) signal the last page.
///
/// CONTRACTS.md §3.3 leaves the end condition undocumented; clients must stop on any of these.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum CursorEnd {
    /// The last page has no `cursor` key (the default).
    #[default]
    Absent,
    /// The last page has `"cursor": ""`.
    Empty,
    /// The last page repeats the cursor the request sent (absent when none was sent).
    Repeat,
    /// Every non-empty page carries its last item's id; only an empty page has no cursor.
    LastItem,
}

/// What the ChatBotKit list routes do with a `take` above their limit.
///
/// CONTRACTS.md §3.2 gives `take` no maximum, so the real server's limit and what it does above
/// it are unknown; clients must give correct answers under each of these.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TakeLimit {
    /// The largest `take` served.
    pub max: usize,
    /// Above `max`: `false` serves `max` items without saying so, `true` answers 400.
    pub reject: bool,
}

/// The simulators' default: up to [`crate::CBK_MAX_TAKE`] items, larger values clamped.
impl Default for TakeLimit {
    fn default() -> Self {
        Self {
            max: crate::CBK_MAX_TAKE,
            reject: false,
        }
    }
}

/// A per-minute request limit ([`Faults::set_rate_limit`]; honoured by the OpenAI simulator):
/// requests beyond `per_minute` in any 60 seconds answer 429.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateLimit {
    /// Requests allowed in any 60 seconds.
    pub per_minute: u32,
    /// Whether the 429 carries `Retry-After` (the seconds until a request passes again);
    /// OpenAI documents the header as optional.
    pub retry_after: bool,
}

/// A forced answer queued by [`Faults::force_next`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Forced {
    pub(crate) status: u16,
    /// ChatBotKit only: answer 429 with `LIMITS_REACHED` instead of `TOO_MANY_REQUESTS`.
    pub(crate) limits_reached: bool,
}

/// What the fault layer decided before the handler runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Injected {
    /// Answer with this error instead of calling the handler.
    Error(Forced),
    /// Call the handler.
    Pass,
}

#[derive(Debug, Default)]
struct State {
    latency: Duration,
    jitter: Duration,
    error_rate: f64,
    forced: VecDeque<Forced>,
    malformed: bool,
    truncated: bool,
    cursor_end: CursorEnd,
    take_limit: TakeLimit,
    omit_retry_after: bool,
    rate_limit: Option<RateLimit>,
    hits: VecDeque<Instant>,
}

/// The faults of one simulator; every setter takes `&self` and applies to the next request on
/// every route of that simulator.
///
/// Order per request: count it, wait the latency, wait while hanging, answer a forced status,
/// answer 500 at the error rate, otherwise run the handler and, for a 2xx answer, replace the
/// body with malformed or truncated JSON when asked.
#[derive(Debug)]
pub struct Faults {
    state: Mutex<State>,
    hang: watch::Sender<bool>,
    rng: Mutex<ChaCha8Rng>,
}

impl Default for Faults {
    fn default() -> Self {
        Self {
            state: Mutex::new(State::default()),
            hang: watch::Sender::new(false),
            rng: Mutex::new(ChaCha8Rng::seed_from_u64(0x5EED)),
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Faults {
    /// Delays every response by `fixed` plus a uniform random share of `jitter`.
    pub fn set_latency(&self, fixed: Duration, jitter: Duration) {
        let mut s = lock(&self.state);
        s.latency = fixed;
        s.jitter = jitter;
    }

    /// Answers a share `p` (0.0–1.0) of requests with 500 and the vendor's error body.
    pub fn set_error_rate(&self, p: f64) {
        lock(&self.state).error_rate = p.clamp(0.0, 1.0);
    }

    /// Answers the next `n` requests with `status` and the vendor's error body (a DigitalOcean
    /// 429 also carries `retry-after`; a ChatBotKit 429 has code `TOO_MANY_REQUESTS`).
    pub fn force_next(&self, n: u32, status: u16) {
        let mut s = lock(&self.state);
        for _ in 0..n {
            s.forced.push_back(Forced {
                status,
                limits_reached: false,
            });
        }
    }

    /// Answers the next `n` requests with 429 and ChatBotKit's `LIMITS_REACHED` code (on the
    /// other simulators it acts like `force_next(n, 429)`).
    pub fn force_limits_reached(&self, n: u32) {
        let mut s = lock(&self.state);
        for _ in 0..n {
            s.forced.push_back(Forced {
                status: 429,
                limits_reached: true,
            });
        }
    }

    /// Holds every request unanswered while `on` (released by `set_hang(false)`, `clear` or
    /// stopping the simulator).
    pub fn set_hang(&self, on: bool) {
        self.hang.send_replace(on);
    }

    /// Replaces the body of successful answers with `{"` garbage (status 200).
    pub fn set_malformed_json(&self, on: bool) {
        lock(&self.state).malformed = on;
    }

    /// Cuts the body of successful answers in half (status 200).
    pub fn set_truncated(&self, on: bool) {
        lock(&self.state).truncated = on;
    }

    /// Sends every 429 answer (forced or from a simulator's rate limit) without its
    /// `retry-after` header, as a vendor that gives no delay would.
    pub fn set_omit_retry_after(&self, on: bool) {
        lock(&self.state).omit_retry_after = on;
    }

    pub(crate) fn omits_retry_after(&self) -> bool {
        lock(&self.state).omit_retry_after
    }

    /// Chooses how ChatBotKit list routes mark the last page (not a fault, but a documented
    /// ambiguity clients must cope with).
    pub fn set_cursor_end(&self, mode: CursorEnd) {
        lock(&self.state).cursor_end = mode;
    }

    /// Chooses the largest `take` ChatBotKit list routes serve and what they do above it (not a
    /// fault either: the contract leaves the limit open).
    pub fn set_take_limit(&self, limit: TakeLimit) {
        lock(&self.state).take_limit = limit;
    }

    /// Removes every fault (and releases hung requests); keeps the cursor-end mode and the take
    /// limit.
    pub fn clear(&self) {
        {
            let mut s = lock(&self.state);
            let (cursor_end, take_limit) = (s.cursor_end, s.take_limit);
            *s = State {
                cursor_end,
                take_limit,
                ..State::default()
            };
        }
        self.set_hang(false);
    }

    /// Limits requests per minute (`None`: no limit). Only the OpenAI simulator honours it.
    pub fn set_rate_limit(&self, limit: Option<RateLimit>) {
        let mut s = lock(&self.state);
        s.rate_limit = limit;
        s.hits.clear();
    }

    /// Counts a request against the rate limit; `Err` with the `Retry-After` seconds to send
    /// (`None`: no header) when it is spent.
    pub(crate) fn rate_check(&self) -> Result<(), Option<u64>> {
        let mut s = lock(&self.state);
        let Some(limit) = s.rate_limit else {
            return Ok(());
        };
        let now = Instant::now();
        let window = Duration::from_secs(60);
        while s
            .hits
            .front()
            .is_some_and(|t| now.duration_since(*t) >= window)
        {
            s.hits.pop_front();
        }
        if s.hits.len() >= limit.per_minute as usize {
            let wait = s
                .hits
                .front()
                .map_or(window, |t| (*t + window).saturating_duration_since(now));
            let secs = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
            return Err(limit.retry_after.then_some(secs.max(1)));
        }
        s.hits.push_back(now);
        Ok(())
    }

    pub(crate) fn cursor_end(&self) -> CursorEnd {
        lock(&self.state).cursor_end
    }

    pub(crate) fn take_limit(&self) -> TakeLimit {
        lock(&self.state).take_limit
    }

    pub(crate) fn body_faults(&self) -> (bool, bool) {
        let s = lock(&self.state);
        (s.malformed, s.truncated)
    }

    /// Applies latency, hang, forced statuses and the error rate to one request.
    pub(crate) async fn before(&self) -> Injected {
        let (latency, jitter) = {
            let s = lock(&self.state);
            (s.latency, s.jitter)
        };
        let delay = if jitter.is_zero() {
            latency
        } else {
            let extra = lock(&self.rng).random_range(0..=jitter.as_micros() as u64);
            latency + Duration::from_micros(extra)
        };
        if !delay.is_zero() {
            tokio::time::sleep(delay).await;
        }
        let mut rx = self.hang.subscribe();
        // An error means the sender is gone (the simulator is being dropped): answer.
        let _ = rx.wait_for(|hang| !*hang).await;
        let mut s = lock(&self.state);
        if let Some(f) = s.forced.pop_front() {
            return Injected::Error(f);
        }
        if s.error_rate > 0.0 && lock(&self.rng).random_bool(s.error_rate) {
            return Injected::Error(Forced {
                status: 500,
                limits_reached: false,
            });
        }
        Injected::Pass
    }
}

/// Request counters per route name.
#[derive(Debug, Default)]
pub(crate) struct CallCounters {
    map: Mutex<BTreeMap<&'static str, u64>>,
}

impl CallCounters {
    pub(crate) fn bump(&self, route: &'static str) {
        *lock(&self.map).entry(route).or_default() += 1;
    }

    pub(crate) fn get(&self, route: &str) -> u64 {
        lock(&self.map).get(route).copied().unwrap_or(0)
    }

    pub(crate) fn total(&self) -> u64 {
        lock(&self.map).values().sum()
    }

    pub(crate) fn reset(&self) {
        lock(&self.map).clear();
    }
}
