//! Black-box tests of the gateway's HTTP surface on the real app, with in-memory providers.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::needless_pass_by_value
)]

mod common;

mod api;
mod e2e;
mod jwt;
mod openapi_drift;
mod ops;
