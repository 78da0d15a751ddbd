//! `pushgate-fake-providers`: fake APNs, FCM and Google OAuth on one port (see
//! `pushgate_fakes::tool`). Wiring only.

#[tokio::main]
async fn main() -> std::process::ExitCode {
    pushgate_fakes::tool::main(std::env::args_os()).await
}
