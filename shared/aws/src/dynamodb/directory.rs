//! Users and DeviceRegistrations on DynamoDB: the [`DirectoryStore`] port, with the same
//! semantics as `pushgate_memory::MemoryDirectory` (the directory contract suite in `tests/`
//! runs the same checks against both).
//!
//! # Item design (the directory table, see [`tables`](super::tables))
//!
//! | item | `pk` | `sk` | `gsi1pk` / `gsi1sk` (`byToken`) | attributes |
//! |---|---|---|---|---|
//! | user | `USERS#{account}` | user id | — | `UserItem` |
//! | registration | `USER#{account}#{user}` | `REGISTRATION#{app}` | `APP#{account}#{app}` / registration id | `DeviceRegistrationItem` (devices inline), `version` (number) |
//! | registration id | `REGISTRATION#{account}#{id}` | `REGISTRATION` | — | `userId`, `appName` |
//! | token claim | `CLAIM#{account}#{app}#{provider}#{sha256(token)}` | `CLAIM` | `TOKEN#{account}#{provider}#{sha256(token)}` / app | `registrationId`, `userId` |
//!
//! - Every key starts with the account id: another account's record is simply not found.
//! - Users list newest first: one partition per account, `sk` = the user id (a ULID, so string
//!   order is time order), a `Query` with `ScanIndexForward = false` and the cursor as the upper
//!   bound — never a `Scan`.
//! - A registration is keyed by (User, App), so "one registration per (User, App)" is the
//!   condition `attribute_not_exists(pk)` of its first `PutItem`, and a User's registrations (of
//!   one App or all) are one partition: a `GetItem` or a consistent `Query`. Its devices (≤ 50,
//!   ≤ 4 KiB tokens: ≤ ~205 KiB, under the 400 KB item limit) live in the item, so the device
//!   rules (unique, refresh, evict the oldest) are applied in code on a read-modify-write guarded
//!   by `version = :expected`. Fetch by id goes through the small registration id item, written
//!   before the registration (a registration id item without its registration is not found).
//! - Token claims say which registration of an App holds `(token, provider)`. Tokens may be
//!   4 KiB and DynamoDB keys may not, so keys hold the token's SHA-256 (hex). The claim is keyed
//!   directly in the base table rather than only through `byToken`: a GSI cannot be read
//!   consistently nor be the target of a condition, and the claim's conditional `PutItem`
//!   (`attribute_not_exists(pk)` or `registrationId = :previous`) is what makes concurrent
//!   registrations of one token end with one holder. The claim also carries `gsi1pk`/`gsi1sk`, so
//!   "which registrations (of App X: `gsi1sk = X`) hold this token" is a `Query` on `byToken`
//!   without knowing the App (dead-token removal by the dispatcher needs that).
//! - The App deletion cascade finds an App's registrations with a `Query` on `byToken`
//!   (`APP#{account}#{app}`). GSIs are eventually consistent on AWS: a registration written in the
//!   same instant as the App's deletion may survive it (it then holds devices of an App that no
//!   longer exists, and a new App of the same name adopts it). moto is consistent.
//! - Moving a token: the new holder's registration is saved, the claim is moved with the
//!   conditional `PutItem`, then the device is removed from the previous holder's registration
//!   (versioned write; the last device deletes the registration).
//! - Every base-table read is `ConsistentRead`. No transactions: every write is one conditional
//!   item write, and the use cases retry on `Conflict`.
//!
//! SDK errors are mapped by [`store_error`]; no SDK type leaves `pushgate-aws`.

use async_trait::async_trait;
use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::types::AttributeValue;
use serde::Serialize;
use serde_dynamo::aws_sdk_dynamodb_1::{from_item, to_item};

use super::records::{DeviceRegistrationItem, UserItem};
use super::tables::BY_TOKEN;
use super::{Item, batch_get_items, codec_error, delete_item, get_item, key, n, s, store_error};
use pushgate_core::app::paging::parse_cursor;
use pushgate_core::app::ports::{DirectoryStore, Page, PageRequest, StoreError};
use pushgate_core::domain::directory::token_hash;
use pushgate_core::domain::{AccountId, AppName, DeviceRegistration, DeviceRegistrationId, Provider, User, UserId};

fn users_pk(account: &AccountId) -> String {
    format!("USERS#{account}")
}

fn user_pk(account: &AccountId, user: UserId) -> String {
    format!("USER#{account}#{user}")
}

const REGISTRATION_PREFIX: &str = "REGISTRATION#";

fn registration_sk(app: &AppName) -> String {
    format!("{REGISTRATION_PREFIX}{app}")
}

fn app_gsi(account: &AccountId, app: &AppName) -> String {
    format!("APP#{account}#{app}")
}

fn registration_id_pk(account: &AccountId, id: &DeviceRegistrationId) -> String {
    format!("REGISTRATION#{account}#{id}")
}

fn claim_pk(account: &AccountId, app: &AppName, provider: Provider, token: &str) -> String {
    format!("CLAIM#{account}#{app}#{}#{}", provider.as_str(), token_hash(token))
}

fn token_gsi(account: &AccountId, provider: Provider, token: &str) -> String {
    format!("TOKEN#{account}#{}#{}", provider.as_str(), token_hash(token))
}

fn malformed(what: &str) -> StoreError {
    StoreError::Unexpected(format!("malformed DynamoDB directory item: {what}"))
}

fn string(item: &Item, name: &str) -> Result<String, StoreError> {
    match item.get(name) {
        Some(AttributeValue::S(v)) => Ok(v.clone()),
        _ => Err(malformed(&format!("`{name}` is not a string"))),
    }
}

fn version(item: &Item) -> Result<u64, StoreError> {
    match item.get("version") {
        Some(AttributeValue::N(v)) => v.parse().map_err(|_| malformed("`version` is out of range")),
        _ => Err(malformed("`version` is not a number")),
    }
}

/// The item of a User: its attributes and its keys.
pub(super) fn user_item(user: &User) -> Result<Item, StoreError> {
    let mut item: Item = to_item(UserItem::from(user)).map_err(codec_error)?;
    item.extend(key(users_pk(&user.account_id), user.id));
    Ok(item)
}

/// The User a stored item holds.
pub(super) fn read_user(item: Item) -> Result<User, StoreError> {
    from_item::<UserItem>(item).map_err(codec_error)?.try_into()
}

/// The item of a registration saved as version `version`: its attributes (devices inline), its
/// keys and its version.
pub(super) fn registration_item(r: &DeviceRegistration, version: u64) -> Result<Item, StoreError> {
    let mut item: Item = to_item(DeviceRegistrationItem::from(r)).map_err(codec_error)?;
    let keys = RegistrationKeys {
        pk: user_pk(&r.account_id, r.user_id),
        sk: registration_sk(&r.app_name),
        gsi1pk: app_gsi(&r.account_id, &r.app_name),
        gsi1sk: r.id.to_string(),
        version,
    };
    item.extend(to_item::<_>(keys).map_err(codec_error)?);
    Ok(item)
}

/// The registration a stored item holds, and its version.
pub(super) fn read_registration(item: Item) -> Result<(DeviceRegistration, u64), StoreError> {
    let version = version(&item)?;
    let registration = from_item::<DeviceRegistrationItem>(item).map_err(codec_error)?;
    Ok((registration.try_into()?, version))
}

/// The key attributes stored beside a registration's own attributes.
#[derive(Serialize)]
struct RegistrationKeys {
    pk: String,
    sk: String,
    gsi1pk: String,
    gsi1sk: String,
    version: u64,
}

/// Users, DeviceRegistrations and token claims in the directory table (see the module docs).
#[derive(Clone, Debug)]
pub struct DynamoDirectoryStore {
    client: Client,
    table: String,
}

impl DynamoDirectoryStore {
    /// Uses the directory table `table` (its name comes from the template's environment).
    pub fn new(client: Client, table: impl Into<String>) -> Self {
        Self { client, table: table.into() }
    }

    async fn get(&self, key: Item) -> Result<Option<Item>, StoreError> {
        get_item(&self.client, &self.table, key).await
    }

    /// Every item of a Query (following `LastEvaluatedKey`): the registrations of one User
    /// (consistent) or of one App (`byToken`).
    async fn query_all(&self, index: Option<&'static str>, partition: String) -> Result<Vec<Item>, StoreError> {
        let mut items = Vec::new();
        let mut start = None;
        loop {
            let request = self.client.query().table_name(&self.table).set_exclusive_start_key(start.take());
            let request = match index {
                Some(index) => request
                    .index_name(index)
                    .key_condition_expression("#pk = :pk")
                    .expression_attribute_names("#pk", BY_TOKEN.key.partition)
                    .expression_attribute_values(":pk", s(partition.clone())),
                None => request
                    .consistent_read(true)
                    .key_condition_expression("pk = :pk AND begins_with(sk, :prefix)")
                    .expression_attribute_values(":pk", s(partition.clone()))
                    .expression_attribute_values(":prefix", s(REGISTRATION_PREFIX)),
            };
            let out = request.send().await.map_err(|e| store_error("Query (registrations)", e))?;
            items.extend(out.items.unwrap_or_default());
            match out.last_evaluated_key {
                Some(k) if !k.is_empty() => start = Some(k),
                _ => return Ok(items),
            }
        }
    }

    /// Writes a User item if `condition` holds (`Conflict` otherwise).
    async fn put_user(&self, user: &User, condition: &str) -> Result<(), StoreError> {
        let item = user_item(user)?;
        self.client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(item))
            .condition_expression(condition)
            .send()
            .await
            .map_err(|e| store_error("PutItem (user)", e))?;
        Ok(())
    }

    async fn delete(&self, key: Item, what: &str) -> Result<(), StoreError> {
        delete_item(&self.client, &self.table, key, what).await
    }
}

#[async_trait]
impl DirectoryStore for DynamoDirectoryStore {
    async fn create_user(&self, user: &User) -> Result<(), StoreError> {
        self.put_user(user, "attribute_not_exists(pk)").await
    }

    async fn get_user(&self, account: &AccountId, id: UserId) -> Result<Option<User>, StoreError> {
        self.get(key(users_pk(account), id)).await?.map(read_user).transpose()
    }

    async fn list_users(&self, account: &AccountId, page: &PageRequest) -> Result<Page<User>, StoreError> {
        let cursor = parse_cursor(&page.cursor, |c| UserId::parse(c).ok())?;
        let limit = i32::try_from((page.size + 1).clamp(2, 1001)).unwrap_or(1001);
        let mut items: Vec<User> = Vec::new();
        let mut start = None;
        loop {
            let request = self
                .client
                .query()
                .table_name(&self.table)
                .consistent_read(true)
                .scan_index_forward(false)
                .limit(limit)
                .set_exclusive_start_key(start.take())
                .expression_attribute_values(":pk", s(users_pk(account)));
            let request = match cursor {
                Some(c) => request
                    .key_condition_expression("pk = :pk AND sk < :cursor")
                    .expression_attribute_values(":cursor", s(c.to_string())),
                None => request.key_condition_expression("pk = :pk"),
            };
            let out = request.send().await.map_err(|e| store_error("Query (users)", e))?;
            for item in out.items.unwrap_or_default() {
                items.push(read_user(item)?);
            }
            if items.len() > page.size {
                items.truncate(page.size);
                let next = items.last().map(|u| u.id.to_string());
                return Ok(Page { items, next });
            }
            match out.last_evaluated_key {
                Some(k) if !k.is_empty() => start = Some(k),
                _ => return Ok(Page { items, next: None }),
            }
        }
    }

    async fn save_user(&self, user: &User) -> Result<(), StoreError> {
        self.put_user(user, "attribute_exists(pk)").await
    }

    async fn registration(
        &self,
        account: &AccountId,
        user: UserId,
        app: &AppName,
    ) -> Result<Option<(DeviceRegistration, u64)>, StoreError> {
        self.get(key(user_pk(account, user), registration_sk(app))).await?.map(read_registration).transpose()
    }

    async fn registration_by_id(
        &self,
        account: &AccountId,
        id: &DeviceRegistrationId,
    ) -> Result<Option<(DeviceRegistration, u64)>, StoreError> {
        let Some(pointer) = self.get(key(registration_id_pk(account, id), "REGISTRATION")).await? else {
            return Ok(None);
        };
        let user = UserId::parse(&string(&pointer, "userId")?).map_err(|_| malformed("`userId` is not a user id"))?;
        let app = AppName::parse(&string(&pointer, "appName")?).map_err(|_| malformed("`appName` is not an App"))?;
        let found = self.registration(account, user, &app).await?;
        Ok(found.filter(|(r, _)| &r.id == id))
    }

    async fn registrations_of_user(
        &self,
        account: &AccountId,
        user: UserId,
    ) -> Result<Vec<(DeviceRegistration, u64)>, StoreError> {
        self.query_all(None, user_pk(account, user)).await?.into_iter().map(read_registration).collect()
    }

    async fn registrations_of_users(
        &self,
        account: &AccountId,
        app: &AppName,
        users: &[UserId],
    ) -> Result<Vec<DeviceRegistration>, StoreError> {
        let keys = users.iter().map(|user| key(user_pk(account, *user), registration_sk(app))).collect();
        let items = batch_get_items(&self.client, &self.table, keys).await?;
        items.into_iter().map(|item| read_registration(item).map(|(r, _)| r)).collect()
    }

    async fn registrations_in_app(
        &self,
        account: &AccountId,
        app: &AppName,
    ) -> Result<Vec<(DeviceRegistration, u64)>, StoreError> {
        let items = self.query_all(Some(BY_TOKEN.name), app_gsi(account, app)).await?;
        items.into_iter().map(read_registration).collect()
    }

    async fn save_registration(&self, registration: &DeviceRegistration, expected: u64) -> Result<(), StoreError> {
        let r = registration;
        let item = registration_item(r, expected + 1)?;
        let request = self.client.put_item().table_name(&self.table).set_item(Some(item));
        if expected == 0 {
            // The id item first: a registration is never stored without a way to fetch it.
            let mut pointer = key(registration_id_pk(&r.account_id, &r.id), "REGISTRATION");
            pointer.insert("userId".to_owned(), s(r.user_id.to_string()));
            pointer.insert("appName".to_owned(), s(r.app_name.to_string()));
            self.client
                .put_item()
                .table_name(&self.table)
                .set_item(Some(pointer))
                .send()
                .await
                .map_err(|e| store_error("PutItem (registration id)", e))?;
            let created = request
                .condition_expression("attribute_not_exists(pk)")
                .send()
                .await
                .map_err(|e| store_error("PutItem (registration)", e));
            if let Err(e) = created {
                // Another registration of this (User, App) won: this id names nothing.
                let stale = key(registration_id_pk(&r.account_id, &r.id), "REGISTRATION");
                let _ = self.delete(stale, "DeleteItem (registration id)").await;
                return Err(e);
            }
        } else {
            request
                .condition_expression("#version = :expected AND #id = :id")
                .expression_attribute_names("#version", "version")
                .expression_attribute_names("#id", "id")
                .expression_attribute_values(":expected", n(expected))
                .expression_attribute_values(":id", s(r.id.to_string()))
                .send()
                .await
                .map_err(|e| store_error("PutItem (registration)", e))?;
        }
        Ok(())
    }

    async fn delete_registration(&self, registration: &DeviceRegistration, expected: u64) -> Result<(), StoreError> {
        let r = registration;
        self.client
            .delete_item()
            .table_name(&self.table)
            .set_key(Some(key(user_pk(&r.account_id, r.user_id), registration_sk(&r.app_name))))
            .condition_expression("attribute_not_exists(pk) OR (#version = :expected AND #id = :id)")
            .expression_attribute_names("#version", "version")
            .expression_attribute_names("#id", "id")
            .expression_attribute_values(":expected", n(expected))
            .expression_attribute_values(":id", s(r.id.to_string()))
            .send()
            .await
            .map_err(|e| store_error("DeleteItem (registration)", e))?;
        self.delete(key(registration_id_pk(&r.account_id, &r.id), "REGISTRATION"), "DeleteItem (registration id)").await
    }

    async fn token_holder(
        &self,
        account: &AccountId,
        app: &AppName,
        provider: Provider,
        token: &str,
    ) -> Result<Option<DeviceRegistrationId>, StoreError> {
        let Some(item) = self.get(key(claim_pk(account, app, provider, token), "CLAIM")).await? else {
            return Ok(None);
        };
        let id = string(&item, "registrationId")?;
        DeviceRegistrationId::parse(&id).map(Some).map_err(|_| malformed("`registrationId` is not a registration id"))
    }

    async fn claim_token(
        &self,
        holder: &DeviceRegistration,
        provider: Provider,
        token: &str,
        previous: Option<&DeviceRegistrationId>,
    ) -> Result<(), StoreError> {
        let mut item = key(claim_pk(&holder.account_id, &holder.app_name, provider, token), "CLAIM");
        item.insert("registrationId".to_owned(), s(holder.id.to_string()));
        item.insert("userId".to_owned(), s(holder.user_id.to_string()));
        item.insert(BY_TOKEN.key.partition.to_owned(), s(token_gsi(&holder.account_id, provider, token)));
        item.insert(BY_TOKEN.key.sort.to_owned(), s(holder.app_name.to_string()));
        let request = self.client.put_item().table_name(&self.table).set_item(Some(item));
        let request = match previous {
            None => request.condition_expression("attribute_not_exists(pk)"),
            Some(previous) => request
                .condition_expression("registrationId = :previous")
                .expression_attribute_values(":previous", s(previous.to_string())),
        };
        request.send().await.map_err(|e| store_error("PutItem (claim)", e))?;
        Ok(())
    }

    async fn release_token(
        &self,
        account: &AccountId,
        app: &AppName,
        provider: Provider,
        token: &str,
        holder: &DeviceRegistrationId,
    ) -> Result<(), StoreError> {
        let result = self
            .client
            .delete_item()
            .table_name(&self.table)
            .set_key(Some(key(claim_pk(account, app, provider, token), "CLAIM")))
            .condition_expression("registrationId = :holder")
            .expression_attribute_values(":holder", s(holder.to_string()))
            .send()
            .await
            .map_err(|e| store_error("DeleteItem (claim)", e));
        match result {
            Ok(_) | Err(StoreError::Conflict) => Ok(()),
            Err(e) => Err(e),
        }
    }
}
