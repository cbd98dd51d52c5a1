//! Black-box tests of the three simulators over HTTP, one per vendor quirk.

// Helpers outside `#[test]` functions are test code too (clippy.toml allows these in tests).
#![allow(clippy::unwrap_used, reason = "test code")]
// Short names (`d`ata, `s`tatus, `v`alue) keep the assertions readable.
#![allow(clippy::many_single_char_names, reason = "test code")]

mod anthropic;
mod chatbotkit;
mod common;
mod costs;
mod data;
mod digitalocean;
mod faults;
mod kibana;
mod openai;
mod runtime;
mod scale;
