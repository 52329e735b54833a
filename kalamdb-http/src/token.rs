//! HS256 access tokens. Only HS256 is accepted, so `alg: none` and
//! algorithm-confusion tokens fail validation.

use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use kalamdb_model::Role;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Claims {
    /// User id.
    pub sub: String,
    /// Role when the token was issued (the current role is read per request).
    pub role: Role,
    pub iat: u64,
    pub exp: u64,
}

pub struct TokenIssuer {
    encoding: EncodingKey,
    decoding: DecodingKey,
    validation: Validation,
    ttl_secs: u64,
}

impl TokenIssuer {
    pub fn new(secret: &str, ttl_secs: u64) -> Self {
        let mut validation = Validation::new(Algorithm::HS256);
        validation.leeway = 0;
        validation.set_required_spec_claims(&["exp", "sub"]);
        TokenIssuer {
            encoding: EncodingKey::from_secret(secret.as_bytes()),
            decoding: DecodingKey::from_secret(secret.as_bytes()),
            validation,
            ttl_secs,
        }
    }

    pub fn ttl_secs(&self) -> u64 {
        self.ttl_secs
    }

    /// A signed token for `user_id`.
    pub fn issue(&self, user_id: &str, role: Role) -> Result<String, jsonwebtoken::errors::Error> {
        let now = now_secs();
        let claims = Claims {
            sub: user_id.to_string(),
            role,
            iat: now,
            exp: now + self.ttl_secs,
        };
        jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &self.encoding)
    }

    /// The claims of a valid, unexpired token; a message naming the problem otherwise.
    pub fn verify(&self, token: &str) -> Result<Claims, String> {
        use jsonwebtoken::errors::ErrorKind;
        jsonwebtoken::decode::<Claims>(token, &self.decoding, &self.validation)
            .map(|data| data.claims)
            .map_err(|e| match e.kind() {
                ErrorKind::ExpiredSignature => "the token has expired; log in again".to_string(),
                ErrorKind::InvalidSignature => "the token signature is invalid".to_string(),
                ErrorKind::InvalidAlgorithm => "the token must be signed with HS256".to_string(),
                _ => format!("the token is invalid: {e}"),
            })
    }
}

fn now_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_rejections() {
        let issuer = TokenIssuer::new("0123456789abcdef0123", 60);
        let token = issuer.issue("alice", Role::User).unwrap();
        assert_eq!(issuer.verify(&token).unwrap().sub, "alice");

        let other = TokenIssuer::new("another-secret-0123456", 60);
        assert!(other.verify(&token).unwrap_err().contains("signature"));

        // alg: none
        let parts: Vec<&str> = token.split('.').collect();
        let none_header = "eyJhbGciOiJub25lIiwidHlwIjoiSldUIn0"; // {"alg":"none","typ":"JWT"}
        let forged = format!("{none_header}.{}.", parts[1]);
        assert!(issuer.verify(&forged).is_err());

        let expired = jsonwebtoken::encode(
            &Header::new(Algorithm::HS256),
            &Claims {
                sub: "a".into(),
                role: Role::User,
                iat: 0,
                exp: 1,
            },
            &EncodingKey::from_secret(b"0123456789abcdef0123"),
        )
        .unwrap();
        assert!(issuer.verify(&expired).unwrap_err().contains("expired"));
    }
}
