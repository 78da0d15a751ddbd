//! pushgate's core: the domain and the use cases, over ports that the adapter crates implement.
//!
//! - [`domain`]: ids, statuses, the send request and its validation, Liquid templates,
//!   credentials. Pure rules: no I/O.
//! - [`app`]: the use cases (send, dispatch one chunk, queries, credentials, directory, auth)
//!   over the ports in [`app::ports`], and the versioned queue message format.
//! - [`system`]: the real clock and id generator; [`config`]: what the composition roots share.
//!
//! May import: serialization, time, ids, hashing, Liquid, tokio's sync and time primitives.
//! Never an SDK, an HTTP client or server, or another pushgate crate: everything else depends on
//! this crate, and Cargo keeps it that way.

pub mod app;
pub mod config;
pub mod domain;
pub mod system;
