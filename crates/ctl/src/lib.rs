//! Meridian's operator CLI: `meridian status` and `meridian members`, and
//! the one HTTP client that reads a region's admin port, for them and for
//! the tools that drive regions.
//!
//! # Layout
//! - [`http`]: blocking requests to a region's admin port with Meridian's
//!   timeouts, size bound and typed errors ([`http::FetchError`]).
//! - [`status`]: `meridian status`, any region's view as a table.
//! - [`members`]: `meridian members`, list, add or remove regions.

pub mod http;
pub mod members;
pub mod status;
