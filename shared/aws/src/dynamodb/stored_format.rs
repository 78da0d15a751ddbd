//! The stored format, pinned: every kind of item the stores write, written out attribute by
//! attribute as DynamoDB JSON (what `aws dynamodb get-item` prints). Items live 7 days and
//! are read by whatever code is deployed next, so a change here is a migration: these tests
//! must keep passing unchanged whatever the types behind them become.
//!
//! Each kind has: the item a fully populated record becomes (write), the record a literal item
//! reads back into (read; extra attributes such as `claimUntil` are ignored), an item without
//! the attributes that may be absent (forward compatibility), and malformed items, which are
//! `StoreError::Unexpected`, never a panic.

use std::collections::BTreeMap;
use std::sync::Arc;

use aws_sdk_dynamodb::primitives::Blob;
use aws_sdk_dynamodb::types::AttributeValue;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use chrono::{DateTime, Utc};
use serde_json::{Value, json};

use pushgate_core::app::ports::StoreError;
use pushgate_core::domain::credential::CredentialBook;
use pushgate_core::domain::{
    Account, AccountId, App, AppName, Content, Credential, CredentialId, CredentialType, DeliveryError, Destination,
    Device, DeviceRegistration, DeviceRegistrationId, Notification, NotificationId, NotificationStatus, Operation,
    OperationId, OperationStatus, Priority, Provider, Senders, Stats, Timestamp, TokenHash, User, UserId,
};

use super::Item;
use super::config::{
    account_item, book_item, read_account, read_book, read_secret, read_token, secret_item, token_item,
};
use super::directory::{read_registration, read_user, registration_item, user_item};
use super::push::{
    error_value, notification_item, operation_item, read_notification, read_operation, senders_value, timestamp_value,
};

// ---------------------------------------------------------------------------------------------
// DynamoDB JSON

/// An attribute value from DynamoDB JSON (`{"S": "…"}`, `{"N": "…"}`, `{"B": base64}`,
/// `{"BOOL": …}`, `{"NULL": true}`, `{"M": {…}}`, `{"L": […]}`).
fn attribute(json: &Value) -> AttributeValue {
    let Some((tag, value)) = json.as_object().filter(|o| o.len() == 1).and_then(|o| o.iter().next()) else {
        panic!("not a DynamoDB JSON attribute value: {json}");
    };
    let text = || value.as_str().unwrap_or_else(|| panic!("{tag} needs a string: {json}")).to_owned();
    match tag.as_str() {
        "S" => AttributeValue::S(text()),
        "N" => AttributeValue::N(text()),
        "B" => AttributeValue::B(Blob::new(STANDARD.decode(text()).expect("base64"))),
        "BOOL" => AttributeValue::Bool(value.as_bool().expect("BOOL needs a bool")),
        "NULL" => AttributeValue::Null(value.as_bool().expect("NULL needs true")),
        "M" => AttributeValue::M(
            value.as_object().expect("M needs an object").iter().map(|(k, v)| (k.clone(), attribute(v))).collect(),
        ),
        "L" => AttributeValue::L(value.as_array().expect("L needs an array").iter().map(attribute).collect()),
        other => panic!("unknown DynamoDB JSON type {other}"),
    }
}

/// An item from DynamoDB JSON.
fn item(json: Value) -> Item {
    json.as_object().expect("an item is an object").iter().map(|(k, v)| (k.clone(), attribute(v))).collect()
}

/// `item` sorted by attribute name, so a failed comparison prints readably.
fn sorted(item: Item) -> BTreeMap<String, AttributeValue> {
    item.into_iter().collect()
}

/// `json` (an item) without the attributes `names`.
fn without(mut json: Value, names: &[&str]) -> Value {
    let object = json.as_object_mut().expect("an item is an object");
    for name in names {
        assert!(object.remove(*name).is_some(), "the item has no `{name}` to remove");
    }
    json
}

/// `json` (an item) with the attribute `name` set to `value`.
fn with(mut json: Value, name: &str, value: Value) -> Value {
    json.as_object_mut().expect("an item is an object").insert(name.to_owned(), value);
    json
}

fn is_unexpected<T: std::fmt::Debug>(result: Result<T, StoreError>) -> bool {
    matches!(result, Err(StoreError::Unexpected(_)))
}

// ---------------------------------------------------------------------------------------------
// Records

const ACCOUNT: &str = "AC0123456789abcdef0123456789abcdef";
const OPERATION: &str = "comms_operation_01jwh3x5k7m9p2q4r6s8t0v2w4";
const NOTIFICATION: &str = "comms_pushnotification_01jwh3x5k70000000000000001";
const USER: &str = "comms_pushnotificationuser_01jwh3x5k7m9p2q4r6s8t0v2w5";
const APN_CREDENTIAL: &str = "comms_credential_01jwh3x5k7m9p2q4r6s8t0v2w6";
const FCM_CREDENTIAL: &str = "comms_credential_01jwh3x5k7m9p2q4r6s8t0v2w8";
const REGISTRATION: &str = "comms_device_registration_01jwh3x5k7m9p2q4r6s8t0v2w7";

fn at(rfc3339: &str) -> Timestamp {
    DateTime::parse_from_rfc3339(rfc3339).expect("a valid instant").with_timezone(&Utc)
}

fn account() -> AccountId {
    AccountId::parse(ACCOUNT).expect("valid")
}

fn app() -> AppName {
    AppName::parse("flights").expect("valid")
}

fn user_id() -> UserId {
    UserId::parse(USER).expect("valid")
}

fn apn_credential() -> CredentialId {
    CredentialId::parse(APN_CREDENTIAL).expect("valid")
}

fn fcm_credential() -> CredentialId {
    CredentialId::parse(FCM_CREDENTIAL).expect("valid")
}

fn delivery_error() -> DeliveryError {
    DeliveryError {
        code: 30410,
        message: "the device token is not valid".into(),
        provider_reason: Some("BadDeviceToken".into()),
    }
}

/// A notification with every optional part present.
fn full_notification() -> Notification {
    let apn = json!({"aps": {"sound": {"critical": 1, "name": "chime"}, "thread-id": "PG1"}, "x": [1, "two", null, true, 2.5, -7]});
    let fcm = json!({"android": {"priority": "high"}});
    Notification {
        id: NotificationId::parse(NOTIFICATION).expect("valid"),
        account_id: account(),
        operation_id: OperationId::parse(OPERATION).expect("valid"),
        to: Destination { token: "a1b2c3d4".into(), provider: Provider::Apn, user_id: Some(user_id()) },
        from: Senders { apn: Some(apn_credential()), fcm: Some(fcm_credential()) },
        content: Arc::new(Content {
            title: Some("Boarding".into()),
            body: Some("Gate B12".into()),
            image: Some("https://img.example/b12.png".into()),
            data: Some(BTreeMap::from([("gate".into(), "B12".into()), ("seat".into(), "14C".into())])),
            badge: Some(3),
            collapse_key: Some("flight-PG1".into()),
            ttl: Some(3600),
            content_available: Some(true),
            mutable_content: Some(false),
            apn: apn.as_object().cloned(),
            fcm: fcm.as_object().cloned(),
        }),
        priority: Priority::Low,
        sound: Some("chime".into()),
        status: NotificationStatus::Failed,
        tags: BTreeMap::from([("flight".into(), "PG1".into()), ("leg".into(), "2".into())]),
        scheduled_for: Some(at("2026-05-30T18:00:00Z")),
        created_at: at("2026-05-30T17:24:46.123Z"),
        updated_at: at("2026-05-30T17:25:00Z"),
        error: Some(delivery_error()),
        completed_at: Some(at("2026-05-30T17:25:00.000123Z")),
    }
}

fn full_notification_item() -> Value {
    json!({
        "pk": {"S": "NOTIFICATION#AC0123456789abcdef0123456789abcdef#01"},
        "sk": {"S": "comms_pushnotification_01jwh3x5k70000000000000001"},
        "gsi1pk": {"S": "USER#AC0123456789abcdef0123456789abcdef#comms_pushnotificationuser_01jwh3x5k7m9p2q4r6s8t0v2w5"},
        "gsi1sk": {"S": "comms_pushnotification_01jwh3x5k70000000000000001"},
        "expiresAt": {"N": "1780766686"},
        "id": {"S": "comms_pushnotification_01jwh3x5k70000000000000001"},
        "account_id": {"S": "AC0123456789abcdef0123456789abcdef"},
        "operation_id": {"S": "comms_operation_01jwh3x5k7m9p2q4r6s8t0v2w4"},
        "to": {"M": {
            "token": {"S": "a1b2c3d4"},
            "provider": {"S": "APN"},
            "user_id": {"S": "comms_pushnotificationuser_01jwh3x5k7m9p2q4r6s8t0v2w5"}
        }},
        "from": {"M": {
            "apn": {"S": "comms_credential_01jwh3x5k7m9p2q4r6s8t0v2w6"},
            "fcm": {"S": "comms_credential_01jwh3x5k7m9p2q4r6s8t0v2w8"}
        }},
        "content": {"M": {
            "title": {"S": "Boarding"},
            "body": {"S": "Gate B12"},
            "image": {"S": "https://img.example/b12.png"},
            "data": {"M": {"gate": {"S": "B12"}, "seat": {"S": "14C"}}},
            "badge": {"N": "3"},
            "collapseKey": {"S": "flight-PG1"},
            "ttl": {"N": "3600"},
            "contentAvailable": {"BOOL": true},
            "mutableContent": {"BOOL": false},
            "apn": {"M": {
                "aps": {"M": {
                    "sound": {"M": {"critical": {"N": "1"}, "name": {"S": "chime"}}},
                    "thread-id": {"S": "PG1"}
                }},
                "x": {"L": [{"N": "1"}, {"S": "two"}, {"NULL": true}, {"BOOL": true}, {"N": "2.5"}, {"N": "-7"}]}
            }},
            "fcm": {"M": {"android": {"M": {"priority": {"S": "high"}}}}}
        }},
        "priority": {"S": "LOW"},
        "sound": {"S": "chime"},
        "status": {"S": "FAILED"},
        "tags": {"M": {"flight": {"S": "PG1"}, "leg": {"S": "2"}}},
        "scheduled_for": {"S": "2026-05-30T18:00:00Z"},
        "created_at": {"S": "2026-05-30T17:24:46.123Z"},
        "updated_at": {"S": "2026-05-30T17:25:00Z"},
        "error": {"M": {
            "code": {"N": "30410"},
            "message": {"S": "the device token is not valid"},
            "provider_reason": {"S": "BadDeviceToken"}
        }},
        "completed_at": {"S": "2026-05-30T17:25:00.000123Z"}
    })
}

/// A notification with every optional part absent.
fn bare_notification() -> Notification {
    Notification {
        to: Destination { token: "fcm-token".into(), provider: Provider::Fcm, user_id: None },
        from: Senders::default(),
        content: Arc::new(Content { body: Some("Hello".into()), ..Content::default() }),
        priority: Priority::High,
        sound: None,
        status: NotificationStatus::Queued,
        tags: BTreeMap::new(),
        scheduled_for: None,
        updated_at: at("2026-05-30T17:24:46.123Z"),
        error: None,
        completed_at: None,
        ..full_notification()
    }
}

fn bare_notification_item() -> Value {
    json!({
        "pk": {"S": "NOTIFICATION#AC0123456789abcdef0123456789abcdef#01"},
        "sk": {"S": "comms_pushnotification_01jwh3x5k70000000000000001"},
        "expiresAt": {"N": "1780766686"},
        "id": {"S": "comms_pushnotification_01jwh3x5k70000000000000001"},
        "account_id": {"S": "AC0123456789abcdef0123456789abcdef"},
        "operation_id": {"S": "comms_operation_01jwh3x5k7m9p2q4r6s8t0v2w4"},
        "to": {"M": {"token": {"S": "fcm-token"}, "provider": {"S": "FCM"}, "user_id": {"NULL": true}}},
        "from": {"M": {}},
        "content": {"M": {"body": {"S": "Hello"}}},
        "priority": {"S": "HIGH"},
        "sound": {"NULL": true},
        "status": {"S": "QUEUED"},
        "tags": {"M": {}},
        "scheduled_for": {"NULL": true},
        "created_at": {"S": "2026-05-30T17:24:46.123Z"},
        "updated_at": {"S": "2026-05-30T17:24:46.123Z"},
        "error": {"NULL": true},
        "completed_at": {"NULL": true}
    })
}

fn operation() -> Operation {
    Operation {
        id: OperationId::parse(OPERATION).expect("valid"),
        account_id: account(),
        status: OperationStatus::Processing,
        stats: Stats {
            total: 10,
            recipients: 4,
            unaddressable: 1,
            scheduled: 2,
            queued: 3,
            sent: 2,
            failed: 2,
            canceled: 1,
        },
        created_at: at("2026-05-30T17:24:46.123Z"),
        updated_at: at("2026-05-30T17:25:00.5Z"),
    }
}

fn operation_json() -> Value {
    json!({
        "pk": {"S": "OPERATION#AC0123456789abcdef0123456789abcdef"},
        "sk": {"S": "comms_operation_01jwh3x5k7m9p2q4r6s8t0v2w4"},
        "expiresAt": {"N": "1780766686"},
        "id": {"S": "comms_operation_01jwh3x5k7m9p2q4r6s8t0v2w4"},
        "account_id": {"S": "AC0123456789abcdef0123456789abcdef"},
        "status": {"S": "PROCESSING"},
        "created_at": {"S": "2026-05-30T17:24:46.123Z"},
        "updated_at": {"S": "2026-05-30T17:25:00.500Z"},
        "total": {"N": "10"},
        "recipients": {"N": "4"},
        "unaddressable": {"N": "1"},
        "scheduled": {"N": "2"},
        "queued": {"N": "3"},
        "sent": {"N": "2"},
        "failed": {"N": "2"},
        "canceled": {"N": "1"}
    })
}

fn book() -> CredentialBook {
    CredentialBook {
        apps: vec![App {
            account_id: account(),
            name: app(),
            is_default: true,
            default_credentials: vec![
                (CredentialType::ApnSandbox, apn_credential()),
                (CredentialType::Fcm, fcm_credential()),
            ],
            created_at: at("2026-05-01T08:00:00Z"),
            updated_at: at("2026-05-02T09:30:15.25Z"),
        }],
        credentials: vec![
            Credential {
                id: apn_credential(),
                account_id: account(),
                credential_type: CredentialType::ApnSandbox,
                app_name: app(),
                is_default: true,
                created_at: at("2026-05-01T08:00:00Z"),
                updated_at: at("2026-05-01T08:00:00Z"),
            },
            Credential {
                id: fcm_credential(),
                account_id: account(),
                credential_type: CredentialType::Fcm,
                app_name: app(),
                is_default: false,
                created_at: at("2026-05-02T09:30:15.25Z"),
                updated_at: at("2026-05-02T09:30:15.25Z"),
            },
        ],
    }
}

fn book_json() -> Value {
    json!({
        "pk": {"S": "BOOK#AC0123456789abcdef0123456789abcdef"},
        "sk": {"S": "BOOK"},
        "version": {"N": "4"},
        "book": {"M": {
            "apps": {"L": [{"M": {
                "account_id": {"S": "AC0123456789abcdef0123456789abcdef"},
                "name": {"S": "flights"},
                "is_default": {"BOOL": true},
                "default_credentials": {"L": [
                    {"L": [{"S": "APN_SANDBOX"}, {"S": "comms_credential_01jwh3x5k7m9p2q4r6s8t0v2w6"}]},
                    {"L": [{"S": "FCM"}, {"S": "comms_credential_01jwh3x5k7m9p2q4r6s8t0v2w8"}]}
                ]},
                "created_at": {"S": "2026-05-01T08:00:00Z"},
                "updated_at": {"S": "2026-05-02T09:30:15.250Z"}
            }}]},
            "credentials": {"L": [
                {"M": {
                    "id": {"S": "comms_credential_01jwh3x5k7m9p2q4r6s8t0v2w6"},
                    "account_id": {"S": "AC0123456789abcdef0123456789abcdef"},
                    "credential_type": {"S": "APN_SANDBOX"},
                    "app_name": {"S": "flights"},
                    "is_default": {"BOOL": true},
                    "created_at": {"S": "2026-05-01T08:00:00Z"},
                    "updated_at": {"S": "2026-05-01T08:00:00Z"}
                }},
                {"M": {
                    "id": {"S": "comms_credential_01jwh3x5k7m9p2q4r6s8t0v2w8"},
                    "account_id": {"S": "AC0123456789abcdef0123456789abcdef"},
                    "credential_type": {"S": "FCM"},
                    "app_name": {"S": "flights"},
                    "is_default": {"BOOL": false},
                    "created_at": {"S": "2026-05-02T09:30:15.250Z"},
                    "updated_at": {"S": "2026-05-02T09:30:15.250Z"}
                }}
            ]}
        }}
    })
}

fn user() -> User {
    User {
        id: user_id(),
        account_id: account(),
        created_at: at("2026-05-03T10:00:00.001Z"),
        updated_at: at("2026-05-04T11:00:00Z"),
        deleted_at: Some(at("2026-05-04T11:00:00Z")),
    }
}

fn user_json() -> Value {
    json!({
        "pk": {"S": "USERS#AC0123456789abcdef0123456789abcdef"},
        "sk": {"S": "comms_pushnotificationuser_01jwh3x5k7m9p2q4r6s8t0v2w5"},
        "id": {"S": "comms_pushnotificationuser_01jwh3x5k7m9p2q4r6s8t0v2w5"},
        "account_id": {"S": "AC0123456789abcdef0123456789abcdef"},
        "created_at": {"S": "2026-05-03T10:00:00.001Z"},
        "updated_at": {"S": "2026-05-04T11:00:00Z"},
        "deleted_at": {"S": "2026-05-04T11:00:00Z"}
    })
}

fn registration() -> DeviceRegistration {
    DeviceRegistration {
        id: DeviceRegistrationId::parse(REGISTRATION).expect("valid"),
        account_id: account(),
        app_name: app(),
        user_id: user_id(),
        devices: vec![
            Device { token: "apn-token".into(), provider: Provider::Apn, created_at: at("2026-05-03T10:00:00Z") },
            Device { token: "fcm-token".into(), provider: Provider::Fcm, created_at: at("2026-05-03T10:05:00.75Z") },
        ],
        created_at: at("2026-05-03T10:00:00Z"),
        updated_at: at("2026-05-03T10:05:00.75Z"),
    }
}

fn registration_json() -> Value {
    json!({
        "pk": {"S": "USER#AC0123456789abcdef0123456789abcdef#comms_pushnotificationuser_01jwh3x5k7m9p2q4r6s8t0v2w5"},
        "sk": {"S": "REGISTRATION#flights"},
        "gsi1pk": {"S": "APP#AC0123456789abcdef0123456789abcdef#flights"},
        "gsi1sk": {"S": "comms_device_registration_01jwh3x5k7m9p2q4r6s8t0v2w7"},
        "version": {"N": "3"},
        "id": {"S": "comms_device_registration_01jwh3x5k7m9p2q4r6s8t0v2w7"},
        "account_id": {"S": "AC0123456789abcdef0123456789abcdef"},
        "app_name": {"S": "flights"},
        "user_id": {"S": "comms_pushnotificationuser_01jwh3x5k7m9p2q4r6s8t0v2w5"},
        "devices": {"L": [
            {"M": {"token": {"S": "apn-token"}, "provider": {"S": "APN"}, "created_at": {"S": "2026-05-03T10:00:00Z"}}},
            {"M": {"token": {"S": "fcm-token"}, "provider": {"S": "FCM"}, "created_at": {"S": "2026-05-03T10:05:00.750Z"}}}
        ]},
        "created_at": {"S": "2026-05-03T10:00:00Z"},
        "updated_at": {"S": "2026-05-03T10:05:00.750Z"}
    })
}

const SEALED_SECRET: &[u8] = b"\x00sealed\xffsecret";

fn secret_json() -> Value {
    json!({
        "pk": {"S": "SECRET#AC0123456789abcdef0123456789abcdef"},
        "sk": {"S": "comms_credential_01jwh3x5k7m9p2q4r6s8t0v2w6"},
        "sealed": {"B": "AHNlYWxlZP9zZWNyZXQ="}
    })
}

fn stored_account() -> Account {
    let hash: [u8; 32] = std::array::from_fn(|i| i as u8);
    Account::new(account(), TokenHash(hash))
}

fn account_json() -> Value {
    json!({
        "pk": {"S": "ACCOUNT#AC0123456789abcdef0123456789abcdef"},
        "sk": {"S": "ACCOUNT"},
        "tokenHash": {"B": "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8="}
    })
}

const TOKEN_KEY: &str = "apns:ABCDE12345:TEAM123456";
const SEALED_TOKEN: &[u8] = b"\x01sealed-token\xfe";

fn token_json() -> Value {
    json!({
        "pk": {"S": "TOKEN#apns:ABCDE12345:TEAM123456"},
        "sk": {"S": "TOKEN"},
        "sealed": {"B": "AXNlYWxlZC10b2tlbv4="},
        "mintedAt": {"N": "1780161886123"},
        "expiresAt": {"N": "1780165486"}
    })
}

// ---------------------------------------------------------------------------------------------
// Notifications

#[test]
fn a_notification_item_keeps_todays_attribute_names_and_value_types() {
    let written = notification_item(&full_notification()).expect("encodes");
    assert_eq!(sorted(written), sorted(item(full_notification_item())));
}

#[test]
fn a_notification_without_optional_parts_stores_nulls_and_empty_maps_as_today() {
    let written = notification_item(&bare_notification()).expect("encodes");
    assert_eq!(sorted(written), sorted(item(bare_notification_item())));
}

#[test]
fn a_stored_notification_item_reads_back_into_the_notification_and_ignores_its_claim() {
    let stored = with(full_notification_item(), "claimUntil", json!({"N": "1780161946123"}));
    assert_eq!(read_notification(item(stored)).expect("decodes"), full_notification());
    assert_eq!(read_notification(item(bare_notification_item())).expect("decodes"), bare_notification());
}

#[test]
fn a_notification_item_missing_its_optional_attributes_or_carrying_unknown_ones_still_reads() {
    let stored = without(bare_notification_item(), &["sound", "scheduled_for", "error", "completed_at"]);
    let stored = with(stored, "to", json!({"M": {"token": {"S": "fcm-token"}, "provider": {"S": "FCM"}}}));
    let stored = with(stored, "addedLater", json!({"S": "a future attribute"}));
    assert_eq!(read_notification(item(stored)).expect("decodes"), bare_notification());
}

#[test]
fn a_malformed_notification_item_is_an_error_not_a_panic() {
    let malformed = [
        without(full_notification_item(), &["status"]),
        without(full_notification_item(), &["tags"]),
        with(full_notification_item(), "status", json!({"S": "DONE"})),
        with(full_notification_item(), "status", json!({"N": "1"})),
        with(full_notification_item(), "id", json!({"S": "comms_operation_01jwh3x5k7m9p2q4r6s8t0v2w4"})),
        with(full_notification_item(), "account_id", json!({"S": "AC-not-an-account"})),
        with(full_notification_item(), "priority", json!({"S": "URGENT"})),
        with(full_notification_item(), "created_at", json!({"S": "yesterday"})),
        with(full_notification_item(), "content", json!({"S": "not a map"})),
        with(full_notification_item(), "content", json!({"M": {"badge": {"N": "-1"}}})),
        with(full_notification_item(), "to", json!({"M": {"token": {"S": "t"}, "provider": {"S": "SMS"}}})),
        with(full_notification_item(), "from", json!({"M": {"apn": {"S": "not-a-credential"}}})),
        with(full_notification_item(), "error", json!({"M": {"code": {"S": "30410"}, "message": {"S": "m"}}})),
    ];
    for stored in malformed {
        assert!(is_unexpected(read_notification(item(stored.clone()))), "{stored}");
    }
}

#[test]
fn a_finish_writes_senders_error_and_time_as_a_created_notification_holds_them() {
    let senders = Senders { apn: Some(apn_credential()), fcm: None };
    assert_eq!(
        senders_value(&senders).expect("encodes"),
        attribute(&json!({"M": {"apn": {"S": "comms_credential_01jwh3x5k7m9p2q4r6s8t0v2w6"}}}))
    );
    assert_eq!(senders_value(&Senders::default()).expect("encodes"), attribute(&json!({"M": {}})));
    assert_eq!(error_value(Some(&delivery_error())).expect("encodes"), attribute(&full_notification_item()["error"]));
    let no_reason = DeliveryError { provider_reason: None, ..delivery_error() };
    assert_eq!(
        error_value(Some(&no_reason)).expect("encodes"),
        attribute(&json!({"M": {
            "code": {"N": "30410"},
            "message": {"S": "the device token is not valid"},
            "provider_reason": {"NULL": true}
        }}))
    );
    assert_eq!(error_value(None).expect("encodes"), attribute(&json!({"NULL": true})));
    assert_eq!(
        timestamp_value(at("2026-05-30T17:25:00.000123Z")).expect("encodes"),
        attribute(&json!({"S": "2026-05-30T17:25:00.000123Z"}))
    );
    assert_eq!(
        timestamp_value(at("2026-05-30T17:25:00Z")).expect("encodes"),
        attribute(&json!({"S": "2026-05-30T17:25:00Z"}))
    );
}

// ---------------------------------------------------------------------------------------------
// Operations

#[test]
fn an_operation_item_keeps_todays_attribute_names_with_its_counters_at_the_top_level() {
    let written = operation_item(&operation()).expect("encodes");
    assert_eq!(sorted(written), sorted(item(operation_json())));
}

#[test]
fn a_stored_operation_item_reads_back_into_the_operation() {
    assert_eq!(read_operation(item(operation_json())).expect("decodes"), operation());
}

#[test]
fn an_operation_item_carrying_unknown_attributes_still_reads_but_one_missing_a_counter_does_not() {
    // An operation has no optional attribute: every counter is written from the start and
    // `ADD`ed to in place.
    let stored = with(operation_json(), "addedLater", json!({"S": "a future attribute"}));
    assert_eq!(read_operation(item(stored)).expect("decodes"), operation());
    assert!(is_unexpected(read_operation(item(without(operation_json(), &["canceled"])))));
}

#[test]
fn a_malformed_operation_item_is_an_error_not_a_panic() {
    let malformed = [
        without(operation_json(), &["id"]),
        with(operation_json(), "status", json!({"S": "QUEUED"})),
        with(operation_json(), "id", json!({"S": "comms_pushnotification_01jwh3x5k70000000000000001"})),
        with(operation_json(), "queued", json!({"N": "-1"})),
        with(operation_json(), "sent", json!({"S": "2"})),
        with(operation_json(), "updated_at", json!({"N": "1780161886"})),
    ];
    for stored in malformed {
        assert!(is_unexpected(read_operation(item(stored.clone()))), "{stored}");
    }
}

// ---------------------------------------------------------------------------------------------
// Credential books (Apps and credentials)

#[test]
fn a_credential_book_item_keeps_todays_attribute_names_and_value_types() {
    let written = book_item(&account(), &book(), 4).expect("encodes");
    assert_eq!(sorted(written), sorted(item(book_json())));
}

#[test]
fn a_stored_credential_book_item_reads_back_into_the_book_and_its_version() {
    assert_eq!(read_book(item(book_json())).expect("decodes"), (book(), 4));
}

#[test]
fn a_credential_book_item_carrying_unknown_attributes_still_reads() {
    // Nothing in a book is optional; what a later version adds must not break this one.
    let mut stored = with(book_json(), "addedLater", json!({"S": "a future attribute"}));
    stored["book"]["M"]["apps"]["L"][0]["M"]["addedLater"] = json!({"BOOL": true});
    stored["book"]["M"]["credentials"]["L"][1]["M"]["addedLater"] = json!({"N": "1"});
    assert_eq!(read_book(item(stored)).expect("decodes"), (book(), 4));
}

#[test]
fn a_malformed_credential_book_item_is_an_error_not_a_panic() {
    let mut bad_type = book_json();
    bad_type["book"]["M"]["credentials"]["L"][0]["M"]["credential_type"] = json!({"S": "APNS"});
    let mut bad_default = book_json();
    bad_default["book"]["M"]["apps"]["L"][0]["M"]["default_credentials"] = json!({"L": [{"L": [{"S": "FCM"}]}]});
    let mut bad_app = book_json();
    bad_app["book"]["M"]["apps"]["L"][0]["M"]["name"] = json!({"S": "Flights!"});
    let malformed = [
        without(book_json(), &["book"]),
        without(book_json(), &["version"]),
        with(book_json(), "version", json!({"S": "4"})),
        with(book_json(), "book", json!({"L": []})),
        bad_type,
        bad_default,
        bad_app,
    ];
    for stored in malformed {
        assert!(is_unexpected(read_book(item(stored.clone()))), "{stored}");
    }
}

// ---------------------------------------------------------------------------------------------
// Sealed credential secrets

#[test]
fn a_sealed_secret_item_keeps_todays_attribute_names_and_holds_the_bytes_as_binary() {
    let written = secret_item(&account(), &apn_credential(), SEALED_SECRET.to_vec());
    assert_eq!(sorted(written), sorted(item(secret_json())));
}

#[test]
fn a_stored_sealed_secret_item_reads_back_into_the_sealed_bytes() {
    let stored = with(secret_json(), "addedLater", json!({"S": "a future attribute"}));
    assert_eq!(read_secret(item(stored)).expect("decodes"), SEALED_SECRET);
}

#[test]
fn a_malformed_sealed_secret_item_is_an_error_not_a_panic() {
    for stored in
        [without(secret_json(), &["sealed"]), with(secret_json(), "sealed", json!({"S": "AHNlYWxlZP9zZWNyZXQ="}))]
    {
        assert!(is_unexpected(read_secret(item(stored.clone()))), "{stored}");
    }
}

// ---------------------------------------------------------------------------------------------
// Accounts

#[test]
fn an_account_item_keeps_todays_attribute_names_and_holds_the_token_hash_as_binary() {
    assert_eq!(sorted(account_item(&stored_account()).expect("an item")), sorted(item(account_json())));
}

#[test]
fn a_stored_account_item_reads_back_into_the_account() {
    let stored = with(account_json(), "addedLater", json!({"S": "a future attribute"}));
    let read = read_account(&account(), item(stored)).expect("decodes");
    assert_eq!((read.id, read.token_hash), (stored_account().id, stored_account().token_hash));
}

#[test]
fn a_malformed_account_item_is_an_error_not_a_panic() {
    let malformed = [
        without(account_json(), &["tokenHash"]),
        with(account_json(), "tokenHash", json!({"B": "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHg=="})),
        with(account_json(), "tokenHash", json!({"S": "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8="})),
    ];
    for stored in malformed {
        assert!(is_unexpected(read_account(&account(), item(stored.clone()))), "{stored}");
    }
}

// ---------------------------------------------------------------------------------------------
// Provider tokens

#[test]
fn a_provider_token_item_keeps_todays_attribute_names_and_value_types() {
    let written = token_item(TOKEN_KEY, SEALED_TOKEN.to_vec(), at("2026-05-30T17:24:46.123Z"));
    assert_eq!(sorted(written), sorted(item(token_json())));
}

#[test]
fn a_stored_provider_token_item_reads_back_into_the_sealed_token_and_its_minting_time() {
    let stored = with(token_json(), "addedLater", json!({"S": "a future attribute"}));
    assert_eq!(read_token(item(stored)).expect("decodes"), (SEALED_TOKEN.to_vec(), at("2026-05-30T17:24:46.123Z")));
}

#[test]
fn a_malformed_provider_token_item_is_an_error_not_a_panic() {
    let malformed = [
        without(token_json(), &["sealed"]),
        without(token_json(), &["mintedAt"]),
        with(token_json(), "mintedAt", json!({"S": "1780161886123"})),
        with(token_json(), "mintedAt", json!({"N": "1.5"})),
        with(token_json(), "mintedAt", json!({"N": "99999999999999999999"})),
    ];
    for stored in malformed {
        assert!(is_unexpected(read_token(item(stored.clone()))), "{stored}");
    }
}

// ---------------------------------------------------------------------------------------------
// Users

#[test]
fn a_user_item_keeps_todays_attribute_names_and_value_types() {
    assert_eq!(sorted(user_item(&user()).expect("encodes")), sorted(item(user_json())));
    let live = User { deleted_at: None, ..user() };
    let expected = with(user_json(), "deleted_at", json!({"NULL": true}));
    assert_eq!(sorted(user_item(&live).expect("encodes")), sorted(item(expected)));
}

#[test]
fn a_stored_user_item_reads_back_into_the_user() {
    assert_eq!(read_user(item(user_json())).expect("decodes"), user());
}

#[test]
fn a_user_item_missing_its_optional_attributes_or_carrying_unknown_ones_still_reads() {
    let stored = with(without(user_json(), &["deleted_at"]), "addedLater", json!({"S": "a future attribute"}));
    assert_eq!(read_user(item(stored)).expect("decodes"), User { deleted_at: None, ..user() });
}

#[test]
fn a_malformed_user_item_is_an_error_not_a_panic() {
    let malformed = [
        without(user_json(), &["created_at"]),
        with(user_json(), "id", json!({"S": "comms_pushnotificationuser_NOT-A-ULID"})),
        with(user_json(), "deleted_at", json!({"BOOL": true})),
    ];
    for stored in malformed {
        assert!(is_unexpected(read_user(item(stored.clone()))), "{stored}");
    }
}

// ---------------------------------------------------------------------------------------------
// Device registrations

#[test]
fn a_device_registration_item_keeps_todays_attribute_names_with_its_devices_inline() {
    let written = registration_item(&registration(), 3).expect("encodes");
    assert_eq!(sorted(written), sorted(item(registration_json())));
}

#[test]
fn a_stored_device_registration_item_reads_back_into_the_registration_and_its_version() {
    assert_eq!(read_registration(item(registration_json())).expect("decodes"), (registration(), 3));
}

#[test]
fn a_device_registration_item_carrying_unknown_attributes_still_reads() {
    // Nothing in a registration is optional; what a later version adds must not break this one.
    let mut stored = with(registration_json(), "addedLater", json!({"S": "a future attribute"}));
    stored["devices"]["L"][0]["M"]["addedLater"] = json!({"S": "a future device attribute"});
    assert_eq!(read_registration(item(stored)).expect("decodes"), (registration(), 3));
}

#[test]
fn a_malformed_device_registration_item_is_an_error_not_a_panic() {
    let mut bad_provider = registration_json();
    bad_provider["devices"]["L"][1]["M"]["provider"] = json!({"S": "fcm"});
    let mut no_token = registration_json();
    no_token["devices"]["L"][0]["M"].as_object_mut().expect("a device").remove("token");
    let malformed = [
        without(registration_json(), &["version"]),
        without(registration_json(), &["devices"]),
        with(registration_json(), "app_name", json!({"S": ""})),
        with(registration_json(), "devices", json!({"M": {}})),
        bad_provider,
        no_token,
    ];
    for stored in malformed {
        assert!(is_unexpected(read_registration(item(stored.clone()))), "{stored}");
    }
}
