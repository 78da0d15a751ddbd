//! Lambda function `users`: `/v1/PushNotifications/Users[/{userId}]`: list, fetch and delete
//! Users. Wiring only: the behaviour lives in the shared crates (see `pushgate_glue::functions`).

use pushgate_glue::lambda::{Error, init_logging, run_http};

#[tokio::main]
async fn main() -> Result<(), Error> {
    init_logging();
    run_http(pushgate_glue::functions::cold_start::users).await
}
