//! A tenant's token and cost budget, checked before each provider call and
//! charged with the call's real usage after it. The server implements it
//! over its quota store (per process, or shared through Redis).

use super::error::QuotaError;
use crate::providers::CallStats;

pub trait Budget: Send + Sync {
    /// Fails when the next call would pass the budget.
    fn check(&self) -> Result<(), QuotaError>;
    /// Charges a finished call's usage.
    fn record(&self, stats: &CallStats);
}
