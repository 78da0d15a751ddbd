//! Lambda function `device-registrations`: `/v1/PushNotifications/DeviceRegistrations[/{id}]`:
//! register, list, fetch and delete devices. Wiring only: the behaviour lives in the `pushgate`
//! crate (see `pushgate::lambda`).

use pushgate::api::Function;
use pushgate::lambda::{Error, init_logging, run_http};

#[tokio::main]
async fn main() -> Result<(), Error> {
    init_logging();
    run_http(Function::DeviceRegistrations).await
}
