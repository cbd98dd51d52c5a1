//! Counting the vendor requests a provider call sends, whatever its outcome.
//!
//! A provider's [`UsageBatch`](crate::UsageBatch) reports the requests behind an answer, but a
//! call that fails reports nothing, and listing agents has no batch at all. The gateway therefore
//! runs each provider call inside [`counting`], and every vendor request notes itself with
//! [`note`]: the providers' clients do so through [`Budget`](crate::budget::Budget), whose slot
//! each request takes right before it is sent.

use std::cell::Cell;
use std::future::Future;

tokio::task_local! {
    static SENT: Cell<u64>;
}

/// Runs `call` and returns its output with the number of vendor requests noted inside it.
///
/// Only requests sent from the task that polls `call` are counted: one sent from a task that
/// `call` spawns is not (as the budget's deadline does not reach it either).
pub async fn counting<F: Future>(call: F) -> (F::Output, u64) {
    SENT.scope(Cell::new(0), async move {
        let out = call.await;
        (out, SENT.with(Cell::get))
    })
    .await
}

/// Notes one vendor request about to be sent, for the [`counting`] scope around it; outside
/// any scope it does nothing.
pub fn note() {
    // Outside a scope there is nothing to count into.
    let _ = SENT.try_with(|n| n.set(n.get().saturating_add(1)));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn counts_the_notes_of_its_own_scope_only() {
        note(); // outside any scope: ignored
        let ((), n) = counting(async {
            note();
            tokio::task::yield_now().await;
            note();
            // An inner scope counts its own requests, and they do not reach the outer one.
            let ((), inner) = counting(async { note() }).await;
            assert_eq!(inner, 1);
        })
        .await;
        assert_eq!(n, 2);
        let (out, n) = counting(async { 7 }).await;
        assert_eq!((out, n), (7, 0));
    }
}
