//! The error a rejected bearer token raises inside poem, so the JSON error
//! mapper can tell it from other 401s and keep its message.

use poem::error::ResponseError;
use poem::http::StatusCode;

#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct AuthFailure(pub String);

impl ResponseError for AuthFailure {
    fn status(&self) -> StatusCode {
        StatusCode::UNAUTHORIZED
    }
}
