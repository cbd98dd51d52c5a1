//! The usage page (`/ui`): served without a token, from the binary, under a strict
//! Content-Security-Policy, and loading nothing from another origin. (What it draws is tested in
//! a real browser by `.ci/ui_test.py`.)

use actix_web::body::MessageBody;
use actix_web::dev::{Service, ServiceResponse};
use actix_web::test;
use usage_gateway::routes::ui::{ASSETS, CONTENT_SECURITY_POLICY};

use crate::common::{app, harness};

/// `GET path` without a token: status, headers and body.
async fn fetch(
    app: &impl Service<
        actix_http::Request,
        Response = ServiceResponse<impl MessageBody>,
        Error = actix_web::Error,
    >,
    path: &str,
) -> (u16, actix_web::http::header::HeaderMap, String) {
    let resp = test::call_service(app, test::TestRequest::get().uri(path).to_request()).await;
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    let body = test::read_body(resp).await;
    (status, headers, String::from_utf8(body.to_vec()).unwrap())
}

fn header<'a>(headers: &'a actix_web::http::header::HeaderMap, name: &str) -> &'a str {
    headers
        .get(name)
        .unwrap_or_else(|| panic!("{name} is set"))
        .to_str()
        .unwrap()
}

/// What follows the last `.` of `path` (the embedded assets' names are lower case).
fn extension(path: &str) -> &str {
    path.rsplit_once('.').map_or("", |(_, ext)| ext)
}

/// The values of `attr="..."` in `html`.
fn attributes<'a>(html: &'a str, attr: &str) -> Vec<&'a str> {
    let needle = format!(" {attr}=\"");
    html.match_indices(&needle)
        .filter_map(|(i, _)| {
            let rest = &html[i + needle.len()..];
            rest.find('"').map(|end| &rest[..end])
        })
        .collect()
}

#[actix_web::test]
async fn page_loads_without_a_token_under_a_strict_csp() {
    let h = harness("2s");
    let app = app(&h).await;
    let (status, headers, html) = fetch(&app, "/ui").await;
    assert_eq!(status, 200);
    assert_eq!(header(&headers, "content-type"), "text/html; charset=utf-8");
    let csp = header(&headers, "content-security-policy");
    assert_eq!(csp, CONTENT_SECURITY_POLICY);
    for directive in [
        "default-src 'none'",
        "script-src 'self'",
        "style-src 'self'",
        "connect-src 'self'",
        "frame-ancestors 'none'",
        "form-action 'none'",
        "base-uri 'none'",
    ] {
        assert!(csp.contains(directive), "{directive} in {csp}");
    }
    assert!(!csp.contains("unsafe"), "{csp}");
    assert_eq!(header(&headers, "x-content-type-options"), "nosniff");
    assert_eq!(header(&headers, "referrer-policy"), "no-referrer");
    // Nothing inline that the policy would block: scripts have a `src`, no style elements or
    // attributes.
    assert_eq!(
        html.matches("<script").count(),
        html.matches("<script src=\"").count()
    );
    assert!(
        !html.contains("<style") && !html.contains(" style="),
        "{html}"
    );
    assert!(html.contains("id=\"token\"") && html.contains("type=\"password\""));
    // The trailing-slash form leads to the page.
    let (status, headers, _) = fetch(&app, "/ui/").await;
    assert_eq!(status, 308);
    assert_eq!(header(&headers, "location"), "/ui");
}

#[actix_web::test]
async fn every_asset_the_page_loads_is_served_with_its_type_and_policy() {
    let h = harness("2s");
    let app = app(&h).await;
    let (_, _, html) = fetch(&app, "/ui").await;
    let mut loaded: Vec<&str> = attributes(&html, "src");
    loaded.extend(
        attributes(&html, "href")
            .into_iter()
            .filter(|h| extension(h) == "css"),
    );
    assert_eq!(loaded.len(), 4, "{loaded:?}");
    for path in &loaded {
        let (status, headers, body) = fetch(&app, path).await;
        assert_eq!(status, 200, "{path}");
        let expected = match extension(path) {
            "js" => "text/javascript; charset=utf-8",
            "css" => "text/css; charset=utf-8",
            other => panic!("{path}: unexpected extension {other}"),
        };
        assert_eq!(header(&headers, "content-type"), expected, "{path}");
        assert_eq!(
            header(&headers, "content-security-policy"),
            CONTENT_SECURITY_POLICY
        );
        assert_eq!(header(&headers, "x-content-type-options"), "nosniff");
        assert!(!body.is_empty(), "{path}");
    }
    // Every embedded asset is the page or something it loads.
    for asset in ASSETS {
        assert!(
            asset.path == "/ui" || loaded.contains(&asset.path),
            "{} is embedded but not loaded",
            asset.path
        );
    }
}

#[actix_web::test]
async fn no_asset_refers_to_another_origin() {
    let h = harness("2s");
    let app = app(&h).await;
    for asset in ASSETS {
        let (_, _, body) = fetch(&app, asset.path).await;
        // uPlot's minified files open with a `/*! <project URL> (v…) */` banner: a comment, which
        // loads nothing.
        let text = match body.strip_prefix("/*!") {
            Some(rest) => rest.split_once("*/").map_or("", |(_, code)| code),
            None => &body,
        };
        for scheme in ["http://", "https://", "url(//", "src=\"//", "href=\"//"] {
            assert!(!text.contains(scheme), "{} refers to {scheme}…", asset.path);
        }
        // Markup is built with DOM calls, never parsed from strings.
        assert!(
            asset.path.contains("uPlot") || !text.contains("innerHTML"),
            "{}",
            asset.path
        );
    }
}

#[actix_web::test]
async fn assets_revalidate_with_their_etag() {
    let h = harness("2s");
    let app = app(&h).await;
    let (status, headers, _) = fetch(&app, "/ui/app.js").await;
    assert_eq!(status, 200);
    assert_eq!(header(&headers, "cache-control"), "no-cache");
    let etag = header(&headers, "etag").to_owned();
    let resp = test::call_service(
        &app,
        test::TestRequest::get()
            .uri("/ui/app.js")
            .insert_header(("if-none-match", etag.as_str()))
            .to_request(),
    )
    .await;
    assert_eq!(resp.status(), 304);
    assert_eq!(header(resp.headers(), "etag"), etag);
    assert!(resp.headers().contains_key("content-security-policy"));
}

#[actix_web::test]
async fn page_is_not_an_api_path() {
    let doc: serde_json::Value =
        serde_json::from_str(&usage_gateway::openapi::document_json()).unwrap();
    let paths = doc["paths"].as_object().unwrap();
    assert!(paths.keys().all(|p| !p.starts_with("/ui")), "{paths:?}");
}
