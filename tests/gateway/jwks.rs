//! `auth.jwks_url`: keys by `kid` bound to their algorithm, coalesced and rate-limited refreshes,
//! known keys kept while the identity provider is down, no redirects, bounded documents.

use std::time::{Duration, Instant};

use jsonwebtoken::Algorithm;
use serde_json::{Value, json};
use usage_gateway::config::Config;
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

use crate::common::claims;
use crate::jose::{app_of, call, es_key, jwk, jwks_state, rs_key, sign};

fn auth_table(url: &str, algorithms: &str, extra: &str) -> String {
    format!(
        "algorithms = {algorithms}\njwks_url = \"{url}\"\nissuer = \"https://idp.test\"\naudience = \"usage-gateway\"\n{extra}"
    )
}

async fn serve_keys(idp: &MockServer, keys: Value, delay: Duration) {
    idp.reset().await;
    Mock::given(method("GET"))
        .and(path("/jwks.json"))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(json!({ "keys": keys }))
                .set_delay(delay),
        )
        .mount(idp)
        .await;
}

async fn fetches(idp: &MockServer) -> usize {
    idp.received_requests()
        .await
        .unwrap()
        .iter()
        .filter(|r| r.url.path() == "/jwks.json")
        .count()
}

fn bearer(token: &str) -> String {
    format!("Bearer {token}")
}

#[actix_web::test]
async fn keys_verify_by_kid_and_stay_bound_to_their_algorithm() {
    let idp = MockServer::start().await;
    serve_keys(
        &idp,
        json!([
            jwk(&rs_key(), Algorithm::RS256, "rs-1", true),
            // No `alg`: the EC P-256 key type makes it an ES256 key.
            jwk(&es_key(), Algorithm::ES256, "es-1", false),
        ]),
        Duration::ZERO,
    )
    .await;
    let url = format!("{}/jwks.json", idp.uri());
    let app = app_of(jwks_state(&auth_table(&url, r#"["RS256", "ES256"]"#, ""))).await;
    let c = claims("admin");
    let rs = |kid: &str| bearer(&sign(Algorithm::RS256, &rs_key(), Some(kid), &c));
    let es = |kid: &str| bearer(&sign(Algorithm::ES256, &es_key(), Some(kid), &c));
    assert_eq!(call(&app, Some(&rs("rs-1"))).await.0, 200);
    assert_eq!(call(&app, Some(&es("es-1"))).await.0, 200);
    // A key answers only for its own algorithm, whatever the token's header claims.
    assert_eq!(call(&app, Some(&es("rs-1"))).await.0, 401);
    assert_eq!(call(&app, Some(&rs("es-1"))).await.0, 401);
    // Without `kid` there is no JWKS lookup (and no static key here).
    let no_kid = bearer(&sign(Algorithm::RS256, &rs_key(), None, &c));
    assert_eq!(call(&app, Some(&no_kid)).await.0, 401);

    // The same JWKS with only RS256 pinned: the ES256 key (by its key type) is unusable.
    let app = app_of(jwks_state(&auth_table(&url, r#"["RS256"]"#, ""))).await;
    assert_eq!(call(&app, Some(&rs("rs-1"))).await.0, 200);
    assert_eq!(call(&app, Some(&es("es-1"))).await.0, 401);
}

#[actix_web::test]
async fn unknown_kid_floods_cause_one_fetch_per_interval() {
    let idp = MockServer::start().await;
    let rs1 = jwk(&rs_key(), Algorithm::RS256, "rs-1", true);
    serve_keys(&idp, json!([rs1.clone()]), Duration::from_millis(150)).await;
    let url = format!("{}/jwks.json", idp.uri());
    let interval = Duration::from_secs(2);
    let extra = "jwks_min_refresh_interval = \"2s\"\njwks_cache_ttl = \"1h\"";
    let app = app_of(jwks_state(&auth_table(
        &url,
        r#"["RS256", "ES256"]"#,
        extra,
    )))
    .await;
    let c = claims("admin");
    // Signed up front: RSA signing in a debug build is slow enough to blur the timing.
    let known = bearer(&sign(Algorithm::RS256, &rs_key(), Some("rs-1"), &c));
    let flood: Vec<String> = (0..50)
        .map(|i| {
            bearer(&sign(
                Algorithm::RS256,
                &rs_key(),
                Some(&format!("x{i}")),
                &c,
            ))
        })
        .collect();
    let rotated = bearer(&sign(Algorithm::ES256, &es_key(), Some("es-2"), &c));

    let started = Instant::now();
    assert_eq!(call(&app, Some(&known)).await.0, 200);
    assert_eq!(fetches(&idp).await, 1);
    // A flood of unknown kids right after a fetch: all 401, no fetch.
    let results = futures::future::join_all(flood.iter().map(|t| call(&app, Some(t)))).await;
    assert!(results.iter().all(|(s, _, _)| *s == 401));
    if started.elapsed() < interval {
        assert_eq!(
            fetches(&idp).await,
            1,
            "within the interval nothing is fetched"
        );
    }

    // The IdP rotates in a new key; once the interval passed, 50 concurrent tokens with the new
    // kid share one fetch (however long it takes) and all verify.
    serve_keys(
        &idp,
        json!([rs1, jwk(&es_key(), Algorithm::ES256, "es-2", true)]),
        Duration::from_millis(150),
    )
    .await;
    tokio::time::sleep(interval + Duration::from_millis(100)).await;
    let rotation = Instant::now();
    let results = futures::future::join_all((0..50).map(|_| call(&app, Some(&rotated)))).await;
    assert!(
        results.iter().all(|(s, _, _)| *s == 200),
        "{:?}",
        results.iter().map(|r| r.0).collect::<Vec<_>>()
    );
    assert_eq!(
        fetches(&idp).await,
        1,
        "one coalesced fetch after the reset"
    );

    // Unknown kids again: no fetch until the interval passed, then exactly one.
    let results = futures::future::join_all(flood.iter().map(|t| call(&app, Some(t)))).await;
    assert!(results.iter().all(|(s, _, _)| *s == 401));
    if rotation.elapsed() < interval {
        assert_eq!(fetches(&idp).await, 1);
    }
    tokio::time::sleep(interval + Duration::from_millis(100)).await;
    let before = fetches(&idp).await;
    let results = futures::future::join_all(flood.iter().map(|t| call(&app, Some(t)))).await;
    assert!(results.iter().all(|(s, _, _)| *s == 401));
    assert_eq!(fetches(&idp).await, before + 1);
}

#[actix_web::test]
async fn a_fetch_slower_than_the_interval_is_still_shared() {
    let idp = MockServer::start().await;
    serve_keys(
        &idp,
        json!([jwk(&rs_key(), Algorithm::RS256, "rs-1", true)]),
        Duration::from_millis(1200),
    )
    .await;
    let url = format!("{}/jwks.json", idp.uri());
    let extra = "jwks_min_refresh_interval = \"300ms\"\njwks_timeout = \"5s\"";
    let app = app_of(jwks_state(&auth_table(&url, r#"["RS256"]"#, extra))).await;
    let token = bearer(&sign(
        Algorithm::RS256,
        &rs_key(),
        Some("rs-1"),
        &claims("admin"),
    ));
    let results = futures::future::join_all((0..20).map(|_| call(&app, Some(&token)))).await;
    assert!(results.iter().all(|(s, _, _)| *s == 200));
    assert_eq!(
        fetches(&idp).await,
        1,
        "the waiters used the slow fetch's keys"
    );
}

#[actix_web::test]
async fn known_keys_stay_in_use_while_the_idp_is_down() {
    let idp = MockServer::start().await;
    serve_keys(
        &idp,
        json!([jwk(&rs_key(), Algorithm::RS256, "rs-1", true)]),
        Duration::ZERO,
    )
    .await;
    let url = format!("{}/jwks.json", idp.uri());
    let extra = "jwks_min_refresh_interval = \"500ms\"\njwks_cache_ttl = \"500ms\"\njwks_timeout = \"300ms\"";
    let app = app_of(jwks_state(&auth_table(&url, r#"["RS256"]"#, extra))).await;
    let c = claims("admin");
    let known = bearer(&sign(Algorithm::RS256, &rs_key(), Some("rs-1"), &c));
    let unknown = bearer(&sign(Algorithm::RS256, &rs_key(), Some("rs-2"), &c));
    assert_eq!(call(&app, Some(&known)).await.0, 200);

    // Down in several ways: 500, an answer that is not a JWKS, no usable key, a hang.
    let outages: Vec<ResponseTemplate> = vec![
        ResponseTemplate::new(500),
        ResponseTemplate::new(200).set_body_string("<html>maintenance</html>"),
        ResponseTemplate::new(200).set_body_json(json!({"keys": []})),
        ResponseTemplate::new(200)
            .set_body_json(json!({"keys": [jwk(&rs_key(), Algorithm::RS256, "rs-1", true)]}))
            .set_delay(Duration::from_secs(5)),
    ];
    let mut expected = 1;
    for outage in outages {
        idp.reset().await;
        Mock::given(method("GET"))
            .and(path("/jwks.json"))
            .respond_with(outage)
            .mount(&idp)
            .await;
        tokio::time::sleep(Duration::from_millis(600)).await; // past the TTL
        let started = Instant::now();
        assert_eq!(
            call(&app, Some(&known)).await.0,
            200,
            "stale known key still verifies"
        );
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "{:?}",
            started.elapsed()
        );
        assert_eq!(call(&app, Some(&known)).await.0, 200);
        assert_eq!(call(&app, Some(&unknown)).await.0, 401);
        expected += 1;
        // `reset` cleared the log: one refresh attempt per outage, the rest within the interval.
        assert_eq!(fetches(&idp).await, 1, "outage #{expected}");
    }
}

#[actix_web::test]
async fn redirects_and_oversized_documents_are_refused() {
    let idp = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/jwks.json"))
        .respond_with(ResponseTemplate::new(302).insert_header("location", "/real.json"))
        .mount(&idp)
        .await;
    Mock::given(method("GET"))
        .and(path("/real.json"))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(json!({"keys": [jwk(&rs_key(), Algorithm::RS256, "rs-1", true)]})),
        )
        .mount(&idp)
        .await;
    let mut big = vec![jwk(&rs_key(), Algorithm::RS256, "rs-1", true)];
    big.extend((0..1000).map(|i| jwk(&rs_key(), Algorithm::RS256, &format!("pad-{i}"), true)));
    Mock::given(method("GET"))
        .and(path("/big.json"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({ "keys": big })))
        .mount(&idp)
        .await;
    let token = bearer(&sign(
        Algorithm::RS256,
        &rs_key(),
        Some("rs-1"),
        &claims("admin"),
    ));
    for p in ["/jwks.json", "/big.json"] {
        let url = format!("{}{p}", idp.uri());
        let app = app_of(jwks_state(&auth_table(&url, r#"["RS256"]"#, ""))).await;
        assert_eq!(call(&app, Some(&token)).await.0, 401, "{p}");
    }
    let paths: Vec<String> = idp
        .received_requests()
        .await
        .unwrap()
        .iter()
        .map(|r| r.url.path().to_owned())
        .collect();
    assert!(!paths.contains(&"/real.json".to_owned()), "{paths:?}");
}

#[test]
fn jwks_configuration_is_checked() {
    let parse = |auth: &str| {
        Config::parse(&format!("[auth]\n{auth}\n"), &|k| {
            (k == "RS").then(|| crate::jose::RS_PUBLIC.to_owned())
        })
    };
    let ok = parse(&auth_table(
        "https://idp.example/jwks.json",
        r#"["RS256", "ES256"]"#,
        "",
    ));
    assert!(ok.is_ok(), "{ok:?}");
    assert!(parse(&auth_table("http://127.0.0.1:9/jwks", r#"["RS256"]"#, "")).is_ok());
    for (auth, key) in [
        (
            auth_table("http://idp.example/jwks.json", r#"["RS256"]"#, ""),
            "auth.jwks_url",
        ),
        (
            auth_table("https://user:pw@idp.example/jwks.json", r#"["RS256"]"#, ""),
            "auth.jwks_url",
        ),
        (
            auth_table(
                "https://idp.example/jwks.json",
                r#"["HS256"]"#,
                "hs256_secret = \"0123456789abcdef0123456789abcdef\"",
            ),
            "auth.jwks_url",
        ),
        (
            auth_table(
                "https://idp.example/jwks.json",
                r#"["RS256"]"#,
                "jwks_min_refresh_interval = \"0s\"",
            ),
            "auth.jwks_min_refresh_interval",
        ),
        (
            auth_table(
                "https://idp.example/jwks.json",
                r#"["RS256"]"#,
                "jwks_min_refresh_interval = \"10m\"\njwks_cache_ttl = \"1m\"",
            ),
            "auth.jwks_cache_ttl",
        ),
        (
            "algorithms = [\"RS256\"]".to_owned(),
            "auth.rs256_public_key_pem",
        ),
    ] {
        let e = parse(&auth).unwrap_err();
        assert!(e.errors.iter().any(|(p, _)| p == key), "{key}: {e}");
    }
    // The JWKS URL shows in Debug (it is not a secret); keys never do.
    let c = parse(&auth_table(
        "https://idp.example/jwks.json",
        r#"["RS256"]"#,
        "",
    ))
    .unwrap();
    assert!(format!("{:?}", c.auth).contains("https://idp.example/jwks.json"));
}
