//! The baseline of scenario 1: a bare actix-web handler that answers `GET /v1/usage` with the
//! bytes and headers of the gateway's warm answer, and does nothing else (no JWT, no query
//! parsing, no cache lookup, no middleware). It is the ceiling the gateway is compared with.
//!
//! The same server is the origin of scenario 1's nginx (`/origin/v1/usage`: the same answer, a
//! route of its own that counts its requests, so that the measured route does no more than
//! before and the benchmark can check that nginx answered from its cache).

use std::io;
use std::net::{SocketAddr, TcpListener};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use actix_web::dev::ServerHandle;
use actix_web::http::header::{HeaderName, HeaderValue};
use actix_web::{App, HttpResponse, HttpServer, web};
use bytes::Bytes;

/// What the baseline answers.
#[derive(Debug, Clone)]
pub struct Canned {
    /// Response headers (besides those actix adds itself: `content-length`, `date`).
    pub headers: Vec<(HeaderName, HeaderValue)>,
    /// Body.
    pub body: Bytes,
}

/// A running baseline server.
#[derive(Debug)]
pub struct Baseline {
    /// `http://127.0.0.1:PORT`.
    pub base: String,
    /// `127.0.0.1:PORT`.
    pub addr: SocketAddr,
    /// Requests answered on `/origin/v1/usage`.
    origin_requests: Arc<AtomicU64>,
    handle: ServerHandle,
}

async fn usage(canned: web::Data<Canned>) -> HttpResponse {
    let mut b = HttpResponse::Ok();
    for (k, v) in &canned.headers {
        b.insert_header((k.clone(), v.clone()));
    }
    b.body(canned.body.clone())
}

async fn origin(canned: web::Data<Canned>, count: web::Data<AtomicU64>) -> HttpResponse {
    count.fetch_add(1, Ordering::Relaxed);
    usage(canned).await
}

/// Starts the baseline on a free 127.0.0.1 port with `workers` actix workers.
pub fn start(workers: usize, canned: Canned) -> io::Result<Baseline> {
    let listener = TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], 0)))?;
    let addr = listener.local_addr()?;
    let data = web::Data::new(canned);
    let count = web::Data::new(AtomicU64::new(0));
    let origin_requests = count.clone().into_inner();
    let server = HttpServer::new(move || {
        App::new()
            .app_data(data.clone())
            .app_data(count.clone())
            .route("/v1/usage", web::get().to(usage))
            .route("/origin/v1/usage", web::get().to(origin))
    })
    .workers(workers)
    .disable_signals()
    .shutdown_timeout(1)
    .listen(listener)?
    .run();
    let handle = server.handle();
    tokio::spawn(server);
    Ok(Baseline {
        base: format!("http://{addr}"),
        addr,
        origin_requests,
        handle,
    })
}

impl Baseline {
    /// Requests answered on `/origin/v1/usage` so far.
    pub fn origin_requests(&self) -> u64 {
        self.origin_requests.load(Ordering::Relaxed)
    }

    /// Stops the server and waits until it is down.
    pub async fn stop(self) {
        self.handle.stop(true).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn answers_the_canned_bytes_and_headers() {
        let canned = Canned {
            headers: vec![
                (
                    HeaderName::from_static("content-type"),
                    HeaderValue::from_static("application/json"),
                ),
                (
                    HeaderName::from_static("etag"),
                    HeaderValue::from_static("\"abc\""),
                ),
            ],
            body: Bytes::from_static(b"{\"rows\":[]}"),
        };
        let b = start(1, canned).unwrap();
        let r = crate::load::client()
            .unwrap()
            .get(format!("{}/v1/usage?anything=1", b.base))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        assert_eq!(r.headers()["etag"], "\"abc\"");
        assert_eq!(r.headers()["content-type"], "application/json");
        assert_eq!(
            r.bytes().await.unwrap(),
            Bytes::from_static(b"{\"rows\":[]}")
        );
        assert_eq!(b.origin_requests(), 0);
        // The origin route answers the same and counts.
        let r = crate::load::client()
            .unwrap()
            .get(format!("{}/origin/v1/usage", b.base))
            .send()
            .await
            .unwrap();
        assert_eq!(r.headers()["etag"], "\"abc\"");
        assert_eq!(
            r.bytes().await.unwrap(),
            Bytes::from_static(b"{\"rows\":[]}")
        );
        assert_eq!(b.origin_requests(), 1);
        b.stop().await;
    }
}
