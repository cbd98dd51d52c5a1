//! The trait every vendor integration implements.

use std::collections::BTreeSet;
use std::sync::Arc;

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use crate::error::ProviderError;
use crate::model::{
    Agent, ConversationBatch, CostBatch, Dimension, SourceInfo, UsageBatch, UsageQuery,
};

/// A configured connection to one vendor account (a "source").
///
/// A provider only speaks its vendor's HTTP and maps answers to the core model. Caching,
/// deadlines, retries, rate limits and metrics wrap it from outside.
#[async_trait]
pub trait UsageProvider: Send + Sync + std::fmt::Debug + 'static {
    /// Describes the source: its name, provider kind and what it can answer.
    fn describe(&self) -> SourceInfo;

    /// Returns the vendor dimensions to ask for (and to cache answers under) when a query keeps
    /// `dims`: `dims` widened by every dimension the vendor requests split by anyway, so that
    /// queries which differ only in dimensions aggregated afterwards send the same vendor
    /// requests once and share one cached answer. The answer keeps more labels than asked; the
    /// gateway's aggregation groups them away. The default keeps `dims`.
    fn fetch_dimensions(&self, dims: &BTreeSet<Dimension>) -> BTreeSet<Dimension> {
        dims.clone()
    }

    /// Lists the agents the source can see.
    async fn agents(&self) -> Result<Vec<Agent>, ProviderError>;

    /// Answers usage for every window of the query. Points carry the window they fall in and
    /// only the dimensions the query keeps; points outside every window are never returned.
    async fn usage(&self, query: &UsageQuery) -> Result<UsageBatch, ProviderError>;

    /// For a vendor that reports per-conversation lifetime totals (attribution
    /// `conversation`): every conversation updated at or after `since`, with its totals now —
    /// a snapshot the usage store compares with the previous one to place each conversation's
    /// growth in time. `refresh` bypasses the provider's own caches. The default (`None`) says
    /// the provider has no such snapshots.
    async fn conversations(
        &self,
        since: DateTime<Utc>,
        refresh: bool,
    ) -> Result<Option<ConversationBatch>, ProviderError> {
        let _ = (since, refresh);
        Ok(None)
    }

    /// For a vendor with a cost API: the dimensions its costs can be split by (e.g. agent and
    /// model), which [`UsageProvider::costs`] keeps as asked. The default (`None`) says the
    /// provider has no cost API.
    fn cost_dimensions(&self) -> Option<BTreeSet<Dimension>> {
        None
    }

    /// For a vendor with a cost API: the money spent in every window of the query, per agent,
    /// model and usage type where the vendor says (kept as [`UsageQuery::dimensions`] asks, as
    /// usage points are). Vendor costs are whole UTC days: a query whose window edges are not
    /// UTC midnights is [`ProviderError::InvalidQuery`], as is a user or model filter a cost
    /// API cannot apply. The default (`None`) says the provider has no cost API.
    async fn costs(&self, query: &UsageQuery) -> Result<Option<CostBatch>, ProviderError> {
        let _ = query;
        Ok(None)
    }
}

/// A shared provider handle.
pub type DynUsageProvider = Arc<dyn UsageProvider>;
