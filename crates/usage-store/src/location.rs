//! Where a store lives: a SQLite file or a PostgreSQL URL, shown only with its password
//! replaced.

use std::fmt;
use std::path::PathBuf;

use url::Url;
use usage_core::StoreError;

/// What stands in for a password wherever a location is shown.
const REDACTED: &str = "***";

/// URL query parameters that carry secrets (libpq's `password` and `sslpassword`).
const SECRET_PARAMS: [&str; 2] = ["password", "sslpassword"];

/// Where a usage store lives, parsed from `[store]`'s `url` or path.
///
/// `Debug` and `Display` show a PostgreSQL URL with its password (in the user info or a
/// `password`/`sslpassword` parameter) replaced by `***`.
#[derive(Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum StoreLocation {
    /// An SQLite database file (created when missing; its directory must exist).
    Sqlite(PathBuf),
    /// A PostgreSQL database (`postgres://` or `postgresql://`, libpq's URL parameters).
    Postgres(Url),
}

impl StoreLocation {
    /// Parses a location: `postgres://…` or `postgresql://…` is PostgreSQL; `sqlite://PATH`,
    /// `sqlite:PATH` or a plain path is an SQLite file (`sqlite:///var/lib/x.db` is the
    /// absolute path `/var/lib/x.db`). In-memory SQLite and other schemes are refused.
    pub fn parse(s: &str) -> Result<Self, StoreError> {
        let config = |message: String| StoreError::Config { message };
        let scheme = s
            .split_once(':')
            .map(|(scheme, _)| scheme.to_ascii_lowercase());
        match scheme.as_deref() {
            Some("postgres" | "postgresql") => Url::parse(s)
                .map(Self::Postgres)
                .map_err(|e| config(format!("the PostgreSQL URL is not a valid URL: {e}"))),
            Some("sqlite") => {
                let path = s["sqlite:".len()..].trim_start_matches("//");
                Self::sqlite_path(path)
            }
            Some(other) if s.contains("://") => Err(config(format!(
                "unsupported store URL scheme `{other}`: use postgres://…, sqlite://PATH or a file path"
            ))),
            _ => Self::sqlite_path(s),
        }
    }

    fn sqlite_path(path: &str) -> Result<Self, StoreError> {
        if path.is_empty() || path.starts_with(":memory:") || path.contains("mode=memory") {
            return Err(StoreError::Config {
                message: "an SQLite store needs a file path (an in-memory database would not \
                          outlive the process)"
                    .to_owned(),
            });
        }
        Ok(Self::Sqlite(PathBuf::from(path)))
    }

    /// Names the engine (`sqlite`, `postgres`).
    pub fn engine(&self) -> &'static str {
        match self {
            Self::Sqlite(_) => "sqlite",
            Self::Postgres(_) => "postgres",
        }
    }

    /// Returns the secrets the location holds (the password in every form it may appear in),
    /// so that messages that might quote them can be scrubbed.
    pub(crate) fn secrets(&self) -> Vec<String> {
        let Self::Postgres(url) = self else {
            return Vec::new();
        };
        let mut secrets: Vec<String> = url
            .query_pairs()
            .filter(|(k, _)| SECRET_PARAMS.contains(&k.as_ref()))
            .map(|(_, v)| v.into_owned())
            .collect();
        if let Some(p) = url.password() {
            secrets.push(p.to_owned());
            if let Ok(decoded) = percent_decode(p) {
                secrets.push(decoded);
            }
        }
        secrets.retain(|s| !s.is_empty());
        // Longest first, so that a secret inside another is not left half replaced.
        secrets.sort_by_key(|s| std::cmp::Reverse(s.len()));
        secrets
    }
}

/// Decodes `%XX` escapes (a URL's user info is percent-encoded).
fn percent_decode(s: &str) -> Result<String, std::string::FromUtf8Error> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = bytes
            .get(i + 1..i + 3)
            .and_then(|h| std::str::from_utf8(h).ok())
            .and_then(|h| u8::from_str_radix(h, 16).ok());
        match (bytes[i], hex) {
            (b'%', Some(b)) => {
                out.push(b);
                i += 3;
            }
            (b, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8(out)
}

/// Replaces every secret in `message` by `***`.
pub(crate) fn scrub(message: &str, secrets: &[String]) -> String {
    secrets
        .iter()
        .fold(message.to_owned(), |m, s| m.replace(s.as_str(), REDACTED))
}

impl fmt::Display for StoreLocation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Sqlite(path) => write!(f, "sqlite://{}", path.display()),
            Self::Postgres(url) => {
                let mut shown = url.clone();
                if shown.password().is_some() {
                    // Fails only for URLs without a host, which cannot carry a password.
                    let _ = shown.set_password(Some(REDACTED));
                }
                if url
                    .query_pairs()
                    .any(|(k, _)| SECRET_PARAMS.contains(&k.as_ref()))
                {
                    let pairs: Vec<(String, String)> = url
                        .query_pairs()
                        .map(|(k, v)| {
                            let v = if SECRET_PARAMS.contains(&k.as_ref()) {
                                REDACTED.into()
                            } else {
                                v
                            };
                            (k.into_owned(), v.into_owned())
                        })
                        .collect();
                    shown.query_pairs_mut().clear().extend_pairs(pairs);
                }
                f.write_str(shown.as_str())
            }
        }
    }
}

impl fmt::Debug for StoreLocation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "StoreLocation({self})")
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "test values are known to parse")]

    use super::*;

    #[test]
    fn paths_and_sqlite_urls_are_sqlite_files() {
        for (given, path) in [
            ("sqlite:///var/lib/usage.db", "/var/lib/usage.db"),
            ("sqlite://usage.db", "usage.db"),
            ("sqlite:usage.db", "usage.db"),
            ("/tmp/x/usage.db", "/tmp/x/usage.db"),
            ("usage.db", "usage.db"),
        ] {
            assert_eq!(
                StoreLocation::parse(given).unwrap(),
                StoreLocation::Sqlite(PathBuf::from(path)),
                "{given}"
            );
        }
        for refused in ["sqlite::memory:", "", "sqlite://", "mysql://u@h/db"] {
            assert!(
                matches!(
                    StoreLocation::parse(refused),
                    Err(StoreError::Config { .. })
                ),
                "{refused}"
            );
        }
    }

    #[test]
    fn a_postgres_password_is_never_shown() {
        let loc = StoreLocation::parse(
            "postgresql://gw:p%40ss%3Aw0rd@db.internal:5432/usage?sslmode=prefer&password=qs-secret&application_name=gw",
        )
        .unwrap();
        assert_eq!(loc.engine(), "postgres");
        let shown = format!("{loc} {loc:?}");
        for secret in ["p%40ss%3Aw0rd", "p@ss:w0rd", "qs-secret"] {
            assert!(!shown.contains(secret), "{shown}");
        }
        assert!(shown.contains("postgresql://gw:***@db.internal:5432/usage?"));
        assert!(shown.contains("sslmode=prefer"));
        assert!(shown.contains("application_name=gw"));
        let mut secrets = loc.secrets();
        secrets.sort();
        assert_eq!(secrets, ["p%40ss%3Aw0rd", "p@ss:w0rd", "qs-secret"]);
        assert_eq!(
            scrub("auth failed for p@ss:w0rd and qs-secret", &secrets),
            "auth failed for *** and ***"
        );
    }
}
