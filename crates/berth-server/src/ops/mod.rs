//! Running berth in production: health probes and Prometheus metrics.

pub mod health;
pub mod metrics;

pub use metrics::Metrics;
