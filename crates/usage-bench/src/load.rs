//! The in-process load generator for scenarios that need a different URL per request, a
//! simultaneous burst, or a check of every body: closed-loop workers and one-shot bursts on
//! 127.0.0.1, bounded in count and time.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::future::join_all;
use reqwest::StatusCode;

use crate::stats::{Samples, Summary};

/// Builds the HTTP client of the load generator: no proxy, HTTP/1.1 keep-alive, enough idle
/// connections for the largest burst.
pub fn client() -> Result<reqwest::Client, String> {
    reqwest::Client::builder()
        .no_proxy()
        .http1_only()
        .pool_max_idle_per_host(2048)
        .pool_idle_timeout(Duration::from_secs(120))
        .timeout(Duration::from_secs(120))
        .tcp_nodelay(true)
        .build()
        .map_err(|e| format!("cannot build the HTTP client: {e}"))
}

/// One answer as the checks see it.
#[derive(Debug, Clone)]
pub struct Answer {
    /// Status code.
    pub status: StatusCode,
    /// Body.
    pub body: Bytes,
}

/// Sends one request and reads the whole body; `None` on a transport error.
async fn send(req: reqwest::RequestBuilder) -> Option<Answer> {
    let r = req.send().await.ok()?;
    let status = r.status();
    let body = r.bytes().await.ok()?;
    Some(Answer { status, body })
}

/// Limits of a closed-loop run: it stops at whichever comes first.
#[derive(Debug, Clone, Copy)]
pub struct Bound {
    /// Most requests.
    pub requests: u64,
    /// Longest run.
    pub time: Duration,
}

/// Runs `concurrency` workers that each send the next request (numbered from 0) as soon as the
/// previous one answered, until `bound`; a request fails when `check` rejects its answer.
pub async fn closed_loop<M, C>(concurrency: usize, bound: Bound, make: M, check: C) -> Summary
where
    M: Fn(u64) -> reqwest::RequestBuilder,
    C: Fn(&Answer) -> bool,
{
    closed_loop_samples(concurrency, bound, make, check)
        .await
        .summary()
}

/// [`closed_loop`], returning the raw samples (to be pooled with other runs).
pub async fn closed_loop_samples<M, C>(
    concurrency: usize,
    bound: Bound,
    make: M,
    check: C,
) -> Samples
where
    M: Fn(u64) -> reqwest::RequestBuilder,
    C: Fn(&Answer) -> bool,
{
    let check = &check;
    let shared = Shared::new(bound);
    let latencies = shared
        .run(concurrency, |i| {
            let request = make(i);
            async move { send(request).await.is_some_and(|a| check(&a)) }
        })
        .await;
    shared.samples(latencies)
}

/// [`closed_loop`] for any operation, spread over `threads` OS threads: `op(i)` is one timed
/// unit of work (for example several requests at once, see [`all_of`]), failed when it
/// resolves to `false`. Each thread has its own current-thread runtime and its own `op` (made
/// by `make` on that thread, e.g. with its own HTTP client),
/// sharing one unit count and one bound: the shape of a server with one single-threaded runtime
/// per worker, as actix-web has. Blocks the calling thread until the run ends; returns the raw
/// samples.
pub fn closed_loop_threads<M, O, F>(
    threads: usize,
    concurrency: usize,
    bound: Bound,
    make: M,
) -> Result<Samples, String>
where
    M: Fn() -> Result<O, String> + Sync,
    O: Fn(u64) -> F,
    F: Future<Output = bool>,
{
    let threads = threads.max(1);
    let shared = Shared::new(bound);
    let per_thread: Vec<Vec<Duration>> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..threads)
            .map(|t| {
                let n = concurrency / threads + usize::from(t < concurrency % threads);
                let (shared, make) = (&shared, &make);
                s.spawn(move || {
                    let runtime = tokio::runtime::Builder::new_current_thread()
                        .enable_all()
                        .build()
                        .map_err(|e| format!("cannot start a load thread's runtime: {e}"))?;
                    let op = make()?;
                    Ok(runtime.block_on(shared.run(n, op)))
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join()
                    .unwrap_or_else(|_| Err("a load thread panicked".into()))
            })
            .collect::<Result<_, String>>()
    })?;
    Ok(shared.samples(per_thread.concat()))
}

/// What the workers of one closed-loop run share: the next unit's number, the failures and
/// the bound.
struct Shared {
    next: AtomicU64,
    errors: AtomicU64,
    started: Instant,
    deadline: Instant,
    requests: u64,
}

impl Shared {
    fn new(bound: Bound) -> Self {
        let started = Instant::now();
        Self {
            next: AtomicU64::new(0),
            errors: AtomicU64::new(0),
            started,
            deadline: started + bound.time,
            requests: bound.requests,
        }
    }

    /// Runs `concurrency` workers until the bound; returns their latency samples.
    async fn run<O, F>(&self, concurrency: usize, op: O) -> Vec<Duration>
    where
        O: Fn(u64) -> F,
        F: Future<Output = bool>,
    {
        let workers = (0..concurrency).map(|_| async {
            let mut samples = Vec::new();
            loop {
                if Instant::now() >= self.deadline {
                    break;
                }
                let i = self.next.fetch_add(1, Ordering::Relaxed);
                if i >= self.requests {
                    break;
                }
                let t = Instant::now();
                let ok = op(i).await;
                samples.push(t.elapsed());
                if !ok {
                    self.errors.fetch_add(1, Ordering::Relaxed);
                }
            }
            samples
        });
        join_all(workers).await.into_iter().flatten().collect()
    }

    fn samples(&self, latencies: Vec<Duration>) -> Samples {
        Samples {
            latencies,
            errors: self.errors.load(Ordering::Relaxed),
            wall: self.started.elapsed(),
        }
    }
}

/// Sends every request at once and reports whether all of them answered and passed `check`;
/// one unit of [`closed_loop_threads`] when a unit is a fan-out.
pub async fn all_of<C>(requests: Vec<reqwest::RequestBuilder>, check: C) -> bool
where
    C: Fn(&Answer) -> bool,
{
    join_all(requests.into_iter().map(send))
        .await
        .iter()
        .all(|a| a.as_ref().is_some_and(&check))
}

/// Opens `n` keep-alive connections by sending `n` simultaneous requests to `url`.
pub async fn preconnect(client: &reqwest::Client, url: &str, n: usize) -> Result<(), String> {
    let answers = join_all((0..n).map(|_| send(client.get(url)))).await;
    let failed = answers
        .iter()
        .filter(|a| !a.as_ref().is_some_and(|a| a.status.is_success()))
        .count();
    if failed == 0 {
        Ok(())
    } else {
        Err(format!("{failed} of {n} warm-up requests to {url} failed"))
    }
}

/// Sends `n` requests at once and returns the summary and every answer (`None` for transport
/// errors), in request order.
pub async fn burst<M, C>(n: usize, make: M, check: C) -> (Summary, Vec<Option<Answer>>)
where
    M: Fn(u64) -> reqwest::RequestBuilder,
    C: Fn(&Answer) -> bool,
{
    let started = Instant::now();
    let requests: Vec<_> = (0..n as u64).map(&make).collect();
    let results = join_all(requests.into_iter().map(|r| async {
        let t = Instant::now();
        let a = send(r).await;
        (t.elapsed(), a)
    }))
    .await;
    let wall = started.elapsed();
    let errors = results
        .iter()
        .filter(|(_, a)| !a.as_ref().is_some_and(&check))
        .count() as u64;
    let samples = results.iter().map(|(d, _)| *d).collect();
    (
        Summary::from_samples(samples, errors, wall),
        results.into_iter().map(|(_, a)| a).collect(),
    )
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::AtomicUsize;

    use actix_web::{App, HttpRequest, HttpResponse, HttpServer, web};

    use super::*;

    /// Answers `/n/{i}` with `i`, and 500 for every seventh `i`; counts live connections' requests.
    fn start(hits: Arc<AtomicUsize>) -> (String, actix_web::dev::ServerHandle) {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let server = HttpServer::new(move || {
            let hits = hits.clone();
            App::new().route(
                "/n/{i}",
                web::get().to(move |req: HttpRequest| {
                    let hits = hits.clone();
                    async move {
                        hits.fetch_add(1, Ordering::Relaxed);
                        let i: u64 = req.match_info().query("i").parse().unwrap();
                        tokio::time::sleep(Duration::from_millis(5)).await;
                        if i % 7 == 6 {
                            HttpResponse::InternalServerError().finish()
                        } else {
                            HttpResponse::Ok().body(i.to_string())
                        }
                    }
                }),
            )
        })
        .workers(1)
        .disable_signals()
        .listen(listener)
        .unwrap()
        .run();
        let handle = server.handle();
        tokio::spawn(server);
        (format!("http://{addr}"), handle)
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn closed_loop_counts_requests_errors_and_checks_bodies() {
        let hits = Arc::new(AtomicUsize::new(0));
        let (base, handle) = start(hits.clone());
        let c = client().unwrap();
        let s = closed_loop(
            4,
            Bound {
                requests: 70,
                time: Duration::from_secs(30),
            },
            |i| c.get(format!("{base}/n/{i}")),
            |a| a.status.is_success(),
        )
        .await;
        assert_eq!(s.requests, 70);
        assert_eq!(s.errors, 10);
        assert_eq!(hits.load(Ordering::Relaxed), 70);
        assert!(s.p50 >= Duration::from_millis(5));
        assert!(s.p99 >= s.p50 && s.rps > 0.0);
        // A check on the body: only even numbers pass.
        let s = closed_loop(
            2,
            Bound {
                requests: 6,
                time: Duration::from_secs(30),
            },
            |i| c.get(format!("{base}/n/{i}")),
            |a| {
                a.status.is_success()
                    && std::str::from_utf8(&a.body)
                        .unwrap()
                        .parse::<u64>()
                        .unwrap()
                        .is_multiple_of(2)
            },
        )
        .await;
        assert_eq!((s.requests, s.errors), (6, 3));
        handle.stop(false).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn closed_loop_threads_shares_one_count_and_bound() {
        let hits = Arc::new(AtomicUsize::new(0));
        let (base, handle) = start(hits.clone());
        let base2 = base.clone();
        let s = tokio::task::spawn_blocking(move || {
            closed_loop_threads(
                2,
                3,
                Bound {
                    requests: 14,
                    time: Duration::from_secs(30),
                },
                || {
                    let c = client()?;
                    let base = base2.clone();
                    Ok(move |i: u64| {
                        let r = c.get(format!("{base}/n/{i}"));
                        async move { send(r).await.is_some_and(|a| a.status.is_success()) }
                    })
                },
            )
        })
        .await
        .unwrap()
        .unwrap()
        .summary();
        // Units 0..14 once each, whichever thread took them: 6 and 13 fail.
        assert_eq!((s.requests, s.errors), (14, 2));
        assert_eq!(hits.load(Ordering::Relaxed), 14);
        handle.stop(false).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_fan_out_is_timed_as_one_unit() {
        let hits = Arc::new(AtomicUsize::new(0));
        let (base, handle) = start(hits.clone());
        let base2 = base.clone();
        // Unit i asks for 3i, 3i + 1 and 3i + 2 at once; it fails when one of them does.
        let s = tokio::task::spawn_blocking(move || {
            closed_loop_threads(
                1,
                3,
                Bound {
                    requests: 10,
                    time: Duration::from_secs(30),
                },
                || {
                    let c = client()?;
                    let base = base2.clone();
                    Ok(move |i: u64| {
                        all_of(
                            (3 * i..3 * i + 3)
                                .map(|n| c.get(format!("{base}/n/{n}")))
                                .collect(),
                            |a| a.status.is_success(),
                        )
                    })
                },
            )
        })
        .await
        .unwrap()
        .unwrap()
        .summary();
        // Of 0..30, 6, 13, 20 and 27 fail: units 2, 4, 6 and 9.
        assert_eq!((s.requests, s.errors), (10, 4));
        assert_eq!(hits.load(Ordering::Relaxed), 30);
        assert!(s.p50 >= Duration::from_millis(5));
        handle.stop(false).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_time_bound_stops_a_run() {
        let (base, handle) = start(Arc::new(AtomicUsize::new(0)));
        let c = client().unwrap();
        let started = Instant::now();
        let s = closed_loop(
            1,
            Bound {
                requests: u64::MAX,
                time: Duration::from_millis(200),
            },
            |_| c.get(format!("{base}/n/0")),
            |a| a.status.is_success(),
        )
        .await;
        assert!(started.elapsed() < Duration::from_secs(5));
        assert!(s.requests >= 1 && s.errors == 0);
        handle.stop(false).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn bursts_keep_request_order_and_transport_errors_count() {
        let hits = Arc::new(AtomicUsize::new(0));
        let (base, handle) = start(hits.clone());
        let c = client().unwrap();
        preconnect(&c, &format!("{base}/n/1"), 20).await.unwrap();
        let (s, answers) = burst(
            20,
            |i| c.get(format!("{base}/n/{i}")),
            |a| a.status.is_success(),
        )
        .await;
        assert_eq!(s.requests, 20);
        assert_eq!(s.errors, 2); // 6 and 13
        for (i, a) in answers.iter().enumerate() {
            let a = a.as_ref().unwrap();
            if a.status.is_success() {
                assert_eq!(a.body, Bytes::from(i.to_string()));
            }
        }
        handle.stop(false).await;
        // Nothing listens any more: every request is a transport error.
        let (s, answers) = burst(3, |i| c.get(format!("{base}/n/{i}")), |_| true).await;
        assert_eq!(s.errors, 3);
        assert!(answers.iter().all(Option::is_none));
        assert!(preconnect(&c, &format!("{base}/n/1"), 2).await.is_err());
    }
}
