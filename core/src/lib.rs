//! Spectra's shared core: the domain types of the public contract (invoice lines,
//! outlets, SKUs) with their validation and Arrow schemas, layered configuration,
//! storage by URL, telemetry (logs and Prometheus metrics), the admin HTTP server every
//! service starts, and graceful shutdown.

pub mod admin;
pub mod checkpoint;
pub mod config;
pub mod crosswalk;
pub mod error;
pub mod hold;
pub mod kafka;
pub mod master;
pub mod message;
pub mod schedule;
pub mod schema;
pub mod service;
pub mod shutdown;
pub mod status;
pub mod storage;
pub mod tables;
pub mod telemetry;

pub use config::Config;
pub use error::{Error, Result};
pub use storage::Storage;
