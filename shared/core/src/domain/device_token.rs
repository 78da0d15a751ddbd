//! Device tokens: what each provider's tokens look like. One check, applied at the edge (a send's
//! `to[i].token`, a device registration's `token`) and again by the APNs sender before a token
//! becomes part of a request URL (`/3/device/{token}`), so a token like `../../../admin?x=1` never
//! leaves pushgate.

use super::model::Provider;

/// Longest device token accepted (the contract's bound; FCM tokens are ~150–250 characters today).
pub const MAX_TOKEN_CHARS: usize = 4096;
/// Shortest APNs device token, in bytes (Apple's tokens are 32 bytes today; Apple says not to
/// hard-code the length).
pub const MIN_APN_TOKEN_BYTES: usize = 16;
/// Longest APNs device token, in bytes.
pub const MAX_APN_TOKEN_BYTES: usize = 100;

/// Why a device token is refused; the message says what is accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum InvalidToken {
    /// Not a token of any provider (checked when the provider itself is unknown).
    #[error("must be a non-empty string of at most {MAX_TOKEN_CHARS} characters")]
    Shape,
    /// Not an APNs device token.
    #[error(
        "must be an APNs device token: an even number of hex digits (0-9 a-f A-F), {} to {} of them \
         ({MIN_APN_TOKEN_BYTES} to {MAX_APN_TOKEN_BYTES} bytes)",
        2 * MIN_APN_TOKEN_BYTES,
        2 * MAX_APN_TOKEN_BYTES
    )]
    Apn,
    /// Not an FCM registration token.
    #[error("must be an FCM registration token: 1 to {MAX_TOKEN_CHARS} characters from A-Z a-z 0-9 _ - : .")]
    Fcm,
}

/// Checks `raw` as a token of `provider` (`None`: the provider is unknown, only the shape is
/// checked, so a request gets one error per problem).
pub fn parse_token(raw: &str, provider: Option<Provider>) -> Result<&str, InvalidToken> {
    match provider {
        Some(Provider::Apn) if is_apn_token(raw) => Ok(raw),
        Some(Provider::Apn) => Err(InvalidToken::Apn),
        Some(Provider::Fcm) if is_fcm_token(raw) => Ok(raw),
        Some(Provider::Fcm) => Err(InvalidToken::Fcm),
        None if raw.is_empty() || raw.chars().count() > MAX_TOKEN_CHARS => Err(InvalidToken::Shape),
        None => Ok(raw),
    }
}

/// An even number of hex digits, 16 to 100 bytes: safe as a URL path segment.
pub fn is_apn_token(token: &str) -> bool {
    (2 * MIN_APN_TOKEN_BYTES..=2 * MAX_APN_TOKEN_BYTES).contains(&token.len())
        && token.len().is_multiple_of(2)
        && token.bytes().all(|b| b.is_ascii_hexdigit())
}

/// 1 to 4,096 characters of FCM's token alphabet (base64url plus `:` and `.`).
pub fn is_fcm_token(token: &str) -> bool {
    (1..=MAX_TOKEN_CHARS).contains(&token.len())
        && token.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b':' | b'.'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn apns_tokens_are_16_to_100_bytes_of_hex() {
        for (token, ok) in [
            ("ab".repeat(16), true),
            ("AbCd".repeat(16), true),
            ("ab".repeat(100), true),
            ("ab".repeat(15), false),
            ("ab".repeat(101), false),
            (format!("{}a", "ab".repeat(32)), false),
            ("zz".repeat(32), false),
            ("../../../admin?x=1".to_owned(), false),
            (format!("{}%2F", "ab".repeat(32)), false),
            (String::new(), false),
        ] {
            assert_eq!(parse_token(&token, Some(Provider::Apn)).is_ok(), ok, "{token:?}");
        }
    }

    #[test]
    fn fcm_tokens_use_the_fcm_alphabet_and_at_most_4096_characters() {
        for (token, ok) in [
            ("dqWD7WEC83K41WHyufTS7:APA91bFc_x-y.z".to_owned(), true),
            ("x".repeat(4096), true),
            ("x".repeat(4097), false),
            (String::new(), false),
            ("a b".to_owned(), false),
            ("a/b".to_owned(), false),
            ("a?b".to_owned(), false),
            ("a\r\nb".to_owned(), false),
            ("é".to_owned(), false),
        ] {
            assert_eq!(parse_token(&token, Some(Provider::Fcm)).is_ok(), ok, "{token:?}");
        }
    }

    #[test]
    fn without_a_provider_only_the_shape_is_checked() {
        assert_eq!(parse_token("", None), Err(InvalidToken::Shape));
        assert_eq!(parse_token(&"x".repeat(4097), None), Err(InvalidToken::Shape));
        assert!(parse_token(&"é".repeat(4096), None).is_ok());
    }

    #[test]
    fn messages_say_what_is_accepted() {
        assert!(InvalidToken::Apn.to_string().contains("hex digits"), "{}", InvalidToken::Apn);
        assert!(InvalidToken::Apn.to_string().contains("32 to 200"), "{}", InvalidToken::Apn);
        assert!(InvalidToken::Fcm.to_string().contains("A-Z a-z 0-9 _ - : ."), "{}", InvalidToken::Fcm);
    }
}
