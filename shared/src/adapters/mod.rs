//! Adapters: implementations of the ports. `memory` runs the local process and the tests;
//! `apns` and `fcm` talk to the providers; `crypto` and `system` are the local secret box, clock
//! and id generator; `aws` (feature `aws`) holds the AWS adapters.

pub mod apns;
#[cfg(feature = "aws")]
pub mod aws;
pub mod crypto;
pub mod fcm;
pub mod gateway;
pub mod http;
pub mod memory;
pub mod system;
