//! Credential secrets sealed with KMS envelope encryption.
//!
//! `seal` asks KMS for a fresh AES-256 data key (`GenerateDataKey`), bound to the caller's aad
//! through the encryption context `{"pushgate:aad": base64(aad)}`, encrypts the plaintext locally
//! with AES-256-GCM under that data key (same aad, random 12-byte nonce), wipes the plaintext data
//! key, and keeps only the KMS-wrapped copy in the blob:
//!
//! ```text
//! "PGE" | version 0x01 | wrapped-key length (u16 BE) | wrapped key | nonce (12) | ciphertext+tag (≥ 16)
//! ```
//!
//! `open` parses the blob (a truncated blob, another format or an unknown version is
//! `Unexpected`), has KMS unwrap the data key (`Decrypt` with the same encryption context and the
//! box's key id), and decrypts locally. Unwrapped data keys are cached in-process, keyed by the
//! wrapped key and the aad, for 5 minutes at most and 256 entries at most, so the dispatcher does
//! not call KMS for every chunk; concurrent opens of one blob share one `Decrypt` call.
//!
//! SDK errors: throttling, 5xx, timeouts and dispatch failures → `Unavailable`; anything else
//! (access denied, invalid ciphertext, wrong key, disabled key) → `Unexpected`. Messages carry
//! the action and KMS's error code and message, never key material or plaintext. No SDK type
//! leaves this module except the client given to the constructor.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use async_trait::async_trait;
use aws_sdk_kms::config::http::HttpResponse;
use aws_sdk_kms::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use aws_sdk_kms::primitives::Blob;
use aws_sdk_kms::types::DataKeySpec;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use rand::RngCore;
use tokio::sync::OnceCell;

use pushgate_core::app::ports::{SecretBox, StoreError};

/// The first bytes of every envelope ("PushGate Envelope").
const MAGIC: [u8; 3] = *b"PGE";
/// The envelope version this module writes and reads.
const VERSION: u8 = 1;
/// Magic and version.
const HEADER_LEN: usize = MAGIC.len() + 1;
/// Length prefix of the wrapped key.
const LEN_PREFIX: usize = 2;
/// AES-GCM nonce.
const NONCE_LEN: usize = 12;
/// AES-GCM tag.
const TAG_LEN: usize = 16;
/// AES-256 key.
const DATA_KEY_LEN: usize = 32;

/// The encryption-context key that binds a data key to the aad.
pub const CONTEXT_KEY: &str = "pushgate:aad";
/// How many unwrapped data keys one process keeps.
pub const CACHE_CAPACITY: usize = 256;
/// How long an unwrapped data key is used before KMS is asked again.
pub const CACHE_TTL: Duration = Duration::from_secs(5 * 60);

/// KMS error codes that mean "try again later".
const RETRYABLE: [&str; 7] = [
    "ThrottlingException",
    "KMSInternalException",
    "KMSInternalFailure",
    "DependencyTimeoutException",
    "KeyUnavailableException",
    "ServiceUnavailable",
    "InternalFailure",
];

/// Seals secrets under data keys wrapped by one KMS key.
pub struct KmsEnvelopeBox {
    client: aws_sdk_kms::Client,
    key_id: String,
    cache: DataKeyCache,
    decrypt_calls: AtomicU64,
}

impl std::fmt::Debug for KmsEnvelopeBox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KmsEnvelopeBox").field("key_id", &self.key_id).finish_non_exhaustive()
    }
}

impl KmsEnvelopeBox {
    /// Uses the KMS key `key_id` (key id, key ARN, alias name or alias ARN, from the template's
    /// environment) for every seal and open.
    pub fn new(client: aws_sdk_kms::Client, key_id: impl Into<String>) -> Self {
        Self {
            client,
            key_id: key_id.into(),
            cache: DataKeyCache::new(CACHE_CAPACITY, CACHE_TTL),
            decrypt_calls: AtomicU64::new(0),
        }
    }

    /// How many KMS `Decrypt` calls this box has made (to prove the data-key cache works).
    pub fn decrypt_calls(&self) -> u64 {
        self.decrypt_calls.load(Ordering::Relaxed)
    }

    /// Has KMS unwrap `wrapped` under the encryption context of `aad`; returns the cipher.
    async fn unwrap_key(&self, wrapped: &[u8], aad: &[u8]) -> Result<Arc<Aes256Gcm>, StoreError> {
        self.decrypt_calls.fetch_add(1, Ordering::Relaxed);
        let (key, value) = encryption_context(aad);
        let mut output = self
            .client
            .decrypt()
            .key_id(&self.key_id)
            .ciphertext_blob(Blob::new(wrapped))
            .encryption_context(key, value)
            .send()
            .await
            .map_err(|e| kms_error("Decrypt", e))?;
        let data_key = output.plaintext.take().map(Blob::into_inner).unwrap_or_default();
        cipher_from(data_key).map(Arc::new)
    }
}

#[async_trait]
impl SecretBox for KmsEnvelopeBox {
    async fn seal(&self, plaintext: &[u8], aad: &[u8]) -> Result<Vec<u8>, StoreError> {
        let (key, value) = encryption_context(aad);
        let mut output = self
            .client
            .generate_data_key()
            .key_id(&self.key_id)
            .key_spec(DataKeySpec::Aes256)
            .encryption_context(key, value)
            .send()
            .await
            .map_err(|e| kms_error("GenerateDataKey", e))?;
        let cipher = cipher_from(output.plaintext.take().map(Blob::into_inner).unwrap_or_default())?;
        let wrapped = output
            .ciphertext_blob
            .take()
            .map(Blob::into_inner)
            .ok_or_else(|| StoreError::Unexpected("KMS GenerateDataKey returned no wrapped key".into()))?;
        let mut nonce = [0u8; NONCE_LEN];
        rand::thread_rng().fill_bytes(&mut nonce);
        let sealed = cipher
            .encrypt(Nonce::from_slice(&nonce), Payload { msg: plaintext, aad })
            .map_err(|_| StoreError::Unexpected("encryption failed".into()))?;
        encode(&wrapped, &nonce, &sealed)
    }

    async fn open(&self, sealed: &[u8], aad: &[u8]) -> Result<Vec<u8>, StoreError> {
        let envelope = Envelope::parse(sealed)?;
        let slot = self.cache.slot(envelope.wrapped, aad, Instant::now());
        let cipher = slot.get_or_try_init(|| self.unwrap_key(envelope.wrapped, aad)).await?;
        cipher
            .decrypt(Nonce::from_slice(envelope.nonce), Payload { msg: envelope.sealed, aad })
            .map_err(|_| StoreError::Unexpected("sealed secret does not open with its data key".into()))
    }
}

/// The encryption context binding a data key to `aad`.
fn encryption_context(aad: &[u8]) -> (&'static str, String) {
    (CONTEXT_KEY, STANDARD.encode(aad))
}

/// Builds the AES-256-GCM cipher from a plaintext data key, then wipes the key bytes.
fn cipher_from(mut data_key: Vec<u8>) -> Result<Aes256Gcm, StoreError> {
    let cipher = if data_key.len() == DATA_KEY_LEN {
        Aes256Gcm::new_from_slice(&data_key)
            .map_err(|_| StoreError::Unexpected("KMS returned an unusable data key".into()))
    } else {
        Err(StoreError::Unexpected(format!("KMS returned a data key of {} bytes, not {DATA_KEY_LEN}", data_key.len())))
    };
    wipe(&mut data_key);
    cipher
}

/// Overwrites key material before its buffer is freed (best effort without `unsafe`: the
/// `black_box` keeps the compiler from dropping the writes as dead stores).
fn wipe(bytes: &mut [u8]) {
    bytes.fill(0);
    std::hint::black_box(bytes);
}

/// Maps an SDK error to what the ports can say about it, without request or response bodies.
fn kms_error<E>(action: &str, err: SdkError<E, HttpResponse>) -> StoreError
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    match &err {
        SdkError::TimeoutError(_) => StoreError::Unavailable(format!("KMS {action} timed out")),
        SdkError::DispatchFailure(_) => {
            StoreError::Unavailable(format!("KMS {action} could not be sent: {}", DisplayErrorContext(&err)))
        }
        SdkError::ResponseError(ctx) => {
            let status = ctx.raw().status();
            let message = format!("KMS {action} gave an unreadable response (HTTP {status})");
            if status.is_server_error() { StoreError::Unavailable(message) } else { StoreError::Unexpected(message) }
        }
        SdkError::ServiceError(ctx) => {
            let code = ctx.err().code().unwrap_or("unknown error");
            let message = format!("KMS {action} failed: {code}: {}", ctx.err().message().unwrap_or("no message"));
            if RETRYABLE.contains(&code) || ctx.raw().status().is_server_error() {
                StoreError::Unavailable(message)
            } else {
                StoreError::Unexpected(message)
            }
        }
        _ => StoreError::Unexpected(format!("KMS {action} failed: {}", DisplayErrorContext(&err))),
    }
}

/// Writes the versioned envelope.
fn encode(wrapped: &[u8], nonce: &[u8; NONCE_LEN], sealed: &[u8]) -> Result<Vec<u8>, StoreError> {
    let len = u16::try_from(wrapped.len())
        .map_err(|_| StoreError::Unexpected(format!("a wrapped data key of {} bytes is too long", wrapped.len())))?;
    let mut out = Vec::with_capacity(HEADER_LEN + LEN_PREFIX + wrapped.len() + NONCE_LEN + sealed.len());
    out.extend_from_slice(&MAGIC);
    out.push(VERSION);
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(wrapped);
    out.extend_from_slice(nonce);
    out.extend_from_slice(sealed);
    Ok(out)
}

/// The parts of an envelope, borrowed from the blob.
#[derive(Debug, PartialEq, Eq)]
struct Envelope<'a> {
    /// The data key as KMS wrapped it.
    wrapped: &'a [u8],
    /// The AES-GCM nonce.
    nonce: &'a [u8],
    /// Ciphertext and tag.
    sealed: &'a [u8],
}

impl<'a> Envelope<'a> {
    /// Splits a blob written by [`encode`].
    fn parse(blob: &'a [u8]) -> Result<Self, StoreError> {
        let truncated = || StoreError::Unexpected("sealed secret is truncated".into());
        let (magic, rest) = blob.split_at_checked(MAGIC.len()).ok_or_else(truncated)?;
        if magic != MAGIC {
            return Err(StoreError::Unexpected("sealed secret is not a KMS envelope".into()));
        }
        let (&version, rest) = rest.split_first().ok_or_else(truncated)?;
        if version != VERSION {
            return Err(StoreError::Unexpected(format!("sealed secret has unknown envelope version {version}")));
        }
        let (len, rest) = rest.split_first_chunk::<LEN_PREFIX>().ok_or_else(truncated)?;
        let (wrapped, rest) = rest.split_at_checked(usize::from(u16::from_be_bytes(*len))).ok_or_else(truncated)?;
        if wrapped.is_empty() {
            return Err(StoreError::Unexpected("sealed secret has an empty wrapped data key".into()));
        }
        let (nonce, sealed) = rest.split_at_checked(NONCE_LEN).ok_or_else(truncated)?;
        if sealed.len() < TAG_LEN {
            return Err(truncated());
        }
        Ok(Envelope { wrapped, nonce, sealed })
    }
}

/// One cached data key: filled by the first open that unwraps it, shared by concurrent opens.
type Slot = Arc<OnceCell<Arc<Aes256Gcm>>>;

/// What a data key is cached by: the wrapped key and the aad.
type CacheKey = (Vec<u8>, Vec<u8>);

/// Unwrapped data keys by (wrapped key, aad), bounded in size and age. The key includes the aad
/// so a cache hit always means KMS accepted exactly this encryption context.
struct DataKeyCache {
    entries: Mutex<HashMap<CacheKey, (Instant, Slot)>>,
    capacity: usize,
    ttl: Duration,
}

impl DataKeyCache {
    /// An empty cache of at most `capacity` keys, each used for at most `ttl`.
    fn new(capacity: usize, ttl: Duration) -> Self {
        Self { entries: Mutex::new(HashMap::new()), capacity, ttl }
    }

    /// The slot of `(wrapped, aad)` at `now`: the cached one if younger than the TTL, else a new
    /// empty one (evicting expired entries, then the oldest, when full).
    fn slot(&self, wrapped: &[u8], aad: &[u8], now: Instant) -> Slot {
        // A poisoned lock only means another open panicked mid-update; the map is still valid.
        let mut entries = self.entries.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let key: CacheKey = (wrapped.to_vec(), aad.to_vec());
        if let Some((created, slot)) = entries.get(&key)
            && now.saturating_duration_since(*created) < self.ttl
        {
            return slot.clone();
        }
        entries.remove(&key);
        if entries.len() >= self.capacity {
            entries.retain(|_, (created, _)| now.saturating_duration_since(*created) < self.ttl);
        }
        while entries.len() >= self.capacity {
            let Some(oldest) = entries.iter().min_by_key(|(_, (created, _))| *created).map(|(k, _)| k.clone()) else {
                break;
            };
            entries.remove(&oldest);
        }
        let slot = Slot::default();
        entries.insert(key, (now, slot.clone()));
        slot
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.entries.lock().map(|e| e.len()).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn blob() -> Vec<u8> {
        encode(&[9; 40], &[7; NONCE_LEN], &[5; TAG_LEN + 3]).expect("encodes")
    }

    fn unexpected(result: Result<Envelope<'_>, StoreError>) -> String {
        match result {
            Err(StoreError::Unexpected(message)) => message,
            other => panic!("expected Unexpected, got {other:?}"),
        }
    }

    #[test]
    fn an_encoded_envelope_parses_back_into_its_parts() {
        let blob = blob();
        assert_eq!(&blob[..6], b"PGE\x01\x00\x28");
        let envelope = Envelope::parse(&blob).expect("parses");
        assert_eq!(envelope, Envelope { wrapped: &[9; 40], nonce: &[7; NONCE_LEN], sealed: &[5; TAG_LEN + 3] });
    }

    #[test]
    fn every_truncation_of_an_envelope_is_refused_as_unexpected() {
        let blob = blob();
        for len in 0..blob.len() - 3 {
            let message = unexpected(Envelope::parse(&blob[..len]));
            assert!(message.contains("truncated"), "{len} bytes: {message}");
        }
    }

    #[test]
    fn an_unknown_version_is_refused_as_unexpected() {
        let mut blob = blob();
        blob[3] = 2;
        assert!(unexpected(Envelope::parse(&blob)).contains("unknown envelope version 2"));
    }

    #[test]
    fn a_blob_of_another_format_is_refused_as_unexpected() {
        let mut blob = blob();
        blob[0] = b'X';
        assert!(unexpected(Envelope::parse(&blob)).contains("not a KMS envelope"));
    }

    #[test]
    fn an_empty_wrapped_key_is_refused_as_unexpected() {
        let blob = encode(&[], &[7; NONCE_LEN], &[5; TAG_LEN]).expect("encodes");
        assert!(unexpected(Envelope::parse(&blob)).contains("empty wrapped data key"));
    }

    #[test]
    fn a_wrapped_key_longer_than_the_length_prefix_cannot_be_encoded() {
        assert!(encode(&vec![1; 70_000], &[7; NONCE_LEN], &[5; TAG_LEN]).is_err());
    }

    #[test]
    fn a_data_key_of_the_wrong_length_is_refused() {
        assert!(cipher_from(vec![1; 16]).is_err());
        assert!(cipher_from(vec![1; DATA_KEY_LEN]).is_ok());
    }

    #[test]
    fn the_cache_returns_the_same_slot_until_it_expires() {
        let cache = DataKeyCache::new(4, Duration::from_secs(300));
        let t0 = Instant::now();
        let first = cache.slot(b"wrapped", b"aad", t0);
        assert!(Arc::ptr_eq(&first, &cache.slot(b"wrapped", b"aad", t0 + Duration::from_secs(299))));
        assert!(!Arc::ptr_eq(&first, &cache.slot(b"wrapped", b"other aad", t0)));
        assert!(!Arc::ptr_eq(&first, &cache.slot(b"wrapped", b"aad", t0 + Duration::from_secs(300))));
    }

    #[test]
    fn the_cache_evicts_the_oldest_entry_when_full() {
        let cache = DataKeyCache::new(3, Duration::from_secs(300));
        let t0 = Instant::now();
        let oldest = cache.slot(b"k0", b"a", t0);
        let kept: Vec<Slot> =
            (1..3u64).map(|i| cache.slot(&[b'k', b'0' + i as u8], b"a", t0 + Duration::from_secs(i))).collect();
        cache.slot(b"k3", b"a", t0 + Duration::from_secs(3));
        assert_eq!(cache.len(), 3);
        assert!(Arc::ptr_eq(&kept[0], &cache.slot(b"k1", b"a", t0 + Duration::from_secs(4))));
        assert!(!Arc::ptr_eq(&oldest, &cache.slot(b"k0", b"a", t0 + Duration::from_secs(4))));
        assert_eq!(cache.len(), 3);
    }

    #[test]
    fn expired_entries_are_evicted_before_live_ones() {
        let cache = DataKeyCache::new(2, Duration::from_secs(10));
        let t0 = Instant::now();
        cache.slot(b"old", b"a", t0);
        let live = cache.slot(b"live", b"a", t0 + Duration::from_secs(5));
        cache.slot(b"new", b"a", t0 + Duration::from_secs(11));
        assert!(Arc::ptr_eq(&live, &cache.slot(b"live", b"a", t0 + Duration::from_secs(12))));
    }

    #[test]
    fn throttling_and_server_errors_are_unavailable_and_the_rest_unexpected() {
        use aws_sdk_kms::error::ErrorMetadata;
        use aws_sdk_kms::operation::decrypt::DecryptError;
        let service = |code: &str, status: http::StatusCode| {
            let err = DecryptError::generic(ErrorMetadata::builder().code(code).message("details").build());
            kms_error("Decrypt", SdkError::service_error(err, HttpResponse::new(status.into(), "".into())))
        };
        assert!(matches!(
            service("ThrottlingException", http::StatusCode::BAD_REQUEST),
            StoreError::Unavailable(m) if m == "KMS Decrypt failed: ThrottlingException: details"
        ));
        assert!(matches!(
            service("KMSInternalException", http::StatusCode::INTERNAL_SERVER_ERROR),
            StoreError::Unavailable(_)
        ));
        assert!(matches!(service("Whatever", http::StatusCode::SERVICE_UNAVAILABLE), StoreError::Unavailable(_)));
        assert!(matches!(service("AccessDeniedException", http::StatusCode::BAD_REQUEST), StoreError::Unexpected(_)));
        assert!(matches!(
            service("InvalidCiphertextException", http::StatusCode::BAD_REQUEST),
            StoreError::Unexpected(_)
        ));
        let timeout: SdkError<DecryptError, HttpResponse> = SdkError::timeout_error("slow");
        assert!(matches!(kms_error("Decrypt", timeout), StoreError::Unavailable(_)));
    }
}
