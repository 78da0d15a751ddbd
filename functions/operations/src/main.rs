//! Lambda function `operations`: `GET /v1/PushNotifications/Operations[/{id}[/Errors]]`: operations and their errors.
//! Wiring only: the behaviour lives in the `pushgate` crate (see `pushgate::lambda`).

use pushgate::api::Function;
use pushgate::lambda::{Error, init_logging, run_http};

#[tokio::main]
async fn main() -> Result<(), Error> {
    init_logging();
    run_http(Function::Operations).await
}
