//! Lambda function `apps`: `/v1/PushNotifications/Apps[/{name}]`: list, fetch and update Apps.
//! Wiring only: the behaviour lives in the shared crates (see `pushgate_glue::functions`).

use pushgate_glue::lambda::{Error, init_logging, run_http};

#[tokio::main]
async fn main() -> Result<(), Error> {
    init_logging();
    run_http(pushgate_glue::functions::cold_start::apps).await
}
