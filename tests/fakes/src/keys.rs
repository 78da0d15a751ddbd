//! Key material for tests: APNs provider-token signing keys (`.p8`), APNs
//! client certificates, FCM service accounts, and the certificate authorities
//! behind the fakes' TLS.
//!
//! Two process-wide certificate authorities are created lazily:
//!
//! * the *server CA* signs the TLS certificate of every [`crate::FakeApns`]
//!   started with [`crate::FakeApns::start_tls`] (valid for `localhost` and
//!   `127.0.0.1`); trust it via [`crate::FakeApns::server_ca_pem`];
//! * the *client CA* signs every APNs client certificate made by
//!   [`apns_client_certificate`] or [`crate::FakeApns::issue_client_certificate`],
//!   and every TLS fake accepts certificates it signed.

use std::sync::OnceLock;

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};

/// An APNs provider-token signing key, as downloaded from Apple's developer
/// portal (`AuthKey_<key id>.p8`).
#[derive(Clone, Debug)]
pub struct ApnsSigningKey {
    /// The 10-character key identifier (the JWT `kid`).
    pub key_id: String,
    /// The team identifier (the JWT `iss`).
    pub team_id: String,
    /// PKCS#8 PEM (`-----BEGIN PRIVATE KEY-----`) of a P-256 key: the content
    /// of an Apple `.p8` file.
    pub private_key_pem: String,
    /// SubjectPublicKeyInfo PEM (`-----BEGIN PUBLIC KEY-----`) of the same key.
    pub public_key_pem: String,
}

/// Generates a fresh P-256 signing key for the given key and team ids.
pub fn apns_signing_key(key_id: &str, team_id: &str) -> ApnsSigningKey {
    let key =
        KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).expect("pushgate-fakes: generating a P-256 key failed");
    ApnsSigningKey {
        key_id: key_id.to_owned(),
        team_id: team_id.to_owned(),
        private_key_pem: key.serialize_pem(),
        public_key_pem: key.public_key_pem(),
    }
}

/// The signing key whose private half is `private_key_pem` (PKCS#8 PEM, the
/// content of a `.p8` file), for the given key and team ids; `None` unless it
/// is a P-256 key.
pub fn apns_signing_key_from_pem(key_id: &str, team_id: &str, private_key_pem: &str) -> Option<ApnsSigningKey> {
    let key = KeyPair::from_pem(private_key_pem).ok()?;
    (key.algorithm() == &rcgen::PKCS_ECDSA_P256_SHA256).then(|| ApnsSigningKey {
        key_id: key_id.to_owned(),
        team_id: team_id.to_owned(),
        private_key_pem: key.serialize_pem(),
        public_key_pem: key.public_key_pem(),
    })
}

/// PKCS#8 PEM of a fresh P-384 key: an EC key on a curve APNs does not accept
/// (provider tokens are ES256, P-256 only).
pub fn p384_private_key_pem() -> String {
    KeyPair::generate_for(&rcgen::PKCS_ECDSA_P384_SHA384)
        .expect("pushgate-fakes: generating a P-384 key failed")
        .serialize_pem()
}

/// The committed, test-only RSA 2048 key of every fake FCM service account.
const FCM_PRIVATE_KEY_PEM: &str = include_str!("../fixtures/fcm-service-account-TEST-ONLY.key.pem");
/// The public half of [`FCM_PRIVATE_KEY_PEM`].
const FCM_PUBLIC_KEY_PEM: &str = include_str!("../fixtures/fcm-service-account-TEST-ONLY.pub.pem");
/// The `private_key_id` written into service-account JSON.
const FCM_PRIVATE_KEY_ID: &str = "0000000000000000000000000000000000test";

/// A Google service account able to send FCM messages for one project.
#[derive(Clone, Debug)]
pub struct FcmServiceAccount {
    /// The Firebase / Google Cloud project id.
    pub project_id: String,
    /// `pushgate-test@{project_id}.iam.gserviceaccount.com`; the JWT `iss`.
    pub client_email: String,
    /// PKCS#8 PEM of the account's RSA 2048 key (a committed test fixture).
    pub private_key_pem: String,
    /// SubjectPublicKeyInfo PEM of the same key.
    pub public_key_pem: String,
    /// The OAuth token endpoint, normally [`crate::FakeFcm::token_uri`].
    pub token_uri: String,
}

impl FcmServiceAccount {
    /// The account as the JSON key file Google hands out
    /// (`{"type": "service_account", "project_id", "private_key_id",
    /// "private_key", "client_email", "client_id", "token_uri", ...}`).
    pub fn to_json(&self) -> String {
        let encoded_email = self.client_email.replace('@', "%40");
        serde_json::json!({
            "type": "service_account",
            "project_id": self.project_id,
            "private_key_id": FCM_PRIVATE_KEY_ID,
            "private_key": self.private_key_pem,
            "client_email": self.client_email,
            "client_id": "100000000000000000000",
            "auth_uri": "https://accounts.google.com/o/oauth2/auth",
            "token_uri": self.token_uri,
            "auth_provider_x509_cert_url": "https://www.googleapis.com/oauth2/v1/certs",
            "client_x509_cert_url": format!(
                "https://www.googleapis.com/robot/v1/metadata/x509/{encoded_email}"
            ),
            "universe_domain": "googleapis.com",
        })
        .to_string()
    }
}

/// A service account for `project_id` whose tokens are minted at `token_uri`
/// (usually [`crate::FakeFcm::token_uri`]). Register it with
/// [`crate::FakeFcm::register_service_account`].
pub fn fcm_service_account(project_id: &str, token_uri: &str) -> FcmServiceAccount {
    FcmServiceAccount {
        project_id: project_id.to_owned(),
        client_email: format!("pushgate-test@{project_id}.iam.gserviceaccount.com"),
        private_key_pem: FCM_PRIVATE_KEY_PEM.to_owned(),
        public_key_pem: FCM_PUBLIC_KEY_PEM.to_owned(),
        token_uri: token_uri.to_owned(),
    }
}

/// An APNs client certificate (certificate-based provider authentication).
#[derive(Clone, Debug)]
pub struct ApnsClientCertificate {
    /// The leaf certificate, PEM. Its subject has `UID = topic` and
    /// `CN = "Apple Push Services: {topic}"`, like Apple's certificates.
    pub certificate_pem: String,
    /// PKCS#8 PEM of the certificate's P-256 key.
    pub private_key_pem: String,
    /// The bundle id / topic the certificate is for.
    pub topic: String,
}

impl ApnsClientCertificate {
    /// Certificate followed by key, the shape `reqwest::Identity::from_pem`
    /// and most HTTP clients expect.
    pub fn identity_pem(&self) -> String {
        format!("{}{}", self.certificate_pem, self.private_key_pem)
    }
}

/// Issues an APNs client certificate for `topic`, signed by the process-wide
/// client CA that every TLS [`crate::FakeApns`] accepts.
pub fn apns_client_certificate(topic: &str) -> ApnsClientCertificate {
    client_ca().issue_client_certificate(topic)
}

/// OID of the `UID` (userId) attribute, which Apple sets to the topic.
const UID_OID: [u64; 7] = [0, 9, 2342, 19_200_300, 100, 1, 1];

/// A certificate authority created for this process.
pub(crate) struct CertAuthority {
    issuer: Issuer<'static, KeyPair>,
    pem: String,
    der: CertificateDer<'static>,
}

impl CertAuthority {
    fn new(common_name: &str) -> Self {
        let key =
            KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).expect("pushgate-fakes: generating a CA key failed");
        let mut params = CertificateParams::default();
        params.distinguished_name = DistinguishedName::new();
        params.distinguished_name.push(DnType::CommonName, common_name);
        params.distinguished_name.push(DnType::OrganizationName, "pushgate-fakes (TEST ONLY)");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages =
            vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign, KeyUsagePurpose::DigitalSignature];
        let certificate = params.self_signed(&key).expect("pushgate-fakes: self-signing a CA certificate failed");
        CertAuthority { pem: certificate.pem(), der: certificate.der().clone(), issuer: Issuer::new(params, key) }
    }

    /// The CA certificate, PEM.
    pub(crate) fn pem(&self) -> &str {
        &self.pem
    }

    /// The CA certificate, DER.
    pub(crate) fn der(&self) -> CertificateDer<'static> {
        self.der.clone()
    }

    /// Issues an APNs client certificate for `topic` signed by this CA.
    pub(crate) fn issue_client_certificate(&self, topic: &str) -> ApnsClientCertificate {
        let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)
            .expect("pushgate-fakes: generating a client key failed");
        let mut params = CertificateParams::default();
        params.distinguished_name = DistinguishedName::new();
        params.distinguished_name.push(DnType::CustomDnType(UID_OID.to_vec()), topic);
        params.distinguished_name.push(DnType::CommonName, format!("Apple Push Services: {topic}"));
        params.distinguished_name.push(DnType::OrganizationalUnitName, "PUSHGATE01");
        params.distinguished_name.push(DnType::OrganizationName, "pushgate-fakes (TEST ONLY)");
        params.distinguished_name.push(DnType::CountryName, "US");
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        params.use_authority_key_identifier_extension = true;
        let certificate =
            params.signed_by(&key, &self.issuer).expect("pushgate-fakes: signing a client certificate failed");
        ApnsClientCertificate {
            certificate_pem: certificate.pem(),
            private_key_pem: key.serialize_pem(),
            topic: topic.to_owned(),
        }
    }

    fn issue_server_certificate(&self) -> ServerIdentity {
        let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)
            .expect("pushgate-fakes: generating a server key failed");
        let mut params = CertificateParams::new(vec!["localhost".to_owned(), "127.0.0.1".to_owned()])
            .expect("pushgate-fakes: invalid server certificate names");
        params.distinguished_name = DistinguishedName::new();
        params.distinguished_name.push(DnType::CommonName, "localhost");
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        params.use_authority_key_identifier_extension = true;
        let certificate =
            params.signed_by(&key, &self.issuer).expect("pushgate-fakes: signing the server certificate failed");
        ServerIdentity { certificate: certificate.der().clone(), key_pkcs8: key.serialize_der() }
    }
}

/// The TLS identity every fake TLS server presents.
pub(crate) struct ServerIdentity {
    certificate: CertificateDer<'static>,
    key_pkcs8: Vec<u8>,
}

impl ServerIdentity {
    /// Leaf certificate (signed by [`server_ca`]).
    pub(crate) fn certificate(&self) -> CertificateDer<'static> {
        self.certificate.clone()
    }

    /// The leaf's private key.
    pub(crate) fn private_key(&self) -> PrivateKeyDer<'static> {
        PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(self.key_pkcs8.clone()))
    }
}

/// The CA that signs the fakes' TLS server certificates.
pub(crate) fn server_ca() -> &'static CertAuthority {
    static CA: OnceLock<CertAuthority> = OnceLock::new();
    CA.get_or_init(|| CertAuthority::new("pushgate-fakes server CA"))
}

/// The CA whose client certificates the fakes accept.
pub(crate) fn client_ca() -> &'static CertAuthority {
    static CA: OnceLock<CertAuthority> = OnceLock::new();
    CA.get_or_init(|| CertAuthority::new("pushgate-fakes APNs client CA"))
}

/// The server certificate and key shared by every fake TLS server.
pub(crate) fn server_identity() -> &'static ServerIdentity {
    static IDENTITY: OnceLock<ServerIdentity> = OnceLock::new();
    IDENTITY.get_or_init(|| server_ca().issue_server_certificate())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn apns_signing_keys_are_pkcs8_p256_pem() {
        let key = apns_signing_key("ABC123DEFG", "TEAM123456");
        assert!(key.private_key_pem.starts_with("-----BEGIN PRIVATE KEY-----"));
        assert!(key.public_key_pem.starts_with("-----BEGIN PUBLIC KEY-----"));
        assert_eq!(key.key_id, "ABC123DEFG");
        assert_eq!(key.team_id, "TEAM123456");
        jsonwebtoken::EncodingKey::from_ec_pem(key.private_key_pem.as_bytes()).expect("a .p8 key jsonwebtoken accepts");
    }

    #[test]
    fn a_p8_key_read_back_from_its_pem_is_the_same_key() {
        let key = apns_signing_key("ABC123DEFG", "TEAM123456");
        let read = apns_signing_key_from_pem("ABC123DEFG", "TEAM123456", &key.private_key_pem).expect("a P-256 key");
        assert_eq!(read.public_key_pem, key.public_key_pem);
        assert!(apns_signing_key_from_pem("A", "B", &p384_private_key_pem()).is_none(), "P-384 is not an APNs key");
        assert!(apns_signing_key_from_pem("A", "B", "not a key").is_none());
    }

    #[test]
    fn fcm_service_account_json_looks_like_googles() {
        let account = fcm_service_account("demo-project", "http://127.0.0.1:1/token");
        let json: serde_json::Value = serde_json::from_str(&account.to_json()).expect("valid JSON");
        assert_eq!(json["type"], "service_account");
        assert_eq!(json["project_id"], "demo-project");
        assert_eq!(json["client_email"], "pushgate-test@demo-project.iam.gserviceaccount.com");
        assert_eq!(json["token_uri"], "http://127.0.0.1:1/token");
        assert!(json["private_key"].as_str().is_some_and(|k| k.starts_with("-----BEGIN PRIVATE KEY-----")));
        jsonwebtoken::EncodingKey::from_rsa_pem(account.private_key_pem.as_bytes())
            .expect("an RSA key jsonwebtoken accepts");
    }

    #[test]
    fn client_certificates_are_pem_and_carry_their_topic() {
        let cert = apns_client_certificate("com.example.app");
        assert!(cert.certificate_pem.starts_with("-----BEGIN CERTIFICATE-----"));
        assert!(cert.private_key_pem.starts_with("-----BEGIN PRIVATE KEY-----"));
        assert_eq!(cert.topic, "com.example.app");
        assert!(cert.identity_pem().contains("-----BEGIN PRIVATE KEY-----"));
    }
}
