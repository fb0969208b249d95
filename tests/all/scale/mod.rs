//! Scale-out: `serve` and `worker` processes sharing one PostgreSQL and
//! one Redis, both private instances the tests start and stop.

mod cluster;
mod counters;
pub(crate) mod services;
mod shared;
