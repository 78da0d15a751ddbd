//! Driving the Lambda entry points as AWS does: API Gateway events (REST v1 and HTTP API v2
//! JSON, parsed by `lambda_http::request::from_str`) and SQS events, on memory deps or on the
//! AWS adapters against moto.

use aws_lambda_events::event::sqs::{SqsBatchResponse, SqsEvent};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use http::{HeaderMap, StatusCode};
use pushgate_api::{ApiConfig, Function, router_for};
use pushgate_core::app::Deps;
use pushgate_core::app::dispatch::QueueMessage;
use pushgate_core::domain::{Account, AccountId, AuthToken};
use pushgate_fakes::keys::{apns_signing_key, fcm_service_account};
use pushgate_fakes::{FakeApns, FakeFcm};
use serde_json::{Value, json};

use crate::{apn_credential_body, emulator, fcm_credential_body, test_queue};

/// Basic credentials of an account.
#[derive(Clone)]
pub struct Caller {
    /// The account id.
    pub account: AccountId,
    pub token: AuthToken,
}

impl Caller {
    /// The `Authorization` header value of this caller.
    pub fn authorization(&self) -> String {
        format!("Basic {}", STANDARD.encode(format!("{}:{}", self.account, self.token.expose())))
    }
}

fn split(path_and_query: &str) -> (&str, &str) {
    path_and_query.split_once('?').unwrap_or((path_and_query, ""))
}

/// An HTTP API (payload 2.0) event. With `stage` other than `$default`, `rawPath` carries the
/// stage prefix as API Gateway sends it.
pub fn http_api_event(
    method: &str,
    path_and_query: &str,
    stage: &str,
    caller: &Caller,
    body: Option<&Value>,
) -> String {
    let (path, query) = split(path_and_query);
    let raw_path = if stage == "$default" { path.to_owned() } else { format!("/{stage}{path}") };
    let query_map: serde_json::Map<String, Value> = url::form_urlencoded::parse(query.as_bytes())
        .map(|(k, v)| (k.into_owned(), Value::String(v.into_owned())))
        .collect();
    json!({
        "version": "2.0",
        "routeKey": format!("{method} {path}"),
        "rawPath": raw_path,
        "rawQueryString": query,
        "queryStringParameters": query_map,
        "headers": {
            "authorization": caller.authorization(),
            "content-type": "application/json",
            "host": "abc123.execute-api.us-east-1.amazonaws.com",
            "x-forwarded-proto": "https"
        },
        "requestContext": {
            "accountId": "123456789012",
            "apiId": "abc123",
            "domainName": "abc123.execute-api.us-east-1.amazonaws.com",
            "domainPrefix": "abc123",
            "http": {"method": method, "path": raw_path, "protocol": "HTTP/1.1", "sourceIp": "1.2.3.4", "userAgent": "test"},
            "requestId": "req-1",
            "routeKey": format!("{method} {path}"),
            "stage": stage,
            "time": "27/Nov/2026:12:00:00 +0000",
            "timeEpoch": 1_795_780_800_000_u64
        },
        "body": body.map(Value::to_string),
        "isBase64Encoded": false
    })
    .to_string()
}

/// A REST API (payload 1.0) event: `path` without the stage, the stage in the request context
/// (lambda_http puts it in front of the URI path, as the default endpoint does).
pub fn rest_api_event(
    method: &str,
    path_and_query: &str,
    stage: &str,
    caller: &Caller,
    body: Option<&Value>,
) -> String {
    let (path, query) = split(path_and_query);
    let pairs: Vec<(String, String)> =
        url::form_urlencoded::parse(query.as_bytes()).map(|(k, v)| (k.into_owned(), v.into_owned())).collect();
    let single: serde_json::Map<String, Value> =
        pairs.iter().map(|(k, v)| (k.clone(), Value::String(v.clone()))).collect();
    let mut multi = serde_json::Map::new();
    for (k, v) in &pairs {
        if let Some(values) = multi.entry(k.clone()).or_insert_with(|| json!([])).as_array_mut() {
            values.push(json!(v));
        }
    }
    let headers = json!({
        "Authorization": caller.authorization(),
        "Content-Type": "application/json",
        "Host": "abc123.execute-api.us-east-1.amazonaws.com",
        "X-Forwarded-Proto": "https"
    });
    let multi_headers: serde_json::Map<String, Value> =
        headers.as_object().map(|h| h.iter().map(|(k, v)| (k.clone(), json!([v]))).collect()).unwrap_or_default();
    json!({
        "resource": path,
        "path": path,
        "httpMethod": method,
        "headers": headers,
        "multiValueHeaders": multi_headers,
        "queryStringParameters": if single.is_empty() { Value::Null } else { Value::Object(single) },
        "multiValueQueryStringParameters": if multi.is_empty() { Value::Null } else { Value::Object(multi) },
        "pathParameters": null,
        "stageVariables": null,
        "requestContext": {
            "accountId": "123456789012",
            "apiId": "abc123",
            "domainName": "abc123.execute-api.us-east-1.amazonaws.com",
            "httpMethod": method,
            "identity": {"sourceIp": "1.2.3.4", "userAgent": "test"},
            "path": format!("/{stage}{path}"),
            "protocol": "HTTP/1.1",
            "requestId": "req-1",
            "requestTimeEpoch": 1_795_780_800_u64,
            "resourceId": "res",
            "resourcePath": path,
            "stage": stage
        },
        "body": body.map(Value::to_string),
        "isBase64Encoded": false,
        "version": "1.0"
    })
    .to_string()
}

/// Feeds an API Gateway event to `function`'s router, as the Lambda runtime would.
pub async fn invoke(deps: &Deps, function: Function, event: &str) -> (StatusCode, HeaderMap, Value) {
    invoke_router(router_for(deps.clone(), ApiConfig::default(), Some(function)), event).await
}

/// Feeds `event` to `router` the way the Lambda runtime does.
pub async fn invoke_router(router: axum::Router, event: &str) -> (StatusCode, HeaderMap, Value) {
    let request = lambda_http::request::from_str(event).expect("a valid API Gateway event");
    let response = match pushgate_glue::lambda::handle(router, request).await {
        Ok(r) => r,
        Err(never) => match never {},
    };
    let (parts, body) = response.into_parts();
    let bytes = axum::body::to_bytes(body, usize::MAX).await.expect("body");
    let value = if bytes.is_empty() { Value::Null } else { serde_json::from_slice(&bytes).unwrap_or(Value::Null) };
    (parts.status, parts.headers, value)
}

/// The SQS event the dispatch function gets for `messages` (JSON, as Lambda delivers it).
pub fn sqs_event(messages: &[QueueMessage]) -> SqsEvent {
    let records: Vec<Value> = messages
        .iter()
        .map(|m| {
            json!({
                "messageId": m.id,
                "receiptHandle": format!("handle-{}", m.id),
                "body": m.body,
                "attributes": {"ApproximateReceiveCount": m.receive_count.to_string(), "SentTimestamp": "1795780800000"},
                "messageAttributes": {},
                "md5OfBody": "",
                "eventSource": "aws:sqs",
                "eventSourceARN": "arn:aws:sqs:us-east-1:123456789012:fanout",
                "awsRegion": "us-east-1"
            })
        })
        .collect();
    serde_json::from_value(json!({ "Records": records })).expect("a valid SQS event")
}

/// The message ids a dispatch response asks SQS to deliver again.
pub fn failures(response: &SqsBatchResponse) -> Vec<String> {
    response.batch_item_failures.iter().map(|f| f.item_identifier.clone()).collect()
}

/// Every port wired, each HTTP function's router and the dispatch function's dependencies.
fn wire_all(
    config: &pushgate_glue::cloud::CloudConfig,
    sdk: &aws_config::SdkConfig,
) -> (Deps, std::collections::HashMap<Function, axum::Router>, Deps) {
    let deps = pushgate_glue::cloud::build_deps(config, sdk).expect("deps build");
    let functions = Function::ALL
        .into_iter()
        .map(|f| (f, pushgate_glue::functions::by_function(f)(config, sdk).expect("the function wires")))
        .collect();
    let dispatch = pushgate_glue::functions::dispatch(config, sdk).expect("dispatch wires");
    (deps, functions, dispatch)
}

/// The serverless stack on moto: fresh tables, queue and KMS key, an account, fakes, and each
/// function composed exactly as its binary composes it (`pushgate_glue::functions`).
pub struct AwsRig {
    /// Every port wired (`pushgate_glue::cloud::build_deps`), for tests that swap one.
    pub deps: Deps,
    /// Each HTTP function's router, wired with that function's ports only.
    pub functions: std::collections::HashMap<Function, axum::Router>,
    /// The dispatch function's dependencies, wired with its ports only.
    pub dispatch_deps: Deps,
    pub caller: Caller,
    /// SQS client.
    pub sqs: aws_sdk_sqs::Client,
    /// The fan-out queue.
    pub queue_url: String,
    /// Fake APNs.
    pub apns: FakeApns,
    /// Fake FCM.
    pub fcm: FakeFcm,
    /// The config (tests derive broken variants).
    pub config: pushgate_glue::cloud::CloudConfig,
    /// The SDK configuration.
    pub sdk: aws_config::SdkConfig,
    /// EventBridge Scheduler client (moto never fires schedules: tests read them back).
    pub scheduler: aws_sdk_scheduler::Client,
    /// The schedule group of this rig.
    pub group: String,
}

impl AwsRig {
    /// Builds the rig, or `None` when no emulator is configured.
    pub async fn new(purpose: &str, tweak: impl FnOnce(&mut pushgate_glue::cloud::CloudConfig)) -> Option<AwsRig> {
        use pushgate_aws::dynamodb::{DynamoAccountStore, create_tables, table_definitions};
        let sdk = emulator().await?;
        let prefix = format!("pg-{purpose}-{}-", ulid::Ulid::generate().to_string().to_ascii_lowercase());
        let dynamo = aws_sdk_dynamodb::Client::new(&sdk);
        let tables = table_definitions(&prefix);
        create_tables(&dynamo, &tables).await.expect("moto creates the tables");
        let sqs = aws_sdk_sqs::Client::new(&sdk);
        let queue_url = test_queue(&sqs, purpose).await;
        let kms = aws_sdk_kms::Client::new(&sdk);
        let key = kms.create_key().send().await.expect("moto creates a key");
        let key_id = key.key_metadata().map(|m| m.key_id().to_owned()).expect("key id");

        let queue_arn = sqs
            .get_queue_attributes()
            .queue_url(&queue_url)
            .attribute_names(aws_sdk_sqs::types::QueueAttributeName::QueueArn)
            .send()
            .await
            .expect("moto answers")
            .attributes()
            .and_then(|a| a.get(&aws_sdk_sqs::types::QueueAttributeName::QueueArn).cloned())
            .expect("the queue's ARN");
        let scheduler = aws_sdk_scheduler::Client::new(&sdk);
        let group = format!("pg-{purpose}-{}", ulid::Ulid::generate().to_string().to_ascii_lowercase());
        scheduler.create_schedule_group().name(&group).send().await.expect("moto creates the schedule group");

        let apns = FakeApns::start_h2c().await;
        let fcm = FakeFcm::start_h2c().await;
        let mut config = pushgate_glue::cloud::CloudConfig::new(
            format!("{prefix}push"),
            format!("{prefix}config"),
            format!("{prefix}directory"),
        );
        config.queue_url = Some(queue_url.clone());
        config.schedules = Some(pushgate_aws::scheduler::ScheduleTarget {
            group: group.clone(),
            role_arn: "arn:aws:iam::123456789012:role/pushgate-scheduler".into(),
            queue_arn,
        });
        config.kms_key_id = Some(key_id);
        config.page_token_key = Some("a-page-token-secret-of-at-least-32-characters".into());
        config.providers.apns_endpoint = Some(apns.base_url());
        config.providers.fcm_endpoint = Some(fcm.base_url());
        config.providers.fcm_token_uris = vec![fcm.token_uri()];
        tweak(&mut config);
        let (deps, functions, dispatch_deps) = wire_all(&config, &sdk);

        let caller = Caller {
            account: AccountId::from_bytes(ulid::Ulid::generate().to_bytes()),
            token: AuthToken::new(format!("{}{}", ulid::Ulid::generate(), ulid::Ulid::generate())),
        };
        DynamoAccountStore::new(dynamo, config.config_table.clone())
            .put_account(&Account::new(caller.account.clone(), caller.token.hash()))
            .await
            .expect("account stored");
        Some(AwsRig {
            deps,
            functions,
            dispatch_deps,
            caller,
            sqs,
            queue_url,
            apns,
            fcm,
            config,
            sdk,
            scheduler,
            group,
        })
    }

    /// The same rig with every function rewired from `config`.
    pub fn rewired(self, config: pushgate_glue::cloud::CloudConfig) -> AwsRig {
        let (deps, functions, dispatch_deps) = wire_all(&config, &self.sdk);
        AwsRig { deps, functions, dispatch_deps, config, ..self }
    }

    /// Creates an APN and an FCM credential in App `app` through the credentials function.
    pub async fn create_credentials(&self, app: &str) {
        let key = apns_signing_key("KEY1234567", "TEAM123456");
        self.apns.register_signing_key(&key);
        let sa = fcm_service_account("pushgate-test", &self.fcm.token_uri());
        self.fcm.register_service_account(&sa);
        for body in [apn_credential_body(&key, app), fcm_credential_body(&sa, app)] {
            let event =
                http_api_event("POST", "/v1/PushNotifications/Credentials", "$default", &self.caller, Some(&body));
            let (status, _, answer) = self.invoke(Function::Credentials, &event).await;
            assert_eq!(status, StatusCode::ACCEPTED, "credential created: {answer}");
        }
    }

    /// Calls `function` with an HTTP API event.
    pub async fn call(
        &self,
        function: Function,
        method: &str,
        path: &str,
        body: Option<&Value>,
    ) -> (StatusCode, Value) {
        let event = http_api_event(method, path, "$default", &self.caller, body);
        let (status, _, value) = self.invoke(function, &event).await;
        (status, value)
    }

    /// Feeds `event` to `function`, composed as its binary composes it.
    pub async fn invoke(&self, function: Function, event: &str) -> (StatusCode, HeaderMap, Value) {
        invoke_router(self.functions[&function].clone(), event).await
    }

    /// Runs the dispatch function on `messages`.
    pub async fn dispatch(&self, messages: &[QueueMessage]) -> SqsBatchResponse {
        pushgate_glue::lambda::dispatch(&self.dispatch_deps, sqs_event(messages)).await
    }
}

/// The same rig with every function's DynamoDB calls going through a metering proxy in front of
/// moto (which sees and prices each call, table shapes registered).
pub async fn metered(rig: AwsRig) -> (AwsRig, crate::meter::proxy::MeterProxy) {
    use pushgate_aws::dynamodb::table_definitions;
    let upstream = std::env::var("AWS_ENDPOINT_URL").expect("the emulator tier names moto");
    let proxy = crate::meter::proxy::MeterProxy::start(&upstream).await.expect("the proxy starts");
    let prefix = rig.config.push_table.strip_suffix("push").expect("the rig's table prefix");
    for table in table_definitions(prefix) {
        proxy.meter.register_table(&table.name, crate::meter::TableShape::from_definition(&table));
    }
    // Without the environment's service configuration: AWS_ENDPOINT_URL (moto, which the other
    // tests of this process share) would win over the endpoint set here.
    let base = &rig.sdk;
    let mut builder = aws_config::SdkConfig::builder()
        .behavior_version(aws_config::BehaviorVersion::latest())
        .endpoint_url(&proxy.url);
    builder.set_region(base.region().cloned());
    builder.set_credentials_provider(base.credentials_provider());
    builder.set_http_client(base.http_client());
    builder.set_sleep_impl(base.sleep_impl());
    builder.set_time_source(base.time_source());
    let sdk = builder.build();
    let config = rig.config.clone();
    (AwsRig { sdk, ..rig }.rewired(config), proxy)
}

/// Creates a Secrets Manager secret holding `value` (as the template's generated secrets are)
/// and returns its ARN.
pub async fn create_secret(sdk: &aws_config::SdkConfig, purpose: &str, value: &str) -> String {
    let name = format!("pg-{purpose}-{}", ulid::Ulid::generate().to_string().to_ascii_lowercase());
    let created = aws_sdk_secretsmanager::Client::new(sdk)
        .create_secret()
        .name(name)
        .secret_string(value)
        .send()
        .await
        .expect("moto creates the secret");
    created.arn().expect("the secret's ARN").to_owned()
}
