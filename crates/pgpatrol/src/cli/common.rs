//! Arguments shared by every command that reads a cluster, resolved into a source once.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, ValueEnum};

use crate::source::dcs::DcsSettings;
use crate::source::k8s::{Access, K8sTarget};
use crate::source::target::{AccessSettings, Target};
use crate::source::ClusterSource;

/// How to reach a cluster through Patroni's REST API.
#[derive(Debug, Clone, Args)]
pub struct ClusterArgs {
    /// Patroni REST API of any member (e.g. http://10.0.0.5:8008). Repeat or comma-separate
    /// to try several in turn.
    #[arg(long = "url", env = "PATRONI_URL", value_delimiter = ',')]
    pub urls: Vec<String>,

    /// A Patroni configuration file, read like patronictl reads it: restapi.connect_address,
    /// ctl/restapi authentication, CA and client certificate.
    #[arg(short = 'c', long = "config-file", env = "PATRONICTL_CONFIG_FILE")]
    pub config_file: Option<PathBuf>,

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

    #[command(flatten)]
    pub k8s: K8sArgs,

    #[command(flatten)]
    pub dcs: DcsArgs,
}

/// How to read the cluster from Patroni's DCS (etcd v3), as patronictl does: when every
/// REST API is down, the DCS still holds the members, the leader and the configuration.
#[derive(Debug, Clone, Args)]
pub struct DcsArgs {
    /// Read the cluster from etcd v3: etcd3://HOST:PORT[,HOST:PORT...] (etcd3s:// for
    /// https). Alone (`--dcs`, with -c), the etcd3 section of patroni.yml. Members are still
    /// reached over REST by the api_url the DCS holds.
    #[arg(
        long = "dcs",
        id = "dcs_url",
        value_name = "URL",
        num_args = 0..=1,
        default_missing_value = "",
        help_heading = "DCS"
    )]
    pub url: Option<String>,

    /// The cluster's scope in the DCS (Patroni's `scope`; else patroni.yml's).
    #[arg(long, id = "dcs_scope", env = "PATRONI_SCOPE", help_heading = "DCS")]
    pub scope: Option<String>,

    /// Patroni's DCS namespace (default /service, or patroni.yml's `namespace`).
    #[arg(
        long = "dcs-namespace",
        id = "dcs_namespace",
        env = "PATRONI_NAMESPACE",
        help_heading = "DCS"
    )]
    pub namespace: Option<String>,

    /// An etcd user (etcd authentication). The password comes from PATRONI_ETCD3_PASSWORD or
    /// --dcs-password-file, never from a flag.
    #[arg(
        long = "dcs-username",
        id = "dcs_username",
        env = "PATRONI_ETCD3_USERNAME",
        help_heading = "DCS"
    )]
    pub username: Option<String>,

    /// A file holding the etcd password (its first line).
    #[arg(
        long = "dcs-password-file",
        id = "dcs_password_file",
        help_heading = "DCS"
    )]
    pub password_file: Option<PathBuf>,

    /// A PEM CA bundle to verify etcd's certificate (etcd3s://).
    #[arg(long = "dcs-cacert", id = "dcs_cacert", help_heading = "DCS")]
    pub cacert: Option<PathBuf>,

    /// A PEM client certificate for etcd (its --client-cert-auth).
    #[arg(
        long = "dcs-cert",
        id = "dcs_cert",
        requires = "dcs_key",
        help_heading = "DCS"
    )]
    pub cert: Option<PathBuf>,

    /// The etcd client certificate's PEM key.
    #[arg(
        long = "dcs-key",
        id = "dcs_key",
        requires = "dcs_cert",
        help_heading = "DCS"
    )]
    pub key: Option<PathBuf>,
}

impl DcsArgs {
    /// The DCS settings these flags give; none unless --dcs is given.
    pub fn settings(&self) -> Option<DcsSettings> {
        let url = self.url.as_ref()?;
        Some(DcsSettings {
            url: Some(url.clone()).filter(|u| !u.trim().is_empty()),
            scope: self.scope.clone().filter(|s| !s.is_empty()),
            namespace: self.namespace.clone().filter(|s| !s.is_empty()),
            username: self.username.clone().filter(|s| !s.is_empty()),
            password_file: self.password_file.clone(),
            password_env: None,
            cacert: self.cacert.clone(),
            cert: self.cert.clone(),
            key: self.key.clone(),
        })
    }
}

/// How to find a Patroni cluster in Kubernetes (docs/KUBERNETES.md). Used when no --url
/// or -c is given.
#[derive(Debug, Clone, Args)]
pub struct K8sArgs {
    /// The Patroni workload: statefulset/NAME, deployment/NAME or pod/NAME.
    #[arg(
        long = "k8s-resource",
        env = "PATRONI_RESOURCE_NAME",
        help_heading = "Kubernetes"
    )]
    pub resource: Option<String>,

    /// The workload's namespace (default: the context's namespace).
    #[arg(long, env = "NAMESPACE", help_heading = "Kubernetes")]
    pub namespace: Option<String>,

    /// The kubeconfig context to use (default: its current context).
    #[arg(long, env = "CONTEXT", help_heading = "Kubernetes")]
    pub context: Option<String>,

    /// A kubeconfig file (default: ~/.kube/config, or the pod's service account in a
    /// cluster).
    #[arg(long, env = "KUBECONFIG", help_heading = "Kubernetes")]
    pub kubeconfig: Option<PathBuf>,

    /// The Kubernetes distribution (Kubernetes, GKE, AKS, EKS, OpenShift): a hint for
    /// messages, never required; any value is accepted.
    #[arg(long, env = "DISTRIBUTION", help_heading = "Kubernetes")]
    pub distribution: Option<String>,

    /// How REST calls reach the pods: proxy (reads by pods/proxy, writes by
    /// pods/portforward, which keeps basic auth), direct (pod IPs, inside the cluster) or
    /// exec (curl in the pod over pods/exec; credentials on stdin, never on its command line).
    #[arg(
        long = "k8s-access",
        value_enum,
        default_value = "proxy",
        help_heading = "Kubernetes"
    )]
    pub access: Access,

    /// Patroni's REST port in the pods (default: the container port named patroni/api, else
    /// 8008).
    #[arg(long = "k8s-port", help_heading = "Kubernetes")]
    pub port: Option<u16>,

    /// A Secret in the namespace with keys username and password for Patroni's unsafe
    /// endpoints (else --username and PATRONI_RESTAPI_PASSWORD).
    #[arg(
        long = "k8s-secret",
        env = "PATRONI_RESTAPI_SECRET",
        help_heading = "Kubernetes"
    )]
    pub secret: Option<String>,

    /// Read the cluster from Patroni's Kubernetes DCS (its ConfigMaps or Endpoints and the
    /// pods' `status` annotations; --scope, else the workload's cluster-name label) instead
    /// of a member's /cluster. Without it the DCS is read when no member's REST API answers.
    /// With --scope, no --k8s-resource is needed: the pods are those labelled
    /// cluster-name=SCOPE.
    #[arg(long = "k8s-dcs", help_heading = "Kubernetes")]
    pub dcs: bool,
}

impl K8sArgs {
    /// The workload, or with --k8s-dcs and `scope` (--scope) but no --k8s-resource, the
    /// cluster's Kubernetes DCS alone (its pods found by their cluster-name label).
    fn target(&self, scope: Option<String>) -> Option<K8sTarget> {
        let resource = match self.resource.clone().filter(|r| !r.trim().is_empty()) {
            Some(r) => r,
            None if self.dcs && scope.is_some() => String::new(),
            None => return None,
        };
        Some(K8sTarget {
            resource,
            namespace: self.namespace.clone(),
            context: self.context.clone().filter(|c| !c.is_empty()),
            kubeconfig: self
                .kubeconfig
                .clone()
                .filter(|p| !p.as_os_str().is_empty()),
            distribution: self.distribution.clone().filter(|d| !d.is_empty()),
            access: self.access,
            port: self.port,
            secret: self.secret.clone().filter(|s| !s.is_empty()),
            dcs: self.dcs,
            scope,
        })
    }
}

impl ClusterArgs {
    /// The access settings these flags give: the same struct a watch.yml cluster entry
    /// fills, so both doors honour every setting.
    pub fn access(&self) -> AccessSettings {
        AccessSettings {
            urls: self.urls.clone(),
            patroni_yml: self.config_file.clone(),
            username: self.username.clone(),
            password_file: self.password_file.clone(),
            password_env: None,
            cacert: self.cacert.clone(),
            cert: self.cert.clone(),
            key: self.key.clone(),
            insecure: self.insecure,
            connect_timeout: Some(self.connect_timeout),
            request_timeout: Some(self.request_timeout),
            kubernetes: self
                .k8s
                .target(self.dcs.scope.clone().filter(|s| !s.is_empty())),
            dcs: self.dcs.settings(),
        }
    }

    /// The cluster these flags name (the password resolved from its file or environment).
    pub fn target(&self) -> anyhow::Result<Target> {
        Ok(self.access().target(self.request_timeout)?)
    }

    /// Resolves flags, environment, patroni.yml or the Kubernetes workload into a REST
    /// source.
    pub async fn source(&self) -> anyhow::Result<ClusterSource> {
        Ok(self.target()?.connect().await?)
    }
}

/// The pgBackRest stanza doctor checks and report bundles.
#[derive(Debug, Clone, Args)]
pub struct BackrestArgs {
    /// The pgBackRest stanza: doctor checks its status, the age of its newest backup (WARN
    /// past 24 h) and that the repository's newest WAL keeps up with the leader; report
    /// includes its `pgbackrest info`.
    #[arg(
        long = "pgbackrest-stanza",
        env = "PGPATROL_PGBACKREST_STANZA",
        help_heading = "pgBackRest"
    )]
    pub stanza: Option<String>,

    /// pgBackRest's config file (default: its own default, /etc/pgbackrest/pgbackrest.conf).
    #[arg(long = "pgbackrest-config", help_heading = "pgBackRest")]
    pub config: Option<PathBuf>,

    /// The pgbackrest program.
    #[arg(
        long = "pgbackrest-bin",
        default_value = "pgbackrest",
        help_heading = "pgBackRest"
    )]
    pub bin: PathBuf,
}

impl BackrestArgs {
    /// The stanza to read, when one was given.
    pub fn backrest(&self) -> Option<crate::doctor::backup::Backrest> {
        self.stanza
            .as_ref()
            .map(|stanza| crate::doctor::backup::Backrest {
                bin: self.bin.clone(),
                config: self.config.clone(),
                stanza: stanza.clone(),
            })
    }
}

/// How to log in to the members' PostgreSQL (doctor's PostgreSQL checks, sli --lag-seconds).
#[derive(Debug, Clone, Args)]
pub struct PgArgs {
    /// PostgreSQL user (default: postgresql.authentication.superuser of -c patroni.yml).
    /// Without one, the PostgreSQL checks are skipped.
    #[arg(long, env = "PGPATROL_PG_USER", help_heading = "PostgreSQL")]
    pub pg_user: Option<String>,

    /// A file whose first line is that user's password (else PGPASSWORD).
    #[arg(long, env = "PGPATROL_PG_PASSWORD_FILE", help_heading = "PostgreSQL")]
    pub pg_password_file: Option<PathBuf>,

    /// The database to connect to.
    #[arg(long, default_value = "postgres", help_heading = "PostgreSQL")]
    pub pg_dbname: String,

    /// TLS to PostgreSQL, as libpq's sslmode: prefer and require encrypt without verifying
    /// the server; verify-full verifies it against --pg-sslrootcert and the member's host.
    #[arg(
        long,
        value_enum,
        default_value = "prefer",
        help_heading = "PostgreSQL"
    )]
    pub pg_sslmode: crate::source::pg::tls::SslMode,

    /// PEM CA certificate(s) for --pg-sslmode verify-full.
    #[arg(long, help_heading = "PostgreSQL")]
    pub pg_sslrootcert: Option<PathBuf>,
}

impl PgArgs {
    /// The login: the flags, else the superuser of `cluster`'s -c patroni.yml; `None` when
    /// neither gives a user.
    pub fn login(
        &self,
        cluster: &ClusterArgs,
    ) -> anyhow::Result<Option<crate::source::pg::PgLogin>> {
        let (user, password) = match &self.pg_user {
            Some(u) => {
                let password = match &self.pg_password_file {
                    Some(f) => Some(crate::source::http::read_password_file(f)?),
                    None => std::env::var("PGPASSWORD").ok(),
                };
                (u.clone(), password)
            }
            None => {
                let yml = match &cluster.config_file {
                    Some(p) => {
                        crate::source::patroni_yml::PatroniYml::read(p)
                            .map_err(anyhow::Error::msg)?
                            .pg_superuser
                    }
                    None => None,
                };
                match yml {
                    Some(c) => (c.username, Some(c.password).filter(|p| !p.is_empty())),
                    None => return Ok(None),
                }
            }
        };
        let tls =
            crate::source::pg::tls::client_config(self.pg_sslmode, self.pg_sslrootcert.as_deref())
                .map_err(anyhow::Error::msg)?;
        Ok(Some(crate::source::pg::PgLogin {
            user,
            password,
            dbname: self.pg_dbname.clone(),
            connect_timeout: cluster.connect_timeout.max(Duration::from_secs(1)),
            tls,
            tls_required: !matches!(
                self.pg_sslmode,
                crate::source::pg::tls::SslMode::Prefer | crate::source::pg::tls::SslMode::Disable
            ),
        }))
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
        Format::Yaml => out.write_all(crate::yaml::to_string(value)?.as_bytes())?,
    }
    Ok(())
}

/// Resolves on Ctrl-C or SIGTERM (`watch`, `list --watch`).
pub async fn stop_signal() {
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term => {}
    }
}
