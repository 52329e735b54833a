//! Passwords (Argon2id) and generated secrets.

use std::sync::OnceLock;

use argon2::Argon2;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use rand::Rng;

use crate::error::{EngineError, Result};

/// Longest password accepted, so hashing cost stays bounded.
pub(crate) const MAX_PASSWORD_LEN: usize = 1024;

pub(crate) fn hash_password(password: &str) -> Result<String> {
    validate_password(password)?;
    let salt = SaltString::encode_b64(&rand::rng().random::<[u8; 16]>())
        .map_err(|e| EngineError::Internal(format!("salt: {e}")))?;
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| EngineError::Internal(format!("password hashing failed: {e}")))
}

pub(crate) fn validate_password(password: &str) -> Result<()> {
    if password.is_empty() {
        return Err(EngineError::InvalidInput(
            "the password must not be empty".into(),
        ));
    }
    if password.len() > MAX_PASSWORD_LEN {
        return Err(EngineError::InvalidInput(format!(
            "the password is longer than {MAX_PASSWORD_LEN} bytes"
        )));
    }
    Ok(())
}

/// Verifies `password` against `hash`. With no hash (unknown user) it still
/// does the same work against a dummy hash, so timing does not reveal
/// which user names exist.
pub(crate) fn verify_password(password: &str, hash: Option<&str>) -> bool {
    static DUMMY: OnceLock<String> = OnceLock::new();
    let dummy = DUMMY.get_or_init(|| hash_password("not-a-real-password").unwrap_or_default());
    let (hash, real) = match hash {
        Some(h) => (h, true),
        None => (dummy.as_str(), false),
    };
    if password.len() > MAX_PASSWORD_LEN {
        return false;
    }
    let ok = PasswordHash::new(hash)
        .map(|parsed| {
            Argon2::default()
                .verify_password(password.as_bytes(), &parsed)
                .is_ok()
        })
        .unwrap_or(false);
    ok && real
}

/// A random alphanumeric string.
pub(crate) fn random_secret(len: usize) -> String {
    rand::rng()
        .sample_iter(rand::distr::Alphanumeric)
        .take(len)
        .map(char::from)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashes_verify_and_differ() {
        let a = hash_password("pw").unwrap();
        let b = hash_password("pw").unwrap();
        assert_ne!(a, b, "salted");
        assert!(a.starts_with("$argon2id$"));
        assert!(verify_password("pw", Some(&a)));
        assert!(!verify_password("PW", Some(&a)));
        assert!(!verify_password("not-a-real-password", None));
        assert!(hash_password("").is_err());
    }
}
