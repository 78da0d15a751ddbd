//! `pushgate-local`: the Twilio-compatible push API in one process, on in-memory adapters or
//! (`PUSHGATE_BACKEND=aws`, built with `--features aws`) on DynamoDB, SQS and KMS at
//! `AWS_ENDPOINT_URL`.

use std::time::Duration;

use pushgate_local::{Backend, LocalConfig, LogFormat, build, print_banner};
use tracing_subscriber::EnvFilter;

/// mimalloc: fan-out allocates many small, short-lived objects per notification; glibc malloc
/// spent ~30% of CPU there in the benchmark and kept freed memory resident.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

const DRAIN: Duration = Duration::from_secs(30);

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let vars = pushgate_local::cli::parse(std::env::args_os()).unwrap_or_else(|e| e.exit());
    let config = LocalConfig::from_vars(|name| vars.get(name))?;
    let logs = tracing_subscriber::fmt()
        .with_env_filter(EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")))
        .with_writer(std::io::stderr);
    match config.log_format {
        LogFormat::Json => logs.json().init(),
        LogFormat::Text => logs.with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr())).init(),
    }
    let listener = tokio::net::TcpListener::bind(config.listen).await?;
    let addr = listener.local_addr()?;
    match config.backend {
        Backend::Memory => {
            let app = build(&config)?;
            print_banner(&app.account, &app.token, app.generated_account, addr);
            app.serve(listener, shutdown_signal(), DRAIN).await?;
        }
        #[cfg(feature = "aws")]
        Backend::Aws => {
            let app = pushgate_local::aws::build_local(
                &config,
                &pushgate_local::aws::LocalResources::from_vars(|name| vars.get(name)),
            )
            .await?;
            print_banner(&app.account, &app.token, app.generated_account, addr);
            app.serve(listener, shutdown_signal(), DRAIN).await?;
        }
        #[cfg(not(feature = "aws"))]
        Backend::Aws => anyhow::bail!("PUSHGATE_BACKEND=aws needs a build with `--features aws`"),
    }
    Ok(())
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! { _ = ctrl_c => {}, _ = term => {} }
    tracing::info!("shutdown requested");
}
