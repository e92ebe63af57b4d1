//! How the operator names one cluster (URLs or a patroni.yml, credentials, TLS, timeouts),
//! resolved into a REST source. The CLI flags and the watch config both become a `Target`.

use std::path::PathBuf;
use std::time::Duration;

use super::k8s::K8sTarget;
use super::patroni_yml::PatroniYml;
use super::rest::{Credentials, HttpCache, HttpOptions, RestSource};
use super::SourceError;

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
}

impl Target {
    /// Resolves the target into a REST source: through Kubernetes when a workload is named
    /// and no URL or patroni.yml is, else as [`Target::source`].
    pub async fn connect(&self) -> Result<RestSource, SourceError> {
        self.connect_with(&mut HttpCache::default()).await
    }

    /// As [`Target::connect`], with the HTTP client taken from `cache`: a daemon watching many
    /// clusters builds one client per distinct TLS/timeout setting, not one per cluster.
    pub async fn connect_with(&self, cache: &mut HttpCache) -> Result<RestSource, SourceError> {
        let urls_given = self.urls.iter().any(|u| !u.trim().is_empty());
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
            }
            _ => self.source_with(cache),
        }
    }

    /// Resolves URLs and credentials (flags first, then patroni.yml) into a REST source.
    pub fn source(&self) -> Result<RestSource, SourceError> {
        self.source_with(&mut HttpCache::default())
    }

    /// As [`Target::source`], with the HTTP client taken from `cache`.
    pub fn source_with(&self, cache: &mut HttpCache) -> Result<RestSource, SourceError> {
        let (urls, opts) = self.resolve()?;
        RestSource::new(cache.get(&opts)?, &urls)
    }

    /// The URLs and HTTP options, flags first, then patroni.yml.
    fn resolve(&self) -> Result<(Vec<String>, HttpOptions), SourceError> {
        let yml = match &self.patroni_yml {
            Some(p) => Some(PatroniYml::read(p).map_err(SourceError::BadInput)?),
            None => None,
        };
        let urls: Vec<String> = if !self.urls.is_empty() {
            self.urls
                .iter()
                .filter(|u| !u.trim().is_empty())
                .cloned()
                .collect()
        } else {
            yml.as_ref()
                .and_then(|y| y.url.clone())
                .into_iter()
                .collect()
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
                _ => yml.as_ref().and_then(|y| y.auth.clone()),
            };
        let opts = HttpOptions {
            auth,
            ca_file: self
                .cacert
                .clone()
                .or_else(|| yml.as_ref().and_then(|y| y.ca_file.clone())),
            client_cert: self
                .client_cert
                .clone()
                .or_else(|| yml.as_ref().and_then(|y| y.client_cert.clone())),
            insecure: self.insecure || yml.as_ref().is_some_and(|y| y.insecure),
            connect_timeout: self.connect_timeout,
            timeout: self.request_timeout,
        };
        Ok((urls, opts))
    }
}

/// Reads a password file's first line.
pub fn read_password_file(path: &std::path::Path) -> Result<String, SourceError> {
    let raw = std::fs::read_to_string(path).map_err(|e| {
        SourceError::BadInput(format!(
            "cannot read the password file {}: {e}",
            path.display()
        ))
    })?;
    Ok(raw.lines().next().unwrap_or_default().to_string())
}
