//! pushgate's provider clients: they implement the core's `PushGateway` and `CredentialChecker` ([`checks`], no client) (APNs over HTTP/2 with
//! a2's payload types, FCM HTTP v1 with its OAuth token exchange) and `EventSink` (signed
//! webhooks), over one HTTP client configuration ([`http`]).
//!
//! May import: the core, reqwest, a2, jsonwebtoken. Never a store or an SDK: provider tokens
//! are cached through the core's `TokenCache` port.

pub mod apns;
pub mod checks;
pub mod fcm;
pub mod gateway;
pub mod http;
pub mod webhook;
