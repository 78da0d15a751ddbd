//! Each function's composition, fixed at compile time: the [`ports`](crate::cloud::ports) it
//! wires and the router it serves. A binary calls exactly one of these, so it links only its own
//! handlers, use cases and adapters (`fetch` has no template engine, SQS, KMS, Scheduler or
//! provider client in it). The set of ports is what `template.yaml` grants the function.

use aws_types::SdkConfig;
use axum::Router;

use crate::cloud::{CloudConfig, ports, wire};
use pushgate_api::{Function, functions as routes};
use pushgate_core::app::Deps;
use pushgate_core::config::ConfigError;

macro_rules! http_functions {
    ($($name:ident ($variant:ident, $binary:literal): $ports:expr;)*) => {
        $(
            #[doc = concat!("The `", $binary, "` function's router, wired from `config`.")]
            pub fn $name(config: &CloudConfig, sdk: &SdkConfig) -> Result<Router, ConfigError> {
                Ok(routes::$name(wire::<{ $ports }>(config, sdk)?, config.api.clone()))
            }
        )*

        /// Each HTTP function's cold start, what its binary runs once: its configuration from the
        /// environment, the secrets its ports use read ([`CloudConfig::resolved`]), its router
        /// wired.
        pub mod cold_start {
            use super::*;
            $(
                #[doc = concat!("The `", $binary, "` function's cold start.")]
                pub async fn $name(sdk: SdkConfig) -> Result<Router, ConfigError> {
                    let config = CloudConfig::from_env()?.resolved::<{ $ports }>(&sdk).await?;
                    if $ports & ports::PAGES != 0 {
                        config.warn_unshared_page_tokens();
                    }
                    super::$name(&config, &sdk)
                }
            )*
        }

        /// Each HTTP function's binary (folder in `functions/`) and ports.
        const HTTP: &[(&str, u8)] = &[$(($binary, $ports)),*];

        /// An HTTP function's composition, chosen at run time (links every function: the tests'
        /// and tools' entry, never a binary's).
        pub fn by_function(function: Function) -> fn(&CloudConfig, &SdkConfig) -> Result<Router, ConfigError> {
            match function {
                $(Function::$variant => $name,)*
            }
        }
    };
}

http_functions! {
    send (Send, "send"): ports::SEND;
    fetch (Fetch, "fetch"): ports::STORES_ONLY;
    list (List, "list"): ports::LISTS;
    operations (Operations, "operations"): ports::LISTS;
    credentials (Credentials, "credentials"): ports::CREDENTIALS;
    apps (Apps, "apps"): ports::LISTS;
    device_registrations (DeviceRegistrations, "device-registrations"): ports::LISTS;
    users (Users, "users"): ports::LISTS;
    cancel (Cancel, "cancel"): ports::CANCEL;
}

/// The dispatch function's dependencies, wired from `config`.
pub fn dispatch(config: &CloudConfig, sdk: &SdkConfig) -> Result<Deps, ConfigError> {
    wire::<{ ports::DISPATCH }>(config, sdk)
}

/// The ports of the function built from `functions/<binary>` (for the template tests).
pub fn ports_of(binary: &str) -> Option<u8> {
    match binary {
        "dispatch" => Some(ports::DISPATCH),
        _ => HTTP.iter().find(|(b, _)| *b == binary).map(|(_, p)| *p),
    }
}
