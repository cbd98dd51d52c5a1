//! JWT verification, the `Caller` extractor and the deny-by-default access policy.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Instant;

use actix_web::{FromRequest, HttpMessage, HttpRequest, dev::Payload, web};
use futures::future::LocalBoxFuture;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use secrecy::ExposeSecret;
use serde_json::{Map, Value};

use crate::config::{AccessEntry, AuthConfig, ConfigError, JwtAlgorithm};
use crate::error::ApiError;
use crate::jwks::JwksCache;
use crate::state::AppState;

/// The longest bearer token accepted; longer ones are rejected before any parsing.
pub const MAX_TOKEN_BYTES: usize = 8 * 1024;

/// Verifies bearer tokens against the pinned algorithms and the configured keys (static PEM or
/// HS256 keys, and the identity provider's JWKS by `kid`).
pub struct JwtVerifier {
    algorithms: Vec<Algorithm>,
    keys: Vec<(Algorithm, DecodingKey)>,
    jwks: Option<JwksCache>,
    issuer: Option<String>,
    audience: Option<String>,
    leeway: u64,
    typ: Option<String>,
    required_scope: String,
}

impl std::fmt::Debug for JwtVerifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JwtVerifier")
            .field("algorithms", &self.algorithms)
            .field(
                "static_keys",
                &self.keys.iter().map(|(a, _)| a).collect::<Vec<_>>(),
            )
            .field("jwks", &self.jwks)
            .field("issuer", &self.issuer)
            .field("audience", &self.audience)
            .finish_non_exhaustive()
    }
}

fn to_alg(a: JwtAlgorithm) -> Algorithm {
    match a {
        JwtAlgorithm::HS256 => Algorithm::HS256,
        JwtAlgorithm::RS256 => Algorithm::RS256,
        JwtAlgorithm::ES256 => Algorithm::ES256,
    }
}

impl JwtVerifier {
    /// Builds the verifier; fails on unreadable keys (with the key path).
    pub fn new(cfg: &AuthConfig) -> Result<Self, ConfigError> {
        let mut keys = Vec::new();
        let mut errors = Vec::new();
        for alg in &cfg.algorithms {
            let key = match alg {
                JwtAlgorithm::HS256 => cfg
                    .hs256_secret
                    .as_ref()
                    .map(|s| Ok(DecodingKey::from_secret(s.expose_secret().as_bytes()))),
                JwtAlgorithm::RS256 => cfg.rs256_public_key_pem.as_ref().map(|pem| {
                    DecodingKey::from_rsa_pem(pem.as_bytes())
                        .map_err(|e| ("auth.rs256_public_key_pem", e.to_string()))
                }),
                JwtAlgorithm::ES256 => cfg.es256_public_key_pem.as_ref().map(|pem| {
                    DecodingKey::from_ec_pem(pem.as_bytes())
                        .map_err(|e| ("auth.es256_public_key_pem", e.to_string()))
                }),
            };
            match key {
                Some(Ok(k)) => keys.push((to_alg(*alg), k)),
                Some(Err((path, msg))) => errors.push((
                    path.to_owned(),
                    format!("not a usable PEM public key: {msg}"),
                )),
                None => {}
            }
        }
        let algorithms: Vec<Algorithm> = cfg.algorithms.iter().map(|a| to_alg(*a)).collect();
        let jwks = match &cfg.jwks_url {
            Some(url) => {
                // A JWKS only ever supplies public keys: HS256 is never taken from it.
                let public: Vec<Algorithm> = algorithms
                    .iter()
                    .copied()
                    .filter(|a| *a != Algorithm::HS256)
                    .collect();
                match JwksCache::new(cfg, url.clone(), public) {
                    Ok(c) => Some(c),
                    Err(e) => {
                        errors.push(("auth.jwks_url".to_owned(), e));
                        None
                    }
                }
            }
            None => None,
        };
        if !errors.is_empty() {
            return Err(ConfigError { errors });
        }
        Ok(Self {
            algorithms,
            keys,
            jwks,
            issuer: cfg.issuer.clone(),
            audience: cfg.audience.clone(),
            leeway: cfg.leeway.as_secs(),
            typ: cfg.typ.clone(),
            required_scope: cfg.required_scope.clone(),
        })
    }

    /// Verifies a token and returns its claims. The error says nothing about *why*.
    ///
    /// With a JWKS configured, an RS256/ES256 token that names a `kid` is verified only with the
    /// JWKS key of that `kid` (which must be bound to the token's `alg`); every other token only
    /// with the static key of its `alg`. Keys named by the token itself (`jku`, `x5u`, `jwk`,
    /// `x5c`) are never fetched or trusted, and a `crit` header is refused (no extension is
    /// understood).
    pub async fn verify(&self, token: &str) -> Result<Map<String, Value>, ApiError> {
        if token.len() > MAX_TOKEN_BYTES {
            return Err(ApiError::Unauthorized);
        }
        let header = jsonwebtoken::decode_header(token).map_err(|_| ApiError::Unauthorized)?;
        if header.jku.is_some()
            || header.x5u.is_some()
            || header.jwk.is_some()
            || header.x5c.is_some()
            || header.crit.is_some()
        {
            return Err(ApiError::Unauthorized);
        }
        if let Some(want) = &self.typ
            && !header
                .typ
                .as_deref()
                .is_some_and(|t| t.eq_ignore_ascii_case(want))
        {
            return Err(ApiError::Unauthorized);
        }
        if !self.algorithms.contains(&header.alg) {
            return Err(ApiError::Unauthorized);
        }
        let jwks_key;
        let key: &DecodingKey = match (&header.kid, &self.jwks) {
            // A JWKS never supplies HS256 keys: an HS256 token always meets the static secret.
            (Some(kid), Some(jwks)) if header.alg != Algorithm::HS256 => {
                jwks_key = jwks
                    .key(kid, header.alg)
                    .await
                    .ok_or(ApiError::Unauthorized)?;
                &jwks_key.key
            }
            _ => self
                .keys
                .iter()
                .find(|(a, _)| *a == header.alg)
                .map(|(_, k)| k)
                .ok_or(ApiError::Unauthorized)?,
        };
        let mut v = Validation::new(header.alg);
        v.algorithms = vec![header.alg];
        v.leeway = self.leeway;
        v.validate_exp = true;
        v.validate_nbf = true;
        let mut required = vec!["exp"];
        if let Some(iss) = &self.issuer {
            v.set_issuer(&[iss]);
            required.push("iss");
        }
        match &self.audience {
            Some(aud) => {
                v.set_audience(&[aud]);
                required.push("aud");
            }
            None => v.validate_aud = false,
        }
        v.set_required_spec_claims(&required);
        let data = jsonwebtoken::decode::<Map<String, Value>>(token, key, &v)
            .map_err(|_| ApiError::Unauthorized)?;
        // jsonwebtoken does not look at `iat`. A token issued later than now + leeway comes from
        // a clock we do not share or from someone minting ahead of time: refused like any other
        // invalid token. `iat` stays optional; when present it must be a NumericDate.
        if let Some(iat) = data.claims.get("iat") {
            let latest = jsonwebtoken::get_current_timestamp().saturating_add(self.leeway);
            if !iat.as_f64().is_some_and(|iat| iat <= latest as f64) {
                return Err(ApiError::Unauthorized);
            }
        }
        Ok(data.claims)
    }

    /// Reports whether the claims grant the required scope (`scope` string or `scp` array).
    pub fn has_scope(&self, claims: &Map<String, Value>) -> bool {
        let want = self.required_scope.as_str();
        let in_scope = claims
            .get("scope")
            .and_then(Value::as_str)
            .is_some_and(|s| s.split(' ').any(|x| x == want));
        let in_scp = match claims.get("scp") {
            Some(Value::Array(a)) => a.iter().any(|x| x.as_str() == Some(want)),
            Some(Value::String(s)) => s.split(' ').any(|x| x == want),
            _ => false,
        };
        in_scope || in_scp
    }
}

/// Claims `usage-gateway token` sets itself and so refuses from `--claim`.
pub const RESERVED_CLAIMS: [&str; 7] = ["sub", "iss", "aud", "exp", "iat", "nbf", "scope"];

/// What a development token carries besides `sub` and the time claims.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DevClaims {
    /// The scopes, space-joined into `scope`; empty means the configured `required_scope`.
    pub scopes: Vec<String>,
    /// Extra claims, in order. Every value is a JSON string; a key given more than once
    /// becomes an array of its strings (as an identity provider's group list).
    pub claims: Vec<(String, String)>,
}

/// Mints a token with the configured HS256 secret (for `usage-gateway token` and the demo).
pub fn mint_dev_token(cfg: &AuthConfig, sub: &str, now: i64) -> Result<String, String> {
    mint_token(cfg, sub, &DevClaims::default(), now)
}

/// Mints a token with the configured HS256 secret carrying `extra`'s scopes and claims; a
/// reserved claim ([`RESERVED_CLAIMS`]) or an empty claim name or scope list is refused.
pub fn mint_token(
    cfg: &AuthConfig,
    sub: &str,
    extra: &DevClaims,
    now: i64,
) -> Result<String, String> {
    let secret = cfg
        .hs256_secret
        .as_ref()
        .filter(|_| cfg.algorithms.contains(&JwtAlgorithm::HS256))
        .ok_or("this configuration has no HS256 secret (only public keys): tokens must come from your identity provider")?;
    let mut claims = Map::new();
    for (key, value) in &extra.claims {
        if key.trim().is_empty() {
            return Err("--claim needs a name before `=` (key=value)".to_owned());
        }
        if RESERVED_CLAIMS.contains(&key.as_str()) {
            return Err(format!(
                "--claim {key}=…: `{key}` is set by the command itself{}",
                match key.as_str() {
                    "sub" => " (use --sub)",
                    "scope" => " (use --scope)",
                    "iss" => " (from auth.issuer)",
                    "aud" => " (from auth.audience)",
                    _ => " (from the current time and auth.dev_token_ttl)",
                }
            ));
        }
        match claims.get_mut(key) {
            Some(Value::Array(values)) => values.push(Value::from(value.clone())),
            Some(first) => *first = Value::from(vec![first.take(), Value::from(value.clone())]),
            None => {
                claims.insert(key.clone(), Value::from(value.clone()));
            }
        }
    }
    let scope = if extra.scopes.is_empty() {
        cfg.required_scope.clone()
    } else {
        let scopes: Vec<&str> = extra
            .scopes
            .iter()
            .flat_map(|s| s.split_whitespace())
            .collect();
        if scopes.is_empty() {
            return Err("--scope needs a non-empty scope".to_owned());
        }
        scopes.join(" ")
    };
    claims.insert("sub".into(), Value::from(sub));
    claims.insert("scope".into(), Value::from(scope));
    claims.insert("iat".into(), Value::from(now));
    claims.insert("nbf".into(), Value::from(now));
    claims.insert(
        "exp".into(),
        Value::from(
            now.saturating_add(i64::try_from(cfg.dev_token_ttl.as_secs()).unwrap_or(i64::MAX)),
        ),
    );
    if let Some(iss) = &cfg.issuer {
        claims.insert("iss".into(), Value::from(iss.clone()));
    }
    if let Some(aud) = &cfg.audience {
        claims.insert("aud".into(), Value::from(aud.clone()));
    }
    let mut header = Header::new(Algorithm::HS256);
    if let Some(typ) = &cfg.typ {
        header.typ = Some(typ.clone());
    }
    jsonwebtoken::encode(
        &header,
        &claims,
        &EncodingKey::from_secret(secret.expose_secret().as_bytes()),
    )
    .map_err(|e| format!("cannot sign: {e}"))
}

/// Which agents of one source a caller may see.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum AgentScope {
    /// Every agent.
    All,
    /// Only these agent ids.
    Only(BTreeSet<String>),
}

/// What a caller may see: sources, and per source which agents.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct Access {
    /// Allowed sources and their agent scope.
    pub sources: BTreeMap<String, AgentScope>,
}

impl Access {
    /// Resolves the union of every access entry whose claim matches.
    pub fn resolve(
        entries: &[AccessEntry],
        all_sources: &[String],
        claims: &Map<String, Value>,
    ) -> Self {
        let mut out: BTreeMap<String, AgentScope> = BTreeMap::new();
        for e in entries {
            let matches = match claims.get(&e.claim) {
                Some(Value::String(s)) => *s == e.value,
                Some(Value::Array(a)) => a.iter().any(|v| v.as_str() == Some(e.value.as_str())),
                _ => false,
            };
            if !matches {
                continue;
            }
            let names: Vec<&String> = if e.sources.iter().any(|s| s == "*") {
                all_sources.iter().collect()
            } else {
                e.sources.iter().collect()
            };
            let mut limited: BTreeMap<&str, BTreeSet<String>> = BTreeMap::new();
            for a in e.agents.iter().flatten() {
                if let Some((src, id)) = a.split_once('/') {
                    limited.entry(src).or_default().insert(id.to_owned());
                }
            }
            for name in names {
                let scope = match limited.remove(name.as_str()) {
                    Some(ids) => AgentScope::Only(ids),
                    None => AgentScope::All,
                };
                let merged = match (out.remove(name), scope) {
                    (Some(AgentScope::All), _) | (_, AgentScope::All) => AgentScope::All,
                    (Some(AgentScope::Only(mut a)), AgentScope::Only(b)) => {
                        a.extend(b);
                        AgentScope::Only(a)
                    }
                    (None, s) => s,
                };
                out.insert(name.clone(), merged);
            }
        }
        Self { sources: out }
    }

    /// Reports whether the caller may see `agent` of `source`.
    pub fn allows_agent(&self, source: &str, agent: &str) -> bool {
        match self.sources.get(source) {
            Some(AgentScope::All) => true,
            Some(AgentScope::Only(ids)) => ids.contains(agent),
            None => false,
        }
    }
}

/// An authenticated caller with the required scope, and what it may see.
#[derive(Debug, Clone)]
pub struct Caller {
    /// The `sub` claim (or `-` when absent), for logs.
    pub sub: Arc<str>,
    /// What the caller may see.
    pub access: Arc<Access>,
    /// `exp + leeway` (epoch seconds): from then on the token is refused as if it were new.
    valid_until: i64,
    /// The end of [`VERIFIED_TTL`] after the verification that admitted the token.
    remembered_until: Instant,
}

impl Caller {
    /// Authenticates the request: bearer token, scope, then the access policy.
    ///
    /// A token that passed every check is remembered for [`VERIFIED_TTL`] (never past its own
    /// `exp`), so a caller's repeated requests skip the signature check and the policy walk.
    /// Entries are keyed by the whole token text (not a hash of it), so only the very same
    /// token finds one; tokens that fail any check are never remembered.
    async fn authenticate(req: HttpRequest) -> Result<Self, ApiError> {
        let state = req
            .app_data::<web::Data<AppState>>()
            .cloned()
            .ok_or_else(|| ApiError::Internal("application state missing".into()))?;
        let token = bearer(&req)?;
        let now = chrono::Utc::now().timestamp();
        if let Some(hit) = state.callers.get(token).await {
            if hit.usable_at(now, Instant::now()) {
                req.extensions_mut().insert(CallerSub(hit.sub.clone()));
                return Ok(Self::clone(&hit));
            }
            state.callers.invalidate(token).await;
        }
        let claims = state.verifier.verify(token).await?;
        let sub: Arc<str> = claims
            .get("sub")
            .and_then(Value::as_str)
            .unwrap_or("-")
            .into();
        req.extensions_mut().insert(CallerSub(sub.clone()));
        if !state.verifier.has_scope(&claims) {
            return Err(ApiError::Forbidden(format!(
                "the token lacks the `{}` scope",
                state.verifier.required_scope
            )));
        }
        let access = Access::resolve(&state.config_access, &state.source_names, &claims);
        if access.sources.is_empty() {
            return Err(ApiError::Forbidden(
                "no access entry grants this caller any source".into(),
            ));
        }
        // `exp` is required and was just checked, so it is a number here.
        let exp = claims.get("exp").and_then(Value::as_f64).unwrap_or(0.0);
        let caller = Self {
            sub,
            access: Arc::new(access),
            valid_until: (exp.floor() as i64)
                .saturating_add(i64::try_from(state.verifier.leeway).unwrap_or(i64::MAX)),
            remembered_until: Instant::now() + VERIFIED_TTL,
        };
        state
            .callers
            .insert(token.to_owned(), Arc::new(caller.clone()))
            .await;
        Ok(caller)
    }

    /// Reports whether an earlier verification of the token may still stand in for a new one:
    /// the token is within `exp` (plus leeway) at `now` (epoch seconds) and the verification
    /// is younger than [`VERIFIED_TTL`] at `instant`. `nbf` needs no second look: a token
    /// admitted once is past it for good.
    pub fn usable_at(&self, now: i64, instant: Instant) -> bool {
        now < self.valid_until && instant < self.remembered_until
    }

    /// Approximates the bytes the caller holds, for the cache's weigher.
    pub fn weight(&self) -> usize {
        let access: usize = self
            .access
            .sources
            .iter()
            .map(|(name, scope)| {
                64 + name.len()
                    + match scope {
                        AgentScope::All => 0,
                        AgentScope::Only(ids) => ids.iter().map(|i| 48 + i.len()).sum(),
                    }
            })
            .sum();
        128 + self.sub.len() + access
    }
}

#[cfg(test)]
impl Caller {
    /// A caller who may see nothing, valid for a minute, for unit tests.
    pub(crate) fn for_tests(sub: &str) -> Self {
        Self {
            sub: sub.into(),
            access: Arc::new(Access::default()),
            valid_until: chrono::Utc::now().timestamp() + 60,
            remembered_until: Instant::now() + std::time::Duration::from_secs(60),
        }
    }
}

/// How long a verified token is remembered. A key removed from the JWKS, or an access entry
/// changed by a restart, takes effect at once for new tokens and within this time for tokens
/// already seen.
pub const VERIFIED_TTL: std::time::Duration = std::time::Duration::from_secs(30);

/// The byte budget of remembered tokens (the token text plus the caller's access).
pub const VERIFIED_CACHE_BYTES: u64 = 8 * 1024 * 1024;

/// Takes the bearer token out of the `Authorization` header.
pub fn bearer(req: &HttpRequest) -> Result<&str, ApiError> {
    let value = req
        .headers()
        .get(actix_web::http::header::AUTHORIZATION)
        .ok_or(ApiError::Unauthorized)?
        .to_str()
        .map_err(|_| ApiError::Unauthorized)?;
    let (scheme, token) = value.split_once(' ').ok_or(ApiError::Unauthorized)?;
    if !scheme.eq_ignore_ascii_case("bearer") {
        return Err(ApiError::Unauthorized);
    }
    let token = token.trim();
    if token.is_empty() {
        return Err(ApiError::Unauthorized);
    }
    Ok(token)
}

/// The caller's `sub`, left in request extensions for the access log.
#[derive(Debug, Clone)]
pub struct CallerSub(pub Arc<str>);

impl FromRequest for Caller {
    type Error = ApiError;
    type Future = LocalBoxFuture<'static, Result<Self, Self::Error>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        Box::pin(Caller::authenticate(req.clone()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn access_union_and_agent_limits() {
        let entries = vec![
            AccessEntry {
                claim: "team".into(),
                value: "cx".into(),
                sources: vec!["a".into(), "b".into()],
                agents: Some(vec!["a/x".into()]),
            },
            AccessEntry {
                claim: "sub".into(),
                value: "bob".into(),
                sources: vec!["*".into()],
                agents: None,
            },
        ];
        let all = vec!["a".to_owned(), "b".to_owned(), "c".to_owned()];
        let mut claims = Map::new();
        claims.insert("team".into(), Value::from(vec!["cx", "ops"]));
        let acc = Access::resolve(&entries, &all, &claims);
        assert_eq!(acc.sources.len(), 2);
        assert!(acc.allows_agent("a", "x"));
        assert!(!acc.allows_agent("a", "y"));
        assert!(acc.allows_agent("b", "y"));
        assert!(!acc.allows_agent("c", "y"));
        claims.insert("sub".into(), Value::from("bob"));
        let acc = Access::resolve(&entries, &all, &claims);
        assert_eq!(acc.sources.len(), 3);
        assert!(acc.allows_agent("a", "y"));
        let none = Access::resolve(&entries, &all, &Map::new());
        assert!(none.sources.is_empty());
    }
}
