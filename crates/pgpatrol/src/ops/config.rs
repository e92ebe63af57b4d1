//! The dynamic configuration: edits as patronictl's edit-config makes them (`--set`,
//! `--pg`, `--apply`, `--replace`), sent as one `PATCH /config` whose `null`s delete keys,
//! and read back; pause and resume.

use serde_json::{Map, Value};

/// Sets `path` (dot-separated) in `doc` to `value`; `null` deletes the leaf. Under
/// `postgresql.parameters` the rest of the path is one name, so dotted GUCs
/// (`pg_stat_statements.max`) work, as in patronictl.
pub fn set_path(doc: &mut Value, path: &str, value: Value) -> Result<(), String> {
    let mut parts: Vec<String> = path.split('.').map(str::to_string).collect();
    if parts.len() > 2 && parts[0] == "postgresql" && parts[1] == "parameters" {
        let name = parts[2..].join(".");
        parts.truncate(2);
        parts.push(name);
    }
    if parts.iter().any(String::is_empty) {
        return Err(format!("--set {path:?}: a path is names separated by dots, e.g. postgresql.parameters.work_mem"));
    }
    let (leaf, parents) = parts.split_last().ok_or("empty path")?;
    let mut node = doc;
    for p in parents {
        if !node.is_object() {
            return Err(format!(
                "--set {path:?}: {p} is inside a value that is not a mapping"
            ));
        }
        node = node
            .as_object_mut()
            .ok_or("not a mapping")?
            .entry(p.clone())
            .or_insert_with(|| Value::Object(Map::new()));
        if node.is_null() {
            *node = Value::Object(Map::new());
        }
    }
    let obj = node
        .as_object_mut()
        .ok_or_else(|| format!("--set {path:?}: its parent is not a mapping"))?;
    if value.is_null() {
        obj.remove(leaf);
    } else {
        obj.insert(leaf.clone(), value);
    }
    Ok(())
}

/// Deep-merges `patch` into `doc` (Patroni's `patch_config`): `null` deletes a key.
pub fn merge(doc: &mut Value, patch: &Value) {
    match (doc.as_object_mut(), patch.as_object()) {
        (Some(d), Some(p)) => {
            for (k, v) in p {
                if v.is_null() {
                    d.remove(k);
                } else if v.is_object() && d.get(k).is_some_and(Value::is_object) {
                    if let Some(inner) = d.get_mut(k) {
                        merge(inner, v);
                    }
                } else {
                    let mut v = v.clone();
                    strip_nulls(&mut v);
                    d.insert(k.clone(), v);
                }
            }
        }
        _ => {
            let mut p = patch.clone();
            strip_nulls(&mut p);
            *doc = p;
        }
    }
}

fn strip_nulls(v: &mut Value) {
    if let Some(o) = v.as_object_mut() {
        o.retain(|_, v| !v.is_null());
        o.values_mut().for_each(strip_nulls);
    }
}

/// The `PATCH /config` body that turns `old` into `new`: changed values, `null` for keys
/// that are gone, nested mappings recursively. `None` when nothing changed.
pub fn patch_between(old: &Value, new: &Value) -> Option<Value> {
    match (old.as_object(), new.as_object()) {
        (Some(o), Some(n)) => {
            let mut patch = Map::new();
            for k in o.keys() {
                if !n.contains_key(k) {
                    patch.insert(k.clone(), Value::Null);
                }
            }
            for (k, nv) in n {
                match o.get(k) {
                    Some(ov) if ov == nv => {}
                    Some(ov) if ov.is_object() && nv.is_object() => {
                        if let Some(p) = patch_between(ov, nv) {
                            patch.insert(k.clone(), p);
                        }
                    }
                    _ => {
                        patch.insert(k.clone(), nv.clone());
                    }
                }
            }
            (!patch.is_empty()).then_some(Value::Object(patch))
        }
        _ if old == new => None,
        _ => Some(new.clone()),
    }
}

/// Each leaf of `patch` as (dotted path, value): what the read-back must find.
pub fn leaves(patch: &Value) -> Vec<(Vec<String>, Value)> {
    fn walk(v: &Value, path: &mut Vec<String>, out: &mut Vec<(Vec<String>, Value)>) {
        match v.as_object() {
            Some(o) if !o.is_empty() => {
                for (k, v) in o {
                    path.push(k.clone());
                    walk(v, path, out);
                    path.pop();
                }
            }
            _ => out.push((path.clone(), v.clone())),
        }
    }
    let mut out = Vec::new();
    walk(patch, &mut Vec::new(), &mut out);
    out
}

fn get<'v>(doc: &'v Value, path: &[String]) -> Option<&'v Value> {
    path.iter().try_fold(doc, |node, k| node.get(k))
}

/// The leaves of `patch` that `stored` does not hold as asked (Patroni compares by `str()`,
/// so `200` and `"200"` are the same value to it and to this check).
pub fn not_applied(patch: &Value, stored: &Value) -> Vec<String> {
    leaves(patch)
        .into_iter()
        .filter(|(path, want)| {
            let have = get(stored, path);
            match (want, have) {
                (Value::Null, None) => false,
                (Value::Null, Some(_)) => true,
                (w, Some(h)) => scalar_text(w) != scalar_text(h),
                (_, None) => true,
            }
        })
        .map(|(path, _)| path.join("."))
        .collect()
}

/// The keys (dotted) where `stored` is not the document `intended`: what someone else
/// changed between this edit's read and its PATCH, or what Patroni did not keep. Values
/// compare as Patroni compares them (`200` and `"200"` are one value).
pub fn differences(intended: &Value, stored: &Value) -> Vec<String> {
    let Some(diff) = patch_between(intended, stored) else {
        return Vec::new();
    };
    leaves(&diff)
        .into_iter()
        .filter(|(path, _)| match (get(intended, path), get(stored, path)) {
            (Some(a), Some(b)) => scalar_text(a) != scalar_text(b),
            (None, None) => false,
            _ => true,
        })
        .map(|(path, _)| path.join("."))
        .collect()
}

fn scalar_text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// PostgreSQL parameters the patch changes: (name, old value, new value; None = removed).
pub fn changed_parameters(
    old: &Value,
    patch: &Value,
) -> Vec<(String, Option<Value>, Option<Value>)> {
    let Some(params) = patch
        .get("postgresql")
        .and_then(|p| p.get("parameters"))
        .and_then(Value::as_object)
    else {
        return Vec::new();
    };
    params
        .iter()
        .map(|(k, v)| {
            let before = old
                .get("postgresql")
                .and_then(|p| p.get("parameters"))
                .and_then(|p| p.get(k))
                .cloned();
            (k.clone(), before, (!v.is_null()).then(|| v.clone()))
        })
        .collect()
}

/// A unified diff of two configurations as YAML.
pub fn diff(old: &Value, new: &Value) -> String {
    let a = crate::yaml::to_string(old).unwrap_or_default();
    let b = crate::yaml::to_string(new).unwrap_or_default();
    similar::TextDiff::from_lines(&a, &b)
        .unified_diff()
        .context_radius(3)
        .header("dynamic configuration (DCS)", "after the change")
        .to_string()
}

/// A `--set`/`--pg` value as YAML reads it (like patronictl's `yaml.safe_load`): numbers,
/// booleans, `null` (deletes) and strings.
pub fn parse_value(raw: &str) -> Result<Value, String> {
    if raw.trim().is_empty() {
        return Ok(Value::Null);
    }
    crate::yaml::from_str::<Value>(raw)
}

/// Splits `PATH=VALUE`.
pub fn split_assignment(raw: &str, flag: &str) -> Result<(String, Value), String> {
    let (k, v) = raw
        .split_once('=')
        .ok_or_else(|| format!("{flag} {raw:?}: write it as NAME=VALUE (VALUE null deletes it)"))?;
    let k = k.trim();
    if k.is_empty() {
        return Err(format!("{flag} {raw:?}: the name before '=' is empty"));
    }
    Ok((
        k.to_string(),
        parse_value(v).map_err(|e| format!("{flag} {raw:?}: {e}"))?,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn set_paths_keep_dotted_parameter_names_whole() {
        let mut doc = json!({"loop_wait": 10, "postgresql": {"parameters": {"work_mem": "4MB"}}});
        set_path(
            &mut doc,
            "postgresql.parameters.pg_stat_statements.max",
            json!(5000),
        )
        .unwrap();
        set_path(&mut doc, "postgresql.parameters.work_mem", Value::Null).unwrap();
        set_path(&mut doc, "ttl", json!(30)).unwrap();
        set_path(&mut doc, "standby_cluster.host", json!("10.0.0.1")).unwrap();
        assert_eq!(
            doc,
            json!({"loop_wait": 10, "ttl": 30, "standby_cluster": {"host": "10.0.0.1"},
                   "postgresql": {"parameters": {"pg_stat_statements.max": 5000}}})
        );
        assert!(set_path(&mut doc, "loop_wait.x", json!(1)).is_err());
        assert!(set_path(&mut doc, "a..b", json!(1)).is_err());
    }

    #[test]
    fn the_patch_turns_old_into_new_and_nulls_delete() {
        let old =
            json!({"loop_wait": 10, "ttl": 30, "postgresql": {"parameters": {"a": 1, "b": 2}}});
        let new =
            json!({"loop_wait": 10, "postgresql": {"parameters": {"a": 1, "b": 3, "c": "x"}}});
        let patch = patch_between(&old, &new).unwrap();
        assert_eq!(
            patch,
            json!({"ttl": null, "postgresql": {"parameters": {"b": 3, "c": "x"}}})
        );
        let mut merged = old.clone();
        merge(&mut merged, &patch);
        assert_eq!(merged, new);
        assert_eq!(patch_between(&old, &old), None);
    }

    #[test]
    fn read_back_compares_like_patroni() {
        let patch = json!({"ttl": null, "postgresql": {"parameters": {"max_connections": 200}}});
        let stored = json!({"postgresql": {"parameters": {"max_connections": "200"}}});
        assert!(not_applied(&patch, &stored).is_empty());
        let stale = json!({"ttl": 30, "postgresql": {"parameters": {"max_connections": 100}}});
        assert_eq!(
            not_applied(&patch, &stale),
            ["ttl", "postgresql.parameters.max_connections"]
        );
    }

    #[test]
    fn changed_parameters_name_old_and_new() {
        let old = json!({"postgresql": {"parameters": {"max_connections": 100}}});
        let patch =
            json!({"postgresql": {"parameters": {"max_connections": 200, "work_mem": null}}});
        assert_eq!(
            changed_parameters(&old, &patch),
            vec![
                (
                    "max_connections".to_string(),
                    Some(json!(100)),
                    Some(json!(200))
                ),
                ("work_mem".to_string(), None, None),
            ]
        );
    }

    #[test]
    fn values_read_as_yaml() {
        assert_eq!(
            split_assignment("a=200", "--set").unwrap(),
            ("a".into(), json!(200))
        );
        assert_eq!(
            split_assignment("a=on", "--set").unwrap(),
            ("a".into(), json!("on"))
        );
        assert_eq!(
            split_assignment("a=null", "--set").unwrap(),
            ("a".into(), Value::Null)
        );
        assert_eq!(
            split_assignment("a=", "--set").unwrap(),
            ("a".into(), Value::Null)
        );
        assert_eq!(
            split_assignment("a='128MB'", "--pg").unwrap(),
            ("a".into(), json!("128MB"))
        );
        assert!(split_assignment("novalue", "--pg")
            .unwrap_err()
            .contains("NAME=VALUE"));
        assert!(split_assignment("=1", "--pg").is_err());
    }

    #[test]
    fn the_diff_is_unified() {
        let d = diff(&json!({"ttl": 30}), &json!({"ttl": 40}));
        assert!(d.contains("-ttl: 30") && d.contains("+ttl: 40"), "{d}");
    }

    #[test]
    fn a_change_made_by_someone_else_is_named() {
        let intended = json!({"loop_wait": 10, "postgresql": {"parameters": {"max_connections": 200, "work_mem": "4MB"}}});
        // What the edit meant, with Patroni's "200" for 200: no difference.
        let same = json!({"loop_wait": "10", "postgresql": {"parameters": {"max_connections": "200", "work_mem": "4MB"}}});
        assert!(differences(&intended, &same).is_empty());
        // Someone set work_mem and added a key meanwhile; the edit's own change is there.
        let raced = json!({"loop_wait": 10, "ttl": 40, "postgresql": {"parameters": {"max_connections": 200, "work_mem": "64MB"}}});
        let mut d = differences(&intended, &raced);
        d.sort();
        assert_eq!(d, vec!["postgresql.parameters.work_mem", "ttl"]);
        // A key the edit meant to keep, deleted by someone else.
        let deleted =
            json!({"postgresql": {"parameters": {"max_connections": 200, "work_mem": "4MB"}}});
        assert_eq!(differences(&intended, &deleted), vec!["loop_wait"]);
    }
}
