//! Scale-out: `serve` and `worker` processes sharing one PostgreSQL and
//! one Redis, both private instances the tests start and stop.

mod claims;
mod cli;
mod cluster;
mod counters;
mod fencing;
pub(crate) mod services;
mod shared;
