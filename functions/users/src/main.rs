//! Lambda function `users`: `/v1/PushNotifications/Users[/{userId}]`: list, fetch and delete
//! Users. Wiring only: the behaviour lives in the `pushgate` crate (see `pushgate::lambda`).

use pushgate::api::Function;
use pushgate::lambda::{Error, init_logging, run_http};

#[tokio::main]
async fn main() -> Result<(), Error> {
    init_logging();
    run_http(Function::Users).await
}
