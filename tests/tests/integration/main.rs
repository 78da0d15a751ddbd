//! Every integration test of pushgate in one test binary (one link instead of one per file):
//! each module is one area. The emulator tier (moto) is inside too; its tests say `skipped`
//! when `AWS_ENDPOINT_URL` is not set.

mod accounts;
mod api;
mod cancel;
mod capacity;
mod contract_config_dynamodb;
mod contract_config_memory;
mod contract_directory_dynamodb;
mod contract_directory_memory;
mod contract_dynamodb;
mod contract_idempotency;
mod contract_memory;
mod delivery;
mod deployed_secrets;
mod directory_api;
mod dynamodb_faults;
mod fake_providers;
mod hostile_input;
mod hostile_templates;
mod idempotency;
mod kms_moto;
mod lambda;
mod layers;
mod limits;
mod local_aws;
mod metrics;
mod openapi;
mod promises;
mod provider_tokens;
mod scheduling;
mod scheduling_moto;
mod server_hygiene;
mod sqs_fanout;
mod template;
mod token_cache_dynamodb;
mod user_sends;
mod webhooks;
