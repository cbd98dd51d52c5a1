//! Vendor HTTP helpers shared by the provider crates (feature `http`).

use bytes::{Bytes, BytesMut};

/// The default cap on a vendor response body: 32 MiB.
pub const DEFAULT_MAX_BODY_BYTES: usize = 32 * 1024 * 1024;

/// The most [`read_body`] reserves ahead of the bytes it has received.
const PREALLOCATE: usize = 4 * 1024 * 1024;

/// Why a body could not be read.
#[derive(Debug)]
pub enum BodyError {
    /// The body is larger than the cap; reading stopped there.
    TooLarge {
        /// The cap, in bytes.
        limit: usize,
    },
    /// The connection failed while reading.
    Read(reqwest::Error),
}

impl BodyError {
    /// Describes an oversized body for an error message.
    pub fn too_large_message(limit: usize) -> String {
        format!(
            "the vendor's response is larger than max_body_bytes ({limit} bytes); it was rejected"
        )
    }
}

/// Reads a count field of a vendor's JSON (serde `deserialize_with`): a non-negative integer, a
/// whole non-negative number written as a float (`12.0`), or `null` (`None`). Anything else
/// (a fraction, a negative number, text) is an error.
pub fn opt_count<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
    let n: Option<serde_json::Number> = serde::Deserialize::deserialize(d)?;
    let Some(n) = n else { return Ok(None) };
    if let Some(v) = n.as_u64() {
        return Ok(Some(v));
    }
    match n.as_f64() {
        #[allow(
            clippy::cast_possible_truncation,
            clippy::cast_sign_loss,
            reason = "a finite whole number at least 0; above u64::MAX it saturates"
        )]
        Some(f) if f.is_finite() && f >= 0.0 && f.fract() == 0.0 => Ok(Some(f as u64)),
        _ => Err(serde::de::Error::custom(format!(
            "a count must be a whole number at least 0, got {n}"
        ))),
    }
}

/// Decodes a vendor's JSON body.
///
/// A body that is UTF-8 as a whole (every valid JSON text) is read as text: `serde_json` reading
/// bytes checks every string it meets again, which cost about a fifth of decoding large pages.
/// Any other body is read as bytes, as before, so that invalid UTF-8 in a field nobody reads
/// does not fail the page. Types may borrow strings from `body` (see
/// `usage-provider-chatbotkit`'s records).
pub fn json<'a, T: serde::Deserialize<'a>>(body: &'a [u8]) -> Result<T, serde_json::Error> {
    json_seed(body, std::marker::PhantomData::<T>)
}

/// Decodes a vendor's JSON body with `seed` (as [`json`] does for a type), e.g. to hand each
/// item of a large page on as it is read instead of collecting the page first.
pub fn json_seed<'a, S: serde::de::DeserializeSeed<'a>>(
    body: &'a [u8],
    seed: S,
) -> Result<S::Value, serde_json::Error> {
    fn run<'a, R: serde_json::de::Read<'a>, S: serde::de::DeserializeSeed<'a>>(
        mut de: serde_json::Deserializer<R>,
        seed: S,
    ) -> Result<S::Value, serde_json::Error> {
        let value = seed.deserialize(&mut de)?;
        de.end()?;
        Ok(value)
    }
    match std::str::from_utf8(body) {
        Ok(text) => run(serde_json::Deserializer::from_str(text), seed),
        Err(_) => run(serde_json::Deserializer::from_slice(body), seed),
    }
}

/// Reads a response body, refusing (without buffering further) once it exceeds `limit` bytes.
///
/// A body that arrives in one chunk is returned as it is; otherwise the chunks are copied once
/// into a buffer of the announced length (no regrowth for an honest `Content-Length`).
pub async fn read_body(mut response: reqwest::Response, limit: usize) -> Result<Bytes, BodyError> {
    let announced = response.content_length();
    if announced.is_some_and(|n| n > limit as u64) {
        return Err(BodyError::TooLarge { limit });
    }
    let Some(first) = response.chunk().await.map_err(BodyError::Read)? else {
        return Ok(Bytes::new());
    };
    if first.len() > limit {
        return Err(BodyError::TooLarge { limit });
    }
    let Some(second) = response.chunk().await.map_err(BodyError::Read)? else {
        return Ok(first);
    };
    // Reserved up front only as far as `PREALLOCATE` (a vendor may announce more than it sends).
    let expected = announced.map_or(0, |n| usize::try_from(n).unwrap_or(limit));
    let mut buf = BytesMut::with_capacity(
        expected
            .min(limit)
            .min(PREALLOCATE)
            .max(first.len() + second.len()),
    );
    let mut next = Some(second);
    buf.extend_from_slice(&first);
    while let Some(chunk) = next {
        if buf.len() + chunk.len() > limit {
            return Err(BodyError::TooLarge { limit });
        }
        buf.extend_from_slice(&chunk);
        next = response.chunk().await.map_err(BodyError::Read)?;
    }
    Ok(buf.freeze())
}

/// A scripted HTTP server for tests of the send path.
#[cfg(test)]
pub(crate) mod test_server {
    use std::time::Duration;

    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// Answers one connection per entry of `answers`, in order: the head, then each part 20 ms
    /// apart (so that they arrive as separate chunks), then closes; after the last, stops
    /// listening. Returns the URL.
    pub(crate) async fn serve(answers: Vec<(String, Vec<Vec<u8>>)>) -> String {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            for (head, parts) in answers {
                let (mut s, _) = listener.accept().await.unwrap();
                let mut req = Vec::new();
                let mut buf = [0u8; 1024];
                while !req.windows(4).any(|w| w == b"\r\n\r\n") {
                    let n = s.read(&mut buf).await.unwrap();
                    if n == 0 {
                        break;
                    }
                    req.extend_from_slice(&buf[..n]);
                }
                s.write_all(head.as_bytes()).await.unwrap();
                for p in parts {
                    s.flush().await.unwrap();
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    if s.write_all(&p).await.is_err() {
                        break;
                    }
                }
                let _ = s.shutdown().await;
            }
        });
        format!("http://{addr}/")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Serves one response: `head` then each of `parts`, 20 ms apart (so that they arrive as
    /// separate chunks), then closes. Returns the URL.
    async fn serve(head: String, parts: Vec<Vec<u8>>) -> String {
        test_server::serve(vec![(head, parts)]).await
    }

    async fn read(head: String, parts: Vec<Vec<u8>>, limit: usize) -> Result<Bytes, BodyError> {
        let url = serve(head, parts).await;
        let resp = reqwest::Client::new().get(url).send().await.unwrap();
        read_body(resp, limit).await
    }

    fn sized(n: usize) -> String {
        format!("HTTP/1.1 200 OK\r\ncontent-length: {n}\r\nconnection: close\r\n\r\n")
    }

    /// No `Content-Length`: the body ends when the connection closes.
    const UNSIZED: &str = "HTTP/1.1 200 OK\r\nconnection: close\r\n\r\n";

    #[test]
    fn json_reads_text_and_tolerates_bytes_nobody_reads() {
        #[derive(serde::Deserialize, Debug, PartialEq)]
        struct T {
            a: String,
        }
        assert_eq!(
            json::<T>(b"{\"a\":\"x\\u00e9\xc3\xa9\"}").unwrap(),
            T {
                a: "x\u{e9}\u{e9}".into()
            }
        );
        // Not UTF-8: read as bytes, so only a string that is read fails.
        assert!(json::<T>(b"{\"a\":\"\xff\"}").is_err());
        assert_eq!(
            json::<T>(b"{\"skipped\":\"\xff\",\"a\":\"x\"}").unwrap(),
            T { a: "x".into() }
        );
        assert!(json::<T>(b"{\"a\":1}").is_err());
    }

    #[tokio::test]
    async fn one_chunk_many_chunks_and_none() {
        let body = read(sized(5), vec![b"hello".to_vec()], 100).await.unwrap();
        assert_eq!(&body[..], b"hello");
        let parts = vec![b"ab".to_vec(), b"cd".to_vec(), b"ef".to_vec()];
        let body = read(sized(6), parts.clone(), 100).await.unwrap();
        assert_eq!(&body[..], b"abcdef");
        let body = read(UNSIZED.to_owned(), parts, 100).await.unwrap();
        assert_eq!(&body[..], b"abcdef");
        let body = read(sized(0), Vec::new(), 100).await.unwrap();
        assert!(body.is_empty());
    }

    #[tokio::test]
    async fn a_body_over_the_limit_is_refused() {
        // Announced too large: refused before reading.
        let err = read(sized(11), vec![vec![b'x'; 11]], 10).await.unwrap_err();
        assert!(matches!(err, BodyError::TooLarge { limit: 10 }));
        // Unannounced: refused by the first chunk, or by a later one.
        let err = read(UNSIZED.to_owned(), vec![vec![b'x'; 11]], 10)
            .await
            .unwrap_err();
        assert!(matches!(err, BodyError::TooLarge { limit: 10 }));
        let parts = vec![vec![b'x'; 6], vec![b'y'; 6]];
        let err = read(UNSIZED.to_owned(), parts, 10).await.unwrap_err();
        assert!(matches!(err, BodyError::TooLarge { limit: 10 }));
        // Exactly at the limit is fine.
        let parts = vec![vec![b'x'; 5], vec![b'y'; 5]];
        let body = read(UNSIZED.to_owned(), parts, 10).await.unwrap();
        assert_eq!(body.len(), 10);
    }
}
