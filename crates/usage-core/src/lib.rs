//! `usage-core`: the [`UsageProvider`] trait, the normalized usage model, time planning and
//! aggregation shared by the gateway and every vendor crate, and the [`UsageStore`] trait.

pub mod aggregate;
pub mod buckets;
#[cfg(feature = "http")]
pub mod budget;
pub mod error;
#[cfg(feature = "http")]
pub mod http;
pub mod model;
pub mod money;
#[cfg(feature = "http")]
pub mod plugin;
pub mod prices;
pub mod provider;
#[cfg(any(feature = "http", feature = "test-util"))]
pub mod requests;
pub mod store;
pub mod time;
#[cfg(feature = "http")]
pub mod transport;

#[cfg(feature = "test-util")]
pub mod test_util;
#[cfg(feature = "test-util")]
pub mod vendor_fuzz;

pub use error::{CallLimit, ProviderError};
pub use model::{
    Agent, Attribution, ConversationBatch, ConversationTotals, CostBatch, CostPoint, Counters,
    Dimension, PointKey, ProviderKind, SourceInfo, UNATTRIBUTED_AGENT, Unit, UsageBatch,
    UsagePoint, UsageQuery, Window,
};
pub use provider::{DynUsageProvider, UsageProvider};
pub use store::{
    CoveredInterval, DynUsageStore, LeaseInfo, PlacedUsage, PointFilter, PollHistory, PollOutcome,
    StoreError, UsageStore,
};
pub use time::Bucket;
