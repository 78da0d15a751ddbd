//! AWS adapters (feature `aws`): they own every translation between SDK types and the ports.
//! SQS carries the fan-out chunks; DynamoDB, Scheduler and KMS adapters follow.

pub mod dynamodb;
pub mod kms;
pub mod sqs;
