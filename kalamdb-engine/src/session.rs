//! Who is asking: the caller travels with each query inside DataFusion's
//! session config, so providers enforce visibility themselves and no SQL
//! can reach around them.

use std::sync::Arc;

use datafusion::catalog::Session;
use kalamdb_model::Role;

/// The authenticated user a statement runs for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    pub user_id: String,
    pub role: Role,
}

impl Caller {
    pub fn new(user_id: impl Into<String>, role: Role) -> Self {
        Caller {
            user_id: user_id.into(),
            role,
        }
    }

    /// The engine itself (bootstrap, internal statements).
    pub fn internal() -> Self {
        Caller::new("root", Role::System)
    }

    /// The caller attached to a DataFusion session. A session without one is
    /// treated as a `user` with no id, which sees nothing private.
    pub fn of_session(state: &dyn Session) -> Caller {
        state
            .config()
            .get_extension::<Caller>()
            .map(Arc::unwrap_or_clone)
            .unwrap_or_else(|| Caller::new("", Role::User))
    }
}
