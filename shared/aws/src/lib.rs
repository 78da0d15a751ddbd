//! pushgate's AWS adapters: they own every translation between SDK types and the core's ports.
//! DynamoDB stores notifications, operations, credentials, accounts, the directory and shared
//! provider tokens ([`dynamodb`]); SQS carries the fan-out chunks ([`sqs`]); KMS envelopes
//! credential secrets ([`kms`]); EventBridge Scheduler releases scheduled sends ([`scheduler`]);
//! Secrets Manager holds the keys a deployment generates for itself ([`secrets`]);
//! [`provision`] creates tables, queue and key where nothing else does (local AWS mode, tests).
//!
//! May import: the core and the AWS SDKs. Never the API, the providers or the memory adapters;
//! the functions wire these adapters from the environment.

pub mod dynamodb;
pub mod kms;
pub mod provision;
pub mod scheduler;
pub mod secrets;
pub mod sqs;
