//! Secrets out of what pgpatrol writes down: the audit log, the support report, a standby
//! cluster's `restore_command` in `list`. A leaf: any layer may call it, it calls nothing
//! of pgpatrol.

use serde_json::Value;

/// True for a key whose value is a secret: it names a password (`passw`, `passwd`), a
/// secret, a token, a passphrase or a key (`api_key`, `ssl_key_file`, `PRIVATE_KEY`).
pub fn secret_key(key: &str) -> bool {
    let k = key.to_lowercase();
    [
        "passw",
        "pwd",
        "secret",
        "token",
        "passphrase",
        "credential",
    ]
    .iter()
    .any(|s| k.contains(s))
        || k == "key"
        || k.ends_with("_key")
        || k.ends_with("-key")
        || k.contains("key_")
        || k.contains("apikey")
}

/// The body with every value under a secret key ([`secret_key`]) replaced by `"***"`, and
/// the secrets inside every other string ([`redact_text`]).
pub fn redact(v: &Value) -> Value {
    match v {
        Value::Object(map) => Value::Object(
            map.iter()
                .map(|(k, v)| {
                    if secret_key(k) {
                        (k.clone(), Value::String("***".into()))
                    } else {
                        (k.clone(), redact(v))
                    }
                })
                .collect(),
        ),
        Value::Array(a) => Value::Array(a.iter().map(redact).collect()),
        Value::String(s) => Value::String(redact_text(s)),
        other => other.clone(),
    }
}

/// A string with the secrets inside it replaced by `***`: the value of every `NAME=VALUE`
/// whose NAME is a secret key (conninfo `password=…` quoted or not, `PGPASSWORD=…`,
/// `--password=…`), the word after `--password` or `-W`-less `--passwd`, and the password of
/// a URL's userinfo (`scheme://user:***@host`).
pub fn redact_text(s: &str) -> String {
    let chars: Vec<char> = s.chars().collect();
    let mut out = String::with_capacity(s.len());
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        // A URL's userinfo: "://user:password@" keeps the user.
        if c == ':' && chars.get(i + 1) == Some(&'/') && chars.get(i + 2) == Some(&'/') {
            out.push_str("://");
            i += 3;
            let rest: String = chars[i..].iter().collect();
            let end = rest
                .find(|ch: char| ch.is_whitespace() || ch == '/' || ch == '"' || ch == '\'')
                .unwrap_or(rest.len());
            let authority = &rest[..end];
            if let Some(at) = authority.rfind('@') {
                let userinfo = &authority[..at];
                match userinfo.find(':') {
                    Some(colon) => {
                        out.push_str(&userinfo[..colon]);
                        out.push_str(":***");
                    }
                    None => out.push_str(userinfo),
                }
                out.push_str(&authority[at..]);
                i += authority.chars().count();
            }
            continue;
        }
        // NAME=VALUE (or NAME = VALUE, as in conninfo) with a secret NAME.
        if c == '=' {
            let name: String = out
                .trim_end()
                .chars()
                .rev()
                .take_while(|ch| ch.is_ascii_alphanumeric() || *ch == '_' || *ch == '-')
                .collect::<Vec<_>>()
                .into_iter()
                .rev()
                .collect();
            if !name.is_empty() && secret_key(name.trim_start_matches('-')) {
                out.push('=');
                i += 1;
                while chars.get(i).is_some_and(|ch| *ch == ' ') {
                    out.push(' ');
                    i += 1;
                }
                i = skip_value(&chars, i);
                out.push_str("***");
                continue;
            }
        }
        // --password VALUE: the next word.
        if c == '-' && (i == 0 || chars[i - 1].is_whitespace()) {
            let word: String = chars[i..]
                .iter()
                .take_while(|ch| !ch.is_whitespace() && **ch != '=')
                .collect();
            let flag = word.trim_start_matches('-');
            if word.starts_with("--")
                && secret_key(flag)
                && chars
                    .get(i + word.chars().count())
                    .is_some_and(|ch| ch.is_whitespace())
            {
                out.push_str(&word);
                out.push(' ');
                i += word.chars().count() + 1;
                i = skip_value(&chars, i);
                out.push_str("***");
                continue;
            }
        }
        out.push(c);
        i += 1;
    }
    out
}

/// The index after the value starting at `i`: a quoted string ('…' or "…", backslash
/// escapes), or a run up to white space, `&`, `;` or a quote closing an outer string.
fn skip_value(chars: &[char], mut i: usize) -> usize {
    match chars.get(i) {
        Some(q @ ('\'' | '"')) => {
            let q = *q;
            i += 1;
            while let Some(ch) = chars.get(i) {
                if *ch == '\\' {
                    i += 2;
                    continue;
                }
                i += 1;
                if *ch == q {
                    break;
                }
            }
            i
        }
        _ => {
            while chars
                .get(i)
                .is_some_and(|ch| !ch.is_whitespace() && !matches!(ch, '&' | ';' | '\'' | '"'))
            {
                i += 1;
            }
            i
        }
    }
}
