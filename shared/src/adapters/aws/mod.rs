//! AWS adapters (feature `aws`): they own every translation between SDK types and the ports.
//! DynamoDB stores notifications, operations, credentials, accounts and shared provider tokens;
//! SQS carries the fan-out chunks; KMS envelopes credential secrets; [`runtime`] wires them from
//! the environment for the Lambda functions and for `pushgate-local` in its AWS mode.

pub mod dynamodb;
pub mod kms;
pub mod provision;
pub mod runtime;
pub mod scheduler;
pub mod sqs;
