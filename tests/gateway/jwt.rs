//! Public-key JWTs (RS256, ES256) from static PEM keys and algorithm pinning.

use std::sync::Arc;

use actix_web::{test, web};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use usage_core::DynUsageProvider;
use usage_gateway::auth::mint_dev_token;
use usage_gateway::config::Config;
use usage_gateway::state::AppState;

use crate::common::{RANGE, alpha, claims};

const RS_PRIVATE: &str = include_str!("../../fixtures/jwt/rs256-private.pem");
const RS_PUBLIC: &str = include_str!("../../fixtures/jwt/rs256-public.pem");
const ES_PRIVATE: &str = include_str!("../../fixtures/jwt/es256-private.pem");
const ES_PUBLIC: &str = include_str!("../../fixtures/jwt/es256-public.pem");

fn config() -> Config {
    let text = r#"
[auth]
algorithms = ["RS256", "ES256"]
rs256_public_key_pem = "${RS}"
es256_public_key_pem = "${ES}"
issuer = "https://idp.test"
audience = "usage-gateway"
typ = "JWT"
[[access]]
claim = "sub"
value = "admin"
sources = ["*"]
"#;
    Config::parse(text, &|k| match k {
        "RS" => Some(RS_PUBLIC.to_owned()),
        "ES" => Some(ES_PUBLIC.to_owned()),
        _ => None,
    })
    .unwrap()
}

fn sign(alg: Algorithm, key: &EncodingKey, typ: Option<&str>, kid: Option<&str>) -> String {
    let mut h = Header::new(alg);
    h.typ = typ.map(str::to_owned);
    h.kid = kid.map(str::to_owned);
    jsonwebtoken::encode(&h, &claims("admin"), key).unwrap()
}

#[actix_web::test]
async fn rs256_and_es256_tokens_verify_and_confusion_fails() {
    let providers: Vec<DynUsageProvider> = vec![Arc::new(alpha())];
    let state = web::Data::new(AppState::new(config(), providers).unwrap());
    let app = crate::common::app_of(state, false).await;
    let rs = EncodingKey::from_rsa_pem(RS_PRIVATE.as_bytes()).unwrap();
    let es = EncodingKey::from_ec_pem(ES_PRIVATE.as_bytes()).unwrap();
    let status = |token: String| {
        let req = test::TestRequest::get()
            .uri(&format!("/v1/usage?{RANGE}"))
            .insert_header(("Authorization", format!("Bearer {token}")))
            .to_request();
        let app = &app;
        async move { test::call_service(app, req).await.status().as_u16() }
    };
    assert_eq!(
        status(sign(Algorithm::RS256, &rs, Some("JWT"), None)).await,
        200
    );
    assert_eq!(
        status(sign(Algorithm::ES256, &es, Some("JWT"), None)).await,
        200
    );
    // Without `auth.jwks_url` a `kid` (identity providers always send one) does not matter.
    assert_eq!(
        status(sign(Algorithm::RS256, &rs, Some("JWT"), Some("idp-key-7"))).await,
        200
    );
    // Algorithm confusion: HS256 keyed with the RSA public key bytes.
    let confused = EncodingKey::from_secret(RS_PUBLIC.as_bytes());
    assert_eq!(
        status(sign(Algorithm::HS256, &confused, Some("JWT"), None)).await,
        401
    );
    // A listed algorithm with the other family's key: an ES256 header over an RS256 signature.
    let mut forged = sign(Algorithm::RS256, &rs, Some("JWT"), None);
    let header_es = sign(Algorithm::ES256, &es, Some("JWT"), None);
    forged.replace_range(
        ..forged.find('.').unwrap(),
        &header_es[..header_es.find('.').unwrap()],
    );
    assert_eq!(status(forged).await, 401);
    // The rest of the attack matrix (typ, jku, oversized, tampered, truncated, ...) is in
    // `jwt_matrix.rs`.
}

#[actix_web::test]
async fn dev_tokens_need_an_hs256_secret() {
    let err = mint_dev_token(&config().auth, "me", 0).unwrap_err();
    assert!(err.contains("HS256"), "{err}");
}
