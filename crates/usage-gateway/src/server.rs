//! Starting the HTTP server.

use std::net::{SocketAddr, TcpListener};

use actix_web::dev::Server;
use actix_web::middleware::from_fn;
use actix_web::{App, HttpServer, web};

use crate::app::{configure, get_only, metrics, not_found};
use crate::obs::observe;
use crate::state::AppState;

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
    let listener = TcpListener::bind(cfg.listen)?;
    let addr = listener.local_addr()?;
    let separate_metrics = cfg.metrics_listen.is_some();
    let app_state = state.clone();
    let mut server = HttpServer::new(move || {
        App::new()
            .configure(configure(app_state.clone(), !separate_metrics))
            .default_service(web::to(not_found))
            .wrap(from_fn(observe))
    })
    .shutdown_timeout(cfg.shutdown_timeout.as_secs())
    .listen(listener)?;
    if let Some(w) = cfg.workers {
        server = server.workers(w);
    }
    let (metrics_server, metrics_addr) = match cfg.metrics_listen {
        Some(listen) => {
            let listener = TcpListener::bind(listen)?;
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
