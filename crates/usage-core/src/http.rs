//! Vendor HTTP helpers shared by the provider crates (feature `http`).

use bytes::{Bytes, BytesMut};

/// The default cap on a vendor response body: 32 MiB.
pub const DEFAULT_MAX_BODY_BYTES: usize = 32 * 1024 * 1024;

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

/// Reads a response body, refusing (without buffering further) once it exceeds `limit` bytes.
pub async fn read_body(mut response: reqwest::Response, limit: usize) -> Result<Bytes, BodyError> {
    if response.content_length().is_some_and(|n| n > limit as u64) {
        return Err(BodyError::TooLarge { limit });
    }
    let mut buf = BytesMut::new();
    while let Some(chunk) = response.chunk().await.map_err(BodyError::Read)? {
        if buf.len() + chunk.len() > limit {
            return Err(BodyError::TooLarge { limit });
        }
        buf.extend_from_slice(&chunk);
    }
    Ok(buf.freeze())
}
