//! Starting the HTTP server.

use std::future::ready;
use std::net::{SocketAddr, TcpListener};
use std::time::Duration;

use actix_http::HttpService;
use actix_service::{IntoServiceFactory, ServiceFactoryExt as _, map_config};
use actix_web::dev::{AppConfig, Server, fn_service};
use actix_web::middleware::from_fn;
use actix_web::rt::net::TcpStream;
use actix_web::{App, HttpServer, web};

use crate::app::{configure, get_only, metrics, not_found};
use crate::headguard::{HeadGuard, HeadLimits};
use crate::obs::observe;
use crate::state::AppState;

/// Connections the kernel keeps ready for `accept` on each listener (capped by
/// `net.core.somaxconn`): actix-web's own default. A listener made by
/// `std::net::TcpListener::bind` gets 128, and a burst of new connections beyond that waits a
/// SYN retransmission (1 s, then 3 s) for each one dropped.
pub const LISTEN_BACKLOG: i32 = 1024;

/// Binds a listener as actix-web's `bind` does (address reuse, [`LISTEN_BACKLOG`]), so that the
/// server built from its parts (see `bind`) keeps actix's backlog.
fn listen(addr: SocketAddr) -> std::io::Result<TcpListener> {
    use socket2::{Domain, Protocol, Socket, Type};
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    socket.set_reuse_address(true)?;
    socket.bind(&addr.into())?;
    socket.listen(LISTEN_BACKLOG)?;
    Ok(socket.into())
}

/// A bound, not yet awaited server and the address it listens on.
#[allow(missing_debug_implementations)]
pub struct Bound {
    /// The server future (await it, or spawn it).
    pub server: Server,
    /// The actual listen address (useful with port 0).
    pub addr: SocketAddr,
    /// The separate `/metrics` server, when `server.metrics_listen` is set.
    pub metrics: Option<Server>,
    /// Its address.
    pub metrics_addr: Option<SocketAddr>,
}

/// Binds the gateway to `server.listen` (and `/metrics` to `server.metrics_listen` when set).
///
/// The server stops gracefully on SIGTERM/SIGINT: it stops accepting, lets in-flight requests
/// finish for up to `server.shutdown_timeout`, then resolves.
pub fn bind(state: AppState) -> std::io::Result<Bound> {
    crate::obs::prometheus();
    let cfg = state.server.clone();
    let state = web::Data::new(state);
    let listener = listen(cfg.listen)?;
    let addr = listener.local_addr()?;
    let separate_metrics = cfg.metrics_listen.is_some();
    let app_state = state.clone();
    let limits = HeadLimits::new(&cfg);
    // actix-web's `HttpServer` with one difference: each connection's socket is wrapped in a
    // `HeadGuard`, so that request heads over the gateway's bounds are answered problem+json
    // by the gateway rather than with the HTTP codec's bare 400/431 (see `headguard`).
    // `HttpServer` takes no I/O wrapper, hence the server built from its parts.
    let mut server = Server::build().shutdown_timeout(cfg.shutdown_timeout.as_secs());
    if let Some(w) = cfg.workers {
        server = server.workers(w);
    }
    let graceful = server.graceful_shutdown_signal();
    let server = server.listen("usage-gateway", listener, move || {
        let app = App::new()
            .configure(configure(app_state.clone(), !separate_metrics))
            .default_service(web::to(not_found))
            .wrap(from_fn(observe))
            .into_factory()
            .map_err(|e: actix_web::Error| e.error_response());
        let graceful = graceful.clone();
        let http = HttpService::build()
            // `HttpServer`'s defaults; the others (keep-alive 5 s, request head 5 s, half-closed
            // connections allowed) are `HttpService`'s too.
            .client_disconnect_timeout(Duration::from_secs(1))
            .local_addr(addr)
            .graceful_shutdown_signal(move || {
                let graceful = graceful.clone();
                async move { graceful.notified().await }
            })
            // `HttpServer` gives the app its listen address as host and local address;
            // `AppConfig::new` is private to actix-web, and nothing in the app reads either.
            .h1(map_config(app, |()| AppConfig::default()));
        fn_service(move |io: TcpStream| {
            let peer = io.peer_addr().ok();
            ready(Ok((HeadGuard::new(io, limits), peer)))
        })
        .and_then(http)
    })?;
    let (metrics_server, metrics_addr) = match cfg.metrics_listen {
        Some(listen) => {
            let listener = self::listen(listen)?;
            let addr = listener.local_addr()?;
            let s = HttpServer::new(move || {
                App::new()
                    .app_data(state.clone())
                    .service(get_only("/metrics", web::get().to(metrics)))
                    .default_service(web::to(not_found))
            })
            .workers(1)
            .shutdown_timeout(cfg.shutdown_timeout.as_secs())
            .listen(listener)?
            .run();
            (Some(s), Some(addr))
        }
        None => (None, None),
    };
    Ok(Bound {
        server: server.run(),
        addr,
        metrics: metrics_server,
        metrics_addr,
    })
}

impl Bound {
    /// Serves until both listeners stopped (SIGTERM/SIGINT, or a stop through their handles).
    pub async fn run(self) -> std::io::Result<()> {
        match self.metrics {
            Some(m) => futures::future::try_join(self.server, m).await.map(|_| ()),
            None => self.server.await,
        }
    }
}
#[cfg(all(test, target_os = "linux"))]
mod tests {
    use std::net::TcpStream;
    use std::time::Duration;

    use super::*;

    /// Opens `n` connections to `addr` that nobody accepts: the kernel completes each handshake
    /// while the accept queue has room, then drops SYNs, and the connection waits.
    fn queue(addr: SocketAddr, n: usize) -> Result<Vec<TcpStream>, String> {
        (0..n)
            .map(|i| {
                TcpStream::connect_timeout(&addr, Duration::from_secs(2))
                    .map_err(|e| format!("connection {} of {n} to {addr}: {e}", i + 1))
            })
            .collect()
    }

    #[test]
    fn both_listeners_queue_a_burst_of_new_connections() {
        let text = "[server]\nlisten = \"127.0.0.1:0\"\nmetrics_listen = \"127.0.0.1:0\"\n\
                    [auth]\nalgorithms = [\"HS256\"]\nhs256_secret = \"${S}\"\n\
                    [[access]]\nclaim = \"sub\"\nvalue = \"a\"\nsources = [\"*\"]\n";
        let config = crate::config::Config::parse(text, &|_| Some("s".repeat(40))).unwrap();
        let state = AppState::new(config, Vec::<crate::fetch::SourceSpec>::new()).unwrap();
        // Not run: nothing accepts, so every connection stays in the accept queue.
        let bound = bind(state).unwrap();
        // Scenario 3 of usage-bench opens 500 at once; 300 is past `std`'s 128.
        let main = queue(bound.addr, 300).unwrap();
        let metrics = queue(bound.metrics_addr.unwrap(), 300).unwrap();
        assert_eq!((main.len(), metrics.len()), (300, 300));
    }
}
