//! HTTP routes.

pub mod meta;
pub mod usage;
