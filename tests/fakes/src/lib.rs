//! Fake Apple Push Notification service (APNs) and Firebase Cloud Messaging
//! (FCM v1 + Google OAuth) servers. **Test-only code**: nothing here is secure
//! and none of it belongs in a production build.
//!
//! May import: HTTP/2 and TLS server crates, JWT/crypto crates and clap (the tool's command
//! line); never a pushgate crate, so the fakes judge pushgate's requests by Apple's and Google's
//! rules, not by its own code.
//!
//! The fakes listen on `127.0.0.1` on a random port, run as tokio tasks of the
//! current runtime, record every request they receive and can be scripted to
//! answer with the errors the real services return.
//!
//! They check requests the way Apple and Google do, so a client that passes
//! against them is very likely to pass against the real services:
//!
//! * [`FakeApns`] speaks HTTP/2 only (h2c with prior knowledge, or TLS with
//!   ALPN `h2`), routes `POST /3/device/{token}`, validates the device token,
//!   provider-token (ES256 JWT) or client-certificate authentication, the
//!   `apns-*` headers and the payload, and answers with Apple's status codes,
//!   `{"reason": ...}` bodies and an `apns-id` header.
//! * [`FakeFcm`] serves Google's OAuth 2.0 token endpoint (JWT-bearer grant
//!   signed RS256 by a service account) and
//!   `POST /v1/projects/{project}/messages:send`, checking the access token,
//!   its project, the message shape and size, and answers with Google's error
//!   shape (`{"error": {"code", "message", "status", "details"}}`).
//!
//! * [`start_combined`] serves one of each on a single listener, routed by
//!   path; the `pushgate-fake-providers` binary ([`tool`]) runs it as a user
//!   tool that prints pushgate's configuration and the requests it receives.
//!
//! * [`CannedServer`] answers every request with a canned reply per path and
//!   records it: the stand-in for an attacker's endpoint.
//!
//! Key material for both (APNs `.p8` signing keys, APNs client certificates,
//! FCM service accounts) comes from [`keys`].

pub mod apns;
pub mod canned;
mod combined;
pub mod fcm;
pub mod keys;
pub mod tool;

mod server;
mod support;

pub use apns::{ApnsReply, ApnsRequest, FakeApns};
pub use canned::{CannedReply, CannedRequest, CannedServer};
pub use combined::start_combined;
pub use fcm::{FakeFcm, FcmEvent, FcmReply, FcmRequest, TokenRequest};
