//! Counting the vendor requests a provider call sends, whatever its outcome.
//!
//! A provider's [`UsageBatch`](crate::UsageBatch) reports the requests behind an answer, but a
//! call that fails reports nothing, and listing agents has no batch at all. The gateway therefore
//! runs each provider call inside a [`Counter`]'s scope, and every vendor request notes itself
//! with [`note`]: the providers' clients do so through [`Budget`](crate::budget::Budget), whose
//! slot each request takes right before it is sent.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

tokio::task_local! {
    static SENT: Arc<AtomicU64>;
}

/// The vendor requests noted inside its [`scope`](Self::scope)s, readable at any time, also
/// after a scope's future was dropped half-way.
#[derive(Debug, Clone, Default)]
pub struct Counter(Arc<AtomicU64>);

impl Counter {
    /// Runs `call`, counting the vendor requests noted inside it.
    ///
    /// Only requests sent from the task that polls `call` are counted: one sent from a task
    /// that `call` spawns is not (as the budget's deadline does not reach it either). An inner
    /// scope counts its own requests only.
    pub async fn scope<F: Future>(&self, call: F) -> F::Output {
        SENT.scope(self.0.clone(), call).await
    }

    /// The requests counted so far.
    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// Notes one vendor request about to be sent, for the [`Counter`] scope around it; outside any
/// scope it does nothing.
pub fn note() {
    // Outside a scope there is nothing to count into.
    let _ = SENT.try_with(|n| n.fetch_add(1, Ordering::Relaxed));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn counts_the_notes_of_its_own_scope_only() {
        note(); // outside any scope: ignored
        let outer = Counter::default();
        outer
            .scope(async {
                note();
                tokio::task::yield_now().await;
                // Sub-futures polled together by the scope's task all count, as in a
                // provider's fan-out.
                let one = || async {
                    tokio::task::yield_now().await;
                    note();
                };
                tokio::join!(one(), one(), one());
                // An inner scope counts its own requests, and they do not reach the outer one.
                let inner = Counter::default();
                inner.scope(async { note() }).await;
                assert_eq!(inner.get(), 1);
            })
            .await;
        assert_eq!(outer.get(), 4);
        let idle = Counter::default();
        assert_eq!(idle.scope(async { 7 }).await, 7);
        assert_eq!(idle.get(), 0);
    }

    #[tokio::test]
    async fn a_dropped_call_keeps_what_it_counted() {
        let c = Counter::default();
        let call = c.scope(async {
            note();
            std::future::pending::<()>().await;
        });
        assert!(
            tokio::time::timeout(std::time::Duration::from_millis(10), call)
                .await
                .is_err()
        );
        assert_eq!(c.get(), 1);
    }
}
