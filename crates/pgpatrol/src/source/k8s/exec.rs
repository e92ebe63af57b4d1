//! `--k8s-access exec`: Patroni's REST calls run as `curl` inside the pod, over the
//! `pods/exec` websocket (for clusters that forbid `pods/proxy` and `pods/portforward`, as
//! the seed's own scripts do). A read is `curl ... URL` with nothing secret on the command
//! line (the API server's audit log records it); a write sends its URL, method, body and
//! basic auth as a curl config on stdin (`--config -`), which needs the stdin close signal
//! of the `v5.channel.k8s.io` protocol (Kubernetes 1.30+). The answer is the body followed
//! by a line with the HTTP status (`--write-out`).

use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, AttachParams};
use kube::Client;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::errors::{rest_error, status_error};
use crate::source::http::{Credentials, HttpError, Request, Response};
use crate::text::{error_chain, one_line, snippet};

/// What follows the body on stdout: a newline and the status code.
const WRITE_OUT: &str = "\n%{http_code}";

/// A value in curl's config-file syntax: double-quoted, `\` and `"` escaped.
fn quoted(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// The pod-local URL of a request (Patroni listens on the pod's own port).
fn pod_url(req: &Request, port: u16) -> String {
    format!("http://127.0.0.1:{port}{}", req.path)
}

/// The command line (never a secret on it) and the stdin config, if any.
pub fn command(
    req: &Request,
    port: u16,
    auth: Option<&Credentials>,
    max_time: u64,
) -> (Vec<String>, Option<String>) {
    let mut cmd: Vec<String> = [
        "curl",
        "--silent",
        "--show-error",
        "--max-time",
        &max_time.to_string(),
        "--output",
        "-",
        "--write-out",
        WRITE_OUT,
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    if !req.is_unsafe() {
        cmd.extend([
            "--request".into(),
            req.method.to_string(),
            pod_url(req, port),
        ]);
        return (cmd, None);
    }
    cmd.extend(["--config".into(), "-".into()]);
    let mut cfg = format!(
        "url = {}\nrequest = {}\nheader = \"Content-Type: application/json\"\n",
        quoted(&pod_url(req, port)),
        quoted(req.method.as_str())
    );
    if let Some(body) = &req.body {
        cfg.push_str(&format!("data = {}\n", quoted(&body.to_string())));
    }
    if let Some(a) = auth {
        cfg.push_str(&format!(
            "user = {}\n",
            quoted(&format!("{}:{}", a.username, a.password))
        ));
    }
    (cmd, Some(cfg))
}

/// Splits curl's stdout into the status code (its last line) and the body.
pub fn parse_output(out: &str) -> Result<(u16, String), String> {
    let (body, code) = out
        .rsplit_once('\n')
        .ok_or_else(|| format!("curl printed no status line: {}", snippet(out)))?;
    let code: u16 = code
        .trim()
        .parse()
        .map_err(|_| format!("curl's last line is not a status code: {}", snippet(code)))?;
    if code == 0 {
        return Err("curl got no HTTP answer".into());
    }
    Ok((code, body.to_string()))
}

/// Runs one request as curl in `pod` and reads its answer.
pub async fn exec(
    client: &Client,
    namespace: &str,
    pod: &str,
    port: u16,
    req: &Request,
    auth: Option<&Credentials>,
    max_time: u64,
) -> Result<Response, HttpError> {
    let url = req.url();
    let fail = |reason: String| HttpError::Kubernetes {
        url: url.clone(),
        reason,
    };
    let (cmd, stdin) = command(req, port, auth, max_time);
    let ap = AttachParams::default()
        .stdin(stdin.is_some())
        .stdout(true)
        .stderr(true);
    let pods: Api<Pod> = Api::namespaced(client.clone(), namespace);
    let mut proc = pods.exec(pod, cmd, &ap).await.map_err(|e| match e {
        kube::Error::Api(st) => {
            rest_error(&url, status_error(&st, "create", "pods/exec", namespace))
        }
        other => fail(format!(
            "cannot exec in {pod}: {}",
            one_line(&error_chain(&other))
        )),
    })?;
    if let (Some(cfg), Some(mut w)) = (stdin, proc.stdin()) {
        w.write_all(cfg.as_bytes())
            .await
            .map_err(|e| fail(format!("exec in {pod}: stdin: {e}")))?;
        w.shutdown().await.ok();
        // Dropping the writer sends the stdin close signal (v5.channel.k8s.io).
        drop(w);
    }
    let status = proc.take_status();
    let (mut out, mut err) = (String::new(), String::new());
    if let Some(mut r) = proc.stdout() {
        r.read_to_string(&mut out)
            .await
            .map_err(|e| fail(format!("exec in {pod}: stdout: {e}")))?;
    }
    if let Some(mut r) = proc.stderr() {
        let _ = r.read_to_string(&mut err).await;
    }
    let status = match status {
        Some(s) => s.await,
        None => None,
    };
    let _ = proc.join().await;
    if let Some(s) = status.filter(|s| s.status.as_deref() == Some("Failure")) {
        // curl's exit code: 7 cannot connect, 28 timed out.
        let exit = s
            .details
            .as_ref()
            .and_then(|d| d.causes.as_ref())
            .and_then(|cs| cs.iter().find(|c| c.reason.as_deref() == Some("ExitCode")))
            .and_then(|c| c.message.clone())
            .unwrap_or_default();
        let said = one_line(err.trim());
        return Err(match exit.as_str() {
            "7" => HttpError::Connect {
                url,
                reason: format!("curl in pod {pod}: {said}"),
            },
            "28" => HttpError::Timeout {
                url,
                timeout: format!("{max_time}s"),
            },
            "127" => fail(format!(
                "pod {pod} has no curl (exit 127): exec access runs curl in the Patroni container; use --k8s-access proxy"
            )),
            _ => fail(format!(
                "curl in pod {pod} failed ({}): {said}",
                one_line(s.message.as_deref().unwrap_or("non-zero exit"))
            )),
        });
    }
    let (code, body) = parse_output(&out).map_err(|e| fail(format!("exec in {pod}: {e}")))?;
    Ok(Response {
        status: reqwest::StatusCode::from_u16(code)
            .map_err(|e| fail(format!("bad status {code}: {e}")))?,
        body,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_read_puts_no_secret_on_the_command_line() {
        let req = Request::get("http://10.0.0.5:8008", "/cluster");
        let creds = Credentials {
            username: "u".into(),
            password: "s3cret".into(),
        };
        let (cmd, stdin) = command(&req, 8008, Some(&creds), 10);
        assert_eq!(
            cmd.last().map(String::as_str),
            Some("http://127.0.0.1:8008/cluster")
        );
        assert!(stdin.is_none());
        assert!(!cmd.join(" ").contains("s3cret"));
    }

    #[test]
    fn a_write_sends_url_body_and_auth_on_stdin() {
        let req = Request::post(
            "http://10.0.0.5:8008",
            "/reinitialize",
            serde_json::json!({"force": false}),
        );
        let creds = Credentials {
            username: "patrol".into(),
            password: "pa\"ss\\".into(),
        };
        let (cmd, stdin) = command(&req, 8008, Some(&creds), 10);
        assert!(!cmd.join(" ").contains("pa\"ss"));
        assert!(cmd.ends_with(&["--config".to_string(), "-".to_string()]));
        let cfg = stdin.unwrap();
        assert!(
            cfg.contains("url = \"http://127.0.0.1:8008/reinitialize\""),
            "{cfg}"
        );
        assert!(cfg.contains("request = \"POST\""), "{cfg}");
        assert!(cfg.contains(r#"data = "{\"force\":false}""#), "{cfg}");
        assert!(cfg.contains(r#"user = "patrol:pa\"ss\\""#), "{cfg}");
    }

    #[test]
    fn curl_output_is_body_then_status() {
        assert_eq!(
            parse_output("{\"a\":1}\n200").unwrap(),
            (200, "{\"a\":1}".to_string())
        );
        assert_eq!(parse_output("line1\nline2\n503").unwrap().0, 503);
        assert!(parse_output("no status").is_err());
        assert!(parse_output("\n000").is_err());
    }
}
