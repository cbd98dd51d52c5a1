//! HTTP routes.

pub mod meta;
pub mod ui;
pub mod usage;
