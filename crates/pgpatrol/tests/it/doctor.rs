//! `pgpatrol doctor` against the live lab: every REST check OK on a healthy cluster, and each
//! failing under its real fault with the fix printed; the DCS stopped is said as such by
//! doctor, list and sli; the JSON carries the same facts as the table.

use serde_json::Value;

use crate::harness::{Lab, Test};
use crate::util::{code, one_line_error, stdout};

pub fn tests() -> Vec<Test> {
    tests![
        a_healthy_lab_passes_every_rest_check,
        lag_above_the_runbooks_thresholds_warns_then_goes_critical,
        etcd_stopped_is_dcs_unreachable_for_doctor_list_and_sli,
        doctor_thresholds_come_from_a_checks_section,
        archive_failing_is_seen_with_the_failing_segment,
        an_inactive_slot_holding_wal_is_named_with_its_fix,
        connections_above_80_percent_warn,
        replay_stopped_while_writing_is_lag_in_seconds,
        a_wrong_postgres_password_is_one_line_and_the_rest_checks_still_run,
        backups_on_a_real_pgbackrest_repository,
        the_pre_maintenance_checklist_fails_while_a_replica_lags,
        a_member_stuck_restarting_across_the_window_is_named,
        postgres_checks_over_tls_verify_the_server_when_asked,
        doctor_through_kubernetes_reads_the_same_cluster,
        sli_and_watch_give_lag_in_seconds_from_postgres,
        doctor_bad_input_is_one_line,
        a_report_bundles_every_part_and_no_secret,
    ]
}

fn doctor_json(lab: &Lab, extra: &[&str]) -> (i32, Value) {
    let mut args = vec!["doctor", "-o", "json", "--observe", "2s"];
    args.extend_from_slice(extra);
    let out = lab.pgpatrol(&args);
    let v: Value = serde_json::from_str(&stdout(&out))
        .unwrap_or_else(|e| panic!("doctor JSON: {e}: {}", stdout(&out)));
    (code(&out), v)
}

/// The check `id` of a doctor report.
pub(crate) fn check<'a>(report: &'a Value, id: &str) -> &'a Value {
    report["checks"]
        .as_array()
        .and_then(|c| c.iter().find(|c| c["id"] == id))
        .unwrap_or_else(|| panic!("no check {id} in {report:#}"))
}

/// A checks file that leaves the host's disk out of a test about the lab (the machine's own
/// disk may well be above 70 %); the disk check still runs and must show every member.
fn relaxed_disk(lab: &Lab) -> String {
    let dir = lab.dir().join("doctor-tests");
    std::fs::create_dir_all(&dir).expect("mkdir");
    let file = dir.join("disk.yml");
    std::fs::write(&file, "checks:\n  disk: {warn: 99%, crit: 100%}\n").expect("write");
    file.display().to_string()
}

fn a_healthy_lab_passes_every_rest_check(lab: &Lab) {
    let relaxed = relaxed_disk(lab);
    let (rc, report) = doctor_json(lab, &["--checks", &relaxed]);
    let disk = check(&report, "disk");
    for m in lab.members() {
        assert!(
            disk["evidence"].as_str().unwrap_or("").contains(&m),
            "{disk:#}"
        );
    }
    // PostgreSQL checks ran, with the superuser of -c patroni.yml (PATRONICTL_CONFIG_FILE).
    assert_eq!(check(&report, "postgres")["status"], "ok", "{report:#}");
    for c in report["checks"].as_array().expect("checks") {
        assert!(
            c["status"] == "ok" || c["status"] == "skipped",
            "{c:#} in {report:#}"
        );
    }
    assert_eq!(rc, 0, "{report:#}");
    assert_eq!(
        check(&report, "leader")["evidence"],
        format!("one leader: {}", lab.leader())
    );
    // The table says the same: one row per check, its status beside it.
    let table = stdout(&lab.pgpatrol(&["doctor", "--observe", "1s", "--checks", &relaxed]));
    for c in report["checks"].as_array().expect("checks") {
        let id = c["id"].as_str().expect("id");
        let row = table
            .lines()
            .find(|l| l.split('|').nth(1).is_some_and(|cell| cell.trim() == id))
            .unwrap_or_else(|| panic!("no row {id} in\n{table}"));
        let status = c["status"].as_str().expect("status").to_uppercase();
        assert!(row.contains(&format!(" {status} ")), "{row}");
    }
}

fn lag_above_the_runbooks_thresholds_warns_then_goes_critical(lab: &Lab) {
    let replica = lab.replica();
    lab.break_lag(&replica, 60);
    let (rc, report) = doctor_json(lab, &[]);
    let lag = check(&report, "lag_bytes");
    assert_eq!(lag["status"], "warn", "{lag:#}");
    assert!(
        lag["evidence"].as_str().unwrap_or("").contains(&replica),
        "{lag:#}"
    );
    assert!(
        lag["fix"].as_str().unwrap_or("").contains("pgpatrol heal"),
        "{lag:#}"
    );
    assert_eq!(rc, 1);
    lab.break_lag(&replica, 110);
    let (_, report) = doctor_json(lab, &[]);
    assert_eq!(check(&report, "lag_bytes")["status"], "crit", "{report:#}");
    // Beyond maximum_lag_on_failover the lagging replica is no candidate; the other one is.
    let cand = check(&report, "failover_candidate");
    assert_eq!(cand["status"], "ok", "{cand:#}");
    assert!(
        !cand["evidence"].as_str().unwrap_or("").contains(&replica),
        "{cand:#}"
    );
    lab.repair();
}

fn etcd_stopped_is_dcs_unreachable_for_doctor_list_and_sli(lab: &Lab) {
    crate::harness::ok("lab break dcs", &lab.lab(&["break", "dcs"]));
    let (rc, report) = doctor_json(lab, &[]);
    let dcs = check(&report, "dcs");
    assert_eq!(dcs["status"], "crit", "{report:#}");
    let evidence = dcs["evidence"].as_str().unwrap_or("");
    assert!(evidence.starts_with("the DCS is unreachable"), "{evidence}");
    // Each member by name (Patroni 3.2+ says its name in /patroni), else by its URL.
    for (m, url) in lab.members().iter().zip(lab.urls()) {
        assert!(
            evidence.contains(m.as_str()) || evidence.contains(&url),
            "{m} missing in {evidence}"
        );
    }
    assert!(dcs["fix"]
        .as_str()
        .unwrap_or("")
        .contains("DCS unreachable"));
    assert_eq!(rc, 1);
    for cmd in [&["list"][..], &["sli"][..]] {
        let out = lab.pgpatrol(cmd);
        one_line_error(&out, "the DCS is unreachable");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!err.contains("TLS"), "{cmd:?}: the wrong hint: {err}");
    }
    lab.repair();
}

fn doctor_thresholds_come_from_a_checks_section(lab: &Lab) {
    let dir = lab.dir().join("doctor-tests");
    std::fs::create_dir_all(&dir).expect("mkdir");
    let file = dir.join("checks.yml");
    // A watch config with a checks section: doctor reads only that section.
    std::fs::write(
        &file,
        "clusters:\n  - {name: lab, urls: [http://127.0.0.1:1]}\nchecks:\n  lag_bytes: {warn: 1kB, crit: 100MB}\n",
    )
    .expect("write");
    let replica = lab.replica();
    lab.break_lag(&replica, 2);
    let (rc, report) = doctor_json(lab, &["--checks", file.to_str().expect("path")]);
    assert_eq!(check(&report, "lag_bytes")["status"], "warn", "{report:#}");
    assert_eq!(rc, 1);
    lab.repair();
    std::fs::write(&file, "checks:\n  lag_bytes: {warn: lots}\n").expect("write");
    let out = lab.pgpatrol(&["doctor", "--checks", file.to_str().expect("path")]);
    one_line_error(&out, "checks.lag_bytes");
}

fn archive_failing_is_seen_with_the_failing_segment(lab: &Lab) {
    crate::harness::ok("lab break archive", &lab.lab(&["break", "archive"]));
    let (rc, report) = doctor_json(lab, &[]);
    let a = check(&report, "archive");
    assert!(a["status"] == "warn" || a["status"] == "crit", "{a:#}");
    assert!(
        a["evidence"]
            .as_str()
            .unwrap_or("")
            .contains("archive_command is failing"),
        "{a:#}"
    );
    assert!(
        a["fix"].as_str().unwrap_or("").contains("archive_command"),
        "{a:#}"
    );
    assert_eq!(rc, 1);
    lab.repair();
    // Failing means the last failure is newer than the last success: one success clears it.
    crate::util::wait_for(
        "archiving to succeed again",
        std::time::Duration::from_secs(30),
        || {
            lab.psql("INSERT INTO pgpatrol_lab_load SELECT 1, 'x'; SELECT pg_switch_wal()");
            let (_, r) = doctor_json(lab, &[]);
            (check(&r, "archive")["status"] == "ok").then_some(())
        },
    );
}

fn an_inactive_slot_holding_wal_is_named_with_its_fix(lab: &Lab) {
    crate::harness::ok("lab break slot", &lab.lab(&["break", "slot", "--mb", "64"]));
    let (rc, report) = doctor_json(lab, &[]);
    let s = check(&report, "slots");
    assert_eq!(s["status"], "warn", "{s:#}");
    let e = s["evidence"].as_str().unwrap_or("");
    assert!(
        e.contains("pgpatrol_abandoned") && e.contains("inactive"),
        "{e}"
    );
    assert!(
        e.contains("pg_drop_replication_slot('pgpatrol_abandoned')"),
        "{e}"
    );
    assert!(
        s["fix"]
            .as_str()
            .unwrap_or("")
            .contains("max_slot_wal_keep_size"),
        "{s:#}"
    );
    assert_eq!(rc, 1);
    lab.repair();
    let (_, report) = doctor_json(lab, &[]);
    assert_eq!(check(&report, "slots")["status"], "ok", "{report:#}");
}

fn connections_above_80_percent_warn(lab: &Lab) {
    crate::harness::ok(
        "lab break connections",
        &lab.lab(&["break", "connections", "--count", "82"]),
    );
    let (rc, report) = doctor_json(lab, &[]);
    let c = check(&report, "connections");
    assert_eq!(c["status"], "warn", "{c:#}");
    assert!(
        c["evidence"]
            .as_str()
            .unwrap_or("")
            .contains(&format!("{} 8", lab.leader())),
        "{c:#}"
    );
    assert_eq!(rc, 1);
    lab.repair();
}

fn replay_stopped_while_writing_is_lag_in_seconds(lab: &Lab) {
    let replica = lab.replica();
    lab.break_replay(&replica, 20);
    let lag = crate::util::wait_for(
        "replay lag above 30 s",
        std::time::Duration::from_secs(90),
        || {
            lab.psql("INSERT INTO pgpatrol_lab_load SELECT 1, 'x'");
            let (_, r) = doctor_json(lab, &[]);
            let c = check(&r, "lag_seconds").clone();
            (c["status"] == "warn" || c["status"] == "crit").then_some(c)
        },
    );
    assert!(
        lag["evidence"].as_str().unwrap_or("").contains(&replica),
        "{lag:#}"
    );
    lab.repair();
    // Caught up again: 0 s, even with the leader idle since.
    let (_, report) = doctor_json(lab, &[]);
    assert_eq!(check(&report, "lag_seconds")["status"], "ok", "{report:#}");
}

fn a_wrong_postgres_password_is_one_line_and_the_rest_checks_still_run(lab: &Lab) {
    let dir = lab.dir().join("doctor-tests");
    std::fs::create_dir_all(&dir).expect("mkdir");
    let pw = dir.join("wrong.password");
    std::fs::write(&pw, "not-the-password\n").expect("write");
    let (rc, report) = doctor_json(
        lab,
        &[
            "--pg-user",
            "postgres",
            "--pg-password-file",
            pw.to_str().expect("path"),
        ],
    );
    let p = check(&report, "postgres");
    assert_eq!(p["status"], "unknown", "{p:#}");
    let e = p["evidence"].as_str().unwrap_or("");
    assert!(e.contains("password authentication failed"), "{e}");
    assert!(!e.contains('\n'), "{e}");
    assert_eq!(
        check(&report, "leader")["status"],
        "ok",
        "the REST checks still ran"
    );
    assert_eq!(rc, 1);
}

/// Every member's archive_command back to the lab's own (`lab backup` points it at the
/// repository); restored when dropped, so later topics run on the lab as it was.
struct LabArchiving<'a>(&'a Lab);

impl Drop for LabArchiving<'_> {
    fn drop(&mut self) {
        for m in self.0.members() {
            for sql in [
                "ALTER SYSTEM RESET archive_command",
                "SELECT pg_reload_conf()",
            ] {
                let _ = self.0.lab(&["psql", "--member", &m, "-c", sql]);
            }
        }
    }
}

fn backups_on_a_real_pgbackrest_repository(lab: &Lab) {
    let _restore = LabArchiving(lab);
    crate::harness::ok("lab backup", &lab.lab(&["backup"]));
    let conf = lab.dir().join("pgbackrest/pgbackrest.conf");
    let conf = conf.to_str().expect("path");
    let br = |stanza: &str, extra: &[&str]| {
        let mut args = vec!["--pgbackrest-stanza", stanza, "--pgbackrest-config", conf];
        args.extend_from_slice(extra);
        doctor_json(lab, &args)
    };
    // A fresh full backup, and the leader's WAL archived into the repository.
    let (_, report) = br("lab", &[]);
    assert_eq!(check(&report, "backup")["status"], "ok", "{report:#}");
    assert!(check(&report, "backup")["evidence"]
        .as_str()
        .unwrap_or("")
        .contains("full"));
    assert_eq!(
        check(&report, "backup_archive")["status"],
        "ok",
        "{report:#}"
    );
    // The same backup, older than a low threshold.
    let dir = lab.dir().join("doctor-tests");
    std::fs::create_dir_all(&dir).expect("mkdir");
    let low = dir.join("backup-age.yml");
    std::fs::write(&low, "checks:\n  backup_age: 1s\n").expect("write");
    // The backup grows older than 1 s by itself: wait until doctor says so.
    let (rc, report) = crate::util::wait_for(
        "doctor to find the backup older than 1 s",
        std::time::Duration::from_secs(30),
        || {
            let (rc, report) = br("lab", &["--checks", low.to_str().expect("path")]);
            let s = check(&report, "backup")["status"].clone();
            (s == "warn" || s == "crit").then_some((rc, report))
        },
    );
    let b = check(&report, "backup");
    assert!(
        b["fix"]
            .as_str()
            .unwrap_or("")
            .contains("backup --type=full"),
        "{b:#}"
    );
    assert_eq!(rc, 1);
    // A stanza that does not exist.
    let (_, report) = br("nope", &[]);
    let b = check(&report, "backup");
    assert_eq!(b["status"], "crit", "{b:#}");
    assert!(
        b["evidence"]
            .as_str()
            .unwrap_or("")
            .contains("missing stanza path"),
        "{b:#}"
    );
    // No pgbackrest, and a pgbackrest that prints garbage: one line each, REST checks run.
    let garbage = dir.join("garbage-pgbackrest");
    std::fs::write(&garbage, "#!/bin/sh\necho 'not json {'\n").expect("write");
    std::fs::set_permissions(
        &garbage,
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .expect("chmod");
    for (bin, said) in [
        ("/nonexistent/pgbackrest", "not found"),
        (garbage.to_str().expect("path"), "not its JSON"),
    ] {
        let (rc, report) = br("lab", &["--pgbackrest-bin", bin]);
        let b = check(&report, "backup");
        assert_eq!(b["status"], "unknown", "{b:#}");
        let e = b["evidence"].as_str().unwrap_or("");
        assert!(e.contains(said) && !e.contains('\n'), "{e}");
        assert_eq!(check(&report, "leader")["status"], "ok");
        assert_eq!(rc, 1);
    }
}

fn the_pre_maintenance_checklist_fails_while_a_replica_lags(lab: &Lab) {
    let relaxed = relaxed_disk(lab);
    let list = |lab: &Lab| {
        let (rc, r) = doctor_json(lab, &["--pre-maintenance", "--checks", &relaxed]);
        (rc, r["checklist"].as_array().cloned().expect("checklist"))
    };
    let (rc, items) = list(lab);
    assert_eq!(rc, 0, "{items:#?}");
    assert_eq!(items[0]["item"], "Verify all replicas are healthy");
    assert_eq!(items[0]["status"], "ok");
    assert_eq!(items[1]["status"], "ok", "lag below 10 s: {items:#?}");
    let replica = lab.replica();
    lab.break_lag(&replica, 60);
    let (rc, items) = list(lab);
    assert_eq!(rc, 1, "{items:#?}");
    assert!(
        items[0]["status"] == "warn" || items[0]["status"] == "crit",
        "{items:#?}"
    );
    assert!(items[0]["evidence"]
        .as_str()
        .unwrap_or("")
        .contains(&replica));
    // The table shows the same list, with the steps for a person marked as such.
    let table = stdout(&lab.pgpatrol(&["doctor", "--pre-maintenance", "--observe", "1s"]));
    assert!(
        table.contains("Verify all replicas are healthy") && table.contains("MANUAL"),
        "{table}"
    );
    lab.repair();
}

fn sli_and_watch_give_lag_in_seconds_from_postgres(lab: &Lab) {
    // Caught up on an idle leader: 0 s, not the age of the last transaction (which only
    // grows here). Read until caught up: a record the leader writes without a commit (a
    // checkpoint, a running-xacts record) leaves a replica behind for a moment, and in that
    // moment the figure is the last commit's age (see GUIDE, lag in seconds).
    let mut said = Vec::new();
    crate::util::wait_for(
        "sli --lag-seconds to say 0.0",
        std::time::Duration::from_secs(30),
        || {
            let out = lab.pgpatrol(&["sli", "--lag-seconds"]);
            assert_eq!(code(&out), 0, "{}", crate::harness::stderr(&out));
            said.push(stdout(&out).trim().to_owned());
            (said.last().map(String::as_str) == Some("0.0")).then_some(())
        },
    );
    assert!(said.len() <= 3, "caught up, yet {said:?}");
    // Without a login: one line saying what to give.
    let out = lab.pgpatrol(&["sli", "--lag-seconds", "-c", "/dev/null"]);
    assert_eq!(code(&out), 2, "{}", crate::harness::stderr(&out));
    // watch with postgres: exports the same measurement per member.
    let dir = lab.dir().join("doctor-tests");
    std::fs::create_dir_all(&dir).expect("mkdir");
    let pw = crate::util::superuser_password_file(lab, &dir);
    let port = crate::watch::free_port();
    let cfg = dir.join("watch-pg.yml");
    std::fs::write(
        &cfg,
        format!(
            "listen: 127.0.0.1:{port}\ninterval: 1s\nclusters:\n  - name: lab\n    urls: [{}]\n    postgres: {{user: postgres, password_file: {}}}\n",
            lab.urls().join(", "),
            pw.display()
        ),
    )
    .expect("write");
    let _w = crate::watch::start_watch(&dir, &cfg, port);
    let replica = lab.replica();
    crate::util::wait_for(
        "pgpatrol_member_lag_seconds 0",
        std::time::Duration::from_secs(30),
        || {
            crate::watch::sample(
                &crate::watch::metrics(port),
                &format!("pgpatrol_member_lag_seconds{{cluster=\"lab\",member=\"{replica}\"}}"),
            )
            .filter(|&secs| secs == 0.0)
        },
    );
}

fn a_member_stuck_restarting_across_the_window_is_named(lab: &Lab) {
    let replica = lab.replica();
    crate::harness::ok(
        "lab break stuck",
        &lab.lab(&["break", "stuck", "--member", &replica]),
    );
    let (rc, report) = doctor_json(lab, &[]);
    let t = check(&report, "transitional");
    assert_eq!(t["status"], "warn", "{t:#}");
    let e = t["evidence"].as_str().unwrap_or("");
    assert!(e.contains(&replica) && e.contains("every one of"), "{e}");
    assert!(t["fix"].as_str().unwrap_or("").contains("reinit"), "{t:#}");
    assert_eq!(rc, 1);
    lab.repair();
}

fn openssl(dir: &std::path::Path, args: &[&str]) {
    let out = std::process::Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("openssl");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        crate::harness::stderr(&out)
    );
}

/// Every member's PostgreSQL with ssl on (a certificate for 127.0.0.1 signed by a test CA);
/// turned off again when dropped.
struct PgSsl<'a>(&'a Lab);

impl<'a> PgSsl<'a> {
    fn on(lab: &'a Lab, dir: &std::path::Path) -> Self {
        openssl(
            dir,
            &[
                "req",
                "-x509",
                "-newkey",
                "rsa:2048",
                "-nodes",
                "-keyout",
                "ca.key",
                "-out",
                "ca.pem",
                "-days",
                "2",
                "-subj",
                "/CN=pgpatrol test CA",
            ],
        );
        openssl(
            dir,
            &[
                "req",
                "-x509",
                "-newkey",
                "rsa:2048",
                "-nodes",
                "-keyout",
                "other.key",
                "-out",
                "other-ca.pem",
                "-days",
                "2",
                "-subj",
                "/CN=another CA",
            ],
        );
        openssl(
            dir,
            &[
                "req",
                "-newkey",
                "rsa:2048",
                "-nodes",
                "-keyout",
                "server.key",
                "-out",
                "server.csr",
                "-subj",
                "/CN=127.0.0.1",
            ],
        );
        std::fs::write(dir.join("san.ext"), "subjectAltName=IP:127.0.0.1\n").expect("write");
        openssl(
            dir,
            &[
                "x509",
                "-req",
                "-in",
                "server.csr",
                "-CA",
                "ca.pem",
                "-CAkey",
                "ca.key",
                "-CAcreateserial",
                "-out",
                "server.pem",
                "-days",
                "2",
                "-extfile",
                "san.ext",
            ],
        );
        let pg = nix::unistd::User::from_name("postgres")
            .ok()
            .flatten()
            .expect("the postgres user");
        for f in ["server.pem", "server.key"] {
            std::os::unix::fs::chown(dir.join(f), Some(pg.uid.as_raw()), Some(pg.gid.as_raw()))
                .expect("chown");
        }
        std::fs::set_permissions(
            dir.join("server.key"),
            std::os::unix::fs::PermissionsExt::from_mode(0o600),
        )
        .expect("chmod");
        for m in lab.members() {
            for sql in [
                format!(
                    "ALTER SYSTEM SET ssl_cert_file = '{}'",
                    dir.join("server.pem").display()
                ),
                format!(
                    "ALTER SYSTEM SET ssl_key_file = '{}'",
                    dir.join("server.key").display()
                ),
                "ALTER SYSTEM SET ssl = on".to_string(),
                "SELECT pg_reload_conf()".to_string(),
            ] {
                crate::harness::ok("lab psql", &lab.lab(&["psql", "--member", &m, "-c", &sql]));
            }
        }
        wait_ssl(lab, "on");
        PgSsl(lab)
    }
}

/// Waits until every member's PostgreSQL reports `ssl` as `want` (a reload is asynchronous).
fn wait_ssl(lab: &Lab, want: &str) {
    for m in lab.members() {
        crate::util::eventually(
            &format!("ssl = {want} on {m}"),
            std::time::Duration::from_secs(20),
            || {
                crate::util::stdout(&lab.lab(&["psql", "--member", &m, "-c", "SHOW ssl"]))
                    .lines()
                    .any(|l| l.trim() == want)
            },
        );
    }
}

impl Drop for PgSsl<'_> {
    fn drop(&mut self) {
        for m in self.0.members() {
            for sql in [
                "ALTER SYSTEM RESET ssl",
                "ALTER SYSTEM RESET ssl_cert_file",
                "ALTER SYSTEM RESET ssl_key_file",
                "SELECT pg_reload_conf()",
            ] {
                let _ = self.0.lab(&["psql", "--member", &m, "-c", sql]);
            }
        }
    }
}

fn postgres_checks_over_tls_verify_the_server_when_asked(lab: &Lab) {
    let dir = lab.dir().join("doctor-tests/tls");
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("mkdir");
    std::fs::set_permissions(&dir, std::os::unix::fs::PermissionsExt::from_mode(0o755))
        .expect("chmod");
    let ca = dir.join("ca.pem").display().to_string();
    let other = dir.join("other-ca.pem").display().to_string();
    {
        let _ssl = PgSsl::on(lab, &dir);
        let postgres = |args: &[&str]| {
            let (_, r) = doctor_json(lab, args);
            check(&r, "postgres").clone()
        };
        let ok = postgres(&["--pg-sslmode", "verify-full", "--pg-sslrootcert", &ca]);
        assert_eq!(ok["status"], "ok", "verified against the right CA: {ok:#}");
        let bad = postgres(&["--pg-sslmode", "verify-full", "--pg-sslrootcert", &other]);
        assert_eq!(bad["status"], "unknown", "{bad:#}");
        let e = bad["evidence"].as_str().unwrap_or("");
        assert!(
            e.contains("certificate") || e.contains("UnknownIssuer"),
            "{e}"
        );
        assert_eq!(postgres(&["--pg-sslmode", "require"])["status"], "ok");
    }
    // ssl off again: require really requires TLS; prefer falls back; verify-full without a
    // CA is one line before anything is sent.
    wait_ssl(lab, "off");
    let (_, r) = doctor_json(lab, &["--pg-sslmode", "require"]);
    let p = check(&r, "postgres");
    assert_eq!(p["status"], "unknown", "{p:#}");
    let (_, r) = doctor_json(lab, &[]);
    assert_eq!(check(&r, "postgres")["status"], "ok");
    let out = lab.pgpatrol(&["doctor", "--pg-sslmode", "verify-full"]);
    one_line_error(&out, "--pg-sslrootcert");
}

/// The REST checks through the Kubernetes source (the API server fixture in front of the
/// lab): the same verdicts as by --url; the PostgreSQL checks, with no login given, skipped.
fn doctor_through_kubernetes_reads_the_same_cluster(lab: &Lab) {
    const IDS: [&str; 7] = [
        "dcs",
        "leader",
        "timeline",
        "replication",
        "lag_bytes",
        "failover_candidate",
        "version_skew",
    ];
    let all_ok = |r: &Value| IDS.iter().all(|id| check(r, id)["status"] == "ok");
    // The lab this test gets can still be settling from the test before it (a replica
    // publishes a new leader's timeline at its next Patroni loop): by --url first, until
    // these checks are ok, so what follows compares two readings of a settled cluster.
    crate::util::eventually(
        "doctor --url to find the lab settled",
        std::time::Duration::from_secs(60),
        || all_ok(&doctor_json(lab, &[]).1),
    );
    let fx = crate::k8s::fixture(lab);
    let ((rc, via), (_, by_url)) = crate::util::until_agree(
        "doctor through Kubernetes and by --url",
        |_| {
            let out =
                crate::k8s::seeded(lab, &fx, &["doctor", "-o", "json", "--observe", "1s"], &[]);
            let via: Value = serde_json::from_str(&stdout(&out)).unwrap_or_else(|e| {
                panic!("doctor JSON via k8s: {e}: {}", crate::harness::stderr(&out))
            });
            ((code(&out), via), doctor_json(lab, &[]))
        },
        |(_, via), (_, by_url)| {
            IDS.iter()
                .all(|id| check(via, id)["status"] == check(by_url, id)["status"])
        },
    );
    for id in IDS {
        assert_eq!(
            check(&via, id)["status"],
            "ok",
            "{id}: {via:#}\nby --url: {by_url:#}"
        );
    }
    assert_eq!(check(&via, "lag_seconds")["status"], "skipped");
    // The exit code follows the verdicts (a lab that failed over earlier in the run warns
    // about failovers in 24 h).
    let problem = via["status"] != "ok";
    assert_eq!(rc, i32::from(problem), "{via:#}");
}

fn doctor_bad_input_is_one_line(lab: &Lab) {
    let port = crate::watch::free_port();
    let out = lab.pgpatrol(&["doctor", "--url", &format!("http://127.0.0.1:{port}")]);
    one_line_error(&out, &format!("127.0.0.1:{port}"));
}

/// `pgpatrol report` on the lab with pgBackRest: every part is in the archive and named in
/// README.txt, MISSING.txt is empty, and no secret is in any file — neither the lab's own
/// passwords nor the ones planted in the dynamic configuration (a conninfo password, a
/// URL's, a token), which `--no-redact` keeps (so the redaction is what hides them). With a
/// wrong PostgreSQL password it still writes the archive and says what it missed.
fn a_report_bundles_every_part_and_no_secret(lab: &Lab) {
    // The lab is shared: its archive_command goes back when the test ends (a later leader
    // change would make pgBackRest's archive-push fail and keep WAL another test needs gone).
    let _restore = LabArchiving(lab);
    crate::harness::ok("lab backup", &lab.lab(&["backup"]));
    struct Unplant<'a>(&'a Lab);
    impl Drop for Unplant<'_> {
        fn drop(&mut self) {
            let _ = self
                .0
                .pgpatrol(&["edit-config", "--set", "support_test=null", "--yes"]);
        }
    }
    let _unplant = Unplant(lab);
    crate::harness::ok(
        "edit-config",
        &lab.pgpatrol(&[
            "edit-config",
            "--set",
            "support_test.conninfo=host=db1 password=s3cr3tA",
            "--set",
            "support_test.url=https://u:s3cr3tB@backup.example/",
            "--set",
            "support_test.api_token=s3cr3tC",
            "--yes",
        ]),
    );
    let conf = lab.dir().join("pgbackrest/pgbackrest.conf");
    let conf = conf.to_string_lossy().into_owned();
    let report = |dir: &str, extra: &[&str]| -> std::path::PathBuf {
        let out_dir = crate::harness::test_tmp().join(dir);
        let _ = std::fs::remove_dir_all(&out_dir);
        let o = out_dir.to_string_lossy().into_owned();
        let mut args = vec![
            "report",
            "--pgbackrest-stanza",
            "lab",
            "--pgbackrest-config",
            &conf,
            "-o",
            &o,
        ];
        args.extend_from_slice(extra);
        let out = lab.pgpatrol(&args);
        assert_eq!(code(&out), 0, "{}", crate::harness::stderr(&out));
        let archive = stdout(&out).trim().to_string();
        assert!(archive.ends_with(".tar.gz"), "{archive}");
        crate::harness::ok(
            "tar",
            &std::process::Command::new("tar")
                .args(["-xzf", &archive, "-C", &o])
                .output()
                .expect("tar"),
        );
        out_dir.join(
            std::path::Path::new(&archive)
                .file_name()
                .unwrap()
                .to_string_lossy()
                .trim_end_matches(".tar.gz"),
        )
    };
    let read = |top: &std::path::Path, name: &str| {
        std::fs::read_to_string(top.join(name)).unwrap_or_else(|e| panic!("{name}: {e}"))
    };
    let top = report("report", &[]);
    let mut expected: Vec<String> = [
        "README.txt",
        "patroni/cluster.json",
        "patroni/history.json",
        "patroni/config.json",
        "pgpatrol/list.txt",
        "pgpatrol/list.json",
        "pgpatrol/topology.txt",
        "pgpatrol/doctor.json",
        "dcs/keys.json",
        "pgbackrest/info.json",
        "logs/etcd.log",
    ]
    .iter()
    .map(|s| (*s).to_string())
    .collect();
    for m in lab.members() {
        for f in ["patroni.json", "metrics.txt"] {
            expected.push(format!("members/{m}/{f}"));
        }
        for f in [
            "settings",
            "stat_replication",
            "replication_slots",
            "stat_archiver",
            "sizes",
        ] {
            expected.push(format!("postgres/{m}/{f}.json"));
        }
        expected.push(format!("logs/{m}.log"));
    }
    let readme = read(&top, "README.txt");
    for f in &expected {
        assert!(!read(&top, f).trim().is_empty(), "{f} is empty");
        assert!(
            readme.contains(&format!("  {f}: ")),
            "{f} not in README.txt"
        );
    }
    assert_eq!(read(&top, "MISSING.txt"), "", "nothing missing");
    assert!(read(&top, "pgbackrest/info.json").contains("\"name\": \"lab\""));
    assert!(read(&top, "pgpatrol/doctor.json").contains("\"checks\""));
    // No secret anywhere: the planted ones and the lab's (REST API, superuser, replication).
    let yml = std::fs::read_to_string(lab.dir().join("config/pg0.yml")).expect("pg0.yml");
    let mut secrets: Vec<String> = yml
        .lines()
        .filter_map(|l| l.trim().strip_prefix("password: "))
        .map(|p| p.trim_matches(|c| c == '\'' || c == '"').to_string())
        .collect();
    assert!(secrets.len() >= 3, "the lab's passwords: {secrets:?}");
    secrets.extend(["s3cr3tA", "s3cr3tB", "s3cr3tC"].map(String::from));
    let all_text = |top: &std::path::Path| {
        let mut all = String::new();
        for f in expected
            .iter()
            .chain(std::iter::once(&"MISSING.txt".to_string()))
        {
            all.push_str(&read(top, f));
        }
        all
    };
    let text = all_text(&top);
    for s in &secrets {
        assert!(!text.contains(s.as_str()), "{s} is in the archive");
    }
    let config = read(&top, "patroni/config.json");
    assert!(
        config.contains("password=***") && config.contains("https://u:***@backup.example/"),
        "{config}"
    );
    // --no-redact keeps them: the redaction is what hid them.
    let raw = report("report-raw", &["--no-redact"]);
    let text = all_text(&raw);
    for s in ["s3cr3tA", "s3cr3tB", "s3cr3tC"] {
        assert!(text.contains(s), "--no-redact keeps {s}");
    }

    // A wrong PostgreSQL password: the archive is written, the PostgreSQL part is missing.
    let bad = crate::harness::test_tmp().join("wrong.password");
    std::fs::write(&bad, "wrong\n").expect("write");
    let b = bad.to_string_lossy().into_owned();
    let top = report(
        "report-bad",
        &["--pg-user", "postgres", "--pg-password-file", &b],
    );
    let missing = read(&top, "MISSING.txt");
    for m in lab.members() {
        assert!(
            missing.contains(&format!("postgres/{m}/*: ")),
            "{m} not in MISSING.txt: {missing}"
        );
    }
    assert!(
        missing.contains("password authentication failed"),
        "{missing}"
    );
    assert!(!read(&top, "patroni/cluster.json").trim().is_empty());
}
