//! The command line of `pushgate-local`: `--help`, `--version`, and one flag per configuration
//! variable, made from one table ([`VARIABLES`]). A flag wins over its environment variable;
//! both read the same parser ([`crate::LocalConfig::from_vars`]), so a flag means exactly what
//! its variable means.

use std::collections::HashMap;
use std::ffi::OsString;

/// Every variable `pushgate-local` reads itself (besides the AWS SDK's own and `RUST_LOG`):
/// `(variable, flag, what it is)`. The README's configuration table describes each.
pub const VARIABLES: &[(&str, &str, &str)] = &[
    ("PUSHGATE_BACKEND", "backend", "memory (default) or aws (a build with --features aws)"),
    ("PUSHGATE_LISTEN", "listen", "listen address, host:port (default 127.0.0.1:3000)"),
    ("PUSHGATE_ACCOUNT_ID", "account-id", "the local account (AC + 32 hex); generated when unset"),
    ("PUSHGATE_AUTH_TOKEN", "auth-token", "its auth token (≥ 32 characters; prefer the environment for secrets)"),
    ("PUSHGATE_ADMIN_TOKEN", "admin-token", "turns on the /admin/v1 routes pushgate-admin calls (≥ 32 characters)"),
    ("PUSHGATE_DATA_KEY", "data-key", "base64 of 32 bytes encrypting credentials (prefer the environment)"),
    ("PUSHGATE_PUBLIC_URL", "public-url", "base of absolute Location URLs (default http:// + the address bound)"),
    ("PUSHGATE_MAX_BODY_BYTES", "max-body-bytes", "request body limit in bytes (default 8388608)"),
    ("PUSHGATE_REQUEST_TIMEOUT_SECS", "request-timeout-secs", "seconds for a request body to arrive (default 30)"),
    ("PUSHGATE_HEADER_TIMEOUT_SECS", "header-timeout-secs", "seconds for a request head to arrive (default 10)"),
    ("PUSHGATE_IDLE_TIMEOUT_SECS", "idle-timeout-secs", "seconds before an idle connection is closed (default 60)"),
    ("PUSHGATE_MAX_CONNECTIONS", "max-connections", "open connections at most (default 1000)"),
    ("PUSHGATE_HTTP2_MAX_STREAMS", "http2-max-streams", "concurrent requests per HTTP/2 connection (default 100)"),
    ("APNS_ENDPOINT", "apns-endpoint", "APNs base URL (default Apple's hosts)"),
    ("FCM_ENDPOINT", "fcm-endpoint", "FCM base URL (default https://fcm.googleapis.com)"),
    ("PUSHGATE_FCM_TOKEN_URIS", "fcm-token-uris", "comma-separated OAuth token endpoints service accounts may name"),
    ("PUSHGATE_EXTRA_CA_FILE", "extra-ca-file", "PEM CA to trust for https:// test servers"),
    ("PUSHGATE_WEBHOOK_URL", "webhook-url", "the local account's webhook for operation events"),
    ("PUSHGATE_WEBHOOK_SECRET", "webhook-secret", "its signing secret (≥ 16 characters; prefer the environment)"),
    ("PUSHGATE_RENDER_THREADS", "render-threads", "threads rendering templates (default cores − 1)"),
    (
        "PUSHGATE_MAX_LIVE_NOTIFICATIONS",
        "max-live-notifications",
        "queued or scheduled notifications per account at most, or none (default 1000000)",
    ),
    ("PUSHGATE_REQUESTS_PER_SECOND", "requests-per-second", "API requests per second per account (default 100)"),
    ("PUSHGATE_REQUEST_BURST", "request-burst", "API requests in a burst per account (default 200)"),
    (
        "PUSHGATE_NOTIFICATIONS_PER_MINUTE",
        "notifications-per-minute",
        "notifications accepted per minute per account (default 600000)",
    ),
    ("PUSHGATE_WORKERS", "workers", "chunks processed at once (default 256; AWS mode: SQS consumers, ≤ 16)"),
    ("PUSHGATE_LOG_FORMAT", "log-format", "text (default) or json: one JSON object per log line"),
    ("PUSHGATE_TABLE_PREFIX", "table-prefix", "AWS mode: table name prefix (default pushgate-local-)"),
    ("PUSHGATE_QUEUE_NAME", "queue-name", "AWS mode: fan-out queue name (default pushgate-local-fanout)"),
    ("PUSHGATE_KMS_KEY_ID", "kms-key-id", "AWS mode: KMS key of credential secrets (default alias/pushgate-local)"),
];

/// The configuration values given, by variable name: a flag's value, else its variable's.
#[derive(Debug, Default)]
pub struct Vars(HashMap<&'static str, String>);

impl Vars {
    /// The value of `variable`, if given (empty counts as not given, as for the environment).
    pub fn get(&self, variable: &str) -> Option<String> {
        self.0.get(variable).filter(|v| !v.trim().is_empty()).cloned()
    }
}

fn command() -> clap::Command {
    let args = VARIABLES.iter().map(|(variable, flag, help)| {
        // Help never shows a variable's value: some are secrets.
        clap::Arg::new(*variable).long(*flag).env(*variable).hide_env_values(true).value_name("VALUE").help(*help)
    });
    clap::Command::new("pushgate-local")
        .version(env!("CARGO_PKG_VERSION"))
        .about("The Twilio-compatible Push Notifications API in one process (in-memory, or on AWS with --backend aws)")
        .after_help("Every flag can be given as its environment variable instead (shown in brackets); a flag wins.")
        .args(args)
}

/// Reads the command line (and the variables behind the flags). `Err` for `--help`, `--version`
/// and mistakes: its `exit()` prints what it says and ends the process.
pub fn parse(args: impl IntoIterator<Item = impl Into<OsString> + Clone>) -> Result<Vars, clap::Error> {
    let matches = command().try_get_matches_from(args)?;
    let values = VARIABLES
        .iter()
        .filter_map(|(variable, _, _)| matches.get_one::<String>(variable).map(|v| (*variable, v.clone())))
        .collect();
    Ok(Vars(values))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::LocalConfig;

    #[test]
    fn help_lists_every_variable_with_its_flag_and_exits_as_help() {
        let err = parse(["pushgate-local", "--help"]).expect_err("help is not a run");
        assert_eq!(err.kind(), clap::error::ErrorKind::DisplayHelp);
        let help = err.render().to_string();
        for (variable, flag, _) in VARIABLES {
            assert!(help.contains(&format!("--{flag}")), "--{flag} in the help");
            assert!(help.contains(variable), "{variable} in the help");
        }
    }

    #[test]
    fn help_never_shows_a_variables_value_since_some_are_secrets() {
        let command = command();
        let args: Vec<_> = command.get_arguments().filter(|a| a.get_env().is_some()).collect();
        assert_eq!(args.len(), VARIABLES.len());
        assert!(args.iter().all(|a| a.is_hide_env_values_set()));
    }

    #[test]
    fn version_prints_the_crate_version() {
        let err = parse(["pushgate-local", "--version"]).expect_err("version is not a run");
        assert_eq!(err.kind(), clap::error::ErrorKind::DisplayVersion);
        assert!(err.render().to_string().contains(env!("CARGO_PKG_VERSION")));
    }

    #[test]
    fn an_unknown_flag_is_a_usage_error() {
        let err = parse(["pushgate-local", "--lisen", "x"]).expect_err("a typo");
        assert_eq!(err.kind(), clap::error::ErrorKind::UnknownArgument);
    }

    #[test]
    fn a_flag_means_what_its_variable_means() {
        let vars = parse(["pushgate-local", "--listen", "127.0.0.1:4321", "--workers", "3"]).expect("parsed");
        let config = LocalConfig::from_vars(|name| vars.get(name)).expect("valid");
        assert_eq!(config.listen.to_string(), "127.0.0.1:4321");
        assert_eq!(config.workers, 3);
        let vars = parse(["pushgate-local", "--workers", "0"]).expect("parsed");
        let err = LocalConfig::from_vars(|name| vars.get(name)).expect_err("checked like the variable");
        assert!(err.to_string().contains("PUSHGATE_WORKERS"), "{err}");
    }

    #[test]
    fn the_log_format_is_text_or_json_and_nothing_else() {
        let format = |value: &str| {
            let vars = parse(["pushgate-local", "--log-format", value]).expect("parsed");
            LocalConfig::from_vars(|name| vars.get(name)).map(|c| c.log_format)
        };
        assert_eq!(format("json").expect("valid"), crate::LogFormat::Json);
        assert_eq!(format("JSON").expect("valid"), crate::LogFormat::Json);
        assert_eq!(format("text").expect("valid"), crate::LogFormat::Text);
        let err = format("xml").expect_err("refused");
        assert!(err.to_string().contains("PUSHGATE_LOG_FORMAT"), "{err}");
    }

    #[test]
    fn every_variable_the_configuration_reads_has_a_flag() {
        let asked = std::sync::Mutex::new(Vec::new());
        let record = |name: &'static str| {
            asked.lock().expect("not poisoned").push(name);
            None
        };
        LocalConfig::from_vars(record).expect("the defaults are valid");
        #[cfg(feature = "aws")]
        crate::aws::LocalResources::from_vars(record);
        let asked = asked.into_inner().expect("not poisoned");
        assert!(asked.len() > 15, "{asked:?}");
        for name in &asked {
            assert!(VARIABLES.iter().any(|(v, _, _)| v == name), "{name} has no flag");
        }
        #[cfg(feature = "aws")]
        for (variable, flag, _) in VARIABLES {
            assert!(asked.contains(variable), "--{flag} ({variable}) is read by nothing");
        }
    }
}
