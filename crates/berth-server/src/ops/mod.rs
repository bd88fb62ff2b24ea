//! Running berth in production: health probes, Prometheus metrics, pull rate limits,
//! the audit log, webhooks.

pub mod audit;
pub mod health;
pub mod metrics;
pub mod pull_limits;
pub mod webhooks;

pub use metrics::Metrics;
