//! Request-size bounds checked before routing, authentication or any upstream call: the query
//! string (400 naming `(query)`), header lines and bytes (431) and announced bodies (413).
//!
//! actix-http's codec refuses more than 96 header lines, a request head over 128 KiB or a request
//! target over 64 KiB with a bare 400/431; on real connections [`crate::headguard`] refuses heads
//! past these (lower, configurable) bounds first, also with problem+json, so the codec never does.

use actix_web::http::header::HeaderMap;
use actix_web::http::header::{CONTENT_LENGTH, TRANSFER_ENCODING};

use crate::config::ServerConfig;
use crate::error::{ApiError, ParamError};

/// Checks one request's query string, headers and announced body against `limits`.
pub fn check(query: &str, headers: &HeaderMap, limits: &ServerConfig) -> Result<(), ApiError> {
    let lines = headers.len();
    if lines > limits.max_headers {
        return Err(ApiError::HeadersTooLarge(format!(
            "the request has {lines} header lines; at most {} are accepted",
            limits.max_headers
        )));
    }
    let bytes: usize = headers
        .iter()
        .map(|(k, v)| k.as_str().len() + v.len())
        .sum();
    if bytes > limits.max_header_bytes {
        return Err(ApiError::HeadersTooLarge(format!(
            "the request headers take {bytes} bytes; at most {} are accepted",
            limits.max_header_bytes
        )));
    }
    let announced = headers
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .map(|v| v.trim().parse::<u64>().unwrap_or(u64::MAX));
    let chunked = headers.contains_key(TRANSFER_ENCODING);
    if announced.is_some_and(|n| n > limits.max_body_bytes)
        || (chunked && limits.max_body_bytes == 0)
    {
        return Err(ApiError::PayloadTooLarge(format!(
            "this API takes no request body; at most {} bytes are accepted",
            limits.max_body_bytes
        )));
    }
    if query.len() > limits.max_query_bytes {
        return Err(ApiError::BadRequest(vec![ParamError::new(
            "(query)",
            format!(
                "the query string has {} bytes; at most {} are accepted",
                query.len(),
                limits.max_query_bytes
            ),
        )]));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use actix_web::http::header::{HeaderName, HeaderValue};

    use super::*;

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(
                HeaderName::from_bytes(k.as_bytes()).unwrap(),
                HeaderValue::from_str(v).unwrap(),
            );
        }
        h
    }

    #[test]
    fn each_bound_has_its_status() {
        let limits = ServerConfig::default();
        let ok = headers(&[("host", "x"), ("content-length", "0")]);
        assert!(check("a=b", &ok, &limits).is_ok());
        let long = "a".repeat(limits.max_query_bytes + 1);
        assert!(matches!(
            check(&long, &ok, &limits),
            Err(ApiError::BadRequest(e)) if e[0].parameter == "(query)"
        ));
        let names: Vec<String> = (0..=limits.max_headers)
            .map(|i| format!("x-h{i}"))
            .collect();
        let many: Vec<(&str, &str)> = names.iter().map(|n| (n.as_str(), "1")).collect();
        assert!(matches!(
            check("", &headers(&many), &limits),
            Err(ApiError::HeadersTooLarge(_))
        ));
        let big = "v".repeat(limits.max_header_bytes);
        assert!(matches!(
            check("", &headers(&[("x-big", &big)]), &limits),
            Err(ApiError::HeadersTooLarge(_))
        ));
        let body = (limits.max_body_bytes + 1).to_string();
        for h in [
            headers(&[("content-length", &body)]),
            headers(&[("content-length", "lots")]),
        ] {
            assert!(matches!(
                check("", &h, &limits),
                Err(ApiError::PayloadTooLarge(_))
            ));
        }
    }
}
