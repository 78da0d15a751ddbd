//! Credentials and Apps, accounts, and the shared APNs provider-token cache on DynamoDB: the
//! [`CredentialStore`], [`AccountStore`] and [`TokenCache`] ports, with the same semantics as
//! `pushgate_memory::{MemoryCredentials, MemoryAccounts}` (the config contract suite in `tests/`
//! runs the same checks against both).
//!
//! # Item design (the config table, see [`tables`](super::tables))
//!
//! | item | `pk` | `sk` | attributes |
//! |---|---|---|---|
//! | credential book | `BOOK#{account}` | `BOOK` | `book` (map: `CredentialBookItem`, its Apps and credentials), `version` (number) |
//! | sealed secret | `SECRET#{account}` | credential id | `sealed` (binary: what the [`SecretBox`] produced) |
//! | account | `ACCOUNT#{id}` | `ACCOUNT` | `tokenHash` (binary: the 32-byte SHA-256 of the auth token); after a rotation with grace `previousTokenHash` (binary) + `previousUntil` (number, epoch ms); `limits` (map, only when the operator set some) |
//! | API key | `APIKEY#{sid}` | `APIKEY` | `account` (string), `secretHash` (binary: SHA-256 of the secret), `friendlyName` (string), `created` (number, epoch ms) |
//! | API key listing | `ACCOUNT#{account}` | `KEY#{sid}` | the same attributes: the account's keys are one `Query` away |
//! | provider token | `TOKEN#{key}` | `TOKEN` | `sealed` (binary: the token sealed with AAD = key), `mintedAt` (number, epoch ms), `expiresAt` (number, epoch s) |
//!
//! - Every credential key starts with the account id: another account's book or secret is
//!   simply not found.
//! - The book is one item saved whole (it is small by construction: ≤ 10 Apps × 10
//!   credentials). It is stored as the adapter's own item type (`records`) with
//!   `serde_dynamo`, like the push store's records, so the item stays readable in the console
//!   (a JSON string would be opaque). The other items here hold only binary values and numbers
//!   and are built attribute by attribute (`secret_item`, `account_item`, `token_item` and their
//!   `read_*`). `save_book` is a conditional `PutItem` writing version
//!   `expected + 1`: `attribute_not_exists(pk)` when `expected` is 0, else `version = :expected`;
//!   a lost condition is `Conflict`.
//! - Secrets are stored as sealed; this adapter never sees a plaintext credential.
//! - The auth token hash is binary, never a readable string.
//! - Provider tokens are sealed with the [`SecretBox`] (AAD = the cache key) so a table read
//!   alone does not yield a usable token. `expiresAt` = `mintedAt` + 1 hour (a provider token is
//!   useless by then) is the TTL attribute. `put` is a conditional `PutItem`
//!   (`attribute_not_exists(pk) OR mintedAt < :stale_before`); on a lost condition the winner is
//!   returned (`ReturnValuesOnConditionCheckFailure = ALL_OLD`, read consistently if the error
//!   carries no item).
//! - Every read is `ConsistentRead`.
//!
//! SDK errors are mapped by [`store_error`]; no SDK type leaves `pushgate-aws`.

use std::fmt;
use std::sync::Arc;

use async_trait::async_trait;
use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::error::ProvideErrorMetadata;
use aws_sdk_dynamodb::operation::put_item::PutItemError;
use aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError;
use aws_sdk_dynamodb::primitives::Blob;
use aws_sdk_dynamodb::types::{
    AttributeValue, ConditionCheck, Delete, Put, ReturnValuesOnConditionCheckFailure, TransactWriteItem,
};
use chrono::DateTime;
use serde_dynamo::aws_sdk_dynamodb_1::{from_attribute_value, to_attribute_value};

use super::items::build_error;
use super::items::malformed;
use super::records::CredentialBookItem;
use super::{Item, codec_error, delete_item, get_item, key, n, store_error};
use pushgate_core::app::ports::{AccountStore, CredentialStore, SecretBox, SharedToken, StoreError, TokenCache};
use pushgate_core::domain::credential::CredentialBook;
use pushgate_core::domain::{
    Account, AccountId, AccountLimits, ApiKey, ApiKeySid, CredentialId, PreviousToken, Timestamp, TokenHash,
};

/// How long a provider token item lives before DynamoDB TTL may delete it.
const TOKEN_LIFETIME: chrono::Duration = chrono::Duration::hours(1);

fn book_pk(account: &AccountId) -> String {
    format!("BOOK#{account}")
}

fn secret_pk(account: &AccountId) -> String {
    format!("SECRET#{account}")
}

fn account_pk(id: &AccountId) -> String {
    format!("ACCOUNT#{id}")
}

fn api_key_pk(sid: &ApiKeySid) -> String {
    format!("APIKEY#{sid}")
}

fn api_key_listing_sk(sid: &ApiKeySid) -> String {
    format!("KEY#{sid}")
}

fn token_pk(cache_key: &str) -> String {
    format!("TOKEN#{cache_key}")
}

fn b(bytes: impl Into<Vec<u8>>) -> AttributeValue {
    AttributeValue::B(Blob::new(bytes))
}

/// Takes the binary attribute `name` out of `item`.
fn take_binary(item: &mut Item, name: &str) -> Result<Vec<u8>, StoreError> {
    match item.remove(name) {
        Some(AttributeValue::B(blob)) => Ok(blob.into_inner()),
        _ => Err(malformed(&format!("`{name}` is not binary"))),
    }
}

/// The number attribute `name` of `item`.
fn number<T: std::str::FromStr>(item: &Item, name: &str) -> Result<T, StoreError> {
    match item.get(name) {
        Some(AttributeValue::N(value)) => value.parse().map_err(|_| malformed(&format!("`{name}` is out of range"))),
        _ => Err(malformed(&format!("`{name}` is not a number"))),
    }
}

/// The item of an account's credential book, saved as version `version`.
pub(super) fn book_item(account: &AccountId, book: &CredentialBook, version: u64) -> Result<Item, StoreError> {
    let mut item = key(book_pk(account), "BOOK");
    item.insert("book".to_owned(), to_attribute_value(CredentialBookItem::from(book)).map_err(codec_error)?);
    item.insert("version".to_owned(), n(version));
    Ok(item)
}

/// The credential book a stored item holds, and its version.
pub(super) fn read_book(mut item: Item) -> Result<(CredentialBook, u64), StoreError> {
    let version = number(&item, "version")?;
    let book = item.remove("book").ok_or_else(|| malformed("a book item without `book`"))?;
    let book: CredentialBookItem = from_attribute_value(book).map_err(codec_error)?;
    Ok((book.try_into()?, version))
}

/// The item of a credential's sealed secret.
pub(super) fn secret_item(account: &AccountId, id: &CredentialId, sealed: Vec<u8>) -> Item {
    let mut item = key(secret_pk(account), id);
    item.insert("sealed".to_owned(), b(sealed));
    item
}

/// The sealed secret a stored item holds.
pub(super) fn read_secret(mut item: Item) -> Result<Vec<u8>, StoreError> {
    take_binary(&mut item, "sealed")
}

/// The item of an account.
pub(super) fn account_item(account: &Account) -> Result<Item, StoreError> {
    let mut item = key(account_pk(&account.id), "ACCOUNT");
    item.insert("tokenHash".to_owned(), b(account.token_hash.0));
    if let Some(previous) = &account.previous {
        item.insert("previousTokenHash".to_owned(), b(previous.hash.0));
        item.insert("previousUntil".to_owned(), n(previous.until.timestamp_millis()));
    }
    if account.limits != AccountLimits::default() {
        item.insert("limits".to_owned(), to_attribute_value(account.limits).map_err(codec_error)?);
    }
    Ok(item)
}

/// A 32-byte hash attribute.
fn take_hash(item: &mut Item, name: &str) -> Result<TokenHash, StoreError> {
    let hash: [u8; 32] =
        take_binary(item, name)?.try_into().map_err(|_| malformed(&format!("`{name}` is not 32 bytes")))?;
    Ok(TokenHash(hash))
}

/// An epoch-milliseconds attribute.
fn millis(item: &Item, name: &str) -> Result<Timestamp, StoreError> {
    DateTime::from_timestamp_millis(number(item, name)?).ok_or_else(|| malformed(&format!("`{name}` is out of range")))
}

/// The account `id` a stored item holds.
pub(super) fn read_account(id: &AccountId, mut item: Item) -> Result<Account, StoreError> {
    let mut account = Account::new(id.clone(), take_hash(&mut item, "tokenHash")?);
    if item.contains_key("previousTokenHash") {
        let until = millis(&item, "previousUntil")?;
        account.previous = Some(PreviousToken { hash: take_hash(&mut item, "previousTokenHash")?, until });
    }
    if let Some(limits) = item.remove("limits") {
        account.limits = from_attribute_value(limits).map_err(codec_error)?;
    }
    Ok(account)
}

/// The attributes of an API key (both of its items hold them).
fn api_key_attributes(mut item: Item, api_key: &ApiKey) -> Item {
    item.insert("account".to_owned(), AttributeValue::S(api_key.account.to_string()));
    item.insert("secretHash".to_owned(), b(api_key.secret_hash.0));
    item.insert("friendlyName".to_owned(), AttributeValue::S(api_key.friendly_name.clone()));
    item.insert("created".to_owned(), n(api_key.created.timestamp_millis()));
    item
}

/// The API key `sid` a stored item holds.
pub(super) fn read_api_key(sid: ApiKeySid, mut item: Item) -> Result<ApiKey, StoreError> {
    let text = |item: &mut Item, name: &str| match item.remove(name) {
        Some(AttributeValue::S(s)) => Ok(s),
        _ => Err(malformed(&format!("`{name}` is not a string"))),
    };
    let account =
        AccountId::parse(&text(&mut item, "account")?).map_err(|_| malformed("`account` is not an account id"))?;
    Ok(ApiKey {
        sid,
        account,
        secret_hash: take_hash(&mut item, "secretHash")?,
        friendly_name: text(&mut item, "friendlyName")?,
        created: millis(&item, "created")?,
    })
}

/// The item of a provider token under `cache_key`, already sealed, minted at `minted_at`.
pub(super) fn token_item(cache_key: &str, sealed: Vec<u8>, minted_at: Timestamp) -> Item {
    let mut item = key(token_pk(cache_key), "TOKEN");
    item.insert("sealed".to_owned(), b(sealed));
    item.insert("mintedAt".to_owned(), n(minted_at.timestamp_millis()));
    item.insert("expiresAt".to_owned(), n(expires_at(&minted_at)));
    item
}

/// The sealed token a stored token item holds, and when it was minted.
pub(super) fn read_token(mut item: Item) -> Result<(Vec<u8>, Timestamp), StoreError> {
    let minted_ms: i64 = number(&item, "mintedAt")?;
    let minted_at =
        DateTime::from_timestamp_millis(minted_ms).ok_or_else(|| malformed("`mintedAt` is out of range"))?;
    Ok((take_binary(&mut item, "sealed")?, minted_at))
}

/// Credential books and sealed credential secrets in the config table (see the module docs).
#[derive(Clone, Debug)]
pub struct DynamoCredentialStore {
    client: Client,
    table: String,
}

impl DynamoCredentialStore {
    /// Uses the config table `table` (its name comes from the template's environment).
    pub fn new(client: Client, table: impl Into<String>) -> Self {
        Self { client, table: table.into() }
    }
}

#[async_trait]
impl CredentialStore for DynamoCredentialStore {
    async fn load_book(&self, account: &AccountId) -> Result<(CredentialBook, u64), StoreError> {
        match get_item(&self.client, &self.table, key(book_pk(account), "BOOK")).await? {
            Some(item) => read_book(item),
            None => Ok((CredentialBook::default(), 0)),
        }
    }

    async fn save_book(&self, account: &AccountId, book: &CredentialBook, expected: u64) -> Result<(), StoreError> {
        let item = book_item(account, book, expected + 1)?;
        let request = self.client.put_item().table_name(&self.table).set_item(Some(item));
        let request = if expected == 0 {
            request.condition_expression("attribute_not_exists(pk)")
        } else {
            request.condition_expression("version = :expected").expression_attribute_values(":expected", n(expected))
        };
        request.send().await.map_err(|e| store_error("PutItem (book)", e))?;
        Ok(())
    }

    async fn put_secret(&self, account: &AccountId, id: &CredentialId, sealed: Vec<u8>) -> Result<(), StoreError> {
        let item = secret_item(account, id, sealed);
        self.client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(item))
            .send()
            .await
            .map_err(|e| store_error("PutItem (secret)", e))?;
        Ok(())
    }

    async fn get_secret(&self, account: &AccountId, id: &CredentialId) -> Result<Option<Vec<u8>>, StoreError> {
        get_item(&self.client, &self.table, key(secret_pk(account), id)).await?.map(read_secret).transpose()
    }

    async fn delete_secret(&self, account: &AccountId, id: &CredentialId) -> Result<(), StoreError> {
        delete_item(&self.client, &self.table, key(secret_pk(account), id), "DeleteItem (secret)").await
    }
}

/// Accounts in the config table (see the module docs).
#[derive(Clone, Debug)]
pub struct DynamoAccountStore {
    client: Client,
    table: String,
}

impl DynamoAccountStore {
    /// Uses the config table `table` (its name comes from the template's environment).
    pub fn new(client: Client, table: impl Into<String>) -> Self {
        Self { client, table: table.into() }
    }

    /// Adds (or replaces) an account: for test set-up and the local AWS mode.
    pub async fn put_account(&self, account: &Account) -> Result<(), StoreError> {
        self.put(account, None).await
    }

    async fn put(&self, account: &Account, condition: Option<&str>) -> Result<(), StoreError> {
        self.client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(account_item(account)?))
            .set_condition_expression(condition.map(str::to_owned))
            .send()
            .await
            .map_err(|e| store_error("PutItem (account)", e))?;
        Ok(())
    }

    /// Writes `items` in one transaction; a failed condition of any item is `Conflict`.
    async fn transact(&self, items: Vec<TransactWriteItem>, what: &str) -> Result<(), StoreError> {
        let written = self.client.transact_write_items().set_transact_items(Some(items)).send().await;
        match written {
            Ok(_) => Ok(()),
            Err(err) => match err.as_service_error() {
                Some(TransactWriteItemsError::TransactionCanceledException(cancel))
                    if cancel.cancellation_reasons().iter().any(|r| r.code() == Some("ConditionalCheckFailed")) =>
                {
                    Err(StoreError::Conflict)
                }
                Some(e) if e.code() == Some("TransactionCanceledException") => {
                    Err(StoreError::Unavailable(format!("DynamoDB TransactWriteItems ({what}) cancelled")))
                }
                _ => Err(store_error(what, err)),
            },
        }
    }
}

#[async_trait]
impl AccountStore for DynamoAccountStore {
    async fn get_account(&self, id: &AccountId) -> Result<Option<Account>, StoreError> {
        get_item(&self.client, &self.table, key(account_pk(id), "ACCOUNT"))
            .await?
            .map(|item| read_account(id, item))
            .transpose()
    }

    async fn create_account(&self, account: &Account) -> Result<(), StoreError> {
        self.put(account, Some("attribute_not_exists(pk)")).await
    }

    async fn save_account(&self, account: &Account) -> Result<(), StoreError> {
        self.put(account, Some("attribute_exists(pk)")).await
    }

    async fn delete_account(&self, id: &AccountId) -> Result<(), StoreError> {
        for api_key in self.list_api_keys(id).await? {
            self.delete_api_key(id, &api_key.sid).await?;
        }
        delete_item(&self.client, &self.table, key(account_pk(id), "ACCOUNT"), "DeleteItem (account)").await
    }

    async fn create_api_key(&self, api_key: &ApiKey) -> Result<(), StoreError> {
        let build = |e| build_error(e);
        let account_exists = ConditionCheck::builder()
            .table_name(&self.table)
            .set_key(Some(key(account_pk(&api_key.account), "ACCOUNT")))
            .condition_expression("attribute_exists(pk)")
            .build()
            .map_err(build)?;
        let new_key = Put::builder()
            .table_name(&self.table)
            .set_item(Some(api_key_attributes(key(api_key_pk(&api_key.sid), "APIKEY"), api_key)))
            .condition_expression("attribute_not_exists(pk)")
            .build()
            .map_err(build)?;
        let listing = Put::builder()
            .table_name(&self.table)
            .set_item(Some(api_key_attributes(
                key(account_pk(&api_key.account), api_key_listing_sk(&api_key.sid)),
                api_key,
            )))
            .build()
            .map_err(build)?;
        let items = vec![
            TransactWriteItem::builder().condition_check(account_exists).build(),
            TransactWriteItem::builder().put(new_key).build(),
            TransactWriteItem::builder().put(listing).build(),
        ];
        self.transact(items, "TransactWriteItems (create API key)").await
    }

    async fn get_api_key(&self, sid: &ApiKeySid) -> Result<Option<ApiKey>, StoreError> {
        get_item(&self.client, &self.table, key(api_key_pk(sid), "APIKEY"))
            .await?
            .map(|item| read_api_key(sid.clone(), item))
            .transpose()
    }

    async fn list_api_keys(&self, account: &AccountId) -> Result<Vec<ApiKey>, StoreError> {
        let mut keys = Vec::new();
        let mut start = None;
        loop {
            let page = self
                .client
                .query()
                .table_name(&self.table)
                .consistent_read(true)
                .key_condition_expression("pk = :pk AND begins_with(sk, :keys)")
                .expression_attribute_values(":pk", AttributeValue::S(account_pk(account)))
                .expression_attribute_values(":keys", AttributeValue::S("KEY#".into()))
                .set_exclusive_start_key(start)
                .send()
                .await
                .map_err(|e| store_error("Query (API keys)", e))?;
            for mut item in page.items.unwrap_or_default() {
                let sk = match item.remove("sk") {
                    Some(AttributeValue::S(sk)) => sk,
                    _ => return Err(malformed("an API key listing without `sk`")),
                };
                let sid = sk.strip_prefix("KEY#").and_then(|s| ApiKeySid::parse(s).ok());
                keys.push(read_api_key(sid.ok_or_else(|| malformed("an API key listing's `sk`"))?, item)?);
            }
            start = page.last_evaluated_key;
            if start.is_none() {
                break;
            }
        }
        keys.sort_by(|a, b| a.created.cmp(&b.created).then_with(|| a.sid.cmp(&b.sid)));
        Ok(keys)
    }

    async fn delete_api_key(&self, account: &AccountId, sid: &ApiKeySid) -> Result<bool, StoreError> {
        let build = |e| build_error(e);
        let the_key = Delete::builder()
            .table_name(&self.table)
            .set_key(Some(key(api_key_pk(sid), "APIKEY")))
            .condition_expression("account = :account")
            .expression_attribute_values(":account", AttributeValue::S(account.to_string()))
            .build()
            .map_err(build)?;
        let listing = Delete::builder()
            .table_name(&self.table)
            .set_key(Some(key(account_pk(account), api_key_listing_sk(sid))))
            .build()
            .map_err(build)?;
        let items = vec![
            TransactWriteItem::builder().delete(the_key).build(),
            TransactWriteItem::builder().delete(listing).build(),
        ];
        match self.transact(items, "TransactWriteItems (revoke API key)").await {
            Ok(()) => Ok(true),
            Err(StoreError::Conflict) => Ok(false),
            Err(e) => Err(e),
        }
    }
}

/// Provider tokens shared by every process, sealed, in the config table (see the module docs).
#[derive(Clone)]
pub struct DynamoTokenCache {
    client: Client,
    table: String,
    secrets: Arc<dyn SecretBox>,
}

impl fmt::Debug for DynamoTokenCache {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DynamoTokenCache").field("table", &self.table).finish_non_exhaustive()
    }
}

impl DynamoTokenCache {
    /// Uses the config table `table`, sealing tokens with `secrets`.
    pub fn new(client: Client, table: impl Into<String>, secrets: Arc<dyn SecretBox>) -> Self {
        Self { client, table: table.into(), secrets }
    }

    /// Opens a stored token item.
    async fn decode(&self, cache_key: &str, item: Item) -> Result<SharedToken, StoreError> {
        let (sealed, minted_at) = read_token(item)?;
        let token = self.secrets.open(&sealed, cache_key.as_bytes()).await?;
        let token = String::from_utf8(token).map_err(|_| malformed("the token is not UTF-8"))?;
        Ok(SharedToken { token, minted_at })
    }

    /// The token item for `token` under `cache_key`.
    async fn encode(&self, cache_key: &str, token: &SharedToken) -> Result<Item, StoreError> {
        let sealed = self.secrets.seal(token.token.as_bytes(), cache_key.as_bytes()).await?;
        Ok(token_item(cache_key, sealed, token.minted_at))
    }
}

fn expires_at(minted: &Timestamp) -> i64 {
    (*minted + TOKEN_LIFETIME).timestamp()
}

#[async_trait]
impl TokenCache for DynamoTokenCache {
    async fn get(&self, cache_key: &str) -> Result<Option<SharedToken>, StoreError> {
        match get_item(&self.client, &self.table, key(token_pk(cache_key), "TOKEN")).await? {
            Some(item) => Ok(Some(self.decode(cache_key, item).await?)),
            None => Ok(None),
        }
    }

    async fn put(
        &self,
        cache_key: &str,
        token: SharedToken,
        stale_before: Timestamp,
    ) -> Result<SharedToken, StoreError> {
        let item = self.encode(cache_key, &token).await?;
        // Two attempts: the winner can only vanish between our write and our read if it was
        // deleted meanwhile, and then our token may take its place.
        for _ in 0..2 {
            let result = self
                .client
                .put_item()
                .table_name(&self.table)
                .set_item(Some(item.clone()))
                .condition_expression("attribute_not_exists(pk) OR mintedAt < :stale_before")
                .expression_attribute_values(":stale_before", n(stale_before.timestamp_millis()))
                .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld)
                .send()
                .await;
            let err = match result {
                Ok(_) => return Ok(token),
                Err(err) => err,
            };
            let Some(PutItemError::ConditionalCheckFailedException(lost)) = err.as_service_error() else {
                return Err(store_error("PutItem (token)", err));
            };
            let stored = match lost.item() {
                Some(old) => Some(old.clone()),
                None => get_item(&self.client, &self.table, key(token_pk(cache_key), "TOKEN")).await?,
            };
            if let Some(stored) = stored {
                return self.decode(cache_key, stored).await;
            }
        }
        Err(StoreError::Conflict)
    }
}
