//! `pushgate-admin`: see the library.

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let code = pushgate_admin::main_with(std::env::args_os(), &mut std::io::stdout()).await;
    std::process::exit(code);
}
