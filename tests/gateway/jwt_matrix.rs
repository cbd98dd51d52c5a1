//! The JWT attack matrix: every forged, malformed, stale or misdirected token answers 401 with the
//! same body and header as a request without any token, and nothing the token names is fetched.

use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Value, json};
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

use crate::common::{SECRET, claims};
use crate::jose::{
    ES_PUBLIC, RS_PUBLIC, app_of, b64, call, es_key, jwk, jwks_state, raw_token, rs_key, sign,
};

fn auth_table(jwks_url: &str) -> String {
    format!(
        r#"algorithms = ["HS256", "RS256", "ES256"]
hs256_secret = "${{SECRET}}"
rs256_public_key_pem = "${{RS}}"
jwks_url = "{jwks_url}"
jwks_min_refresh_interval = "10s"
issuer = "https://idp.test"
audience = "usage-gateway"
typ = "JWT"
leeway = "5s""#
    )
}

fn hs(claims: &Value) -> String {
    sign(
        Algorithm::HS256,
        &EncodingKey::from_secret(SECRET.as_bytes()),
        None,
        claims,
    )
}

fn with(mut c: Value, key: &str, v: Value) -> Value {
    c[key] = v;
    c
}

fn without(mut c: Value, key: &str) -> Value {
    c.as_object_mut().unwrap().remove(key);
    c
}

#[actix_web::test]
async fn every_bad_token_is_the_same_401() {
    let idp = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/jwks.json"))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(json!({"keys": [jwk(&es_key(), Algorithm::ES256, "es-1", true)]})),
        )
        .mount(&idp)
        .await;
    Mock::given(method("GET"))
        .and(path("/evil.json"))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(json!({"keys": [jwk(&rs_key(), Algorithm::RS256, "evil", true)]})),
        )
        .mount(&idp)
        .await;
    let state = jwks_state(&auth_table(&format!("{}/jwks.json", idp.uri())));
    let app = app_of(state).await;
    let now = chrono::Utc::now().timestamp();
    let good = claims("admin");

    // Positive controls: each key path works, and `exp`/`nbf`/`iat` inside the leeway are accepted.
    for (name, token) in [
        ("HS256", hs(&good)),
        (
            "HS256 with a kid (the static secret still applies)",
            sign(
                Algorithm::HS256,
                &EncodingKey::from_secret(SECRET.as_bytes()),
                Some("dev"),
                &good,
            ),
        ),
        (
            "RS256 static",
            sign(Algorithm::RS256, &rs_key(), None, &good),
        ),
        (
            "ES256 from the JWKS",
            sign(Algorithm::ES256, &es_key(), Some("es-1"), &good),
        ),
        (
            "expired within leeway",
            hs(&with(good.clone(), "exp", json!(now - 2))),
        ),
        (
            "nbf within leeway",
            hs(&with(good.clone(), "nbf", json!(now + 2))),
        ),
        (
            "iat within leeway",
            hs(&with(good.clone(), "iat", json!(now + 2))),
        ),
        (
            "iat in the past",
            hs(&with(good.clone(), "iat", json!(now - 600))),
        ),
    ] {
        let (status, _, body) = call(&app, Some(&format!("Bearer {token}"))).await;
        assert_eq!(status, 200, "{name}: {}", String::from_utf8_lossy(&body));
    }

    let (status, www, baseline) = call(&app, None).await;
    assert_eq!(status, 401);
    assert_eq!(www.as_deref(), Some("Bearer error=\"invalid_token\""));
    let body: Value = serde_json::from_slice(&baseline).unwrap();
    assert_eq!(body["detail"], "A valid bearer token is required.");

    let rs_confusion = EncodingKey::from_secret(RS_PUBLIC.as_bytes());
    let es_confusion = EncodingKey::from_secret(ES_PUBLIC.as_bytes());
    let signed_good = hs(&good);
    let parts: Vec<&str> = signed_good.split('.').collect();
    let sig = parts[2];
    let other = hs(&with(good.clone(), "sub", json!("root")));
    let none_header = |alg: &str| json!({"alg": alg, "typ": "JWT"});
    let header_with = |extra: Value| {
        let mut h = json!({"alg": "RS256", "typ": "JWT"});
        for (k, v) in extra.as_object().unwrap() {
            h[k] = v.clone();
        }
        h
    };
    // A validly signed token (static RS256 key, no `kid`) whose header also names a key source:
    // only the header rule can refuse it.
    let self_signed = |extra: Value| {
        let header = header_with(extra);
        let unsigned = format!(
            "{}.{}",
            b64(header.to_string().as_bytes()),
            b64(good.to_string().as_bytes())
        );
        let sig =
            jsonwebtoken::crypto::sign(unsigned.as_bytes(), &rs_key(), Algorithm::RS256).unwrap();
        format!("{unsigned}.{sig}")
    };
    let mut hs512 = Header::new(Algorithm::HS512);
    hs512.typ = Some("JWT".into());
    let mut crit = Header::new(Algorithm::HS256);
    crit.crit = Some(vec!["exp".into()]);
    let mut at_jwt = Header::new(Algorithm::HS256);
    at_jwt.typ = Some("at+jwt".into());
    let mut no_typ = Header::new(Algorithm::HS256);
    no_typ.typ = None;
    let secret = EncodingKey::from_secret(SECRET.as_bytes());
    let padded = with(good.clone(), "pad", json!("x".repeat(9 * 1024)));

    let cases: Vec<(&str, String)> = vec![
        ("alg none", raw_token(&none_header("none"), &good, "")),
        ("alg None", raw_token(&none_header("None"), &good, "")),
        ("alg NONE", raw_token(&none_header("NONE"), &good, "")),
        ("alg nOnE", raw_token(&none_header("nOnE"), &good, "")),
        (
            "alg none with a signature",
            raw_token(&none_header("none"), &good, sig),
        ),
        ("alg empty", raw_token(&none_header(""), &good, sig)),
        (
            "HS256 keyed with the RSA public key",
            sign(Algorithm::HS256, &rs_confusion, None, &good),
        ),
        (
            "HS256 keyed with the EC public key",
            sign(Algorithm::HS256, &es_confusion, None, &good),
        ),
        (
            "HS256 with another secret",
            sign(
                Algorithm::HS256,
                &EncodingKey::from_secret(b"another-secret-another-secret-0123456789"),
                None,
                &good,
            ),
        ),
        (
            "HS512 (not pinned) with the right secret",
            jsonwebtoken::encode(&hs512, &good, &secret).unwrap(),
        ),
        (
            "wrong aud",
            hs(&with(good.clone(), "aud", json!("someone-else"))),
        ),
        (
            "aud list without ours",
            hs(&with(good.clone(), "aud", json!(["a", "b"]))),
        ),
        ("missing aud", hs(&without(good.clone(), "aud"))),
        (
            "wrong iss",
            hs(&with(good.clone(), "iss", json!("https://evil.test"))),
        ),
        ("missing iss", hs(&without(good.clone(), "iss"))),
        ("missing exp", hs(&without(good.clone(), "exp"))),
        (
            "expired beyond leeway",
            hs(&with(good.clone(), "exp", json!(now - 60))),
        ),
        (
            "exp as a string",
            hs(&with(good.clone(), "exp", json!((now + 600).to_string()))),
        ),
        (
            "exp as a float",
            hs(&with(good.clone(), "exp", json!(1e300))),
        ),
        ("exp null", hs(&with(good.clone(), "exp", Value::Null))),
        (
            "nbf in the future",
            hs(&with(good.clone(), "nbf", json!(now + 3600))),
        ),
        (
            "nbf as a string",
            hs(&with(good.clone(), "nbf", json!("0"))),
        ),
        (
            "iat beyond the leeway",
            hs(&with(good.clone(), "iat", json!(now + 60))),
        ),
        (
            "iat as a string",
            hs(&with(good.clone(), "iat", json!(now.to_string()))),
        ),
        (
            "unknown kid",
            sign(Algorithm::ES256, &es_key(), Some("no-such-kid"), &good),
        ),
        (
            "path traversal kid",
            sign(Algorithm::ES256, &es_key(), Some("../../etc/passwd"), &good),
        ),
        (
            "URL as kid",
            sign(
                Algorithm::ES256,
                &es_key(),
                Some(&format!("{}/evil.json", idp.uri())),
                &good,
            ),
        ),
        (
            "RS256 token naming the ES256 kid",
            sign(Algorithm::RS256, &rs_key(), Some("es-1"), &good),
        ),
        (
            "jku pointing elsewhere",
            self_signed(json!({"jku": format!("{}/evil.json", idp.uri())})),
        ),
        (
            "x5u pointing elsewhere",
            self_signed(json!({"x5u": format!("{}/evil.pem", idp.uri())})),
        ),
        (
            "embedded jwk",
            self_signed(json!({"jwk": jwk(&rs_key(), Algorithm::RS256, "evil", true)})),
        ),
        ("x5c chain", self_signed(json!({"x5c": ["MIIB"]}))),
        (
            "crit header",
            jsonwebtoken::encode(&crit, &good, &secret).unwrap(),
        ),
        (
            "tampered payload",
            format!("{}.{}.{}", parts[0], other.split('.').nth(1).unwrap(), sig),
        ),
        ("truncated", signed_good[..signed_good.len() - 5].to_owned()),
        ("signature stripped", format!("{}.{}.", parts[0], parts[1])),
        ("two parts", format!("{}.{}", parts[0], parts[1])),
        ("four parts", format!("{signed_good}.{sig}")),
        ("oversized (> 8 KiB) but validly signed", hs(&padded)),
        (
            "wrong typ",
            jsonwebtoken::encode(&at_jwt, &good, &secret).unwrap(),
        ),
        (
            "missing typ",
            jsonwebtoken::encode(&no_typ, &good, &secret).unwrap(),
        ),
        ("garbage", "not-a-jwt".to_owned()),
        (
            "header not JSON",
            format!("{}.{}.{sig}", b64(b"{oops"), parts[1]),
        ),
    ];
    let mut failures = Vec::new();
    for (name, token) in &cases {
        let (status, www_case, body) = call(&app, Some(&format!("Bearer {token}"))).await;
        if status != 401 || www_case != www || body != baseline {
            failures.push(format!(
                "{name}: {status} {www_case:?} {}",
                String::from_utf8_lossy(&body)
            ));
        }
    }
    // Malformed `Authorization` headers are the same 401.
    for value in [
        "Basic YWRtaW46YWRtaW4=",
        "Bearer",
        "Bearer ",
        "Token abc",
        &signed_good,
    ] {
        let (status, www_case, body) = call(&app, Some(value)).await;
        if status != 401 || www_case != www || body != baseline {
            failures.push(format!("Authorization `{value}`: {status}"));
        }
    }
    assert!(failures.is_empty(), "{failures:#?}");

    // Nothing a token named was ever fetched, and the unknown kids caused no second JWKS fetch
    // within the 10 s minimum interval.
    let requests = idp.received_requests().await.unwrap();
    let paths: Vec<&str> = requests.iter().map(|r| r.url.path()).collect();
    assert_eq!(paths, ["/jwks.json"], "only the configured JWKS, once");
}

/// A token that passed once is remembered, but only as long as it is valid: once `exp` (plus
/// leeway) has passed it is refused like any expired token, and a token that differs in a single
/// character of its signature never matches the remembered one.
#[actix_web::test]
async fn a_remembered_token_expires_on_time() {
    let state = jwks_state(
        r#"algorithms = ["HS256"]
hs256_secret = "${SECRET}"
issuer = "https://idp.test"
audience = "usage-gateway"
leeway = "0s""#,
    );
    let app = app_of(state.clone()).await;
    let now = chrono::Utc::now().timestamp();
    let token = hs(&with(claims("admin"), "exp", json!(now + 2)));
    let bearer = format!("Bearer {token}");
    for _ in 0..2 {
        let (status, _, body) = call(&app, Some(&bearer)).await;
        assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    }
    assert!(
        state.callers.contains_key(&token),
        "the token is remembered"
    );

    let forged = crate::common::forge_signature(&token);
    let (status, _, _) = call(&app, Some(&format!("Bearer {forged}"))).await;
    assert_eq!(
        status, 401,
        "a different signature is checked, not remembered"
    );

    let wait = u64::try_from(now + 3 - chrono::Utc::now().timestamp()).unwrap_or(0);
    tokio::time::sleep(std::time::Duration::from_millis(wait * 1000 + 200)).await;
    let (status, www, _) = call(&app, Some(&bearer)).await;
    assert_eq!(status, 401, "expired while remembered");
    assert_eq!(www.as_deref(), Some("Bearer error=\"invalid_token\""));
}
