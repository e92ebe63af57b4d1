//! YAML in and out, through serde-saphyr (the YAML crate kube already brings): errors as
//! one line, and long strings kept on one line (a PromQL expression reads and greps better
//! whole than folded at 80 columns).

use serde::de::DeserializeOwned;
use serde::Serialize;

/// Parses a YAML document. The error is one line: what is wrong and where (line, column),
/// without the source excerpt, which may hold secrets (patroni.yml has passwords).
///
/// YAML 1.2 booleans only (`true`/`false`): `y`, `n`, `on`, `off` stay strings, as they were
/// with serde_yaml, so a host called `y` or a value `on` is never read as a boolean (a
/// flattened or untyped value is inferred, not typed).
pub fn from_str<T: DeserializeOwned>(raw: &str) -> Result<T, String> {
    let options = serde_saphyr::options! {
        strict_booleans: true,
    };
    serde_saphyr::from_str_with_options(raw, options)
        .map_err(|e| crate::text::one_line(&e.without_snippet().to_string()))
}

/// Writes a value as a YAML document; a string with newlines becomes a `|` block.
pub fn to_string<T: Serialize>(value: &T) -> Result<String, serde_saphyr::SerializeError> {
    let options = serde_saphyr::ser_options! {
        folded_wrap_chars: usize::MAX,
    };
    serde_saphyr::to_string_with_options(value, options)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_strings_stay_on_one_line_and_multi_line_ones_become_blocks() {
        let expr = format!("sum(rate(x[5m])) / {}", "sum(rate(y[5m])) ".repeat(8));
        let v = serde_json::json!({"expr": expr.trim(), "text": "a\nb", "n": 1, "yes": "yes"});
        let out = to_string(&v).unwrap();
        assert_eq!(
            out.lines().next(),
            Some(format!("expr: {}", expr.trim()).as_str())
        );
        assert!(out.contains("text: |-\n  a\n  b\n"), "{out}");
        let back: serde_json::Value = from_str(&out).unwrap();
        assert_eq!(back, v);
    }

    #[test]
    fn only_yaml_1_2_booleans_are_booleans() {
        let v: serde_json::Value = from_str("a: [y, n, on, off, yes]\nb: true\n").unwrap();
        assert_eq!(
            v,
            serde_json::json!({"a": ["y", "n", "on", "off", "yes"], "b": true})
        );
    }

    #[test]
    fn errors_are_one_line_and_say_where() {
        let e = from_str::<serde_json::Value>("a: [\nb: 1\n").unwrap_err();
        assert!(!e.contains('\n') && e.contains("line "), "{e}");
        let e = from_str::<serde_json::Value>("password: hunter2\n: [").unwrap_err();
        assert!(!e.contains("hunter2"), "{e}");
    }
}
