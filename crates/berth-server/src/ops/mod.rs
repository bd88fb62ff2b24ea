//! Running berth in production: health probes, Prometheus metrics, pull rate limits,
//! the audit log.

pub mod audit;
pub mod health;
pub mod metrics;
pub mod pull_limits;

pub use metrics::Metrics;
