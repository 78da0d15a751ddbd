//! `pushgate-admin`: the operator's command. It creates and deletes accounts, rotates their auth
//! tokens (the old token keeps working for a grace period), creates, lists and revokes API keys,
//! and sets per-account limits — against one of two targets:
//!
//! - a running `pushgate-local` (`--url` + `--admin-token`, or `PUSHGATE_ADMIN_URL` +
//!   `PUSHGATE_ADMIN_TOKEN`): through its `/admin/v1/…` routes;
//! - a deployment on AWS (`--config-table`, or `PUSHGATE_CONFIG_TABLE`): it writes the config
//!   table itself with the operator's AWS credentials (the SDK's usual chain; `AWS_ENDPOINT_URL`
//!   for an emulator). No function of the deployment can do this: the API has no admin route.
//!
//! Both run the same core use cases (`pushgate_core::app::admin`) and print the same JSON: a
//! secret (auth token, API key secret) appears in that output once and is stored only hashed.

use std::ffi::OsString;
use std::io::Write;

use anyhow::{Context, anyhow, bail};
use chrono::Duration;
use clap::{Arg, ArgMatches, Command as Cli};
use serde_json::{Value, json};

use pushgate_aws::dynamodb::{DynamoAccountStore, DynamoCredentialStore};
use pushgate_core::app::{AppError, admin};
use pushgate_core::domain::{AccountId, AccountLimits, ApiKeySid};

/// What the operator asked for.
#[derive(Debug, Clone, PartialEq)]
pub enum Command {
    /// `accounts create`
    CreateAccount,
    /// `accounts show AC…`
    ShowAccount(AccountId),
    /// `accounts delete AC…`
    DeleteAccount(AccountId),
    /// `accounts rotate-token AC… [--grace 24h]`
    RotateToken(AccountId, Duration),
    /// `limits set AC… [--requests-per-second N] …`
    SetLimits(AccountId, AccountLimits),
    /// `keys create AC… [--name NAME]`
    CreateKey(AccountId, String),
    /// `keys list AC…`
    ListKeys(AccountId),
    /// `keys revoke AC… SK…`
    RevokeKey(AccountId, ApiKeySid),
}

/// Where the command runs.
pub enum Target {
    /// A running `pushgate-local`, through its admin routes.
    Local {
        /// Its base URL, e.g. `http://127.0.0.1:3000`.
        url: String,
        /// Its `PUSHGATE_ADMIN_TOKEN`.
        token: String,
    },
    /// The deployment's config table on DynamoDB.
    Aws { accounts: DynamoAccountStore, credentials: DynamoCredentialStore },
}

const LIMITS: [(&str, &str); 4] = [
    ("requests-per-second", "API requests per second (token bucket refill)"),
    ("request-burst", "API requests in a burst (token bucket size)"),
    ("notifications-per-minute", "notifications (recipients) accepted per minute"),
    ("live-notifications", "notifications queued or scheduled at once"),
];

fn cli() -> Cli {
    let account = || Arg::new("account").value_name("AC…").required(true).help("the account's sid");
    let limits = LIMITS.iter().map(|(flag, help)| {
        Arg::new(*flag).long(*flag).value_name("N").value_parser(clap::value_parser!(u32).range(1..)).help(*help)
    });
    Cli::new("pushgate-admin")
        .version(env!("CARGO_PKG_VERSION"))
        .about("Manage pushgate accounts, auth tokens, API keys and limits")
        .after_help(
            "Target: a running pushgate-local (--url and --admin-token), or a deployment's config table on AWS \
             (--config-table, with the usual AWS credentials). Output is JSON; secrets appear once.",
        )
        .subcommand_required(true)
        .arg(Arg::new("url").long("url").env("PUSHGATE_ADMIN_URL").global(true).help("base URL of a pushgate-local"))
        .arg(
            Arg::new("admin-token")
                .long("admin-token")
                .env("PUSHGATE_ADMIN_TOKEN")
                .hide_env_values(true)
                .global(true)
                .help("that pushgate-local's PUSHGATE_ADMIN_TOKEN (prefer the environment)"),
        )
        .arg(
            Arg::new("config-table")
                .long("config-table")
                .env("PUSHGATE_CONFIG_TABLE")
                .global(true)
                .help("the deployment's config table (stack output ConfigTableName)"),
        )
        .subcommand(
            Cli::new("accounts")
                .about("create, show, delete accounts; rotate an auth token")
                .subcommand_required(true)
                .subcommand(Cli::new("create").about("a new account; prints its sid and auth token (once)"))
                .subcommand(Cli::new("show").about("its limits, key count and token grace period").arg(account()))
                .subcommand(Cli::new("delete").about("the account, its API keys and credential secrets").arg(account()))
                .subcommand(
                    Cli::new("rotate-token")
                        .about("a new auth token (printed once); the old one works for the grace period")
                        .arg(account())
                        .arg(
                            Arg::new("grace")
                                .long("grace")
                                .default_value("24h")
                                .help("how long the old token keeps working: 0, 90s, 15m, 24h, 7d (at most 30d)"),
                        ),
                ),
        )
        .subcommand(
            Cli::new("keys")
                .about("API keys: SK… sid + secret, acting for their account")
                .subcommand_required(true)
                .subcommand(
                    Cli::new("create")
                        .about("a new key; prints its sid and secret (once)")
                        .arg(account())
                        .arg(Arg::new("name").long("name").default_value("").help("a friendly name (≤ 64 chars)")),
                )
                .subcommand(Cli::new("list").about("the account's keys (never their secrets)").arg(account()))
                .subcommand(
                    Cli::new("revoke")
                        .about("deletes a key: it stops working at once")
                        .arg(account())
                        .arg(Arg::new("key").value_name("SK…").required(true)),
                ),
        )
        .subcommand(
            Cli::new("limits").about("per-account limits").subcommand_required(true).subcommand(
                Cli::new("set")
                    .about("replaces the account's limits; a limit left out takes the deployment's default")
                    .arg(account())
                    .args(limits),
            ),
        )
}

/// Parses a grace period: a whole number of seconds, or one with `s`, `m`, `h` or `d`.
pub fn parse_grace(raw: &str) -> Result<Duration, String> {
    let raw = raw.trim();
    let (digits, unit) = match raw.char_indices().last() {
        Some((i, c)) if c.is_ascii_alphabetic() => (&raw[..i], c),
        _ => (raw, 's'),
    };
    let n: i64 = digits.parse().map_err(|_| format!("`{raw}` is not a duration such as 0, 90s, 15m, 24h or 7d"))?;
    let seconds = match unit {
        's' => n,
        'm' => n.saturating_mul(60),
        'h' => n.saturating_mul(3600),
        'd' => n.saturating_mul(86_400),
        _ => return Err(format!("`{raw}`: the unit must be s, m, h or d")),
    };
    Ok(Duration::seconds(seconds))
}

fn account_of(m: &ArgMatches) -> anyhow::Result<AccountId> {
    let raw = m.get_one::<String>("account").map(String::as_str).unwrap_or_default();
    AccountId::parse(raw).map_err(|_| anyhow!("`{raw}` is not an account sid (AC + 32 lowercase hex)"))
}

/// The command a parsed command line names.
fn command_of(m: &ArgMatches) -> anyhow::Result<Command> {
    let Some((group, sub)) = m.subcommand() else { bail!("a command is required") };
    let Some((verb, args)) = sub.subcommand() else { bail!("a {group} command is required") };
    Ok(match (group, verb) {
        ("accounts", "create") => Command::CreateAccount,
        ("accounts", "show") => Command::ShowAccount(account_of(args)?),
        ("accounts", "delete") => Command::DeleteAccount(account_of(args)?),
        ("accounts", "rotate-token") => {
            let grace = args.get_one::<String>("grace").map(String::as_str).unwrap_or("24h");
            Command::RotateToken(account_of(args)?, parse_grace(grace).map_err(|e| anyhow!(e))?)
        }
        ("keys", "create") => {
            let name = args.get_one::<String>("name").cloned().unwrap_or_default();
            Command::CreateKey(account_of(args)?, name)
        }
        ("keys", "list") => Command::ListKeys(account_of(args)?),
        ("keys", "revoke") => {
            let raw = args.get_one::<String>("key").map(String::as_str).unwrap_or_default();
            let key =
                ApiKeySid::parse(raw).map_err(|_| anyhow!("`{raw}` is not an API key sid (SK + 32 lowercase hex)"))?;
            Command::RevokeKey(account_of(args)?, key)
        }
        ("limits", "set") => {
            let get = |flag: &str| args.get_one::<u32>(flag).copied();
            let limits = AccountLimits {
                requests_per_second: get("requests-per-second"),
                request_burst: get("request-burst"),
                notifications_per_minute: get("notifications-per-minute"),
                live_notifications: get("live-notifications"),
            };
            Command::SetLimits(account_of(args)?, limits)
        }
        (group, verb) => bail!("unknown command {group} {verb}"),
    })
}

/// The target the flags (or variables) name: exactly one of a pushgate-local or a config table.
async fn target_of(m: &ArgMatches) -> anyhow::Result<Target> {
    let text = |name: &str| m.get_one::<String>(name).filter(|v| !v.trim().is_empty()).cloned();
    match (text("url"), text("admin-token"), text("config-table")) {
        (Some(url), Some(token), None) => Ok(Target::Local { url: url.trim_end_matches('/').to_owned(), token }),
        (Some(_), None, None) => bail!("--url needs --admin-token (or PUSHGATE_ADMIN_TOKEN)"),
        (None, _, Some(table)) => {
            let sdk = aws_config::defaults(aws_config::BehaviorVersion::latest()).load().await;
            let client = pushgate_glue::cloud::dynamo_client(&sdk);
            Ok(Target::Aws {
                accounts: DynamoAccountStore::new(client.clone(), table.clone()),
                credentials: DynamoCredentialStore::new(client, table),
            })
        }
        (Some(_), _, Some(_)) => bail!("give either --url (a pushgate-local) or --config-table (AWS), not both"),
        (None, _, None) => bail!("no target: give --url and --admin-token (a pushgate-local) or --config-table (AWS)"),
    }
}

/// Runs `command` against `target`; the JSON to print.
pub async fn run(target: &Target, command: &Command) -> anyhow::Result<Value> {
    match target {
        Target::Local { url, token } => remote(url, token, command).await,
        Target::Aws { accounts, credentials } => direct(accounts, credentials, command).await.map_err(explain),
    }
}

async fn direct(
    accounts: &DynamoAccountStore,
    credentials: &DynamoCredentialStore,
    command: &Command,
) -> Result<Value, AppError> {
    let now = chrono::Utc::now();
    let value = |v: Result<Value, serde_json::Error>| v.map_err(|e| AppError::Unexpected(e.to_string()));
    match command {
        Command::CreateAccount => value(serde_json::to_value(admin::create_account(accounts).await?)),
        Command::ShowAccount(id) => value(serde_json::to_value(admin::fetch_account(accounts, id, now).await?)),
        Command::DeleteAccount(id) => {
            admin::delete_account(accounts, credentials, id).await?;
            Ok(json!({ "accountSid": id, "deleted": true }))
        }
        Command::RotateToken(id, grace) => {
            value(serde_json::to_value(admin::rotate_token(accounts, id, *grace, now).await?))
        }
        Command::SetLimits(id, limits) => value(serde_json::to_value(admin::set_limits(accounts, id, *limits).await?)),
        Command::CreateKey(id, name) => {
            value(serde_json::to_value(admin::create_api_key(accounts, id, name, now).await?))
        }
        Command::ListKeys(id) => Ok(json!({ "keys": admin::list_api_keys(accounts, id).await? })),
        Command::RevokeKey(id, key) => {
            admin::revoke_api_key(accounts, id, key).await?;
            Ok(json!({ "sid": key, "accountSid": id, "revoked": true }))
        }
    }
}

fn explain(e: AppError) -> anyhow::Error {
    match e {
        AppError::Validation(errors) => {
            anyhow!("{}", errors.iter().map(|e| format!("{}: {}", e.field, e.message)).collect::<Vec<_>>().join("; "))
        }
        AppError::NotFound(what) => anyhow!("{what} not found"),
        AppError::NotAllowed { message, .. } => anyhow!(message),
        AppError::Unavailable { .. } => {
            anyhow!("DynamoDB is unavailable (throttled or unreachable); nothing was changed")
        }
        other => anyhow!("{other}"),
    }
}

async fn remote(url: &str, token: &str, command: &Command) -> anyhow::Result<Value> {
    use reqwest::Method;
    let accounts = format!("{url}/admin/v1/Accounts");
    let (method, path, body) = match command {
        Command::CreateAccount => (Method::POST, accounts, None),
        Command::ShowAccount(id) => (Method::GET, format!("{accounts}/{id}"), None),
        Command::DeleteAccount(id) => (Method::DELETE, format!("{accounts}/{id}"), None),
        Command::RotateToken(id, grace) => {
            let seconds = u32::try_from(grace.num_seconds()).context("the grace period must be 0 to 30 days")?;
            (Method::POST, format!("{accounts}/{id}/AuthToken/Rotate"), Some(json!({ "graceSeconds": seconds })))
        }
        Command::SetLimits(id, limits) => {
            (Method::PUT, format!("{accounts}/{id}/Limits"), Some(serde_json::to_value(limits)?))
        }
        Command::CreateKey(id, name) => {
            (Method::POST, format!("{accounts}/{id}/Keys"), Some(json!({ "friendlyName": name })))
        }
        Command::ListKeys(id) => (Method::GET, format!("{accounts}/{id}/Keys"), None),
        Command::RevokeKey(id, key) => (Method::DELETE, format!("{accounts}/{id}/Keys/{key}"), None),
    };
    let client = reqwest::Client::builder().timeout(std::time::Duration::from_secs(30)).build()?;
    let mut request = client.request(method, &path).bearer_auth(token);
    if let Some(body) = body {
        request = request.json(&body);
    }
    let response = request.send().await.with_context(|| format!("cannot reach {url}"))?;
    let status = response.status();
    let text = response.text().await.unwrap_or_default();
    if !status.is_success() {
        let message = serde_json::from_str::<Value>(&text)
            .ok()
            .and_then(|v| {
                let fields: Vec<String> = v["errors"]
                    .as_array()
                    .map(|errs| errs.iter().map(|e| format!("{}: {}", e["field"], e["message"])).collect())
                    .unwrap_or_default();
                v["message"]
                    .as_str()
                    .map(|m| if fields.is_empty() { m.to_owned() } else { format!("{m}: {}", fields.join("; ")) })
            })
            .unwrap_or(text);
        bail!("{status}: {message}");
    }
    Ok(match command {
        Command::DeleteAccount(id) => json!({ "accountSid": id, "deleted": true }),
        Command::RevokeKey(id, key) => json!({ "sid": key, "accountSid": id, "revoked": true }),
        _ => serde_json::from_str(&text).context("the answer is not JSON")?,
    })
}

/// The whole command: parses `args`, runs, prints the JSON answer to `out` (errors to stderr).
/// Its exit code: 0 done, 1 refused or failed, 2 a usage mistake.
pub async fn main_with(args: impl IntoIterator<Item = impl Into<OsString> + Clone>, out: &mut impl Write) -> i32 {
    let matches = match cli().try_get_matches_from(args) {
        Ok(m) => m,
        Err(e) => {
            let code = e.exit_code();
            let _ = e.print();
            return code;
        }
    };
    let outcome = async {
        let command = command_of(&matches)?;
        let target = target_of(&matches).await?;
        run(&target, &command).await
    }
    .await;
    match outcome {
        Ok(value) => {
            let _ = writeln!(out, "{}", serde_json::to_string_pretty(&value).unwrap_or_default());
            0
        }
        Err(e) => {
            eprintln!("pushgate-admin: {e:#}");
            1
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grace_periods_read_seconds_minutes_hours_and_days() {
        assert_eq!(parse_grace("0"), Ok(Duration::zero()));
        assert_eq!(parse_grace("90s"), Ok(Duration::seconds(90)));
        assert_eq!(parse_grace("15m"), Ok(Duration::minutes(15)));
        assert_eq!(parse_grace("24h"), Ok(Duration::hours(24)));
        assert_eq!(parse_grace("7d"), Ok(Duration::days(7)));
        assert!(parse_grace("1w").is_err());
        assert!(parse_grace("soon").is_err());
        assert!(parse_grace("").is_err());
    }

    #[test]
    fn every_command_line_names_its_command() {
        let id = "AC0123456789abcdef0123456789abcdef";
        let key = "SK0123456789abcdef0123456789abcdef";
        let parse = |args: &[&str]| {
            let matches = cli().try_get_matches_from(std::iter::once("pushgate-admin").chain(args.iter().copied()));
            command_of(&matches.expect("parsed"))
        };
        let account = AccountId::parse(id).expect("valid");
        assert_eq!(parse(&["accounts", "create"]).expect("ok"), Command::CreateAccount);
        assert_eq!(
            parse(&["accounts", "rotate-token", id]).expect("ok"),
            Command::RotateToken(account.clone(), Duration::hours(24))
        );
        assert_eq!(
            parse(&["accounts", "rotate-token", id, "--grace", "0"]).expect("ok"),
            Command::RotateToken(account.clone(), Duration::zero())
        );
        assert_eq!(
            parse(&["keys", "revoke", id, key]).expect("ok"),
            Command::RevokeKey(account.clone(), ApiKeySid::parse(key).expect("valid"))
        );
        let limits =
            parse(&["limits", "set", id, "--requests-per-second", "5", "--live-notifications", "100"]).expect("ok");
        assert_eq!(
            limits,
            Command::SetLimits(
                account,
                AccountLimits { requests_per_second: Some(5), live_notifications: Some(100), ..Default::default() }
            )
        );
        assert!(parse(&["accounts", "show", "AC123"]).is_err(), "a malformed sid");
        assert!(cli().try_get_matches_from(["pushgate-admin", "limits", "set", id, "--request-burst", "0"]).is_err());
    }
}
