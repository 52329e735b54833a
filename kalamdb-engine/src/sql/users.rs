//! CREATE / ALTER / DROP USER. Passwords are stored as Argon2id hashes.
//!
//! Nobody grants a role above their own, a `dba` cannot change a `system`
//! user, and any user may change their own password and email.

use kalamdb_model::{Role, Timestamp, User};

use super::namespaces::require_admin;
use super::parser::UserChange;
use super::result::StatementResult;
use crate::auth;
use crate::engine::{Engine, ROOT_USER};
use crate::error::{EngineError, ObjectKind, Result};
use crate::session::Caller;

fn check_can_grant(caller: &Caller, role: Role) -> Result<()> {
    if role > caller.role {
        return Err(EngineError::PermissionDenied(format!(
            "user {} has role {} and cannot grant role {role}",
            caller.user_id, caller.role
        )));
    }
    Ok(())
}

fn check_can_manage(caller: &Caller, target: &User) -> Result<()> {
    if target.role > caller.role {
        return Err(EngineError::PermissionDenied(format!(
            "user {} has role {} and cannot change user {} with role {}",
            caller.user_id, caller.role, target.user_id, target.role
        )));
    }
    Ok(())
}

impl Engine {
    pub(crate) fn create_user(
        &self,
        caller: &Caller,
        username: &str,
        password: &str,
        role: Role,
        email: Option<String>,
        if_not_exists: bool,
    ) -> Result<StatementResult> {
        require_admin(caller, "CREATE USER")?;
        check_can_grant(caller, role)?;
        let _guard = self.ddl_lock.lock();
        if self.user_by_name(username)?.is_some() {
            if if_not_exists {
                return Ok(StatementResult::message(
                    0,
                    EngineError::already_exists(ObjectKind::User, username).to_string(),
                ));
            }
            return Err(EngineError::already_exists(ObjectKind::User, username));
        }
        let now = Timestamp::now();
        self.insert_user(&User {
            user_id: self.fresh_user_id(username)?,
            username: username.to_string(),
            password_hash: auth::hash_password(password)?,
            role,
            email,
            created_at: now,
            updated_at: now,
            deleted_at: None,
        })?;
        Ok(StatementResult::message(
            1,
            format!("user {username} created with role {role}"),
        ))
    }

    pub(crate) fn alter_user(
        &self,
        caller: &Caller,
        username: &str,
        change: UserChange,
    ) -> Result<StatementResult> {
        let _guard = self.ddl_lock.lock();
        let target = self.user_by_name(username)?;
        let is_self = target.as_ref().is_some_and(|u| u.user_id == caller.user_id);
        let self_service = is_self && !matches!(change, UserChange::Role(_));
        if !self_service {
            require_admin(caller, "ALTER USER")?;
        }
        let mut user = target.ok_or_else(|| user_not_found(username))?;
        // A new password or role ends the sessions opened under the old one.
        let revoke = !matches!(change, UserChange::Email(_));
        if !self_service {
            check_can_manage(caller, &user)?;
        }
        let what = match change {
            UserChange::Password(password) => {
                user.password_hash = auth::hash_password(&password)?;
                "password changed".to_string()
            }
            UserChange::Role(role) => {
                check_can_grant(caller, role)?;
                if username == ROOT_USER {
                    return Err(EngineError::InvalidInput(
                        "the role of root cannot be changed".into(),
                    ));
                }
                user.role = role;
                format!("role set to {role}")
            }
            UserChange::Email(email) => {
                user.email = email;
                "email changed".to_string()
            }
        };
        user.updated_at = Timestamp::now();
        self.stores.users.put(&user)?;
        if revoke {
            self.revoke_sessions(&user.user_id);
        }
        Ok(StatementResult::message(
            1,
            format!("user {username}: {what}"),
        ))
    }

    pub(crate) fn drop_user(
        &self,
        caller: &Caller,
        username: &str,
        if_exists: bool,
    ) -> Result<StatementResult> {
        require_admin(caller, "DROP USER")?;
        let _guard = self.ddl_lock.lock();
        let target = self.user_by_name(username)?;
        let is_self = target.as_ref().is_some_and(|u| u.user_id == caller.user_id);
        if username == ROOT_USER || is_self {
            return Err(EngineError::InvalidInput(format!(
                "user {username} cannot be dropped: it is {}",
                if username == ROOT_USER {
                    "the built-in administrator"
                } else {
                    "you"
                }
            )));
        }
        let Some(mut user) = target else {
            if if_exists {
                return Ok(StatementResult::message(
                    0,
                    EngineError::not_found(ObjectKind::User, username).to_string(),
                ));
            }
            return Err(user_not_found(username));
        };
        check_can_manage(caller, &user)?;
        let now = Timestamp::now();
        user.deleted_at = Some(now);
        user.updated_at = now;
        // The record keeps its id forever (ids are never reused); the login
        // name is free for a new account, which gets a new id.
        self.stores.storage.write(vec![
            self.stores.users.put_op(&user)?,
            self.forget_user_name_op(username),
        ])?;
        self.revoke_sessions(&user.user_id);
        Ok(StatementResult::message(
            1,
            format!("user {username} dropped"),
        ))
    }
}

fn user_not_found(username: &str) -> EngineError {
    EngineError::not_found(ObjectKind::User, username)
}
