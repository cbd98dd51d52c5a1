//! `GET /ui`: the usage page, a chart, a table and each source's status over `GET /v1/usage`.
//!
//! The page is static: its HTML, script and styles, and the vendored chart library (uPlot, see
//! `ui/vendor/*/README.md`), are embedded in the binary, so it works offline like `/docs`. It needs
//! no token to load; the script asks for one and sends it to `/v1/usage` itself. Every asset is
//! answered with [`CONTENT_SECURITY_POLICY`]: no inline script or style, nothing from another
//! origin.

use actix_web::http::header;
use actix_web::{HttpRequest, HttpResponse, web};

use crate::app::get_only;

/// The policy on every `/ui` response. Scripts, styles and requests only from this origin;
/// images also as `data:` URLs. uPlot sizes and colours its elements through `element.style`,
/// which `style-src 'self'` allows (only `<style>` elements and `style` attributes in markup
/// would need `'unsafe-inline'`, and the page has neither). No forms submit anywhere, no `<base>`,
/// and no other site may frame the page.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; \
     style-src 'self'; img-src 'self' data:; connect-src 'self'; base-uri 'none'; \
     form-action 'none'; frame-ancestors 'none'";

/// One embedded file of the page.
#[derive(Debug)]
pub struct Asset {
    /// The path it is served at.
    pub path: &'static str,
    /// Its `Content-Type`.
    pub content_type: &'static str,
    /// Its bytes.
    pub body: &'static [u8],
}

const HTML: &str = "text/html; charset=utf-8";
const JS: &str = "text/javascript; charset=utf-8";
const CSS: &str = "text/css; charset=utf-8";

/// An [`Asset`] at `path` from `file` under `crates/usage-gateway/ui/`.
macro_rules! asset {
    ($path:literal, $content_type:expr, $file:literal) => {
        Asset {
            path: $path,
            content_type: $content_type,
            body: include_bytes!(concat!("../../ui/", $file)),
        }
    };
}

/// The page and everything it loads.
pub const ASSETS: &[Asset] = &[
    asset!("/ui", HTML, "index.html"),
    asset!("/ui/app.js", JS, "app.js"),
    asset!("/ui/app.css", CSS, "app.css"),
    asset!(
        "/ui/uPlot.iife.min.js",
        JS,
        "vendor/uplot-1.6.32/uPlot.iife.min.js"
    ),
    asset!(
        "/ui/uPlot.min.css",
        CSS,
        "vendor/uplot-1.6.32/uPlot.min.css"
    ),
];

/// Registers a GET route for each of [`ASSETS`], and `/ui/` as a redirect to `/ui`.
pub fn configure(cfg: &mut web::ServiceConfig) {
    for asset in ASSETS {
        cfg.service(get_only(
            asset.path,
            web::get().to(move |req: HttpRequest| async move { serve(asset, &req) }),
        ));
    }
    cfg.service(get_only(
        "/ui/",
        web::get().to(|| async {
            HttpResponse::PermanentRedirect()
                .insert_header((header::LOCATION, "/ui"))
                .finish()
        }),
    ));
}

/// Answers one asset with the page's security headers, revalidated on every use (`no-cache`
/// with a content hash as `ETag`, so a new binary's page is never mixed with an old script) and
/// `304` when the browser's copy is current.
fn serve(asset: &Asset, req: &HttpRequest) -> HttpResponse {
    let etag = format!("\"{:016x}\"", xxhash_rust::xxh3::xxh3_64(asset.body));
    let fresh = req
        .headers()
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|t| t.trim() == etag || t.trim() == "*"));
    let mut res = if fresh {
        HttpResponse::NotModified()
    } else {
        HttpResponse::Ok()
    };
    res.insert_header((header::CONTENT_SECURITY_POLICY, CONTENT_SECURITY_POLICY))
        .insert_header((header::X_CONTENT_TYPE_OPTIONS, "nosniff"))
        .insert_header((header::REFERRER_POLICY, "no-referrer"))
        .insert_header((header::CACHE_CONTROL, "no-cache"))
        .insert_header((header::ETAG, etag));
    if fresh {
        res.finish()
    } else {
        res.insert_header((header::CONTENT_TYPE, asset.content_type))
            .body(asset.body)
    }
}
