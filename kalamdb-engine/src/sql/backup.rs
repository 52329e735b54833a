//! `BACKUP DATABASE`, `RESTORE DATABASE`, `SHOW BACKUP`: checks, then a
//! job (the work is in `crate::backup`).

use kalamdb_model::JobKind;

use super::namespaces::{namespace_not_found, require_admin};
use super::result::StatementResult;
use crate::engine::Engine;
use crate::error::{EngineError, Result};
use crate::queue::BackupJob;
use crate::queue::BackupTarget;
use crate::session::Caller;

impl Engine {
    pub(crate) fn backup_database(
        &self,
        caller: &Caller,
        namespace: &str,
        target: BackupTarget,
    ) -> Result<StatementResult> {
        require_admin(caller, "BACKUP DATABASE")?;
        if self.stores.namespaces.get(namespace)?.is_none() {
            return Err(namespace_not_found(namespace));
        }
        self.check_backup_target(&target)?;
        let message = format!("backup of namespace {namespace} to {target}");
        let job = BackupJob {
            target,
            as_name: None,
        };
        let job_id = self.queue_backup_job(JobKind::Backup, namespace, job)?;
        Ok(StatementResult::job(
            &job_id,
            format!("{message} queued as job {job_id}; see system.jobs"),
        ))
    }

    pub(crate) fn restore_database(
        &self,
        caller: &Caller,
        namespace: &str,
        target: BackupTarget,
        as_name: Option<String>,
    ) -> Result<StatementResult> {
        require_admin(caller, "RESTORE DATABASE")?;
        self.check_backup_target(&target)?;
        let restored = as_name.as_deref().unwrap_or(namespace);
        if self.stores.namespaces.get(restored)?.is_some() {
            return Err(EngineError::InvalidInput(format!(
                "namespace {restored} already exists: restore AS another name, or DROP NAMESPACE {restored} CASCADE first"
            )));
        }
        let message = format!("restore of namespace {namespace} from {target} as {restored}");
        let job = BackupJob { target, as_name };
        let job_id = self.queue_backup_job(JobKind::Restore, namespace, job)?;
        Ok(StatementResult::job(
            &job_id,
            format!("{message} queued as job {job_id}; see system.jobs"),
        ))
    }

    pub(crate) async fn show_backup_statement(
        &self,
        caller: &Caller,
        target: BackupTarget,
    ) -> Result<StatementResult> {
        require_admin(caller, "SHOW BACKUP")?;
        let rows = self.show_backup(&target).await?;
        let mut result = StatementResult::rows(
            &[
                ("namespace", "TEXT"),
                ("table_name", "TEXT"),
                ("table_type", "TEXT"),
                ("schema_version", "INT"),
                ("partitions", "BIGINT"),
                ("rows", "BIGINT"),
                ("files", "BIGINT"),
                ("bytes", "BIGINT"),
                ("created_at", "TIMESTAMP"),
                ("format_version", "INT"),
                ("verified", "BOOLEAN"),
            ],
            rows,
        );
        result.message = Some(format!(
            "backup at {target}: every file matches its checksum"
        ));
        Ok(result)
    }
}
