//! `hookgate deliveries list|show|replay|discard` and `hookgate rejections
//! list`: a client of a running gateway's admin API (`/v1/admin`), printing
//! human-readable tables (or the API's JSON with `--json`). The gateway's
//! URL and token come from its config file (`[server] listen`, the first
//! `[api] tokens` entry) unless `--url` / `--token` are given. Plain HTTP:
//! the admin API is meant for localhost or a private network.

use std::path::PathBuf;

use anyhow::{anyhow, bail, Context};
use comfy_table::{presets, Table};
use secrecy::{ExposeSecret, SecretString};
use serde_json::{json, Value};

use crate::config::{resolve_secret, ProcessEnv, Settings};

#[derive(Debug, clap::Args)]
pub struct RemoteArgs {
    /// The config of the gateway to talk to: its `[server] listen` address
    /// and first `[api]` token.
    #[arg(long, short, global = true, default_value = "hookgate.toml")]
    config: PathBuf,
    /// The gateway's base URL, e.g. http://127.0.0.1:8080 (overrides the
    /// config).
    #[arg(long, global = true)]
    url: Option<String>,
    /// An API token, or a reference to one: env:NAME or file:PATH
    /// (overrides the config).
    #[arg(long, global = true)]
    token: Option<String>,
    /// Print the API's JSON answer instead of tables.
    #[arg(long, global = true)]
    json: bool,
}

/// The delivery filters, as the API names them.
#[derive(Debug, Default, clap::Args)]
pub struct FilterArgs {
    /// A configured source name.
    #[arg(long)]
    source: Option<String>,
    /// A provider (folder name under providers/).
    #[arg(long)]
    provider: Option<String>,
    /// One status or several, comma-separated (pending, processing, done,
    /// failed, dead, quarantined, discarded).
    #[arg(long)]
    status: Option<String>,
    /// The provider's event type (e.g. invoice.payment_succeeded).
    #[arg(long = "type")]
    event_type: Option<String>,
    /// The provider's event id.
    #[arg(long)]
    event_id: Option<String>,
    /// Received at or after this RFC 3339 time.
    #[arg(long)]
    since: Option<String>,
    /// Received before this RFC 3339 time.
    #[arg(long)]
    until: Option<String>,
}

impl FilterArgs {
    fn fields(&self) -> Vec<(&'static str, String)> {
        [
            ("source", &self.source),
            ("provider", &self.provider),
            ("status", &self.status),
            ("event_type", &self.event_type),
            ("event_id", &self.event_id),
            ("since", &self.since),
            ("until", &self.until),
        ]
        .into_iter()
        .filter_map(|(k, v)| v.clone().map(|v| (k, v)))
        .collect()
    }
}

#[derive(Debug, clap::Args)]
pub struct DeliveriesArgs {
    #[command(subcommand)]
    command: DeliveriesCommand,
    #[command(flatten)]
    remote: RemoteArgs,
}

#[derive(Debug, clap::Subcommand)]
enum DeliveriesCommand {
    /// Deliveries, newest first.
    List {
        #[command(flatten)]
        filter: FilterArgs,
        #[arg(long, default_value_t = 50)]
        limit: u32,
        /// The `next` cursor a previous page printed.
        #[arg(long)]
        cursor: Option<String>,
    },
    /// One delivery: status, verification, attempts, produced events,
    /// headers (credentials and signatures redacted) and raw body.
    Show { id: String },
    /// Process a delivery again, or every done, failed or dead one matching
    /// the filters (see how many first with --dry-run). Catalog events are
    /// never duplicated.
    Replay {
        /// A delivery id (dlv_…); or use filters.
        id: Option<String>,
        #[command(flatten)]
        filter: FilterArgs,
        /// Only count the deliveries the filters match.
        #[arg(long)]
        dry_run: bool,
    },
    /// Set a quarantined or dead delivery aside for good, saying why.
    Discard {
        id: String,
        #[arg(long)]
        reason: String,
    },
}

#[derive(Debug, clap::Args)]
pub struct RejectionsArgs {
    #[command(subcommand)]
    command: RejectionsCommand,
    #[command(flatten)]
    remote: RemoteArgs,
}

#[derive(Debug, clap::Subcommand)]
enum RejectionsCommand {
    /// Refused requests, newest first.
    List {
        #[arg(long)]
        source: Option<String>,
        /// The error code (invalid_signature, schema_violation, ...).
        #[arg(long)]
        reason: Option<String>,
        #[arg(long)]
        since: Option<String>,
        #[arg(long)]
        until: Option<String>,
        #[arg(long, default_value_t = 50)]
        limit: u32,
        #[arg(long)]
        cursor: Option<String>,
    },
}

/// A running gateway's admin API.
pub struct Remote {
    base: String,
    token: SecretString,
    http: reqwest::Client,
}

impl Remote {
    /// From the flags, else from the config file.
    pub fn from_args(args: &RemoteArgs) -> anyhow::Result<Remote> {
        let settings = || -> anyhow::Result<Settings> {
            Settings::load(&args.config)
                .map_err(|e| anyhow!("{}: {e} (or give --url and --token)", args.config.display()))
        };
        let base = match &args.url {
            Some(url) => url.clone(),
            None => base_url(&settings()?.server.listen),
        };
        let token = match &args.token {
            Some(t) => resolve_secret(t, "--token", &ProcessEnv)?,
            None => {
                let s = settings()?;
                let first = s.api.tokens.first().ok_or_else(|| {
                    anyhow!("{}: no [api] tokens; give --token", args.config.display())
                })?;
                resolve_secret(first, "api.tokens[0]", &ProcessEnv)?
            }
        };
        Ok(Remote {
            base: base.trim_end_matches('/').to_string(),
            token,
            http: reqwest::Client::new(),
        })
    }

    async fn call(&self, request: reqwest::RequestBuilder) -> anyhow::Result<Value> {
        let response = request
            .bearer_auth(self.token.expose_secret())
            .send()
            .await
            .with_context(|| format!("cannot reach the gateway at {}", self.base))?;
        let status = response.status();
        let body: Value = response.json().await.unwrap_or(Value::Null);
        if status.is_success() {
            return Ok(body);
        }
        let error = &body["error"];
        match (error["code"].as_str(), error["message"].as_str()) {
            (Some(code), Some(message)) => bail!("{status}: {code}: {message}"),
            _ => bail!("{status}"),
        }
    }

    async fn get(&self, path: &str, query: &[(&str, String)]) -> anyhow::Result<Value> {
        self.call(self.http.get(format!("{}{path}", self.base)).query(query))
            .await
    }

    async fn post(&self, path: &str, body: Option<Value>) -> anyhow::Result<Value> {
        let mut request = self.http.post(format!("{}{path}", self.base));
        if let Some(body) = body {
            request = request.json(&body);
        }
        self.call(request).await
    }
}

/// `host:port` as the gateway listens → the URL to reach it here.
fn base_url(listen: &str) -> String {
    let (host, port) = listen.rsplit_once(':').unwrap_or((listen, "8080"));
    let host = match host {
        "0.0.0.0" | "" => "127.0.0.1",
        "[::]" => "[::1]",
        other => other,
    };
    format!("http://{host}:{port}")
}

pub fn deliveries_main(args: DeliveriesArgs) -> anyhow::Result<()> {
    let remote = Remote::from_args(&args.remote)?;
    let json_out = args.remote.json;
    let answer = runtime()?.block_on(async {
        match &args.command {
            DeliveriesCommand::List {
                filter,
                limit,
                cursor,
            } => {
                let mut query = filter.fields();
                query.push(("limit", limit.to_string()));
                if let Some(c) = cursor {
                    query.push(("cursor", c.clone()));
                }
                let page = remote.get("/v1/admin/deliveries", &query).await?;
                Ok::<_, anyhow::Error>((page.clone(), deliveries_table(&page)))
            }
            DeliveriesCommand::Show { id } => {
                let d = remote
                    .get(&format!("/v1/admin/deliveries/{}", path_segment(id)?), &[])
                    .await?;
                Ok((d.clone(), delivery_text(&d)))
            }
            DeliveriesCommand::Replay {
                id,
                filter,
                dry_run,
            } => {
                let fields = filter.fields();
                match (id, fields.is_empty()) {
                    (Some(_), false) => bail!("give a delivery id or filters, not both"),
                    (None, true) => bail!(
                        "give a delivery id, or filters (--source, --status, ...) to replay every match"
                    ),
                    (Some(id), true) => {
                        if *dry_run {
                            bail!("--dry-run counts the matches of filters; a single delivery needs none");
                        }
                        let r = remote
                            .post(
                                &format!("/v1/admin/deliveries/{}/replay", path_segment(id)?),
                                None,
                            )
                            .await?;
                        let text = format!("ok: {id} is {} again\n", text(&r["status"]));
                        Ok((r, text))
                    }
                    (None, false) => {
                        let mut body: serde_json::Map<String, Value> = fields
                            .into_iter()
                            .map(|(k, v)| (k.to_string(), Value::String(v)))
                            .collect();
                        body.insert("dry_run".into(), json!(dry_run));
                        let r = remote
                            .post("/v1/admin/deliveries/replay", Some(Value::Object(body)))
                            .await?;
                        let n = r["count"].as_u64().unwrap_or(0);
                        let text = if *dry_run {
                            format!("dry run: {n} deliveries would be replayed\n")
                        } else {
                            format!("ok: {n} deliveries replayed\n")
                        };
                        Ok((r, text))
                    }
                }
            }
            DeliveriesCommand::Discard { id, reason } => {
                let r = remote
                    .post(
                        &format!("/v1/admin/deliveries/{}/discard", path_segment(id)?),
                        Some(json!({ "reason": reason })),
                    )
                    .await?;
                Ok((r, format!("ok: {id} is discarded\n")))
            }
        }
    })?;
    print(json_out, answer)
}

pub fn rejections_main(args: RejectionsArgs) -> anyhow::Result<()> {
    let remote = Remote::from_args(&args.remote)?;
    let RejectionsCommand::List {
        source,
        reason,
        since,
        until,
        limit,
        cursor,
    } = &args.command;
    let mut query: Vec<(&str, String)> = [
        ("source", source),
        ("reason", reason),
        ("since", since),
        ("until", until),
        ("cursor", cursor),
    ]
    .into_iter()
    .filter_map(|(k, v)| v.clone().map(|v| (k, v)))
    .collect();
    query.push(("limit", limit.to_string()));
    let page = runtime()?.block_on(remote.get("/v1/admin/rejections", &query))?;
    let table = rejections_table(&page);
    print(args.remote.json, (page, table))
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?)
}

fn print(json_out: bool, (answer, text): (Value, String)) -> anyhow::Result<()> {
    if json_out {
        println!("{}", serde_json::to_string_pretty(&answer)?);
    } else {
        print!("{text}");
    }
    Ok(())
}

/// Ids go into the URL path: refuse anything that could change it.
fn path_segment(id: &str) -> anyhow::Result<&str> {
    if !id.is_empty()
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
    {
        Ok(id)
    } else {
        bail!("{id:?} is not a delivery id")
    }
}

/// A JSON value as a table cell: strings bare, null empty.
fn text(v: &Value) -> String {
    match v {
        Value::Null => String::new(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// At most `n` characters, on one line.
fn short(s: &str, n: usize) -> String {
    let one_line = s.replace(['\n', '\r'], " ");
    if one_line.chars().count() <= n {
        one_line
    } else {
        format!("{}…", one_line.chars().take(n - 1).collect::<String>())
    }
}

fn table(header: &[&str]) -> Table {
    let mut t = Table::new();
    t.load_preset(presets::ASCII_BORDERS_ONLY_CONDENSED);
    t.set_header(header.to_vec());
    t
}

fn next_line(page: &Value) -> String {
    match page["next_cursor"].as_str() {
        Some(c) => format!("more: --cursor {c}\n"),
        None => String::new(),
    }
}

pub fn deliveries_table(page: &Value) -> String {
    let rows = page["deliveries"].as_array().cloned().unwrap_or_default();
    if rows.is_empty() {
        return "no deliveries match\n".into();
    }
    let mut t = table(&[
        "ID",
        "RECEIVED",
        "SOURCE",
        "EVENT TYPE",
        "EVENT ID",
        "STATUS",
        "ATTEMPTS",
        "LAST ERROR",
    ]);
    for d in &rows {
        t.add_row(vec![
            text(&d["id"]),
            text(&d["received_at"]),
            text(&d["source"]),
            text(&d["provider_event_type"]),
            short(&text(&d["provider_event_id"]), 40),
            text(&d["status"]),
            text(&d["attempts"]),
            short(&text(&d["last_error"]), 60),
        ]);
    }
    format!("{t}\n{}", next_line(page))
}

pub fn delivery_text(d: &Value) -> String {
    let mut out = String::new();
    let mut t = table(&["FIELD", "VALUE"]);
    let verification = match d["verification"]["scheme"].as_str() {
        Some(scheme) => format!("verified ({scheme})"),
        None => "verified".into(),
    };
    let schema = if d["schema"]["valid"] == json!(false) {
        format!("violations: {}", d["violations"])
    } else {
        "valid".into()
    };
    let discarded = match &d["discarded"] {
        Value::Null => String::new(),
        x => format!("{} ({})", text(&x["reason"]), text(&x["at"])),
    };
    for (k, v) in [
        ("id", text(&d["id"])),
        ("status", text(&d["status"])),
        ("source", text(&d["source"])),
        ("provider", text(&d["provider"])),
        ("event type", text(&d["provider_event_type"])),
        ("event id", text(&d["provider_event_id"])),
        ("received", text(&d["received_at"])),
        ("occurred", text(&d["occurred_at"])),
        ("attempts", text(&d["attempts"])),
        ("last error", text(&d["last_error"])),
        ("verification", verification),
        ("schema", schema),
        ("discarded", discarded),
        ("remote address", text(&d["request"]["remote_addr"])),
    ] {
        if !v.is_empty() {
            t.add_row(vec![k.to_string(), v]);
        }
    }
    out.push_str(&format!("{t}\n"));

    let events = d["events"].as_array().cloned().unwrap_or_default();
    out.push_str(&format!("\nCatalog events ({})\n", events.len()));
    if !events.is_empty() {
        let mut t = table(&["ID", "TYPE"]);
        for e in &events {
            t.add_row(vec![text(&e["id"]), text(&e["type"])]);
        }
        out.push_str(&format!("{t}\n"));
    }

    let attempts = d["attempt_log"].as_array().cloned().unwrap_or_default();
    out.push_str(&format!("\nAttempts ({})\n", attempts.len()));
    if !attempts.is_empty() {
        let mut t = table(&["#", "STARTED", "MS", "OUTCOME", "RETRY AT", "ERROR"]);
        for a in &attempts {
            t.add_row(vec![
                text(&a["attempt"]),
                text(&a["started_at"]),
                text(&a["duration_ms"]),
                text(&a["outcome"]),
                text(&a["retry_at"]),
                short(&text(&a["error"]), 80),
            ]);
        }
        out.push_str(&format!("{t}\n"));
    }

    let request = &d["request"];
    if let Some(headers) = request["headers"].as_object() {
        out.push_str("\nHeaders\n");
        let mut t = table(&["NAME", "VALUE"]);
        for (name, values) in headers {
            for v in values.as_array().cloned().unwrap_or_default() {
                t.add_row(vec![name.clone(), short(&text(&v), 100)]);
            }
        }
        out.push_str(&format!("{t}\n"));
    }
    let body = &request["body"];
    match body["encoding"].as_str() {
        Some("utf-8") => {
            let raw = text(&body["text"]);
            let shown = serde_json::from_str::<Value>(&raw)
                .ok()
                .and_then(|v| serde_json::to_string_pretty(&v).ok())
                .unwrap_or(raw);
            out.push_str(&format!("\nBody ({} bytes)\n{shown}\n", body["bytes"]));
        }
        Some(_) => out.push_str(&format!(
            "\nBody ({} bytes, base64)\n{}\n",
            body["bytes"],
            text(&body["base64"])
        )),
        None => match request["body_purged_at"].as_str() {
            Some(at) => out.push_str(&format!("\nBody removed by retention at {at}\n")),
            None => out.push_str("\nBody not available\n"),
        },
    }
    out
}

pub fn rejections_table(page: &Value) -> String {
    let rows = page["rejections"].as_array().cloned().unwrap_or_default();
    if rows.is_empty() {
        return "no rejections match\n".into();
    }
    let mut t = table(&[
        "ID", "RECEIVED", "SOURCE", "REASON", "FROM", "BODY", "MESSAGE",
    ]);
    for r in &rows {
        t.add_row(vec![
            text(&r["id"]),
            text(&r["received_at"]),
            text(&r["source"]),
            text(&r["code"]),
            text(&r["remote_addr"]),
            if r["body_kept"] == json!(true) {
                "kept".into()
            } else {
                String::new()
            },
            short(&text(&r["message"]), 70),
        ]);
    }
    format!("{t}\n{}", next_line(page))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base_url_reaches_a_wildcard_listener_locally() {
        assert_eq!(base_url("0.0.0.0:8080"), "http://127.0.0.1:8080");
        assert_eq!(base_url("[::]:9000"), "http://[::1]:9000");
        assert_eq!(base_url("10.0.0.5:80"), "http://10.0.0.5:80");
    }

    #[test]
    fn path_segment_refuses_what_would_change_the_path() {
        assert!(path_segment("dlv_01KBS35JBG1JMRRG70856N8Y6E").is_ok());
        for bad in ["", "../events", "a/b", "a?b", "a%2f"] {
            assert!(path_segment(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn deliveries_table_has_a_row_per_delivery_and_the_next_cursor() {
        let page = json!({
            "deliveries": [{
                "id": "dlv_1", "received_at": "2025-12-06T05:46:40Z", "source": "stripe",
                "provider_event_type": "invoice.paid", "provider_event_id": "evt_1",
                "status": "failed", "attempts": 2,
                "last_error": "catalog invoice.paid: /invoice_id is required\nmore",
            }],
            "next_cursor": "abc",
        });
        let out = deliveries_table(&page);
        let row = out.lines().find(|l| l.contains("dlv_1")).unwrap();
        for cell in [
            "stripe",
            "invoice.paid",
            "evt_1",
            "failed",
            " 2 ",
            "/invoice_id is required more",
        ] {
            assert!(row.contains(cell), "{cell}: {row}");
        }
        assert!(out.ends_with("more: --cursor abc\n"), "{out}");
        assert_eq!(
            deliveries_table(&json!({ "deliveries": [] })),
            "no deliveries match\n"
        );
    }

    #[test]
    fn short_keeps_one_line_and_marks_a_cut() {
        assert_eq!(short("a\nb", 10), "a b");
        assert_eq!(short("abcdef", 4), "abc…");
    }
}
