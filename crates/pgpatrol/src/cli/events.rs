//! `pgpatrol events`: the event log of a running `watch` (`/events`), and with `--follow`
//! every new event as it comes (`/events/stream`, reconnecting with the last id seen, so
//! nothing the watcher still holds is missed).

use std::io::Write;
use std::path::PathBuf;
use std::time::Duration;

use clap::Args;

use pgpatrol_core::events::Event;

use super::Outcome;

/// Print what a watcher saw happen: role changes, failovers, members joining and leaving,
/// state changes, pause and resume, pending restarts, lag crossing the tolerance, SLO
/// alerts, checks changing status, heals planned, started, finished or refused.
///
/// Exit codes: 0 printed (with --follow: until interrupted); 2 the watcher cannot be read.
#[derive(Debug, Args)]
pub struct EventsArgs {
    /// The watcher's listener (`listen:` in watch.yml).
    #[arg(
        long,
        env = "PGPATROL_WATCH_URL",
        default_value = "http://127.0.0.1:9187"
    )]
    pub watch_url: String,

    /// Only this cluster's events.
    #[arg(long)]
    pub cluster: Option<String>,

    /// Only events after this id.
    #[arg(long, default_value_t = 0)]
    pub since: u64,

    /// At most this many of the latest events first.
    #[arg(long, default_value_t = 50)]
    pub limit: usize,

    /// Keep printing new events as they come (Ctrl-C stops).
    #[arg(short, long)]
    pub follow: bool,

    /// One JSON object per line instead of a sentence.
    #[arg(long)]
    pub json: bool,

    /// `listen_auth:` user of the watcher.
    #[arg(long, env = "PGPATROL_WATCH_USERNAME")]
    pub username: Option<String>,

    /// A file holding that user's password.
    #[arg(long, env = "PGPATROL_WATCH_PASSWORD_FILE")]
    pub password_file: Option<PathBuf>,

    /// With an https:// listener (`listen_tls:`): the CA (PEM) that signed its certificate,
    /// when the system's roots did not.
    #[arg(long, env = "PGPATROL_WATCH_CACERT")]
    pub cacert: Option<PathBuf>,
}

impl EventsArgs {
    fn line(&self, e: &Event) -> String {
        if self.json {
            return serde_json::to_string(e).unwrap_or_default();
        }
        format!(
            "{} {} {}{} {}",
            e.time,
            e.cluster,
            e.member
                .as_deref()
                .map(|m| format!("{m} "))
                .unwrap_or_default(),
            e.kind.as_str(),
            e.message
        )
    }

    fn request(
        &self,
        client: &reqwest::Client,
        url: String,
    ) -> anyhow::Result<reqwest::RequestBuilder> {
        let mut req = client.get(url);
        if let Some(user) = &self.username {
            let password = match &self.password_file {
                Some(f) => crate::source::http::read_password_file(f)?,
                None => anyhow::bail!(
                    "--username needs --password-file (the watcher's listen_auth password)"
                ),
            };
            req = req.basic_auth(user, Some(password));
        }
        Ok(req)
    }

    pub async fn run(self, out: &mut impl Write) -> anyhow::Result<Outcome> {
        let base = self.watch_url.trim_end_matches('/').to_string();
        if !base.starts_with("http://") && !base.starts_with("https://") {
            anyhow::bail!("--watch-url {base:?} is not an http(s) URL: give the watcher's listener, e.g. http://127.0.0.1:9187");
        }
        let mut builder = reqwest::Client::builder().connect_timeout(Duration::from_secs(5));
        if let Some(ca) = &self.cacert {
            let pem =
                std::fs::read(ca).map_err(|e| anyhow::anyhow!("--cacert {}: {e}", ca.display()))?;
            let cert = reqwest::Certificate::from_pem(&pem).map_err(|e| {
                anyhow::anyhow!("--cacert {}: not a PEM certificate: {e}", ca.display())
            })?;
            builder = builder.add_root_certificate(cert);
        }
        let client = builder.build()?;
        let mut url = format!("{base}/events?since={}&limit={}", self.since, self.limit);
        if let Some(c) = &self.cluster {
            url.push_str(&format!("&cluster={}", crate::watch::page::urlencode(c)));
        }
        let resp = self
            .request(&client, url.clone())?
            .timeout(Duration::from_secs(10))
            .send()
            .await
            .map_err(|e| {
                anyhow::anyhow!(
                    "cannot read the watcher at {base}: {e} (is `pgpatrol watch` running there?)"
                )
            })?;
        if resp.status() == reqwest::StatusCode::UNAUTHORIZED {
            anyhow::bail!("the watcher at {base} asks for a login (listen_auth): give --username and --password-file");
        }
        if !resp.status().is_success() {
            anyhow::bail!(
                "{url} answered HTTP {}: is this a pgpatrol watch listener?",
                resp.status().as_u16()
            );
        }
        let events: Vec<Event> = resp
            .json()
            .await
            .map_err(|e| anyhow::anyhow!("{url} did not answer with pgpatrol's events: {e}"))?;
        let mut last = self.since;
        for e in &events {
            writeln!(out, "{}", self.line(e))?;
            last = last.max(e.id);
        }
        out.flush()?;
        if !self.follow {
            return Ok(Outcome::Ok);
        }
        loop {
            match self.follow_once(&client, &base, &mut last, out).await {
                Ok(()) => eprintln!("pgpatrol: the stream from {base} ended; reconnecting"),
                // Writing the events failed (a closed pipe): reconnecting cannot help.
                Err(e) if e.downcast_ref::<std::io::Error>().is_some() => return Err(e),
                Err(e) => eprintln!("pgpatrol: {e}; reconnecting in 2 s"),
            }
            tokio::time::sleep(Duration::from_secs(2)).await;
        }
    }

    /// Reads `/events/stream` until it ends, printing every event after `last`.
    async fn follow_once(
        &self,
        client: &reqwest::Client,
        base: &str,
        last: &mut u64,
        out: &mut impl Write,
    ) -> anyhow::Result<()> {
        let mut resp = self
            .request(client, format!("{base}/events/stream"))?
            .header("Last-Event-ID", last.to_string())
            .send()
            .await
            .map_err(|e| anyhow::anyhow!("cannot reach the watcher at {base}: {e}"))?;
        if !resp.status().is_success() {
            anyhow::bail!(
                "{base}/events/stream answered HTTP {}",
                resp.status().as_u16()
            );
        }
        let mut buf = String::new();
        while let Some(chunk) = resp.chunk().await? {
            buf.push_str(&String::from_utf8_lossy(&chunk));
            // One SSE message per blank line.
            while let Some(end) = buf.find("\n\n") {
                let msg: String = buf.drain(..end + 2).collect();
                let data: String = msg
                    .lines()
                    .filter_map(|l| l.strip_prefix("data:"))
                    .map(str::trim_start)
                    .collect::<Vec<_>>()
                    .join("\n");
                if data.is_empty() {
                    continue;
                }
                let Ok(e) = serde_json::from_str::<Event>(&data) else {
                    continue;
                };
                if e.id <= *last || self.cluster.as_deref().is_some_and(|c| c != e.cluster) {
                    continue;
                }
                *last = e.id;
                writeln!(out, "{}", self.line(&e))?;
                out.flush()?;
            }
        }
        Ok(())
    }
}
