//! `usage-gateway`: one JWT-protected, cached, OpenAPI-documented endpoint over several vendors'
//! AI agent usage APIs.

pub mod app;
pub mod auth;
pub mod budgets;
pub mod config;
pub mod demo;
pub mod error;
pub mod fetch;
pub mod headguard;
pub mod jwks;
pub mod limits;
pub mod logsink;
pub mod model;
pub mod obs;
pub mod openapi;
pub mod query;
pub mod registry;
pub mod render;
pub mod resilience;
pub mod routes;
pub mod server;
pub mod state;
pub mod stored;
pub mod sync;
