//! Which PostgreSQL settings take effect only after a restart: the `postmaster` context of
//! PostgreSQL 15, as `postgres --describe-config` lists it (regenerate with
//! `postgres --describe-config | awk -F'\t' '$2=="postmaster"{print $1}'`). Members report
//! the truth afterwards (`pending_restart`); this list lets edit-config say it before.

/// PostgreSQL 15's postmaster-context settings, sorted.
pub const RESTART_PARAMS_PG15: &[&str] = &[
    "archive_mode",
    "autovacuum_freeze_max_age",
    "autovacuum_max_workers",
    "autovacuum_multixact_freeze_max_age",
    "bonjour",
    "bonjour_name",
    "cluster_name",
    "data_directory",
    "data_sync_retry",
    "dynamic_shared_memory_type",
    "event_source",
    "external_pid_file",
    "hba_file",
    "hot_standby",
    "huge_page_size",
    "huge_pages",
    "ident_file",
    "jit_provider",
    "listen_addresses",
    "logging_collector",
    "max_connections",
    "max_files_per_process",
    "max_locks_per_transaction",
    "max_logical_replication_workers",
    "max_pred_locks_per_transaction",
    "max_prepared_transactions",
    "max_replication_slots",
    "max_wal_senders",
    "max_worker_processes",
    "min_dynamic_shared_memory",
    "old_snapshot_threshold",
    "port",
    "recovery_target",
    "recovery_target_action",
    "recovery_target_inclusive",
    "recovery_target_lsn",
    "recovery_target_name",
    "recovery_target_time",
    "recovery_target_timeline",
    "recovery_target_xid",
    "shared_buffers",
    "shared_memory_type",
    "shared_preload_libraries",
    "superuser_reserved_connections",
    "track_activity_query_size",
    "track_commit_timestamp",
    "unix_socket_directories",
    "unix_socket_group",
    "unix_socket_permissions",
    "wal_buffers",
    "wal_decode_buffer_size",
    "wal_level",
    "wal_log_hints",
];

/// `name` needs a PostgreSQL restart to change (PostgreSQL 15; names are case-insensitive).
pub fn needs_restart(name: &str) -> bool {
    let name = name.to_ascii_lowercase();
    RESTART_PARAMS_PG15.binary_search(&name.as_str()).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_list_is_sorted_and_knows_the_usual_ones() {
        assert!(RESTART_PARAMS_PG15.windows(2).all(|w| w[0] < w[1]));
        assert!(needs_restart("max_connections"));
        assert!(needs_restart("Shared_Buffers"));
        assert!(!needs_restart("work_mem"));
        assert!(!needs_restart("max_slot_wal_keep_size"));
    }
}
