//! Lambda function `list`: `GET /v1/PushNotifications`: notifications with filters and pages.
//! Wiring only: the behaviour lives in the `pushgate` crate (see `pushgate::lambda`).

use pushgate::api::Function;
use pushgate::lambda::{Error, init_logging, run_http};

#[tokio::main]
async fn main() -> Result<(), Error> {
    init_logging();
    run_http(Function::List).await
}
