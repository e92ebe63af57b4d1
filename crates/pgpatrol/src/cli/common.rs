//! Arguments shared by every command that reads a cluster, resolved into a source once.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use clap::{Args, ValueEnum};

use crate::source::patroni_yml::PatroniYml;
use crate::source::rest::{Credentials, Http, HttpOptions, RestSource};

/// How to reach a cluster through Patroni's REST API.
#[derive(Debug, Clone, Args)]
pub struct ClusterArgs {
    /// Patroni REST API of any member (e.g. http://10.0.0.5:8008). Repeat or comma-separate
    /// to try several in turn.
    #[arg(long = "url", env = "PATRONI_URL", value_delimiter = ',')]
    pub urls: Vec<String>,

    /// A Patroni configuration file, read like patronictl reads it: restapi.connect_address,
    /// ctl/restapi authentication, CA and client certificate.
    #[arg(short = 'c', long = "config", env = "PATRONICTL_CONFIG_FILE")]
    pub config: Option<PathBuf>,

    /// User for Patroni's unsafe endpoints (reinitialize, switchover, ...). The password comes
    /// from PATRONI_RESTAPI_PASSWORD or --password-file, never from a flag.
    #[arg(long, env = "PATRONI_RESTAPI_USERNAME")]
    pub username: Option<String>,

    /// A file holding the REST API password (its first line).
    #[arg(long, env = "PGPATROL_PASSWORD_FILE")]
    pub password_file: Option<PathBuf>,

    /// A PEM CA bundle to verify Patroni's https certificate.
    #[arg(long)]
    pub cacert: Option<PathBuf>,

    /// A PEM client certificate, for restapi verify_client.
    #[arg(long, requires = "key")]
    pub cert: Option<PathBuf>,

    /// The client certificate's PEM key.
    #[arg(long, requires = "cert")]
    pub key: Option<PathBuf>,

    /// Do not verify Patroni's https certificate.
    #[arg(long)]
    pub insecure: bool,

    /// How long to wait for a TCP connection to a member.
    #[arg(long, default_value = "2s", value_parser = humantime::parse_duration)]
    pub connect_timeout: Duration,

    /// How long one request to a member may take in all.
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
    pub request_timeout: Duration,
}

impl ClusterArgs {
    /// Resolves flags, environment and patroni.yml into a REST source.
    pub fn source(&self) -> anyhow::Result<RestSource> {
        let yml = match &self.config {
            Some(p) => Some(PatroniYml::read(p).map_err(anyhow::Error::msg)?),
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
        let auth = match &self.username {
            Some(user) => Some(Credentials {
                username: user.clone(),
                password: self.password()?,
            }),
            None => yml.as_ref().and_then(|y| y.auth.clone()),
        };
        let opts = HttpOptions {
            auth,
            ca_file: self
                .cacert
                .clone()
                .or_else(|| yml.as_ref().and_then(|y| y.ca_file.clone())),
            client_cert: self
                .cert
                .clone()
                .zip(self.key.clone())
                .or_else(|| yml.as_ref().and_then(|y| y.client_cert.clone())),
            insecure: self.insecure || yml.as_ref().is_some_and(|y| y.insecure),
            connect_timeout: self.connect_timeout,
            timeout: self.request_timeout,
        };
        Ok(RestSource::new(Http::new(&opts)?, &urls)?)
    }

    fn password(&self) -> anyhow::Result<String> {
        if let Some(p) = &self.password_file {
            let raw = std::fs::read_to_string(p)
                .with_context(|| format!("cannot read the password file {}", p.display()))?;
            return Ok(raw.lines().next().unwrap_or_default().to_string());
        }
        std::env::var("PATRONI_RESTAPI_PASSWORD").map_err(|_| {
            anyhow::anyhow!(
                "--username needs a password: set PATRONI_RESTAPI_PASSWORD or pass --password-file"
            )
        })
    }
}

/// Output formats for reports and listings.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    Table,
    Json,
    Yaml,
}

/// Writes `value` as pretty JSON or YAML.
pub fn write_structured<T: serde::Serialize>(
    out: &mut impl std::io::Write,
    format: Format,
    value: &T,
) -> anyhow::Result<()> {
    match format {
        Format::Json | Format::Table => {
            serde_json::to_writer_pretty(&mut *out, value)?;
            writeln!(out)?;
        }
        Format::Yaml => serde_yaml::to_writer(&mut *out, value)?,
    }
    Ok(())
}
