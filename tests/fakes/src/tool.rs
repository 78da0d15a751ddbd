//! `pushgate-fake-providers`: the fake APNs, FCM and Google OAuth endpoints
//! on one port, for trying pushgate without Apple or Google accounts.
//!
//! On start it generates an APNs signing key and an FCM service account,
//! registers them with the fakes, writes the two credential-create bodies
//! pushgate accepts (`apn-credential.json`, `fcm-credential.json`) into the
//! output directory, prints how to start `pushgate-local` against the fakes
//! and how to create the credentials, then prints one line per request the
//! fakes answer until it is told to stop.
//!
//! The APNs key is kept across restarts: a started tool reuses the key of an
//! `apn-credential.json` it wrote before, so credentials already created in a
//! running pushgate stay valid. (The FCM service account's key is a
//! committed test fixture, the same every time.)

use std::ffi::OsString;
use std::future::Future;
use std::io::{self, Write};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio::sync::broadcast::error::RecvError;

use crate::keys::{
    ApnsSigningKey, FcmServiceAccount, apns_signing_key, apns_signing_key_from_pem, fcm_service_account,
};
use crate::{ApnsRequest, FakeApns, FakeFcm, FcmEvent, start_combined};

/// `--listen` unless given.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:4000";
/// `--out` unless given.
pub const DEFAULT_OUT: &str = "./fake-providers";
/// `--pushgate-url` unless given: where `pushgate-local` listens by default.
pub const DEFAULT_PUSHGATE_URL: &str = "http://127.0.0.1:3000";
/// The pushgate App the written credentials create.
pub const APP_NAME: &str = "demo";
/// The APNs key id (JWT `kid`) of the generated signing key.
pub const APNS_KEY_ID: &str = "FAKEKEY001";
/// The APNs team id (JWT `iss`) of the generated signing key.
pub const APNS_TEAM_ID: &str = "FAKETEAM01";
/// The bundle id (APNs topic) of the APNs credential.
pub const BUNDLE_ID: &str = "com.example.app";
/// The Firebase project of the FCM service account.
pub const FCM_PROJECT: &str = "pushgate-demo";
/// The APNs credential-create body, in the output directory.
pub const APN_CREDENTIAL_FILE: &str = "apn-credential.json";
/// The FCM credential-create body, in the output directory.
pub const FCM_CREDENTIAL_FILE: &str = "fcm-credential.json";

/// What the command line asked for.
#[derive(Clone, Debug)]
pub struct Options {
    /// Address to listen on.
    pub listen: SocketAddr,
    /// Directory the credential files are written to (created if missing).
    pub out_dir: PathBuf,
    /// pushgate's base URL, for the printed commands only.
    pub pushgate_url: String,
}

fn command() -> clap::Command {
    clap::Command::new("pushgate-fake-providers")
        .version(env!("CARGO_PKG_VERSION"))
        .about(
            "Fake APNs, FCM and Google OAuth endpoints on one port, to try pushgate without Apple or Google \
             accounts (TEST ONLY: nothing is delivered anywhere)",
        )
        .after_help(
            "It writes the credentials to create in pushgate into --out, prints the environment to start \
             pushgate-local with and the commands that create the credentials, then one line per request \
             received. Ctrl-C stops it.",
        )
        .arg(
            clap::Arg::new("listen")
                .long("listen")
                .value_name("HOST:PORT")
                .default_value(DEFAULT_LISTEN)
                .value_parser(clap::value_parser!(SocketAddr))
                .help("address to listen on (port 0: any free port)"),
        )
        .arg(
            clap::Arg::new("out")
                .long("out")
                .value_name("DIR")
                .default_value(DEFAULT_OUT)
                .value_parser(clap::value_parser!(PathBuf))
                .help("directory to write apn-credential.json and fcm-credential.json into"),
        )
        .arg(
            clap::Arg::new("pushgate-url")
                .long("pushgate-url")
                .value_name("URL")
                .default_value(DEFAULT_PUSHGATE_URL)
                .help("pushgate's base URL, used in the printed curl commands"),
        )
}

/// Reads the command line. `Err` for `--help`, `--version` and mistakes: its
/// `exit()` prints what it says and ends the process.
pub fn parse(args: impl IntoIterator<Item = impl Into<OsString> + Clone>) -> Result<Options, clap::Error> {
    let matches = command().try_get_matches_from(args)?;
    let listen = matches.get_one::<SocketAddr>("listen").copied().expect("--listen has a default");
    let out_dir = matches.get_one::<PathBuf>("out").cloned().expect("--out has a default");
    let pushgate_url = matches.get_one::<String>("pushgate-url").cloned().expect("--pushgate-url has a default");
    Ok(Options { listen, out_dir, pushgate_url: pushgate_url.trim_end_matches('/').to_owned() })
}

/// The fakes on one port, with the key material registered with them and the
/// credential files written.
#[derive(Debug)]
pub struct FakeProviders {
    /// The fake APNs (`POST /3/device/{token}`).
    pub apns: FakeApns,
    /// The fake FCM and OAuth token endpoint.
    pub fcm: FakeFcm,
    /// The APNs signing key registered with [`FakeProviders::apns`].
    pub apns_key: ApnsSigningKey,
    /// The service account registered with [`FakeProviders::fcm`]; its
    /// `token_uri` is the fake's `/token`.
    pub fcm_account: FcmServiceAccount,
    /// `{out_dir}/apn-credential.json`.
    pub apn_credential_file: PathBuf,
    /// `{out_dir}/fcm-credential.json`.
    pub fcm_credential_file: PathBuf,
}

impl FakeProviders {
    /// Serves both fakes on `listener` ([`start_combined`]), registers an
    /// APNs signing key (the one of an `apn-credential.json` already in
    /// `out_dir` if it has one, else a new one) and an FCM service account,
    /// and writes the two credential-create bodies into `out_dir`.
    pub async fn start(listener: TcpListener, out_dir: &Path) -> io::Result<FakeProviders> {
        let (apns, fcm) = start_combined(listener).await;
        let apn_credential_file = out_dir.join(APN_CREDENTIAL_FILE);
        let fcm_credential_file = out_dir.join(FCM_CREDENTIAL_FILE);
        let apns_key =
            previous_apns_key(&apn_credential_file).unwrap_or_else(|| apns_signing_key(APNS_KEY_ID, APNS_TEAM_ID));
        apns.register_signing_key(&apns_key);
        let fcm_account = fcm_service_account(FCM_PROJECT, &fcm.token_uri());
        fcm.register_service_account(&fcm_account);

        let write = |path: &Path, body: &Value| {
            let text = serde_json::to_string_pretty(body).expect("JSON values serialize") + "\n";
            std::fs::write(path, text)
                .map_err(|error| io::Error::new(error.kind(), format!("cannot write {}: {error}", path.display())))
        };
        std::fs::create_dir_all(out_dir)
            .map_err(|error| io::Error::new(error.kind(), format!("cannot create {}: {error}", out_dir.display())))?;
        write(&apn_credential_file, &apn_credential_body(&apns_key, APP_NAME))?;
        write(&fcm_credential_file, &fcm_credential_body(&fcm_account, APP_NAME))?;
        Ok(FakeProviders { apns, fcm, apns_key, fcm_account, apn_credential_file, fcm_credential_file })
    }

    /// `http://HOST:PORT`, where both fakes answer.
    pub fn base_url(&self) -> String {
        self.apns.base_url()
    }

    /// The variables that point `pushgate-local` at the fakes:
    /// `APNS_ENDPOINT`, `FCM_ENDPOINT` and `PUSHGATE_FCM_TOKEN_URIS`.
    pub fn pushgate_env(&self) -> [(&'static str, String); 3] {
        [
            ("APNS_ENDPOINT", self.base_url()),
            ("FCM_ENDPOINT", self.fcm.base_url()),
            ("PUSHGATE_FCM_TOKEN_URIS", self.fcm.token_uri()),
        ]
    }

    /// What the tool prints on start: the environment for `pushgate-local`,
    /// the commands that create the credentials in pushgate at
    /// `pushgate_url`, and the device tokens the fakes accept.
    pub fn instructions(&self, pushgate_url: &str) -> String {
        let env: String =
            self.pushgate_env().iter().map(|(name, value)| format!("    export {name}={value}\n")).collect();
        let curl = |file: &Path| {
            format!(
                "    curl -u \"$PUSHGATE_ACCOUNT_ID:$PUSHGATE_AUTH_TOKEN\" -H 'Content-Type: application/json' \
                 --data {} {pushgate_url}/v1/PushNotifications/Credentials\n",
                shell_word(&format!("@{}", file.display()))
            )
        };
        let apn_example = format!("{:064x}", 1);
        format!(
            "pushgate-fake-providers {version}: fake APNs, FCM and Google OAuth on {base} \
             (TEST ONLY: nothing leaves this machine)\n\
             \n\
             1. Start pushgate-local against them, in another terminal:\n\
             \n\
             {env}    cargo run --release -p pushgate-local\n\
             \n\
             2. Create the credentials (App \"{APP_NAME}\"), with the account id and auth token pushgate-local \
             uses:\n\
             \n\
             {apn}{fcm}\
             \n\
             3. Send to any APNs device token of 64 hex digits (e.g. {apn_example}) or any FCM registration \
             token (e.g. {fcm_example}).\n\
             \n\
             Requests received (Ctrl-C to stop):\n",
            version = env!("CARGO_PKG_VERSION"),
            base = self.base_url(),
            apn = curl(&self.apn_credential_file),
            fcm = curl(&self.fcm_credential_file),
            fcm_example = "fcm-demo-token-1",
        )
    }
}

/// The key of an `apn-credential.json` this tool wrote before, if `path`
/// holds one for [`APNS_KEY_ID`] / [`APNS_TEAM_ID`].
fn previous_apns_key(path: &Path) -> Option<ApnsSigningKey> {
    let body: Value = serde_json::from_slice(&std::fs::read(path).ok()?).ok()?;
    let content = body.get("content")?;
    if content.get("keyId")?.as_str()? != APNS_KEY_ID || content.get("teamId")?.as_str()? != APNS_TEAM_ID {
        return None;
    }
    let pem = String::from_utf8(STANDARD.decode(content.get("privateKey")?.as_str()?).ok()?).ok()?;
    apns_signing_key_from_pem(APNS_KEY_ID, APNS_TEAM_ID, &pem)
}

/// The body of `POST /v1/PushNotifications/Credentials` that creates an APNs
/// token-auth credential for `key` (bundle id [`BUNDLE_ID`]) in App `app`.
pub fn apn_credential_body(key: &ApnsSigningKey, app: &str) -> Value {
    json!({
        "credentialType": "APN",
        "appName": app,
        "content": {
            "keyId": key.key_id,
            "teamId": key.team_id,
            "bundleId": BUNDLE_ID,
            "privateKey": STANDARD.encode(&key.private_key_pem),
        },
    })
}

/// The body of `POST /v1/PushNotifications/Credentials` that creates an FCM
/// credential for `account` (its service-account JSON, base64) in App `app`.
pub fn fcm_credential_body(account: &FcmServiceAccount, app: &str) -> Value {
    json!({
        "credentialType": "FCM",
        "appName": app,
        "content": { "privateKey": STANDARD.encode(account.to_json()) },
    })
}

/// `word` as one shell word: itself when it needs no quoting, else in single
/// quotes.
fn shell_word(word: &str) -> String {
    if !word.is_empty() && word.bytes().all(|b| b.is_ascii_alphanumeric() || b"@%+=:,./_-".contains(&b)) {
        word.to_owned()
    } else {
        format!("'{}'", word.replace('\'', r"'\''"))
    }
}

/// A device token shortened for a log line: the first 6 and last 4
/// characters; `-` when there is none.
fn short_token(token: &str) -> String {
    let chars: Vec<char> = token.chars().collect();
    match chars.len() {
        0 => "-".to_owned(),
        n if n <= 14 => token.to_owned(),
        n => format!("{}…{}", chars[..6].iter().collect::<String>(), chars[n - 4..].iter().collect::<String>()),
    }
}

/// `text` quoted, cut to 60 characters.
fn quoted(text: &str) -> String {
    let mut cut: String = text.chars().take(60).collect();
    if cut.len() < text.len() {
        cut.push('…');
    }
    format!("{cut:?}")
}

/// The title (or body) of a notification object (`{"title", "body"}`), or of
/// an APNs `alert` string.
fn headline(notification: Option<&Value>) -> Option<String> {
    let notification = notification?;
    let text = notification
        .as_str()
        .or_else(|| notification.get("title").and_then(Value::as_str))
        .or_else(|| notification.get("body").and_then(Value::as_str))?;
    Some(quoted(text))
}

/// One line for a request the fake APNs answered: provider, shortened device
/// token, status, and Apple's reason for a refusal or the alert's title for a
/// delivery.
pub fn describe_apns(request: &ApnsRequest) -> String {
    let detail = match &request.reason {
        Some(reason) => reason.clone(),
        None => headline(request.payload.get("aps").and_then(|aps| aps.get("alert")))
            .unwrap_or_else(|| "(no alert)".to_owned()),
    };
    format!("APNs   {:<12} {}  {detail}", short_token(&request.device_token), request.status)
}

/// One line for a request the fake FCM answered: `messages:send` like
/// [`describe_apns`] (Google's error status and message for a refusal), or a
/// request to the OAuth token endpoint with the service account and Google's
/// error.
pub fn describe_fcm(event: &FcmEvent) -> String {
    match event {
        FcmEvent::Send(request) => {
            let detail = match (&request.error_status, &request.error_message) {
                (Some(status), Some(message)) => format!("{status}: {message}"),
                (Some(status), None) => status.clone(),
                _ => headline(request.message.get("notification")).unwrap_or_else(|| "(data only)".to_owned()),
            };
            format!("FCM    {:<12} {}  {detail}", short_token(&request.device_token), request.status)
        }
        FcmEvent::Token(request) => {
            let detail = match (&request.error, &request.error_description) {
                (Some(error), Some(description)) => format!("{error}: {description}"),
                (Some(error), None) => error.clone(),
                _ => "access token issued".to_owned(),
            };
            let account = request.client_email.as_deref().unwrap_or("-");
            format!("OAuth  {account} {}  {detail}", request.status)
        }
    }
}

/// The tool: listens on `options.listen`, starts the fakes
/// ([`FakeProviders::start`]), writes [`FakeProviders::instructions`] to `out`,
/// then a timestamped line per request answered until `shutdown` completes.
/// `Err` when it cannot listen or write the credential files (or `out`).
pub async fn run<W: Write>(options: &Options, out: &mut W, shutdown: impl Future<Output = ()>) -> io::Result<()> {
    let listener = TcpListener::bind(options.listen)
        .await
        .map_err(|error| io::Error::new(error.kind(), format!("cannot listen on {}: {error}", options.listen)))?;
    let providers = FakeProviders::start(listener, &options.out_dir).await?;
    let mut apns = providers.apns.subscribe();
    let mut fcm = providers.fcm.subscribe();
    out.write_all(providers.instructions(&options.pushgate_url).as_bytes())?;
    out.flush()?;

    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let line = tokio::select! {
            () = &mut shutdown => break,
            received = apns.recv() => match received {
                Ok(request) => describe_apns(&request),
                Err(RecvError::Lagged(skipped)) => format!("APNs   ({skipped} requests not shown: printing fell behind)"),
                Err(RecvError::Closed) => break,
            },
            received = fcm.recv() => match received {
                Ok(event) => describe_fcm(&event),
                Err(RecvError::Lagged(skipped)) => format!("FCM    ({skipped} requests not shown: printing fell behind)"),
                Err(RecvError::Closed) => break,
            },
        };
        writeln!(out, "{}  {line}", chrono::Local::now().format("%H:%M:%S"))?;
        out.flush()?;
    }
    writeln!(out, "pushgate-fake-providers: stopped")?;
    out.flush()
}

/// The binary: reads the command line (exiting for `--help`, `--version` and
/// mistakes), runs [`run`] on stdout until Ctrl-C, and reports a failure on
/// stderr with exit code 1.
pub async fn main(args: impl IntoIterator<Item = impl Into<OsString> + Clone>) -> std::process::ExitCode {
    let options = parse(args).unwrap_or_else(|error| error.exit());
    let ctrl_c = async {
        if tokio::signal::ctrl_c().await.is_err() {
            // No signal handler: run until killed.
            std::future::pending::<()>().await;
        }
    };
    match run(&options, &mut io::stdout(), ctrl_c).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("pushgate-fake-providers: {error}");
            std::process::ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_defaults_are_port_4000_on_loopback_and_a_local_directory() {
        let options = parse(["pushgate-fake-providers"]).expect("no flags needed");
        assert_eq!(options.listen.to_string(), DEFAULT_LISTEN);
        assert_eq!(options.out_dir, PathBuf::from(DEFAULT_OUT));
        assert_eq!(options.pushgate_url, DEFAULT_PUSHGATE_URL);
        let options =
            parse(["x", "--listen", "0.0.0.0:0", "--out", "/tmp/f", "--pushgate-url", "http://h:1/"]).expect("parsed");
        assert_eq!(options.listen.to_string(), "0.0.0.0:0");
        assert_eq!(options.out_dir, PathBuf::from("/tmp/f"));
        assert_eq!(options.pushgate_url, "http://h:1");
    }

    #[test]
    fn help_version_and_mistakes_are_clap_errors_that_exit() {
        let help = parse(["x", "--help"]).expect_err("help is not a run");
        assert_eq!(help.kind(), clap::error::ErrorKind::DisplayHelp);
        let text = help.render().to_string();
        assert!(text.contains("--listen") && text.contains("--out") && text.contains("--pushgate-url"), "{text}");
        let version = parse(["x", "--version"]).expect_err("version is not a run");
        assert_eq!(version.kind(), clap::error::ErrorKind::DisplayVersion);
        assert!(version.render().to_string().contains(env!("CARGO_PKG_VERSION")));
        let wrong = parse(["x", "--listen", "nowhere"]).expect_err("not an address");
        assert_eq!(wrong.kind(), clap::error::ErrorKind::ValueValidation);
    }

    #[test]
    fn tokens_are_shortened_to_their_ends() {
        assert_eq!(short_token(&format!("{:064x}", 1)), "000000…0001");
        assert_eq!(short_token("fcm-1"), "fcm-1");
        assert_eq!(short_token(""), "-");
    }

    #[test]
    fn paths_are_quoted_for_the_shell_only_when_they_need_it() {
        assert_eq!(shell_word("@./fake-providers/apn-credential.json"), "@./fake-providers/apn-credential.json");
        assert_eq!(shell_word("@/tmp/my dir/a.json"), "'@/tmp/my dir/a.json'");
        assert_eq!(shell_word("@it's"), r"'@it'\''s'");
    }

    #[test]
    fn a_line_names_the_provider_the_status_and_why_a_request_was_refused() {
        let apns = ApnsRequest {
            device_token: format!("{:064x}", 7),
            headers: Default::default(),
            payload: json!({"aps": {"alert": {"title": "Hi Ada", "body": "Gate 12"}}}),
            body_len: 0,
            jwt_claims: None,
            client_certificate: false,
            status: 200,
            reason: None,
            http_version: "HTTP/2.0".to_owned(),
        };
        assert_eq!(describe_apns(&apns), "APNs   000000…0007  200  \"Hi Ada\"");
        let refused = ApnsRequest { status: 403, reason: Some("InvalidProviderToken".to_owned()), ..apns };
        assert_eq!(describe_apns(&refused), "APNs   000000…0007  403  InvalidProviderToken");

        let send = crate::FcmRequest {
            project_id: FCM_PROJECT.to_owned(),
            device_token: "fcm-demo-token-1".to_owned(),
            message: json!({"token": "fcm-demo-token-1", "notification": {"body": "Gate 12"}}),
            headers: Default::default(),
            status: 200,
            error_status: None,
            error_message: None,
            http_version: "HTTP/2.0".to_owned(),
        };
        assert_eq!(describe_fcm(&FcmEvent::Send(send.clone())), "FCM    fcm-de…en-1  200  \"Gate 12\"");
        let refused = crate::FcmRequest {
            status: 401,
            error_status: Some("UNAUTHENTICATED".to_owned()),
            error_message: Some("Request had invalid authentication credentials.".to_owned()),
            ..send
        };
        assert_eq!(
            describe_fcm(&FcmEvent::Send(refused)),
            "FCM    fcm-de…en-1  401  UNAUTHENTICATED: Request had invalid authentication credentials."
        );
        let token = crate::fcm::TokenRequest {
            client_email: Some("a@b".to_owned()),
            status: 400,
            error: Some("invalid_grant".to_owned()),
            error_description: Some("Invalid JWT Signature.".to_owned()),
        };
        assert_eq!(describe_fcm(&FcmEvent::Token(token)), "OAuth  a@b 400  invalid_grant: Invalid JWT Signature.");
    }
}
