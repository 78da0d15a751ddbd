//! Opaque, tamper-evident page tokens.
//!
//! A token carries the store's keyset cursor, authenticated with HMAC-SHA256 over the account,
//! the listing (route + filters) and the cursor. A forged token, or one minted for another
//! account or another filter, fails to open and the request gets a 400.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};

use crate::app::ports::{Page, PageRequest, StoreError};
use crate::domain::AccountId;

type HmacSha256 = Hmac<Sha256>;

/// The cursor the first page starts from.
const START: &str = "";

/// Signs and opens page tokens.
#[derive(Clone)]
pub struct PageTokens {
    key: [u8; 32],
}

impl std::fmt::Debug for PageTokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PageTokens([redacted])")
    }
}

impl PageTokens {
    /// Uses `key` (derive it from the data key; never reuse the raw key).
    pub fn new(key: [u8; 32]) -> Self {
        Self { key }
    }

    /// Signs with a key derived from `secret` (the local data key, or the deployment's shared
    /// page-token secret), so the key is never the secret's own bytes.
    pub fn derive(secret: &[u8]) -> Self {
        Self::new(Sha256::new().chain_update(b"pushgate/page-tokens/v1").chain_update(secret).finalize().into())
    }

    fn mac(&self, account: &AccountId, scope: &str, cursor: &str) -> HmacSha256 {
        // The key is 32 bytes; HMAC accepts any length, so this cannot fail.
        let mut mac = <HmacSha256 as Mac>::new_from_slice(&self.key).unwrap_or_else(|_| unreachable!());
        for part in [account.as_str(), scope, cursor] {
            mac.update(&(part.len() as u64).to_be_bytes());
            mac.update(part.as_bytes());
        }
        mac
    }

    /// A token for `cursor` (`None` = the first page) of the listing `scope`.
    pub fn seal(&self, account: &AccountId, scope: &str, cursor: Option<&str>) -> String {
        let cursor = cursor.unwrap_or(START);
        let tag = self.mac(account, scope, cursor).finalize().into_bytes();
        format!("{}.{}", URL_SAFE_NO_PAD.encode(cursor), URL_SAFE_NO_PAD.encode(&tag[..16]))
    }

    /// The cursor inside `token`, if it is genuine for this account and listing.
    pub fn open(&self, account: &AccountId, scope: &str, token: &str) -> Option<Option<String>> {
        let (cursor, tag) = token.split_once('.')?;
        let cursor = String::from_utf8(URL_SAFE_NO_PAD.decode(cursor).ok()?).ok()?;
        let tag = URL_SAFE_NO_PAD.decode(tag).ok()?;
        self.mac(account, scope, &cursor).verify_truncated_left(&tag).ok()?;
        if tag.len() != 16 {
            return None;
        }
        Some(if cursor == START { None } else { Some(cursor) })
    }
}

/// Decodes a keyset cursor a store adapter produced (the use case has checked the token's
/// signature, so a cursor that does not decode is a bug or a key change: `Unexpected`).
pub fn parse_cursor<T>(cursor: &Option<String>, parse: impl Fn(&str) -> Option<T>) -> Result<Option<T>, StoreError> {
    cursor.as_deref().map(|c| parse(c).ok_or_else(|| StoreError::Unexpected("malformed cursor".into()))).transpose()
}

/// Keyset paging over an in-memory list keyed by sortable strings, newest (largest key) first.
pub fn page_newest_first<T>(mut items: Vec<(String, T)>, page: &PageRequest) -> Page<T> {
    items.sort_by(|a, b| b.0.cmp(&a.0));
    let start = match &page.cursor {
        Some(cursor) => items.iter().position(|(k, _)| k < cursor).unwrap_or(items.len()),
        None => 0,
    };
    let mut rest: Vec<(String, T)> = items.into_iter().skip(start).take(page.size + 1).collect();
    let next = if rest.len() > page.size {
        rest.truncate(page.size);
        rest.last().map(|(k, _)| k.clone())
    } else {
        None
    };
    Page { items: rest.into_iter().map(|(_, v)| v).collect(), next }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn account(b: u8) -> AccountId {
        AccountId::from_bytes([b; 16])
    }

    #[test]
    fn a_token_opens_for_the_same_account_and_listing_only() {
        let pages = PageTokens::new([9; 32]);
        let token = pages.seal(&account(1), "notifications?status=SENT", Some("k1"));
        assert_eq!(pages.open(&account(1), "notifications?status=SENT", &token), Some(Some("k1".to_owned())));
        assert_eq!(pages.open(&account(2), "notifications?status=SENT", &token), None);
        assert_eq!(pages.open(&account(1), "notifications?status=FAILED", &token), None);
        assert_eq!(
            pages.open(
                &account(1),
                "notifications?status=SENT",
                &pages.seal(&account(1), "notifications?status=SENT", None)
            ),
            Some(None)
        );
    }

    #[test]
    fn a_tampered_token_does_not_open() {
        let pages = PageTokens::new([9; 32]);
        let token = pages.seal(&account(1), "s", Some("k1"));
        let (_, tag) = token.split_once('.').expect("two parts");
        let forged = format!("{}.{tag}", URL_SAFE_NO_PAD.encode("k2"));
        assert_eq!(pages.open(&account(1), "s", &forged), None);
        assert_eq!(pages.open(&account(1), "s", "garbage"), None);
        assert_eq!(pages.open(&account(1), "s", &format!("{}.", URL_SAFE_NO_PAD.encode("k1"))), None);
    }
}
