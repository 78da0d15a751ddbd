//! AES-256-GCM secret box for credential content (the local data key; KMS envelope on AWS).

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use rand::RngCore;

use pushgate_core::app::ports::{SecretBox, StoreError};

const NONCE_LEN: usize = 12;

/// Seals with AES-256-GCM under one 32-byte key; output is `nonce || ciphertext+tag`.
pub struct AesGcmBox {
    cipher: Aes256Gcm,
}

impl AesGcmBox {
    /// Uses `key`.
    pub fn new(key: &[u8; 32]) -> Self {
        Self { cipher: Aes256Gcm::new(key.into()) }
    }
}

#[async_trait::async_trait]
impl SecretBox for AesGcmBox {
    async fn seal(&self, plaintext: &[u8], aad: &[u8]) -> Result<Vec<u8>, StoreError> {
        let mut nonce = [0u8; NONCE_LEN];
        rand::thread_rng().fill_bytes(&mut nonce);
        let sealed = self
            .cipher
            .encrypt(Nonce::from_slice(&nonce), Payload { msg: plaintext, aad })
            .map_err(|_| StoreError::Unexpected("encryption failed".into()))?;
        let mut out = nonce.to_vec();
        out.extend_from_slice(&sealed);
        Ok(out)
    }

    async fn open(&self, sealed: &[u8], aad: &[u8]) -> Result<Vec<u8>, StoreError> {
        if sealed.len() < NONCE_LEN {
            return Err(StoreError::Unexpected("sealed secret is truncated".into()));
        }
        let (nonce, body) = sealed.split_at(NONCE_LEN);
        self.cipher
            .decrypt(Nonce::from_slice(nonce), Payload { msg: body, aad })
            .map_err(|_| StoreError::Unexpected("sealed secret does not open with this data key".into()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_sealed_secret_opens_only_with_the_same_key_and_aad() {
        let sealed = AesGcmBox::new(&[1; 32]).seal(b"private key", b"acct/cred").await.expect("seals");
        assert!(!sealed.windows(11).any(|w| w == b"private key"));
        assert_eq!(AesGcmBox::new(&[1; 32]).open(&sealed, b"acct/cred").await.expect("opens"), b"private key");
        assert!(AesGcmBox::new(&[2; 32]).open(&sealed, b"acct/cred").await.is_err());
        assert!(AesGcmBox::new(&[1; 32]).open(&sealed, b"acct/other").await.is_err());
    }
}
