//! JOSE helpers for the security tests: fixture keys, JWKs, hand-made tokens, a JWKS app.

use std::sync::Arc;

use actix_web::body::MessageBody;
use actix_web::dev::{Service, ServiceResponse};
use actix_web::{test, web};
use jsonwebtoken::jwk::Jwk;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Value, json};
use usage_core::DynUsageProvider;
use usage_gateway::config::Config;
use usage_gateway::state::AppState;

use crate::common::{SECRET, alpha};

pub const RS_PRIVATE: &str = include_str!("../../fixtures/jwt/rs256-private.pem");
pub const RS_PUBLIC: &str = include_str!("../../fixtures/jwt/rs256-public.pem");
pub const ES_PRIVATE: &str = include_str!("../../fixtures/jwt/es256-private.pem");
pub const ES_PUBLIC: &str = include_str!("../../fixtures/jwt/es256-public.pem");

pub fn rs_key() -> EncodingKey {
    EncodingKey::from_rsa_pem(RS_PRIVATE.as_bytes()).unwrap()
}

pub fn es_key() -> EncodingKey {
    EncodingKey::from_ec_pem(ES_PRIVATE.as_bytes()).unwrap()
}

/// URL-safe base64 without padding.
pub fn b64(bytes: &[u8]) -> String {
    const T: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |acc, (i, &x)| acc | (u32::from(x) << (16 - 8 * i)));
        for i in 0..=chunk.len() {
            out.push(T[((n >> (18 - 6 * i)) & 63) as usize] as char);
        }
    }
    out
}

/// A token with any header and claims JSON and a given signature part (no signing).
pub fn raw_token(header: &Value, claims: &Value, signature: &str) -> String {
    format!(
        "{}.{}.{signature}",
        b64(header.to_string().as_bytes()),
        b64(claims.to_string().as_bytes())
    )
}

/// Signs `claims` with `alg`/`key`, header `typ` and optional `kid`.
pub fn sign(alg: Algorithm, key: &EncodingKey, kid: Option<&str>, claims: &Value) -> String {
    let mut h = Header::new(alg);
    h.kid = kid.map(str::to_owned);
    jsonwebtoken::encode(&h, claims, key).unwrap()
}

/// The public JWK of a fixture private key, with `kid` and (optionally) `alg`.
pub fn jwk(key: &EncodingKey, alg: Algorithm, kid: &str, with_alg: bool) -> Value {
    let mut v = serde_json::to_value(Jwk::from_encoding_key(key, alg).unwrap()).unwrap();
    v["kid"] = json!(kid);
    v["use"] = json!("sig");
    if !with_alg {
        v.as_object_mut().unwrap().remove("alg");
    }
    v
}

/// A gateway over the static `alpha` source with this `[auth]` table body (and `admin` access).
pub fn jwks_state(auth: &str) -> web::Data<AppState> {
    let text = format!(
        "[auth]\n{auth}\n[[access]]\nclaim = \"sub\"\nvalue = \"admin\"\nsources = [\"*\"]\n"
    );
    let config = Config::parse(&text, &|k| match k {
        "SECRET" => Some(SECRET.to_owned()),
        "RS" => Some(RS_PUBLIC.to_owned()),
        "ES" => Some(ES_PUBLIC.to_owned()),
        _ => None,
    })
    .unwrap_or_else(|e| panic!("{e}"));
    let providers: Vec<DynUsageProvider> = vec![Arc::new(alpha())];
    web::Data::new(AppState::new(config, providers).unwrap())
}

pub async fn app_of(
    state: web::Data<AppState>,
) -> impl Service<
    actix_http::Request,
    Response = ServiceResponse<impl MessageBody>,
    Error = actix_web::Error,
> {
    crate::common::app_of(state, false).await
}

/// Calls `GET /v1/sources` with a fixed request id and returns status, `WWW-Authenticate` and body.
pub async fn call(
    app: &impl Service<
        actix_http::Request,
        Response = ServiceResponse<impl MessageBody>,
        Error = actix_web::Error,
    >,
    authorization: Option<&str>,
) -> (u16, Option<String>, Vec<u8>) {
    let mut req = test::TestRequest::get()
        .uri("/v1/sources")
        .insert_header(("x-request-id", "matrix"));
    if let Some(a) = authorization {
        req = req.insert_header(("Authorization", a));
    }
    let resp = test::call_service(app, req.to_request()).await;
    let status = resp.status().as_u16();
    let www = resp
        .headers()
        .get("www-authenticate")
        .map(|v| v.to_str().unwrap().to_owned());
    let body = test::read_body(resp).await.to_vec();
    (status, www, body)
}
