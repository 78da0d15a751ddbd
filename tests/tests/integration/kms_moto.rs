//! Emulator tier: credential secrets sealed with KMS envelope encryption (moto's KMS). Skipped by
//! plain `cargo test`; run by `tests/run`.

use pushgate_aws::kms::KmsEnvelopeBox;
use pushgate_core::app::ports::{SecretBox, StoreError};
use pushgate_tests::emulator;

const SECRET: &[u8] =
    b"-----BEGIN PRIVATE KEY-----\nMIGTAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBHkwdwIBAQQg\n-----END PRIVATE KEY-----";
const AAD: &[u8] = b"ACaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa/CRbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb";

/// A KMS client on the emulator and a fresh symmetric key's id.
async fn kms() -> Option<(aws_sdk_kms::Client, String)> {
    let config = emulator().await?;
    let client = aws_sdk_kms::Client::new(&config);
    Some((client.clone(), new_key(&client).await))
}

async fn new_key(client: &aws_sdk_kms::Client) -> String {
    let created = client.create_key().description("pushgate test key").send().await.expect("moto creates the key");
    created.key_metadata().expect("key metadata").key_id().to_owned()
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

#[tokio::test]
async fn a_sealed_secret_opens_with_the_same_aad_and_does_not_contain_the_plaintext() {
    let Some((client, key)) = kms().await else { return };
    let secrets = KmsEnvelopeBox::new(client, key);
    let sealed = secrets.seal(SECRET, AAD).await.expect("seals");
    assert!(sealed.starts_with(b"PGE\x01"), "a versioned envelope");
    assert!(!contains(&sealed, SECRET));
    assert!(!contains(&sealed, b"BEGIN PRIVATE KEY"));
    assert_eq!(secrets.open(&sealed, AAD).await.expect("opens"), SECRET);
    let again = secrets.seal(SECRET, AAD).await.expect("seals again");
    assert_ne!(sealed, again, "every seal has its own data key and nonce");
    assert_eq!(secrets.open(&again, AAD).await.expect("opens"), SECRET);
    assert_eq!(secrets.open(&secrets.seal(b"", AAD).await.expect("seals"), AAD).await.expect("opens"), b"");
}

#[tokio::test]
async fn a_sealed_secret_does_not_open_with_another_aad() {
    let Some((client, key)) = kms().await else { return };
    let secrets = KmsEnvelopeBox::new(client, key);
    let sealed = secrets.seal(SECRET, AAD).await.expect("seals");
    // KMS refuses to unwrap the data key: the encryption context differs (moto enforces it too,
    // as AES-GCM associated data of its own ciphertext, and answers InvalidCiphertextException).
    let err = secrets.open(&sealed, b"ACaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa/CRcccc").await.expect_err("refused");
    assert!(matches!(&err, StoreError::Unexpected(m) if m.contains("InvalidCiphertextException")), "{err:?}");
    assert_eq!(secrets.decrypt_calls(), 1, "the refused unwrap went to KMS");

    // Once the data key is cached for the right aad, another aad still gets nothing: the cache is
    // keyed by (wrapped key, aad), so KMS is asked and refuses again.
    assert_eq!(secrets.open(&sealed, AAD).await.expect("opens"), SECRET);
    assert!(secrets.open(&sealed, b"another/aad").await.is_err());
    assert_eq!(secrets.decrypt_calls(), 3);
}

#[tokio::test]
async fn a_sealed_secret_does_not_open_with_another_keys_box() {
    let Some((client, key)) = kms().await else { return };
    let other = new_key(&client).await;
    let sealed = KmsEnvelopeBox::new(client.clone(), key).seal(SECRET, AAD).await.expect("seals");
    let err = KmsEnvelopeBox::new(client, other).open(&sealed, AAD).await.expect_err("refused");
    // The box names its key in `Decrypt`: KMS answers IncorrectKeyException, moto
    // AccessDeniedException; both are `Unexpected`.
    let refused = |m: &str| m.contains("IncorrectKeyException") || m.contains("AccessDeniedException");
    assert!(matches!(&err, StoreError::Unexpected(m) if refused(m)), "{err:?}");
}

#[tokio::test]
async fn opening_the_same_blob_twice_calls_decrypt_once() {
    let Some((client, key)) = kms().await else { return };
    let secrets = KmsEnvelopeBox::new(client, key);
    let sealed = secrets.seal(SECRET, AAD).await.expect("seals");
    assert_eq!(secrets.decrypt_calls(), 0, "sealing does not decrypt");
    assert_eq!(secrets.open(&sealed, AAD).await.expect("opens"), SECRET);
    assert_eq!(secrets.open(&sealed, AAD).await.expect("opens"), SECRET);
    assert_eq!(secrets.decrypt_calls(), 1);

    // Another secret has another data key: one more call, then cached too.
    let other = secrets.seal(b"another secret", AAD).await.expect("seals");
    assert_eq!(secrets.open(&other, AAD).await.expect("opens"), b"another secret");
    assert_eq!(secrets.open(&other, AAD).await.expect("opens"), b"another secret");
    assert_eq!(secrets.decrypt_calls(), 2);
}

#[tokio::test]
async fn concurrent_opens_of_one_blob_share_one_decrypt_call() {
    let Some((client, key)) = kms().await else { return };
    let secrets = KmsEnvelopeBox::new(client, key);
    let sealed = secrets.seal(SECRET, AAD).await.expect("seals");
    let (a, b, c, d) = tokio::join!(
        secrets.open(&sealed, AAD),
        secrets.open(&sealed, AAD),
        secrets.open(&sealed, AAD),
        secrets.open(&sealed, AAD),
    );
    for opened in [a, b, c, d] {
        assert_eq!(opened.expect("opens"), SECRET);
    }
    assert_eq!(secrets.decrypt_calls(), 1);
}

#[tokio::test]
async fn a_tampered_envelope_does_not_open() {
    let Some((client, key)) = kms().await else { return };
    let secrets = KmsEnvelopeBox::new(client, key);
    let sealed = secrets.seal(SECRET, AAD).await.expect("seals");
    let mut tampered = sealed.clone();
    if let Some(last) = tampered.last_mut() {
        *last ^= 1;
    }
    assert!(matches!(secrets.open(&tampered, AAD).await, Err(StoreError::Unexpected(_))));
    assert!(matches!(secrets.open(&sealed[..sealed.len() - 20], AAD).await, Err(StoreError::Unexpected(_))));
    assert_eq!(secrets.open(&sealed, AAD).await.expect("the original still opens"), SECRET);
}

#[tokio::test]
async fn a_missing_key_is_unexpected_and_an_unreachable_kms_is_unavailable() {
    let Some((client, _)) = kms().await else { return };
    let missing = KmsEnvelopeBox::new(client.clone(), "11111111-2222-3333-4444-555555555555");
    let err = missing.seal(SECRET, AAD).await.expect_err("no such key");
    assert!(matches!(&err, StoreError::Unexpected(m) if m.contains("NotFoundException")), "{err:?}");

    let unreachable = client.config().to_builder().endpoint_url("http://127.0.0.1:1").build();
    let down = KmsEnvelopeBox::new(aws_sdk_kms::Client::from_conf(unreachable), "any-key");
    let err = down.seal(SECRET, AAD).await.expect_err("unreachable");
    assert!(matches!(err, StoreError::Unavailable(_)), "{err:?}");
    assert!(!format!("{err:?}").contains("PRIVATE KEY"));
}
