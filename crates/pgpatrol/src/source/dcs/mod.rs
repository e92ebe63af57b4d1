//! Patroni's DCS as a source of cluster snapshots, read the way patronictl reads it: an
//! etcd v3 cluster (`--dcs etcd3://HOST:PORT[,…]`, `--scope`, `--dcs-namespace`, or the
//! `etcd3:` section of `-c patroni.yml`). Read-only: the snapshot is built from Patroni's
//! keys by `wire::dcs`, then by the one wire→model function (`wire::rest::into_cluster`).
//! Nothing here deletes: `pgpatrol remove` (an operation) deletes through [`Dcs::etcd`].

pub mod etcd;

use std::path::PathBuf;

use serde::Deserialize;

use self::etcd::{Etcd, EtcdError, EtcdOptions, Kv};
use super::http::{Credentials, HttpOptions};
use super::patroni_yml::PatroniYml;
use super::wire::dcs::{self as wire, BadValue, DcsCluster};
use super::SourceError;

/// Patroni's etcd v3 password variable (Patroni reads `PATRONI_ETCD3_PASSWORD` too).
pub const PASSWORD_ENV: &str = "PATRONI_ETCD3_PASSWORD";

/// How to read a cluster from its DCS: the same settings, by the same names, from the flags
/// (`--dcs`, `--scope`, `--dcs-namespace`, `--dcs-username`, ...) and from a watch.yml
/// cluster entry (`dcs: {url, scope, namespace, username, ...}`).
#[derive(Debug, Clone, Default, PartialEq, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct DcsSettings {
    /// `etcd3://HOST:PORT[,HOST:PORT…]` (`etcd3s://` for https). None: the `etcd3:` section of
    /// the patroni.yml given.
    #[serde(default)]
    pub url: Option<String>,
    /// The cluster's scope (else patroni.yml's `scope`).
    #[serde(default)]
    pub scope: Option<String>,
    /// Patroni's `namespace` (default `/service`, else patroni.yml's).
    #[serde(default)]
    pub namespace: Option<String>,
    #[serde(default)]
    pub username: Option<String>,
    /// A file whose first line is the etcd password.
    #[serde(default)]
    pub password_file: Option<PathBuf>,
    /// The variable holding the password (else `PATRONI_ETCD3_PASSWORD`).
    #[serde(default)]
    pub password_env: Option<String>,
    #[serde(default)]
    pub cacert: Option<PathBuf>,
    #[serde(default)]
    pub cert: Option<PathBuf>,
    #[serde(default)]
    pub key: Option<PathBuf>,
}

impl DcsSettings {
    /// The password, when a username is given.
    pub fn password(&self) -> Result<Option<String>, SourceError> {
        if self.username.is_none() {
            return Ok(None);
        }
        if let Some(f) = &self.password_file {
            return Ok(Some(crate::source::http::read_password_file(f)?));
        }
        let var = self.password_env.as_deref().unwrap_or(PASSWORD_ENV);
        std::env::var(var).map(Some).map_err(|_| {
            SourceError::BadInput(format!(
                "an etcd username needs a password: set {var} or pass --dcs-password-file"
            ))
        })
    }

    /// The DCS these settings name, patroni.yml filling what they leave out.
    pub fn resolve(
        &self,
        password: Option<String>,
        yml: Option<&PatroniYml>,
        http: &HttpOptions,
    ) -> Result<DcsTarget, SourceError> {
        let (etcd, namespace) = self.resolve_namespace(password, yml, http)?;
        let scope = self
            .scope
            .clone()
            .or_else(|| yml.and_then(|y| y.scope.clone()))
            .filter(|s| !s.trim().is_empty())
            .ok_or_else(|| {
                SourceError::BadInput(
                    "the DCS needs the cluster's scope: pass --scope NAME (Patroni's scope:)"
                        .into(),
                )
            })?;
        if scope.contains('/') {
            return Err(SourceError::BadInput(format!(
                "--scope {scope:?}: a scope has no '/': give the name alone, and the namespace with --dcs-namespace"
            )));
        }
        Ok(DcsTarget {
            prefix: base_path(&namespace, &scope),
            scope,
            etcd,
        })
    }

    /// The etcd and Patroni namespace these settings name, without a scope (every cluster
    /// under the namespace: `list --all`), patroni.yml filling what they leave out.
    pub fn resolve_namespace(
        &self,
        password: Option<String>,
        yml: Option<&PatroniYml>,
        http: &HttpOptions,
    ) -> Result<(EtcdOptions, String), SourceError> {
        let bad = SourceError::BadInput;
        let y3 = yml.and_then(|y| y.etcd3.as_ref());
        let endpoints = match self.url.as_deref().filter(|u| !u.trim().is_empty()) {
            Some(url) => parse_dcs_url(url)?,
            None => match y3 {
                Some(e) if !e.endpoints.is_empty() => e.endpoints.clone(),
                _ => {
                    return Err(bad(if yml.is_some() {
                        "--dcs without a URL reads the etcd3 section of -c patroni.yml, and it has none (or no hosts): pass --dcs etcd3://HOST:PORT".into()
                    } else {
                        "--dcs needs etcd's address: --dcs etcd3://HOST:PORT[,HOST:PORT...] (or -c patroni.yml with an etcd3 section)".into()
                    }))
                }
            },
        };
        let namespace = self
            .namespace
            .clone()
            .or_else(|| yml.and_then(|y| y.namespace.clone()))
            .unwrap_or_else(|| "/service".into());
        let auth = match (&self.username, password) {
            (Some(u), Some(p)) => Some(Credentials {
                username: u.clone(),
                password: p,
            }),
            (Some(_), None) => {
                return Err(bad(format!(
                "an etcd username needs a password: set {PASSWORD_ENV} or pass --dcs-password-file"
            )))
            }
            (None, _) => y3.and_then(|e| e.auth.clone()),
        };
        // patroni.yml's TLS files go with its https endpoints, not with an http --dcs URL.
        let https = endpoints.iter().any(|e| e.starts_with("https://"));
        let y3_tls = y3.filter(|_| https);
        let client_cert = match (&self.cert, &self.key) {
            (Some(c), Some(k)) => Some((c.clone(), k.clone())),
            (None, None) => y3_tls.and_then(|e| e.client_cert.clone()),
            _ => {
                return Err(bad("an etcd client certificate needs both cert and key \
                     (--dcs-cert and --dcs-key)"
                    .into()))
            }
        };
        let ca_file = self
            .cacert
            .clone()
            .or_else(|| y3_tls.and_then(|e| e.cacert.clone()));
        if (ca_file.is_some() || client_cert.is_some()) && !https {
            return Err(bad(
                "etcd TLS settings (CA, client certificate) need https: \
                 write etcd3s://HOST:PORT (or etcd3.protocol: https)"
                    .into(),
            ));
        }
        Ok((
            EtcdOptions {
                endpoints,
                auth,
                http: HttpOptions {
                    auth: None,
                    ca_file,
                    client_cert,
                    insecure: false,
                    ..http.clone()
                },
            },
            namespace,
        ))
    }
}

/// Every cluster under Patroni's `namespace` in one etcd (`list --all`): one range over
/// `/<namespace>/`, the keys split by scope, each scope decoded as [`Dcs::read`] decodes
/// one (a scope that does not decode keeps its reason). And the endpoint that answered.
pub async fn read_namespace(
    etcd: &EtcdOptions,
    namespace: &str,
) -> Result<(Vec<(String, Result<DcsCluster, BadValue>)>, String), DcsError> {
    let etcd = Etcd::new(etcd).map_err(DcsError::Etcd)?;
    let prefix = base_path(namespace, "");
    let (kvs, url) = etcd.range(&prefix).await.map_err(DcsError::from_attempts)?;
    let mut by_scope: std::collections::BTreeMap<String, Vec<Kv>> = Default::default();
    for kv in kvs {
        let scope = kv
            .key
            .strip_prefix(&prefix)
            .and_then(|rest| rest.split_once('/'))
            .map(|(scope, _)| scope.to_string())
            .filter(|s| !s.is_empty());
        if let Some(scope) = scope {
            by_scope.entry(scope).or_default().push(kv);
        }
    }
    let clusters = by_scope
        .into_iter()
        .map(|(scope, kvs)| {
            let decoded = wire::parse(&base_path(namespace, &scope), &kvs);
            (scope, decoded)
        })
        .collect();
    Ok((clusters, url))
}

/// `etcd3://h1:2379,h2:2379` → `http://h1:2379`, `http://h2:2379`; `etcd3s://` → https.
pub fn parse_dcs_url(raw: &str) -> Result<Vec<String>, SourceError> {
    let bad = |why: &str| {
        SourceError::BadInput(format!(
            "--dcs {raw:?}: {why}: write etcd3://HOST:PORT[,HOST:PORT...] (etcd3s:// for https)"
        ))
    };
    let (scheme, rest) = match raw.trim().split_once("://") {
        Some(("etcd3", r)) => ("http", r),
        Some(("etcd3s", r)) => ("https", r),
        Some(("http", r)) => ("http", r),
        Some(("https", r)) => ("https", r),
        Some(("etcd" | "etcds", _)) => {
            return Err(bad(
                "etcd's v2 API is not read (Patroni's etcd: DCS); for etcd3: use etcd3://",
            ))
        }
        Some((s, _)) => return Err(bad(&format!("{s}:// is not a DCS pgpatrol reads"))),
        None => return Err(bad("no scheme")),
    };
    let rest = rest.trim_end_matches('/');
    let mut out = Vec::new();
    for hp in rest.split(',').map(str::trim).filter(|h| !h.is_empty()) {
        let url = reqwest::Url::parse(&format!("{scheme}://{hp}"))
            .map_err(|e| bad(&format!("{hp:?} is not HOST:PORT ({e})")))?;
        if url.host_str().is_none_or(str::is_empty) || url.path() != "/" {
            return Err(bad(&format!("{hp:?} is not HOST:PORT")));
        }
        let port = url.port().unwrap_or(2379);
        let host = url.host_str().unwrap_or_default();
        out.push(format!("{scheme}://{host}:{port}"));
    }
    if out.is_empty() {
        return Err(bad("no host"));
    }
    Ok(out)
}

/// Patroni's `_base_path`: `/<namespace>/<scope>/`, slashes collapsed.
pub fn base_path(namespace: &str, scope: &str) -> String {
    let joined = format!("/{namespace}/{scope}/");
    let mut out = String::with_capacity(joined.len());
    for c in joined.chars() {
        if !(c == '/' && out.ends_with('/')) {
            out.push(c);
        }
    }
    out
}

/// One cluster's place in one DCS, resolved.
#[derive(Debug, Clone)]
pub struct DcsTarget {
    pub scope: String,
    /// `/<namespace>/<scope>/`.
    pub prefix: String,
    pub etcd: EtcdOptions,
}

/// Why the DCS could not be read.
#[derive(Debug, thiserror::Error)]
pub enum DcsError {
    #[error(transparent)]
    Etcd(EtcdError),
    #[error("no etcd endpoint answered: {}", .0.iter().map(|e| e.to_string()).collect::<Vec<_>>().join("; "))]
    AllFailed(Vec<EtcdError>),
    #[error("etcd at {url} has no keys under {prefix}: check --scope and --dcs-namespace (Patroni's scope and namespace)")]
    NoKeys { url: String, prefix: String },
    #[error("etcd at {url}: {bad}")]
    NotPatroni { url: String, bad: BadValue },
    #[error("{url} has no config under {prefix}: the cluster has not been bootstrapped")]
    NoConfig { url: String, prefix: String },
}

impl DcsError {
    pub fn from_attempts(mut errors: Vec<EtcdError>) -> Self {
        match errors.len() {
            1 => DcsError::Etcd(errors.remove(0)),
            _ => DcsError::AllFailed(errors),
        }
    }

    /// A bounded label for metrics.
    pub fn metric_label(&self) -> &'static str {
        match self {
            DcsError::Etcd(e) => e.metric_label(),
            DcsError::AllFailed(_) => "dcs_all_failed",
            DcsError::NoKeys { .. } => "dcs_no_keys",
            DcsError::NotPatroni { .. } => "dcs_not_patroni",
            DcsError::NoConfig { .. } => "dcs_no_config",
        }
    }
}

/// A cluster in its etcd: one range over its prefix.
#[derive(Debug, Clone)]
pub struct Dcs {
    etcd: Etcd,
    pub scope: String,
    /// `/<namespace>/<scope>/`.
    pub prefix: String,
}

impl Dcs {
    pub fn new(t: &DcsTarget) -> Result<Self, SourceError> {
        Ok(Dcs {
            etcd: Etcd::new(&t.etcd).map_err(|e| SourceError::BadInput(e.to_string()))?,
            scope: t.scope.clone(),
            prefix: t.prefix.clone(),
        })
    }

    /// The etcd client (`pgpatrol remove` deletes the prefix through it, as an operation).
    pub fn etcd(&self) -> &Etcd {
        &self.etcd
    }

    /// Every key under the prefix, as they are (for `remove`): none is not an error here.
    pub async fn keys(&self) -> Result<(Vec<Kv>, String), DcsError> {
        self.etcd
            .range(&self.prefix)
            .await
            .map_err(DcsError::from_attempts)
    }

    /// The cluster's keys, decoded; and the endpoint that answered.
    pub async fn read(&self) -> Result<(DcsCluster, String), DcsError> {
        let (kvs, url) = self.keys().await?;
        if kvs.is_empty() {
            return Err(DcsError::NoKeys {
                url,
                prefix: self.prefix.clone(),
            });
        }
        let c = wire::parse(&self.prefix, &kvs).map_err(|bad| DcsError::NotPatroni {
            url: url.clone(),
            bad,
        })?;
        Ok((c, url))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dcs_urls() {
        assert_eq!(
            parse_dcs_url("etcd3://10.0.0.1:2379,10.0.0.2").unwrap(),
            ["http://10.0.0.1:2379", "http://10.0.0.2:2379"]
        );
        assert_eq!(
            parse_dcs_url("etcd3s://etcd.example:2379/").unwrap(),
            ["https://etcd.example:2379"]
        );
        for bad in [
            "10.0.0.1:2379",
            "etcd://h:2379",
            "consul://h",
            "etcd3://",
            "etcd3://h:2379/x",
        ] {
            let e = parse_dcs_url(bad).unwrap_err().to_string();
            assert!(e.contains("etcd3://HOST:PORT"), "{bad}: {e}");
        }
    }

    #[test]
    fn base_paths_like_patroni() {
        assert_eq!(base_path("/service", "demo"), "/service/demo/");
        assert_eq!(base_path("service", "demo"), "/service/demo/");
        assert_eq!(base_path("/db/", "demo"), "/db/demo/");
    }

    fn yml(raw: &str) -> PatroniYml {
        PatroniYml::parse(raw).unwrap()
    }

    #[test]
    fn patroni_yml_fills_what_the_flags_leave_out() {
        let y = yml("scope: demo\nnamespace: /db\nrestapi: {connect_address: h:8008}\netcd3: {hosts: [a:2379, b:2379], protocol: https, username: root, password: pw, cacert: /ca.pem}\n");
        let t = DcsSettings::default()
            .resolve(None, Some(&y), &HttpOptions::default())
            .unwrap();
        assert_eq!(t.prefix, "/db/demo/");
        assert_eq!(t.etcd.endpoints, ["https://a:2379", "https://b:2379"]);
        assert_eq!(t.etcd.auth.unwrap().username, "root");
        assert_eq!(t.etcd.http.ca_file, Some(PathBuf::from("/ca.pem")));
        // Flags win.
        let s = DcsSettings {
            url: Some("etcd3://c:2379".into()),
            scope: Some("other".into()),
            ..Default::default()
        };
        let t = s.resolve(None, Some(&y), &HttpOptions::default()).unwrap();
        assert_eq!(t.prefix, "/db/other/");
        assert_eq!(t.etcd.endpoints, ["http://c:2379"]);
    }

    #[test]
    fn bad_dcs_settings_are_one_clear_line() {
        let none = DcsSettings::default();
        let e = none
            .resolve(None, None, &HttpOptions::default())
            .unwrap_err();
        assert!(e.to_string().contains("--dcs etcd3://HOST:PORT"), "{e}");
        let no_scope = DcsSettings {
            url: Some("etcd3://a:2379".into()),
            ..Default::default()
        };
        let e = no_scope
            .resolve(None, None, &HttpOptions::default())
            .unwrap_err();
        assert!(e.to_string().contains("--scope"), "{e}");
        let tls_on_http = DcsSettings {
            url: Some("etcd3://a:2379".into()),
            scope: Some("demo".into()),
            cacert: Some("/ca.pem".into()),
            ..Default::default()
        };
        let e = tls_on_http
            .resolve(None, None, &HttpOptions::default())
            .unwrap_err();
        assert!(e.to_string().contains("etcd3s://"), "{e}");
    }
}
