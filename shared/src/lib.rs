//! pushgate: a self-hostable, Twilio-compatible Push Notifications API.
//!
//! Layers, inner to outer:
//! - [`domain`]: ids, statuses, the send request and its validation, Liquid templates,
//!   credentials. Pure: no I/O, no SDKs.
//! - [`app`]: the use cases (send, dispatch one chunk, queries, credentials, auth) over the
//!   ports in [`app::ports`].
//! - [`api`]: the Twilio wire format — one axum router, one place mapping errors to HTTP.
//! - [`adapters`]: port implementations — memory stores and queue, AES-GCM secret box, the APNs
//!   and FCM senders.
//! - [`local`]: wiring for the one-process `pushgate-local` server.
//! - `cloud` (feature `aws`, = `adapters::aws::runtime`): the AWS adapters wired from the
//!   environment; `lambda` (feature `lambda`): the Lambda entry points of `functions/*`.

pub mod adapters;
pub mod api;
pub mod app;
pub mod domain;
#[cfg(feature = "lambda")]
pub mod lambda;
pub mod local;

/// The AWS runtime (feature `aws`): `adapters::aws::runtime`, named for its callers.
#[cfg(feature = "aws")]
pub use adapters::aws::runtime as cloud;
