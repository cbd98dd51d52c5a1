//! HTTP routes.

pub mod budgets;
pub mod meta;
pub mod ui;
pub mod usage;
