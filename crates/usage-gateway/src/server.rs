//! Starting the HTTP server.

use std::net::{SocketAddr, TcpListener};
use std::sync::Arc;

use actix_web::dev::Server;
use actix_web::middleware::from_fn;
use actix_web::{App, HttpServer, web};

use crate::app::{access_log, configure, not_found};
use crate::openapi::document_json;
use crate::state::AppState;

/// A bound, not yet awaited server and the address it listens on.
#[allow(missing_debug_implementations)]
pub struct Bound {
    /// The server future (await it, or spawn it).
    pub server: Server,
    /// The actual listen address (useful with port 0).
    pub addr: SocketAddr,
}

/// Binds the gateway to `listen` with `workers` threads (default: CPU count).
pub fn bind(state: AppState, listen: SocketAddr, workers: Option<usize>) -> std::io::Result<Bound> {
    let state = web::Data::new(state);
    let doc = Arc::new(document_json());
    let listener = TcpListener::bind(listen)?;
    let addr = listener.local_addr()?;
    let mut server = HttpServer::new(move || {
        App::new()
            .configure(configure(state.clone(), doc.clone()))
            .default_service(web::to(not_found))
            .wrap(from_fn(access_log))
    })
    .listen(listener)?;
    if let Some(w) = workers {
        server = server.workers(w);
    }
    Ok(Bound {
        server: server.run(),
        addr,
    })
}
