//! The identity provider's JWKS: keys fetched from `auth.jwks_url`, cached by `kid`, each bound
//! to one algorithm, refreshed at most once per `auth.jwks_min_refresh_interval`, and kept while
//! the identity provider is unreachable.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use jsonwebtoken::jwk::{
    AlgorithmParameters, EllipticCurve, Jwk, KeyAlgorithm, KeyOperations, PublicKeyUse,
};
use jsonwebtoken::{Algorithm, DecodingKey};
use serde::Deserialize;
use url::Url;

use crate::config::AuthConfig;

/// The largest JWKS document read; a longer answer is refused (and known keys are kept).
pub const MAX_JWKS_BYTES: usize = 256 * 1024;

/// The most keys taken from one JWKS document.
pub const MAX_JWKS_KEYS: usize = 64;

/// The longest `kid` looked up; a longer one is refused without a fetch.
pub const MAX_KID_BYTES: usize = 256;

/// One verification key from the JWKS, bound to the single algorithm it may verify.
#[derive(Clone)]
pub struct BoundKey {
    /// The only algorithm this key verifies.
    pub alg: Algorithm,
    /// The public key.
    pub key: Arc<DecodingKey>,
}

impl std::fmt::Debug for BoundKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BoundKey")
            .field("alg", &self.alg)
            .finish_non_exhaustive()
    }
}

/// The keys of one successful fetch.
#[derive(Debug, Default)]
struct Snapshot {
    keys: HashMap<String, BoundKey>,
    fetched_at: Option<Instant>,
}

/// A JWKS cache: lookups by `kid`, coalesced and rate-limited refreshes.
pub struct JwksCache {
    url: Url,
    client: reqwest::Client,
    allowed: Vec<Algorithm>,
    min_refresh: Duration,
    ttl: Duration,
    snapshot: RwLock<Arc<Snapshot>>,
    last_attempt: Mutex<Option<Instant>>,
    /// Fetches finished (successful or not).
    attempts: AtomicU64,
    fetch_lock: tokio::sync::Mutex<()>,
}

impl std::fmt::Debug for JwksCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let kids: Vec<String> = self.read().keys.keys().cloned().collect();
        f.debug_struct("JwksCache")
            .field("url", &self.url.as_str())
            .field("allowed", &self.allowed)
            .field("min_refresh", &self.min_refresh)
            .field("ttl", &self.ttl)
            .field("kids", &kids)
            .finish_non_exhaustive()
    }
}

impl JwksCache {
    /// Builds the cache for `auth.jwks_url` (no fetch happens until the first token needs one).
    pub fn new(cfg: &AuthConfig, url: Url, allowed: Vec<Algorithm>) -> Result<Self, String> {
        let client = reqwest::Client::builder()
            .timeout(cfg.jwks_timeout)
            .connect_timeout(cfg.jwks_timeout)
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("usage-gateway/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| format!("cannot build the JWKS HTTP client: {e}"))?;
        Ok(Self {
            url,
            client,
            allowed,
            min_refresh: cfg.jwks_min_refresh_interval,
            ttl: cfg.jwks_cache_ttl,
            snapshot: RwLock::new(Arc::new(Snapshot::default())),
            last_attempt: Mutex::new(None),
            attempts: AtomicU64::new(0),
            fetch_lock: tokio::sync::Mutex::new(()),
        })
    }

    fn read(&self) -> Arc<Snapshot> {
        self.snapshot
            .read()
            .map_or_else(|p| Arc::clone(&p.into_inner()), |g| Arc::clone(&g))
    }

    /// Returns the key for `kid` when it exists and is bound to `alg`.
    ///
    /// An unknown `kid` waits for one refresh (shared with every concurrent caller); a known key
    /// past `jwks_cache_ttl` is refreshed by whichever caller gets there first while the others
    /// go on with the known key. Neither happens more than once per `jwks_min_refresh_interval`.
    pub async fn key(&self, kid: &str, alg: Algorithm) -> Option<BoundKey> {
        if kid.is_empty() || kid.len() > MAX_KID_BYTES || !self.allowed.contains(&alg) {
            return None;
        }
        let snap = self.read();
        let fresh = snap.fetched_at.is_some_and(|t| t.elapsed() < self.ttl);
        match snap.keys.get(kid) {
            Some(k) if fresh => return bound(k, alg),
            Some(_) => self.refresh(false).await,
            None => self.refresh(true).await,
        }
        self.read().keys.get(kid).and_then(|k| bound(k, alg))
    }

    fn may_attempt(&self) -> bool {
        self.last_attempt
            .lock()
            .map_or(true, |t| t.is_none_or(|t| t.elapsed() >= self.min_refresh))
    }

    /// Fetches the JWKS unless a fetch happened less than `min_refresh` ago; with `wait`, a
    /// caller that finds a fetch in flight waits for its result, otherwise it returns at once.
    async fn refresh(&self, wait: bool) {
        let seen = self.attempts.load(Ordering::Acquire);
        let _guard = if wait {
            self.fetch_lock.lock().await
        } else {
            match self.fetch_lock.try_lock() {
                Ok(g) => g,
                Err(_) => return,
            }
        };
        // A fetch finished while this caller waited for the lock (however long it took), or one
        // started less than the minimum interval ago: its outcome stands.
        if self.attempts.load(Ordering::Acquire) != seen || !self.may_attempt() {
            return;
        }
        if let Ok(mut t) = self.last_attempt.lock() {
            *t = Some(Instant::now());
        }
        let fetched = self.fetch().await;
        // Counted when done, so that callers that waited for this fetch see it happened.
        self.attempts.fetch_add(1, Ordering::AcqRel);
        match fetched {
            Ok(keys) => {
                tracing::info!(url = %self.url, keys = keys.len(), "JWKS refreshed");
                metrics::counter!(crate::obs::names::JWKS_REFRESHES, "outcome" => "ok")
                    .increment(1);
                let snap = Arc::new(Snapshot {
                    keys,
                    fetched_at: Some(Instant::now()),
                });
                match self.snapshot.write() {
                    Ok(mut g) => *g = snap,
                    Err(p) => *p.into_inner() = snap,
                }
            }
            Err(e) => {
                metrics::counter!(crate::obs::names::JWKS_REFRESHES, "outcome" => "error")
                    .increment(1);
                tracing::warn!(url = %self.url, error = %e, "JWKS refresh failed; known keys stay in use");
            }
        }
    }

    async fn fetch(&self) -> Result<HashMap<String, BoundKey>, String> {
        let mut resp = self
            .client
            .get(self.url.clone())
            .header(reqwest::header::ACCEPT, "application/json")
            .send()
            .await
            .map_err(|e| format!("request failed: {}", e.without_url()))?;
        if !resp.status().is_success() {
            return Err(format!("answered HTTP {}", resp.status().as_u16()));
        }
        if resp
            .content_length()
            .is_some_and(|n| n > MAX_JWKS_BYTES as u64)
        {
            return Err(format!(
                "the document is larger than {MAX_JWKS_BYTES} bytes"
            ));
        }
        let mut body = Vec::new();
        while let Some(chunk) = resp
            .chunk()
            .await
            .map_err(|e| format!("reading failed: {}", e.without_url()))?
        {
            if body.len() + chunk.len() > MAX_JWKS_BYTES {
                return Err(format!(
                    "the document is larger than {MAX_JWKS_BYTES} bytes"
                ));
            }
            body.extend_from_slice(&chunk);
        }
        parse_jwks(&body, &self.allowed)
    }
}

fn bound(k: &BoundKey, alg: Algorithm) -> Option<BoundKey> {
    (k.alg == alg).then(|| k.clone())
}

#[derive(Deserialize)]
struct JwkSetWire {
    keys: Vec<serde_json::Value>,
}

/// Parses a JWKS document into signature keys by `kid`, each bound to one algorithm in `allowed`.
///
/// A key's algorithm is its `alg`, or without one its `kty` family (`RSA` → RS256, `EC` on P-256
/// → ES256). Keys without `kid`, for encryption, of another type or algorithm, symmetric
/// (`oct`) keys and duplicate `kid`s are skipped. A document without one usable key is an error,
/// so that the known keys stay in use.
pub fn parse_jwks(body: &[u8], allowed: &[Algorithm]) -> Result<HashMap<String, BoundKey>, String> {
    let set: JwkSetWire =
        serde_json::from_slice(body).map_err(|e| format!("not a JWKS document: {e}"))?;
    let mut out = HashMap::new();
    let mut skipped = 0usize;
    for value in set.keys.into_iter().take(MAX_JWKS_KEYS) {
        match usable(value, allowed) {
            Some((kid, key)) if !out.contains_key(&kid) => {
                out.insert(kid, key);
            }
            _ => skipped += 1,
        }
    }
    if skipped > 0 {
        tracing::debug!(
            skipped,
            "JWKS keys skipped (no kid, not for signatures, or another algorithm)"
        );
    }
    if out.is_empty() {
        return Err("the document has no usable signature key".to_owned());
    }
    Ok(out)
}

fn usable(value: serde_json::Value, allowed: &[Algorithm]) -> Option<(String, BoundKey)> {
    let jwk: Jwk = serde_json::from_value(value).ok()?;
    let kid = jwk
        .common
        .key_id
        .clone()
        .filter(|k| !k.is_empty() && k.len() <= MAX_KID_BYTES)?;
    if matches!(jwk.common.public_key_use, Some(ref u) if *u != PublicKeyUse::Signature) {
        return None;
    }
    if let Some(ops) = &jwk.common.key_operations
        && !ops.contains(&KeyOperations::Verify)
    {
        return None;
    }
    let p256 = |a: &AlgorithmParameters| matches!(a, AlgorithmParameters::EllipticCurve(p) if p.curve == EllipticCurve::P256);
    let alg = match (jwk.common.key_algorithm, &jwk.algorithm) {
        (Some(KeyAlgorithm::RS256) | None, AlgorithmParameters::RSA(_)) => Algorithm::RS256,
        (Some(KeyAlgorithm::ES256) | None, a) if p256(a) => Algorithm::ES256,
        _ => return None,
    };
    if !allowed.contains(&alg) {
        return None;
    }
    let key = DecodingKey::from_jwk(&jwk).ok()?;
    Some((
        kid,
        BoundKey {
            alg,
            key: Arc::new(key),
        },
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    const RSA_N: &str = "sXchDaQebHnPiGvyDOAT4saGEUetSyo9MKLOoWFsueri23bOdgWp4Dy1WlUzewbgBHod5pcM9H95GQRV3JDXboIRROSBigeC5yjU1hGzHHyXss8UDprecbAYxknTcQkhslANGRUZmdTOQ5qTRsLAt6BTYuyvVRdhS8exSZEy_c4gs_7svlJJQ4H9_NxsiIoLwAEk7-Q3UXERGYw_75IDrGA84-lA_-Ct4eTlXHBIY2EaV7t7LjJaynVJCpkv4LKjTTAumiGUIuQhrNhZLuF_RJLqHpM2kgWFLU7-VTdL1VbC2tejvcI2BlMkEpk1BzBZI0KQB0GaDWFLN-aEAw3vRw";

    fn rsa(kid: &str, alg: Option<&str>) -> serde_json::Value {
        let mut v = serde_json::json!({"kty": "RSA", "kid": kid, "n": RSA_N, "e": "AQAB"});
        if let Some(a) = alg {
            v["alg"] = a.into();
        }
        v
    }

    #[test]
    fn keys_bind_to_their_alg_or_kty_family() {
        let doc = serde_json::json!({"keys": [
            rsa("a", Some("RS256")),
            rsa("b", None),
            rsa("c", Some("PS256")),
            rsa("", Some("RS256")),
            {"kty": "oct", "kid": "h", "k": "c2VjcmV0"},
            {"kty": "EC", "kid": "e", "crv": "P-384", "x": "AA", "y": "AA"},
            {"kty": "RSA", "kid": "enc", "use": "enc", "n": RSA_N, "e": "AQAB"},
            {"kty": "RSA", "kid": "ops", "key_ops": ["encrypt"], "n": RSA_N, "e": "AQAB"},
            {"kty": "weird", "kid": "w"},
            rsa("a", Some("RS256")),
        ]});
        let keys = parse_jwks(
            doc.to_string().as_bytes(),
            &[Algorithm::RS256, Algorithm::ES256],
        )
        .unwrap();
        let mut kids: Vec<&str> = keys.keys().map(String::as_str).collect();
        kids.sort_unstable();
        assert_eq!(kids, ["a", "b"]);
        assert!(keys.values().all(|k| k.alg == Algorithm::RS256));
        assert!(bound(&keys["a"], Algorithm::ES256).is_none());
        // RS256 not pinned: nothing usable, which is an error (known keys stay).
        assert!(parse_jwks(doc.to_string().as_bytes(), &[Algorithm::ES256]).is_err());
        assert!(parse_jwks(b"{\"keys\": 3}", &[Algorithm::RS256]).is_err());
        assert!(parse_jwks(b"<html>", &[Algorithm::RS256]).is_err());
    }
}
