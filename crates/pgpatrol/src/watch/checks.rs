//! doctor's checks inside `watch` (with a `checks:` section): every `checks.interval` a
//! poller gathers what the checks need besides its own snapshots (members' `/patroni`,
//! `/history`, `/config`; PostgreSQL and pgBackRest when the cluster names them), judges it
//! with the same functions as `pgpatrol doctor`, and exports `pgpatrol_check`. The
//! transitional-state check sees the poller's last readings as its observe window.

use std::collections::{BTreeSet, VecDeque};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use pgpatrol_core::checks::{self, Check, RestEvidence, Thresholds};
use pgpatrol_core::Cluster;

use super::config::{ClusterConfig, WatchConfig};
use super::metrics::{ClusterCheckL, Metrics};
use crate::doctor::backup::Backrest;
use crate::source::pg::PgLogin;
use crate::source::ClusterSource;

/// Readings kept for the transitional-state check.
const RECENT: usize = 5;

pub(super) struct CheckRunner {
    every: Duration,
    last: Option<Instant>,
    recent: VecDeque<(Instant, Cluster)>,
    thresholds: Thresholds,
    pg: Option<PgLogin>,
    backrest: Option<Backrest>,
    exported: BTreeSet<&'static str>,
}

impl CheckRunner {
    /// `None` when the config has no `checks:` section.
    pub(super) fn new(cfg: &WatchConfig, c: &ClusterConfig) -> Result<Option<Self>, String> {
        let Some(section) = &cfg.checks else {
            return Ok(None);
        };
        let thresholds = section.thresholds()?;
        let pg = match &c.postgres {
            Some(p) => Some(p.login(&c.name)?),
            None => None,
        };
        let backrest = c.pgbackrest.as_ref().map(|b| Backrest {
            bin: b.bin.clone().unwrap_or_else(|| PathBuf::from("pgbackrest")),
            config: b.config.clone(),
            stanza: b.stanza.clone(),
        });
        Ok(Some(CheckRunner {
            every: section.interval.unwrap_or(Duration::from_secs(60)),
            last: None,
            recent: VecDeque::new(),
            thresholds,
            pg,
            backrest,
            exported: BTreeSet::new(),
        }))
    }

    /// Keeps a poll's reading for the transitional-state check.
    pub(super) fn observe(&mut self, c: &Cluster) {
        self.recent.push_back((Instant::now(), c.clone()));
        while self.recent.len() > RECENT {
            self.recent.pop_front();
        }
    }

    pub(super) fn due(&self) -> bool {
        self.last.is_none_or(|t| t.elapsed() >= self.every)
    }

    /// Runs the checks on the latest reading (or, when `/cluster` failed, on what the
    /// members say of themselves) and exports them.
    pub(super) async fn run(
        &mut self,
        name: &str,
        source: &ClusterSource,
        cluster_error: Option<String>,
        metrics: &Metrics,
    ) -> Vec<Check> {
        self.last = Some(Instant::now());
        let mut e = RestEvidence::default();
        let latest = match &cluster_error {
            None => self.recent.back().map(|(_, c)| c.clone()),
            Some(_) => None,
        };
        match latest {
            None => {
                e.cluster_error =
                    Some(cluster_error.unwrap_or_else(|| "no reading of /cluster yet".into()));
                e.own = source.own_statuses().await;
                self.recent.clear();
            }
            Some(latest) => {
                e.samples = self.recent.iter().map(|(_, c)| c.clone()).collect();
                e.observed = self
                    .recent
                    .front()
                    .map(|(t, _)| t.elapsed())
                    .unwrap_or_default();
                crate::doctor::extras(source, &latest, &mut e).await;
            }
        }
        let mut out = checks::rest_checks(&e, &self.thresholds);
        let mut walfile = None;
        if let (Some(login), Some(latest)) = (&self.pg, e.samples.last()) {
            let pg = crate::source::pg::evidence(latest, login).await;
            walfile = crate::source::pg::leader_walfile(&pg);
            out.extend(checks::pg_checks(&pg, &e.permanent_slots, &self.thresholds));
        }
        if let Some(b) = &self.backrest {
            out.extend(
                crate::doctor::backup::checks(b, walfile.as_deref(), &self.thresholds).await,
            );
        }
        self.export(name, &out, metrics);
        out
    }

    fn export(&mut self, name: &str, checks: &[Check], m: &Metrics) {
        let mut now = BTreeSet::new();
        for c in checks {
            let l = ClusterCheckL {
                cluster: name.into(),
                check: c.id.to_string().into(),
            };
            match c.status.code() {
                Some(v) => {
                    m.checks.get_or_create(&l).set(i64::from(v));
                    now.insert(c.id);
                }
                None => {
                    m.checks.remove(&l);
                }
            }
        }
        // A check that no longer runs (the DCS went down: only two run) loses its series.
        for gone in self.exported.difference(&now) {
            m.checks.remove(&ClusterCheckL {
                cluster: name.into(),
                check: (*gone).into(),
            });
        }
        self.exported = now;
    }
}
