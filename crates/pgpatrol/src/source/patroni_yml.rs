//! Reads a Patroni configuration file the way patronictl does, for what a client needs:
//! the REST API address (`restapi.connect_address`, https when `restapi.certfile` is set),
//! credentials (`ctl.authentication`, else `restapi.authentication`), the CA
//! (`ctl.cacert`, else `restapi.cafile`), a client certificate (`ctl.certfile`/`keyfile`)
//! and `ctl.insecure`; and, for the DCS source, `scope`, `namespace` and the `etcd3`
//! section (hosts, protocol, username/password, cacert, cert/key).

use std::path::{Path, PathBuf};

use serde_json::Value;

use super::http::Credentials;

/// What a client takes from patroni.yml.
#[derive(Debug, Clone, Default)]
pub struct PatroniYml {
    pub scope: Option<String>,
    pub url: Option<String>,
    pub auth: Option<Credentials>,
    pub ca_file: Option<PathBuf>,
    pub client_cert: Option<(PathBuf, PathBuf)>,
    pub insecure: bool,
    /// The cluster's etcd (`etcd3` section: `url`, else the first of `hosts`/`host`), when
    /// its DCS is etcd v3: watch's heal lease can live there.
    pub etcd3_url: Option<String>,
    /// `postgresql.authentication.superuser` (username, password): doctor's PostgreSQL
    /// checks connect with it when no --pg-user is given.
    pub pg_superuser: Option<Credentials>,
    /// Patroni's `namespace` (default `/service` where it is used).
    pub namespace: Option<String>,
    /// The `etcd3` section, for reading the DCS.
    pub etcd3: Option<Etcd3Yml>,
}

/// What the DCS source takes from the `etcd3` section.
#[derive(Debug, Clone, Default)]
pub struct Etcd3Yml {
    /// `protocol://host:port` of each of `url`, `hosts` (a list or comma-separated) or `host`.
    pub endpoints: Vec<String>,
    pub auth: Option<Credentials>,
    pub cacert: Option<PathBuf>,
    pub client_cert: Option<(PathBuf, PathBuf)>,
}

fn etcd3(v: &Value) -> Option<Etcd3Yml> {
    let e = v.get("etcd3")?;
    let scheme = text(e, &["protocol"]).unwrap_or_else(|| "http".into());
    let endpoints: Vec<String> = if let Some(url) = text(e, &["url"]) {
        vec![url.trim_end_matches('/').to_string()]
    } else {
        let raw: Vec<String> = match e.get("hosts") {
            Some(Value::Array(hosts)) => hosts
                .iter()
                .filter_map(|h| h.as_str().map(str::to_string))
                .collect(),
            Some(Value::String(hosts)) => hosts.split(',').map(|h| h.trim().to_string()).collect(),
            _ => text(e, &["host"]).into_iter().collect(),
        };
        raw.into_iter()
            .filter(|h| !h.is_empty())
            .map(|h| format!("{scheme}://{h}"))
            .collect()
    };
    let cert = text(e, &["cert"]).map(PathBuf::from);
    let key = text(e, &["key"])
        .map(PathBuf::from)
        .or_else(|| cert.clone());
    let auth = text(e, &["username"]).map(|username| Credentials {
        username,
        password: text(e, &["password"]).unwrap_or_default(),
    });
    Some(Etcd3Yml {
        endpoints,
        auth,
        cacert: text(e, &["cacert"]).map(PathBuf::from),
        client_cert: cert.zip(key),
    })
}

fn get<'a>(v: &'a Value, path: &[&str]) -> Option<&'a Value> {
    path.iter().try_fold(v, |v, k| v.get(*k))
}

fn text(v: &Value, path: &[&str]) -> Option<String> {
    get(v, path).and_then(|v| match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    })
}

fn credentials(v: &Value, section: &str) -> Option<Credentials> {
    Some(Credentials {
        username: text(v, &[section, "authentication", "username"])?,
        password: text(v, &[section, "authentication", "password"])?,
    })
}

fn etcd3_url(v: &Value) -> Option<String> {
    let e = v.get("etcd3")?;
    let scheme = text(e, &["protocol"]).unwrap_or_else(|| "http".into());
    if let Some(url) = text(e, &["url"]) {
        return Some(url.trim_end_matches('/').to_string());
    }
    let first = match e.get("hosts") {
        Some(Value::Array(hosts)) => hosts.first().and_then(|h| h.as_str()).map(str::to_string),
        Some(Value::String(hosts)) => hosts.split(',').next().map(|h| h.trim().to_string()),
        _ => text(e, &["host"]),
    }?;
    Some(format!("{scheme}://{first}"))
}

impl PatroniYml {
    pub fn read(path: &Path) -> Result<Self, String> {
        let raw = std::fs::read_to_string(path)
            .map_err(|e| format!("cannot read Patroni config {}: {e}", path.display()))?;
        Self::parse(&raw).map_err(|e| format!("Patroni config {}: {e}", path.display()))
    }

    pub fn parse(raw: &str) -> Result<Self, String> {
        let v: Value = crate::yaml::from_str(raw).map_err(|e| format!("not valid YAML: {e}"))?;
        if !v.is_object() {
            return Err("not a YAML mapping of Patroni settings".into());
        }
        let restapi = v
            .get("restapi")
            .ok_or("it has no restapi section: add restapi.connect_address, or pass --url")?;
        let tls = restapi.get("certfile").is_some();
        let url = text(restapi, &["connect_address"])
            .map(|a| format!("{}://{}", if tls { "https" } else { "http" }, a));
        if url.is_none() {
            return Err("restapi has no connect_address: add it, or pass --url".into());
        }
        let dir = |p: String| PathBuf::from(p);
        let cert = text(&v, &["ctl", "certfile"]).map(dir);
        let key = text(&v, &["ctl", "keyfile"])
            .map(dir)
            .or_else(|| cert.clone());
        Ok(PatroniYml {
            scope: text(&v, &["scope"]),
            url,
            auth: credentials(&v, "ctl").or_else(|| credentials(&v, "restapi")),
            ca_file: text(&v, &["ctl", "cacert"])
                .or_else(|| text(&v, &["restapi", "cafile"]))
                .map(dir),
            client_cert: cert.zip(key),
            insecure: get(&v, &["ctl", "insecure"])
                .and_then(Value::as_bool)
                .unwrap_or(false),
            etcd3_url: etcd3_url(&v),
            pg_superuser: text(
                &v,
                &["postgresql", "authentication", "superuser", "username"],
            )
            .filter(|u| !u.is_empty())
            .map(|username| Credentials {
                username,
                password: text(
                    &v,
                    &["postgresql", "authentication", "superuser", "password"],
                )
                .unwrap_or_default(),
            }),
            namespace: text(&v, &["namespace"]),
            etcd3: etcd3(&v),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_like_patronictl() {
        let y = PatroniYml::parse(
            "scope: demo\nrestapi:\n  listen: 0.0.0.0:8008\n  connect_address: 10.0.0.5:8008\n  certfile: /c.pem\n  cafile: /ca.pem\n  authentication: {username: api, password: s3}\nctl:\n  authentication: {username: ctl, password: s4}\n  insecure: true\n",
        )
        .unwrap();
        assert_eq!(y.url.as_deref(), Some("https://10.0.0.5:8008"));
        assert_eq!(y.auth.as_ref().map(|a| a.username.as_str()), Some("ctl"));
        assert_eq!(y.ca_file, Some(PathBuf::from("/ca.pem")));
        assert!(y.insecure);
        assert_eq!(y.scope.as_deref(), Some("demo"));
        assert_eq!(y.etcd3_url, None);
    }

    #[test]
    fn finds_the_etcd3_dcs() {
        let y = PatroniYml::parse(
            "restapi: {connect_address: h:8008}\netcd3: {hosts: 10.0.0.1:2379,10.0.0.2:2379}\n",
        )
        .unwrap();
        assert_eq!(y.etcd3_url.as_deref(), Some("http://10.0.0.1:2379"));
        let y = PatroniYml::parse(
            "restapi: {connect_address: h:8008}\netcd3: {hosts: [a:2379], protocol: https}\n",
        )
        .unwrap();
        assert_eq!(y.etcd3_url.as_deref(), Some("https://a:2379"));
    }

    #[test]
    fn restapi_auth_is_the_fallback() {
        let y = PatroniYml::parse(
            "restapi:\n  connect_address: h:8008\n  authentication: {username: api, password: s3}\n",
        )
        .unwrap();
        assert_eq!(y.url.as_deref(), Some("http://h:8008"));
        assert_eq!(y.auth.unwrap().username, "api");
    }

    #[test]
    fn missing_restapi_is_a_clear_error() {
        let e = PatroniYml::parse("scope: demo\npostgresql: {}\n").unwrap_err();
        assert!(e.contains("no restapi section"), "{e}");
        let e = PatroniYml::parse("[1, 2]").unwrap_err();
        assert!(e.contains("mapping"), "{e}");
        let e = PatroniYml::parse("a: [").unwrap_err();
        assert!(e.contains("YAML"), "{e}");
    }
}
