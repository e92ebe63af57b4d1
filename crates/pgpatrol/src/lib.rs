//! pgpatrol: keeps Patroni clusters healthy. This crate holds everything that touches the
//! world — sources (REST, Kubernetes, DCS), the executor, the CLI, outputs and the lab —
//! around the pure `pgpatrol-core`.

pub mod audit;
pub mod cli;
pub mod doctor;
pub mod executor;
/// The fuzz targets: built for the unit tests and for `fuzz/` (feature `fuzzing`), never
/// into the shipped binary.
#[cfg(any(test, feature = "fuzzing"))]
#[doc(hidden)]
pub mod fuzz;
pub mod lab;
pub mod ops;
pub mod output;
pub mod poll;
pub mod progress;
pub mod redact;
pub mod source;
pub mod supervise;
pub mod text;
pub mod time;
pub mod watch;
pub mod yaml;

#[cfg(test)]
pub(crate) mod test_support {
    //! Helpers for unit tests: Patroni's real responses, captured from live clusters and kept
    //! in `crates/pgpatrol/tests/fixtures/captures/` (see its README).

    /// A capture by file name.
    pub fn capture(name: &str) -> String {
        let path = format!(
            "{}/tests/fixtures/captures/{name}",
            env!("CARGO_MANIFEST_DIR")
        );
        std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
    }

    /// The versions with a folder of captures (`captures/<version>/`, made by
    /// scripts/capture-patroni), oldest first.
    pub fn captured_versions() -> Vec<String> {
        let dir = format!("{}/tests/fixtures/captures", env!("CARGO_MANIFEST_DIR"));
        let mut found: Vec<(pgpatrol_core::PatroniVersion, String)> = std::fs::read_dir(&dir)
            .unwrap_or_else(|e| panic!("{dir}: {e}"))
            .filter_map(|e| {
                let name = e.ok()?.file_name().into_string().ok()?;
                Some((pgpatrol_core::PatroniVersion::parse(&name)?, name))
            })
            .collect();
        found.sort();
        found.into_iter().map(|(_, name)| name).collect()
    }
}

#[cfg(test)]
mod layering {
    //! The layers of docs/ARCHITECTURE.md, checked on the source: each module family may
    //! import only what is below it. A `use crate::X` (or a `crate::X::` path) that goes up
    //! fails here, naming the file and the line.

    use std::path::Path;

    /// (module file or folder under src/, the `crate::` modules it must not name).
    const RULES: &[(&str, &[&str])] = &[
        (
            "text.rs",
            &[
                "source", "ops", "executor", "watch", "cli", "lab", "output", "audit", "doctor",
            ],
        ),
        (
            "time.rs",
            &[
                "source", "ops", "executor", "watch", "cli", "lab", "output", "audit", "doctor",
            ],
        ),
        (
            "yaml.rs",
            &[
                "source", "ops", "executor", "watch", "cli", "lab", "output", "audit", "doctor",
            ],
        ),
        (
            "progress.rs",
            &[
                "source", "ops", "executor", "watch", "cli", "lab", "output", "audit", "doctor",
            ],
        ),
        (
            "redact.rs",
            &[
                "source", "ops", "executor", "watch", "cli", "lab", "output", "audit", "doctor",
            ],
        ),
        (
            "poll.rs",
            &[
                "source", "ops", "executor", "watch", "cli", "lab", "output", "audit", "doctor",
            ],
        ),
        (
            "source",
            &["ops", "executor", "watch", "cli", "lab", "output", "audit"],
        ),
        (
            "audit.rs",
            &["ops", "executor", "watch", "cli", "lab", "output"],
        ),
        ("executor", &["ops", "watch", "cli", "lab"]),
        ("ops", &["executor", "watch", "cli", "lab"]),
        ("output", &["cli", "watch", "lab"]),
        ("watch", &["cli", "lab"]),
        ("lab", &["cli", "watch"]),
    ];

    fn files(p: &Path, out: &mut Vec<std::path::PathBuf>) {
        if p.is_dir() {
            for e in std::fs::read_dir(p).expect("read_dir").flatten() {
                files(&e.path(), out);
            }
        } else if p.extension().is_some_and(|e| e == "rs") {
            out.push(p.to_path_buf());
        }
    }

    /// A source file's text with its comment lines blanked (lines kept, so a `use
    /// super::{...}` group spanning several stays whole).
    fn code(path: &Path) -> String {
        let text =
            std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        text.lines()
            .map(|l| {
                if l.trim_start().starts_with("//") {
                    ""
                } else {
                    l
                }
            })
            .collect::<Vec<_>>()
            .join("\n")
    }

    #[test]
    fn no_module_imports_a_layer_above_it() {
        let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
        let mut broken = Vec::new();
        for (module, forbidden) in RULES {
            let mut fs = Vec::new();
            files(&src.join(module), &mut fs);
            assert!(!fs.is_empty(), "no source for {module}");
            for f in fs {
                let text = std::fs::read_to_string(&f).expect("read");
                for (n, line) in text.lines().enumerate() {
                    let code = line.trim_start();
                    if code.starts_with("//") {
                        continue;
                    }
                    for up in *forbidden {
                        if code.contains(&format!("crate::{up}::"))
                            || code.contains(&format!("crate::{up};"))
                            || code.contains(&format!("crate::{up}::{{"))
                        {
                            broken.push(format!(
                                "{}:{}: {module} names crate::{up}",
                                f.strip_prefix(&src).unwrap_or(&f).display(),
                                n + 1
                            ));
                        }
                    }
                }
            }
        }
        assert!(broken.is_empty(), "layers broken:\n{}", broken.join("\n"));
    }

    /// (file under src/lab/, the sibling modules it must not name as `super::X` or
    /// `crate::lab::X`): os ← cluster ← down ← up, and faults above them all, so no two lab
    /// files import each other.
    const LAB_RULES: &[(&str, &[&str])] = &[
        (
            "os.rs",
            &["net", "config", "cluster", "up", "down", "faults", "backup"],
        ),
        (
            "net.rs",
            &["config", "cluster", "up", "down", "faults", "backup"],
        ),
        (
            "config.rs",
            &["net", "cluster", "up", "down", "faults", "backup"],
        ),
        ("cluster.rs", &["up", "down", "faults", "backup"]),
        ("down.rs", &["up", "faults", "backup"]),
        ("up.rs", &["faults", "backup"]),
        ("faults.rs", &["backup"]),
        ("backup.rs", &["up", "down", "faults"]),
    ];

    /// The modules a source names through `prefix` (`super::`): `super::a::b`, `super::a;`
    /// and every item of a group, `super::{a, b::c, self}`, also across lines.
    fn named_after(code: &str, prefix: &str) -> Vec<String> {
        let first = |path: &str| -> String {
            path.trim()
                .chars()
                .take_while(|c| c.is_alphanumeric() || *c == '_')
                .collect()
        };
        let mut names = Vec::new();
        for (at, _) in code.match_indices(prefix) {
            let rest = &code[at + prefix.len()..];
            let Some(group) = rest.strip_prefix('{') else {
                names.push(first(rest));
                continue;
            };
            // The group up to its closing brace; items split at commas outside inner braces.
            let mut depth = 0;
            let mut item = String::new();
            for c in group.chars() {
                match c {
                    '{' => depth += 1,
                    '}' if depth == 0 => break,
                    '}' => depth -= 1,
                    ',' if depth == 0 => {
                        names.push(first(&item));
                        item.clear();
                        continue;
                    }
                    _ => {}
                }
                item.push(c);
            }
            names.push(first(&item));
        }
        names.retain(|n| !n.is_empty());
        names
    }

    #[test]
    fn no_lab_file_imports_one_above_it() {
        let lab = Path::new(env!("CARGO_MANIFEST_DIR")).join("src/lab");
        let mut broken = Vec::new();
        for (file, forbidden) in LAB_RULES {
            let code = code(&lab.join(file));
            for prefix in ["super::", "crate::lab::"] {
                for name in named_after(&code, prefix) {
                    if forbidden.contains(&name.as_str()) {
                        broken.push(format!("lab/{file} names {prefix}{name}"));
                    }
                }
            }
        }
        assert!(
            broken.is_empty(),
            "lab layers broken:\n{}",
            broken.join("\n")
        );
    }

    #[test]
    fn named_after_reads_paths_and_groups() {
        let code = "use super::os::{alive, RunAs};\nuse super::{\n    config, cluster::{leader, psql},\n    LabPaths,\n};\nlet x = super::up::up(o);";
        assert_eq!(
            named_after(code, "super::"),
            ["os", "config", "cluster", "LabPaths", "up"]
        );
    }

    /// Inside `source/`: (module, the sibling modules it must not name). `http` is the leaf,
    /// `wire` decodes above it, `rest`, `dcs` and `k8s` build on both and never on each other;
    /// `pg` (PostgreSQL) stands alone; only `cluster` (and `target`, which builds it) put
    /// them together.
    const SOURCE_RULES: &[(&str, &[&str])] = &[
        (
            "http",
            &[
                "wire", "rest", "dcs", "k8s", "pg", "cluster", "target", "kept", "standby",
            ],
        ),
        (
            "wire",
            &[
                "rest", "dcs", "k8s", "pg", "cluster", "target", "kept", "standby",
            ],
        ),
        (
            "rest",
            &["dcs", "k8s", "pg", "cluster", "target", "kept", "standby"],
        ),
        (
            "dcs",
            &["rest", "k8s", "pg", "cluster", "target", "kept", "standby"],
        ),
        (
            "k8s",
            &["rest", "dcs", "pg", "cluster", "target", "kept", "standby"],
        ),
        (
            "pg",
            &[
                "http", "wire", "rest", "dcs", "k8s", "cluster", "target", "kept", "standby",
            ],
        ),
    ];

    /// The `source` siblings `code` in `file` names: through `crate::source::`, or through as
    /// many `super::` as reach `source` from where the file sits (`source/x/mod.rs` is
    /// `source::x`: one; `source/x/y.rs` is `source::x::y`: two), groups included.
    fn source_siblings_named(file: &Path, source: &Path, code: &str) -> Vec<String> {
        let rel = file.strip_prefix(source).expect("under source");
        let depth = match rel.components().count() {
            1 => 0,
            n if rel.file_name().is_some_and(|f| f == "mod.rs") => n - 1,
            n => n,
        };
        let mut prefixes = vec!["crate::source::".to_string()];
        if depth > 0 {
            prefixes.push("super::".repeat(depth));
        }
        let mut named: Vec<String> = prefixes.iter().flat_map(|p| named_after(code, p)).collect();
        // `super::super::x` read with the one-`super::` prefix: not a sibling.
        named.retain(|n| n != "super");
        named
    }

    #[test]
    fn source_modules_do_not_import_their_siblings() {
        let source = Path::new(env!("CARGO_MANIFEST_DIR")).join("src/source");
        let mut broken = Vec::new();
        for (module, forbidden) in SOURCE_RULES {
            let mut fs = Vec::new();
            files(&source.join(module), &mut fs);
            assert!(!fs.is_empty(), "no source for source/{module}");
            for f in fs {
                for name in source_siblings_named(&f, &source, &code(&f)) {
                    if forbidden.contains(&name.as_str()) {
                        broken.push(format!(
                            "source/{}: source::{module} names source::{name}",
                            f.strip_prefix(&source).unwrap_or(&f).display(),
                        ));
                    }
                }
            }
        }
        assert!(
            broken.is_empty(),
            "source layers broken:\n{}",
            broken.join("\n")
        );
    }

    #[test]
    fn sibling_paths_are_resolved_from_where_the_file_sits() {
        let source = Path::new("/s/source");
        let named =
            |file: &str, line: &str| source_siblings_named(&source.join(file), source, line);
        assert_eq!(named("k8s/mod.rs", "use super::rest::X;"), ["rest"]);
        // In k8s/lease.rs, `super::dcs` is k8s's own dcs module, not source::dcs.
        assert!(named("k8s/lease.rs", "use super::dcs::X;").is_empty());
        assert_eq!(named("k8s/lease.rs", "use super::super::dcs::X;"), ["dcs"]);
        assert_eq!(named("wire/dcs.rs", "x(crate::source::rest::Y)"), ["rest"]);
    }
}
