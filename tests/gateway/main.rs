//! Black-box tests of the gateway's HTTP surface on the real app, with in-memory providers.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::needless_pass_by_value
)]

mod common;
mod jose;

mod api;
mod bounds;
mod conformance;
mod e2e;
mod hits;
mod isolation;
mod jwks;
mod jwt;
mod jwt_matrix;
mod money;
mod openapi_drift;
mod ops;
mod per_source;
mod plugin;
mod replicas;
mod resilience;
mod secrets;
mod snapshots;
mod store;
mod ui;
mod vendors;
