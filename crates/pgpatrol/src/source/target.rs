//! How the operator names one cluster (URLs or a patroni.yml, credentials, TLS, timeouts),
//! resolved into a [`ClusterSource`]. The CLI flags and the watch config both become a `Target`.

use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Deserializer};

use super::cluster::{ClusterSource, DcsSource};
use super::dcs::{Dcs, DcsSettings};
use super::http::{Credentials, HttpCache, HttpOptions};
use super::k8s::K8sTarget;
use super::patroni_yml::PatroniYml;
use super::rest::RestSource;
use super::SourceError;

/// How to reach one cluster: the same settings, by the same names, whether they come from a
/// command's flags (`--url`, `--cert`, `--connect-timeout`...) or from a cluster entry of
/// watch.yml (`urls:`, `cert:`, `connect_timeout:`...). Both doors fill this one struct, so
/// a setting cannot be honoured by one and dropped by the other.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct AccessSettings {
    /// Patroni REST API URLs of members, tried in turn.
    #[serde(default)]
    pub urls: Vec<String>,
    /// A Patroni configuration file, read like patronictl reads it.
    #[serde(default)]
    pub patroni_yml: Option<PathBuf>,
    #[serde(default)]
    pub username: Option<String>,
    /// A file whose first line is the REST API password.
    #[serde(default)]
    pub password_file: Option<PathBuf>,
    /// The name of an environment variable holding the password (else
    /// `PATRONI_RESTAPI_PASSWORD`).
    #[serde(default)]
    pub password_env: Option<String>,
    /// A PEM CA bundle for Patroni's https certificate.
    #[serde(default)]
    pub cacert: Option<PathBuf>,
    /// A PEM client certificate and its key, for restapi `verify_client`.
    #[serde(default)]
    pub cert: Option<PathBuf>,
    #[serde(default)]
    pub key: Option<PathBuf>,
    #[serde(default)]
    pub insecure: bool,
    /// How long a TCP connection may take (default: 2 s, or the request timeout if shorter).
    #[serde(default, deserialize_with = "opt_duration")]
    pub connect_timeout: Option<Duration>,
    /// How long one request may take in all (watch.yml calls it `timeout`).
    #[serde(default, rename = "timeout", deserialize_with = "opt_duration")]
    pub request_timeout: Option<Duration>,
    /// Find the members from a Kubernetes workload instead.
    #[serde(default)]
    pub kubernetes: Option<K8sTarget>,
    /// Read snapshots from Patroni's DCS (etcd v3): `dcs: {url, scope, namespace, ...}`.
    #[serde(default)]
    pub dcs: Option<DcsSettings>,
}

/// The default password variable, as patronictl's.
pub const PASSWORD_ENV: &str = "PATRONI_RESTAPI_PASSWORD";

/// A duration like `10s`, `5m`, `30d`.
pub fn duration<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    let s = String::deserialize(d)?;
    humantime::parse_duration(&s).map_err(|e| {
        serde::de::Error::custom(format!("{s:?} is not a duration like 10s, 5m, 30d: {e}"))
    })
}

pub fn opt_duration<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
    duration(d).map(Some)
}

impl AccessSettings {
    /// Something names the cluster: URLs, a patroni.yml or a Kubernetes workload.
    pub fn names_a_cluster(&self) -> bool {
        self.urls.iter().any(|u| !u.trim().is_empty())
            || self.patroni_yml.is_some()
            || self.kubernetes.is_some()
            || self.dcs.as_ref().is_some_and(|d| d.url.is_some())
    }

    /// The password, when a username is given: from `password_file`, else the variable
    /// `password_env` names, else `PATRONI_RESTAPI_PASSWORD`.
    pub fn password(&self) -> Result<Option<String>, SourceError> {
        if self.username.is_none() {
            return Ok(None);
        }
        if let Some(f) = &self.password_file {
            return Ok(Some(super::http::read_password_file(f)?));
        }
        let var = self.password_env.as_deref().unwrap_or(PASSWORD_ENV);
        std::env::var(var).map(Some).map_err(|_| {
            SourceError::BadInput(format!(
                "a username needs a password: set {var} or give a password file"
            ))
        })
    }

    /// The target these settings name, the password resolved; `request_timeout` when none
    /// is set.
    pub fn target(&self, request_timeout: Duration) -> Result<Target, SourceError> {
        let client_cert = match (&self.cert, &self.key) {
            (Some(c), Some(k)) => Some((c.clone(), k.clone())),
            (None, None) => None,
            _ => {
                return Err(SourceError::BadInput(
                    "a client certificate needs both cert and key (--cert and --key)".into(),
                ))
            }
        };
        let request_timeout = self.request_timeout.unwrap_or(request_timeout);
        Ok(Target {
            urls: self.urls.clone(),
            patroni_yml: self.patroni_yml.clone(),
            username: self.username.clone(),
            password: self.password()?,
            cacert: self.cacert.clone(),
            client_cert,
            insecure: self.insecure,
            connect_timeout: self
                .connect_timeout
                .unwrap_or_else(|| request_timeout.min(Duration::from_secs(2))),
            request_timeout,
            k8s: self.kubernetes.clone(),
            dcs_password: match &self.dcs {
                Some(d) => d.password()?,
                None => None,
            },
            dcs: self.dcs.clone(),
        })
    }
}

/// One cluster's address and access settings, before anything is read.
#[derive(Debug, Clone, Default)]
pub struct Target {
    pub urls: Vec<String>,
    pub patroni_yml: Option<PathBuf>,
    pub username: Option<String>,
    /// Already resolved (from a file or the environment) by the caller.
    pub password: Option<String>,
    pub cacert: Option<PathBuf>,
    pub client_cert: Option<(PathBuf, PathBuf)>,
    pub insecure: bool,
    pub connect_timeout: Duration,
    pub request_timeout: Duration,
    /// A Kubernetes workload to find the members from, used when no URL or patroni.yml is
    /// given.
    pub k8s: Option<K8sTarget>,
    /// Read snapshots from the DCS; its password already resolved in `dcs_password`.
    pub dcs: Option<DcsSettings>,
    pub dcs_password: Option<String>,
}

impl Target {
    /// Resolves the target into a REST source: through Kubernetes when a workload is named
    /// and no URL or patroni.yml is, else as [`Target::source`].
    pub async fn connect(&self) -> Result<ClusterSource, SourceError> {
        self.connect_with(&mut HttpCache::default()).await
    }

    /// As [`Target::connect`], with the HTTP client taken from `cache`: a daemon watching many
    /// clusters builds one client per distinct TLS/timeout setting, not one per cluster.
    pub async fn connect_with(&self, cache: &mut HttpCache) -> Result<ClusterSource, SourceError> {
        let urls_given = self.urls.iter().any(|u| !u.trim().is_empty());
        if let Some(dcs) = &self.dcs {
            let yml = self.read_yml()?;
            let (urls, opts) = self.resolve_with(yml.as_ref())?;
            let target = dcs.resolve(self.dcs_password.clone(), yml.as_ref(), &opts)?;
            return Ok(ClusterSource::Dcs {
                rest: RestSource::members(cache.get(&opts)?, &urls)?,
                dcs: std::sync::Arc::new(DcsSource::Etcd(Dcs::new(&target)?)),
            });
        }
        match &self.k8s {
            Some(k8s) if !urls_given && self.patroni_yml.is_none() => {
                let (_, opts) = self.resolve()?;
                super::k8s::source(
                    k8s,
                    cache.get(&opts)?,
                    self.connect_timeout,
                    self.request_timeout,
                )
                .await
                .and_then(ClusterSource::from_k8s)
            }
            _ => self.source_with(cache),
        }
    }

    /// Resolves URLs and credentials (flags first, then patroni.yml) into a REST source.
    pub fn source(&self) -> Result<ClusterSource, SourceError> {
        self.source_with(&mut HttpCache::default())
    }

    /// As [`Target::source`], with the HTTP client taken from `cache`.
    pub fn source_with(&self, cache: &mut HttpCache) -> Result<ClusterSource, SourceError> {
        let (urls, opts) = self.resolve()?;
        Ok(RestSource::new(cache.get(&opts)?, &urls)?.into())
    }

    /// The DCS settings to use — `dcs:`, else patroni.yml's `etcd3` section — with patroni.yml
    /// and the HTTP options they are resolved with; `None` when neither names an etcd.
    fn dcs_settings(
        &self,
    ) -> Result<Option<(DcsSettings, Option<PatroniYml>, HttpOptions)>, SourceError> {
        let yml = self.read_yml()?;
        let settings = match (&self.dcs, yml.as_ref().and_then(|y| y.etcd3.as_ref())) {
            (Some(d), _) => d.clone(),
            (None, Some(e)) if !e.endpoints.is_empty() => DcsSettings::default(),
            _ => return Ok(None),
        };
        let (_, opts) = self.resolve_with(yml.as_ref())?;
        Ok(Some((settings, yml, opts)))
    }

    /// The cluster's etcd as the DCS source would reach it — from `dcs:` settings, else the
    /// `etcd3` section of patroni.yml (every host, TLS, client certificate, credentials) —
    /// or `None` when neither names one.
    pub fn etcd_options(&self) -> Result<Option<super::dcs::etcd::EtcdOptions>, SourceError> {
        Ok(self.dcs_target()?.map(|t| t.etcd))
    }

    /// The cluster in its etcd as the DCS source would reach it (`dcs:` settings, else
    /// patroni.yml's `etcd3` section, its scope and namespace), or `None` when neither names
    /// one.
    pub fn dcs_target(&self) -> Result<Option<super::dcs::DcsTarget>, SourceError> {
        let Some((settings, yml, opts)) = self.dcs_settings()? else {
            return Ok(None);
        };
        settings
            .resolve(self.dcs_password.clone(), yml.as_ref(), &opts)
            .map(Some)
    }

    /// The etcd and Patroni namespace of `dcs:` settings (else patroni.yml's `etcd3`
    /// section), for every cluster under it (`list --all`): no scope is needed.
    pub fn dcs_namespace(&self) -> Result<(super::dcs::etcd::EtcdOptions, String), SourceError> {
        let Some((settings, yml, opts)) = self.dcs_settings()? else {
            return Err(SourceError::BadInput(
                "--all reads every cluster from etcd: pass --dcs etcd3://HOST:PORT (or -c patroni.yml with an etcd3 section)".into(),
            ));
        };
        settings.resolve_namespace(self.dcs_password.clone(), yml.as_ref(), &opts)
    }

    fn read_yml(&self) -> Result<Option<PatroniYml>, SourceError> {
        match &self.patroni_yml {
            Some(p) => Ok(Some(PatroniYml::read(p).map_err(SourceError::BadInput)?)),
            None => Ok(None),
        }
    }

    /// The URLs and HTTP options, flags first, then patroni.yml.
    fn resolve(&self) -> Result<(Vec<String>, HttpOptions), SourceError> {
        let yml = self.read_yml()?;
        self.resolve_with(yml.as_ref())
    }

    /// As [`Target::resolve`], patroni.yml already read.
    fn resolve_with(
        &self,
        yml: Option<&PatroniYml>,
    ) -> Result<(Vec<String>, HttpOptions), SourceError> {
        let urls: Vec<String> = if !self.urls.is_empty() {
            self.urls
                .iter()
                .filter(|u| !u.trim().is_empty())
                .cloned()
                .collect()
        } else {
            yml.and_then(|y| y.url.clone()).into_iter().collect()
        };
        let auth =
            match (&self.username, &self.password) {
                (Some(user), Some(password)) => Some(Credentials {
                    username: user.clone(),
                    password: password.clone(),
                }),
                (Some(_), None) => return Err(SourceError::BadInput(
                    "a username needs a password: set PATRONI_RESTAPI_PASSWORD or a password file"
                        .into(),
                )),
                _ => yml.and_then(|y| y.auth.clone()),
            };
        let opts = HttpOptions {
            auth,
            ca_file: self
                .cacert
                .clone()
                .or_else(|| yml.and_then(|y| y.ca_file.clone())),
            client_cert: self
                .client_cert
                .clone()
                .or_else(|| yml.and_then(|y| y.client_cert.clone())),
            insecure: self.insecure || yml.is_some_and(|y| y.insecure),
            connect_timeout: self.connect_timeout,
            timeout: self.request_timeout,
        };
        Ok((urls, opts))
    }
}
