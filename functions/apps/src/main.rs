//! Lambda function `apps`: `/v1/PushNotifications/Apps[/{name}]`: list, fetch and update Apps.
//! Wiring only: the behaviour lives in the `pushgate` crate (see `pushgate::lambda`).

use pushgate::api::Function;
use pushgate::lambda::{Error, init_logging, run_http};

#[tokio::main]
async fn main() -> Result<(), Error> {
    init_logging();
    run_http(Function::Apps).await
}
