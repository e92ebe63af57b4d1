//! HTTP as every source speaks it, the leaf of `source/`: a call as values ([`Request`],
//! [`Response`], [`HttpError`]), the port that carries it ([`Transport`]: straight over HTTP,
//! or through the Kubernetes API server), the client and its cache ([`Http`], [`HttpCache`]),
//! credentials and password files, and member URLs ([`base_url`]). `rest`, `dcs` and `k8s`
//! build on it and never on each other.

pub mod client;
pub mod transport;

use reqwest::Url;

pub use client::{Http, HttpCache, HttpOptions};
pub use transport::{BoxFuture, Credentials, HttpError, Request, Response, Transport};

/// A setting given that cannot be used (a URL, a password file): the one line says what and
/// what to do. A source's own error turns it into its `BadInput`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct BadInput(pub String);

/// `127.0.0.1:8008`, `http://h:8008/`, `http://h:8008/patroni` → `http://h:8008`.
pub fn base_url(raw: &str) -> Result<String, BadInput> {
    let with_scheme = if raw.contains("://") {
        raw.to_string()
    } else {
        format!("http://{raw}")
    };
    let url = Url::parse(&with_scheme).map_err(|e| {
        BadInput(format!(
            "{raw:?} is not a URL ({e}): write e.g. http://10.0.0.5:8008"
        ))
    })?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(BadInput(format!(
            "{raw:?}: the scheme must be http or https"
        )));
    }
    let host = url
        .host_str()
        .ok_or_else(|| BadInput(format!("{raw:?} has no host")))?;
    let host = if host.contains(':') && !host.starts_with('[') {
        format!("[{host}]")
    } else {
        host.to_string()
    };
    Ok(match url.port() {
        Some(p) => format!("{}://{}:{}", url.scheme(), host, p),
        None => format!("{}://{}", url.scheme(), host),
    })
}

/// The first line of a password file (`--password-file`, `password_file:`).
pub fn read_password_file(path: &std::path::Path) -> Result<String, BadInput> {
    let raw = std::fs::read_to_string(path).map_err(|e| {
        BadInput(format!(
            "cannot read the password file {}: {e}",
            path.display()
        ))
    })?;
    Ok(raw.lines().next().unwrap_or_default().to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base_urls_are_normalised() {
        assert_eq!(base_url("127.0.0.1:8008").unwrap(), "http://127.0.0.1:8008");
        assert_eq!(
            base_url("http://127.0.0.1:8008/patroni").unwrap(),
            "http://127.0.0.1:8008"
        );
        assert_eq!(
            base_url("https://db-0.example:8443/").unwrap(),
            "https://db-0.example:8443"
        );
        assert!(base_url("ftp://x").is_err());
        assert!(base_url("http://").is_err());
    }
}
