//! The glue every Lambda function shares: its configuration from the environment and the AWS
//! adapters wired into the core's `Deps` ([`cloud`]), each function's composition
//! ([`functions`]), and the Lambda entry points ([`lambda`]):
//! API Gateway events through the API crate's router, SQS batches through the dispatch use case.
//!
//! A composition root: it may import every pushgate crate but the memory adapters; nothing
//! imports it but the functions and `pushgate-local`'s AWS mode.

pub mod cloud;
pub mod functions;
pub mod lambda;
