//! `pushgate-local`: the Twilio-compatible push API in one process, on in-memory adapters.

use std::time::Duration;

use pushgate::local::{LocalConfig, build};
use tracing_subscriber::EnvFilter;

/// mimalloc: fan-out allocates many small, short-lived objects per notification; glibc malloc
/// spent ~30% of CPU there in the benchmark and kept freed memory resident.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")))
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let config = LocalConfig::from_env()?;
    let app = build(&config)?;
    let listener = tokio::net::TcpListener::bind(config.listen).await?;
    let addr = listener.local_addr()?;
    if app.generated_account {
        // Printed once, to the terminal only, so the developer can call the API.
        println!("pushgate-local generated an account for this run:");
        println!("  PUSHGATE_ACCOUNT_ID={}", app.account);
        println!("  PUSHGATE_AUTH_TOKEN={}", app.token.expose());
    }
    println!("pushgate-local listening on http://{addr}");
    tracing::info!(%addr, account_id = %app.account, "pushgate-local started");
    app.serve(listener, shutdown_signal(), Duration::from_secs(30)).await?;
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
