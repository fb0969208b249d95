//! A tenant's token and cost budget, checked before each provider call and
//! charged with the call's real usage after it. The server implements it
//! over its quota store (per process, or shared through Redis).

use super::error::QuotaError;
use crate::providers::CallStats;

#[async_trait::async_trait]
pub trait Budget: Send + Sync {
    /// Fails when the next call would pass the budget (or, with a shared
    /// quota store that cannot be reached, when it cannot be checked).
    async fn check(&self) -> Result<(), QuotaError>;
    /// Charges a finished call's usage.
    fn record(&self, stats: &CallStats);
}
