//! `hookgate bench`: a reproducible load test of the gateway against a
//! ceiling measured in the same run.
//!
//! Every server under test is a child process started from the hookgate
//! binary (`hookgate bench-server` for the comparison servers, `hookgate
//! serve` with a generated config for the gateway), so each stage runs in
//! a fresh process whose peak RSS (VmHWM) is its own, and the load
//! generator's threads are not the server's. Stages: the ceiling (bare
//! actix-web, 200 after reading the body), verify only, verify + schema,
//! full durable ingest on SQLite, the group-commit curve (SQLite at several
//! connection counts), full ingest on PostgreSQL (`--postgres-url`), and
//! processing latency (200 → catalog event readable on `GET /v1/events`)
//! at half the measured SQLite rate. Figures are printed as a table and
//! written as JSON; nothing here asserts on time.

mod child;
pub mod load;
pub mod servers;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::config::{LogFormat, LogSettings, Settings, SourceSettings};
use child::Child;
pub use load::{LoadSpec, LoadStats, Scheme, Stop, Tracker};
pub use servers::ServerKind;

/// `hookgate bench` options.
#[derive(Debug, Clone, clap::Args)]
pub struct BenchArgs {
    /// Connections (keep-alive, one request in flight each) for every stage
    /// but the curve.
    #[arg(long, default_value_t = 64)]
    pub connections: usize,
    /// Seconds of measured load per stage (after the warm-up).
    #[arg(long, default_value_t = 10.0)]
    pub duration: f64,
    /// Seconds of unmeasured load before each stage's measurement.
    #[arg(long, default_value_t = 1.0)]
    pub warmup: f64,
    /// Send exactly this many requests per stage instead of --duration.
    #[arg(long)]
    pub requests: Option<u64>,
    /// Body size in bytes (the fixture is padded with a field up to it).
    #[arg(long, default_value_t = 2048)]
    pub body_bytes: usize,
    /// Share of requests that re-send an earlier event (0..1).
    #[arg(long, default_value_t = 0.05)]
    pub duplicates: f64,
    /// Signature scheme (and provider) of the generated requests.
    #[arg(long, value_enum, default_value_t = Scheme::Stripe)]
    pub scheme: Scheme,
    /// A JSON object to send instead of the scheme's default fixture.
    #[arg(long)]
    pub fixture: Option<PathBuf>,
    /// HTTP workers of every server under test (0 = one per core).
    #[arg(long, default_value_t = 0)]
    pub workers: usize,
    /// Processing workers of the gateway.
    #[arg(long, default_value_t = 2)]
    pub queue_workers: usize,
    /// Threads of the load generator.
    #[arg(long, default_value_t = 2)]
    pub client_threads: usize,
    /// Connection counts of the group-commit curve (SQLite).
    #[arg(long, value_delimiter = ',', default_value = "1,8,64,256")]
    pub curve: Vec<usize>,
    /// Stages to run (ceiling, verify, schema, sqlite, curve, postgres,
    /// processing).
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "ceiling,verify,schema,sqlite,curve,postgres,processing"
    )]
    pub stages: Vec<String>,
    /// `postgres://…`: also measure full ingest on PostgreSQL.
    #[arg(long)]
    pub postgres_url: Option<String>,
    /// `nats://…` (JetStream): the processing stage's gateway also
    /// publishes there (a stream of its own, deleted afterwards), and the
    /// time from the 200 to the message on a NATS subscription is reported
    /// beside the time to `/v1/events`.
    #[arg(long)]
    pub nats_url: Option<String>,
    /// Log level of the gateway under test (its logs go to a file).
    #[arg(long, default_value = "info")]
    pub gateway_log: String,
    #[arg(long, default_value = "providers")]
    pub providers: PathBuf,
    #[arg(long, default_value = "catalog")]
    pub catalog: PathBuf,
    /// Write the report as JSON here.
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Keep the stages' configs, databases and logs (the path is printed).
    #[arg(long)]
    pub keep: bool,
}

/// `hookgate bench-server` options (internal: started by `hookgate bench`).
#[derive(Debug, Clone, clap::Args)]
pub struct ServerArgs {
    #[arg(long, value_enum)]
    pub kind: ServerKind,
    #[arg(long)]
    pub config: PathBuf,
}

/// Entry point of `hookgate bench-server`.
pub fn serve_main(args: ServerArgs) -> anyhow::Result<()> {
    let settings = Settings::load(&args.config)
        .map_err(|e| anyhow::anyhow!("{}: {e}", args.config.display()))?;
    let workers = settings.server.http_workers.max(1);
    tokio::runtime::Runtime::new()?.block_on(servers::serve(args.kind, settings, workers))
}

/// What a stage runs against.
#[derive(Debug, Clone)]
pub enum Stage {
    Server(ServerKind),
    /// The real gateway; `None` = SQLite in the harness's temp dir.
    Gateway {
        storage_url: Option<String>,
    },
}

/// One stage's figures.
#[derive(Debug, Clone)]
pub struct StageOutcome {
    pub load: LoadStats,
    /// The gateway's group commits over the stage (warm-up included):
    /// (commits, requests, queue writes).
    pub group_commits: Option<(f64, f64, f64)>,
    pub peak_rss_kib: Option<u64>,
    pub processing: Option<ProcessingStats>,
    /// 200 → the event's message on NATS (with `--nats-url`).
    pub published: Option<ProcessingStats>,
}

#[derive(Debug, Clone, Serialize)]
pub struct ProcessingStats {
    pub offered_rate: f64,
    pub events_timed: u64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
    /// Acknowledged events not yet readable when the load stopped.
    pub backlog_at_stop: usize,
    /// Time from the end of the load until every acknowledged event was
    /// readable (None: not within 30 s).
    pub drain_ms: Option<f64>,
    pub poll_interval_ms: f64,
}

impl ProcessingStats {
    /// "p50 … ms, p99 …, max … over n events; <backlog> n, drained in …".
    fn summary(&self, backlog: &str) -> String {
        format!(
            "p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms over {} events; {backlog} {}, drained in {}",
            self.p50_ms,
            self.p99_ms,
            self.max_ms,
            self.events_timed,
            self.backlog_at_stop,
            self.drain_ms
                .map(|d| format!("{d:.0} ms"))
                .unwrap_or_else(|| "more than 30 s".into()),
        )
    }
}

/// Starts servers under test and drives load at them.
pub struct Harness {
    pub exe: PathBuf,
    pub providers: PathBuf,
    pub catalog: PathBuf,
    pub scheme: Scheme,
    pub fixture: Vec<u8>,
    pub body_bytes: usize,
    pub http_workers: usize,
    pub queue_workers: usize,
    pub gateway_log: String,
    /// JetStream for the processing stage's gateway to publish into.
    pub nats_url: Option<String>,
    dir: tempfile::TempDir,
    stage_counter: std::sync::atomic::AtomicUsize,
}

pub const API_TOKEN: &str = "bench-token";

impl Harness {
    /// `exe` is the hookgate binary; `providers` and `catalog` the data
    /// directories.
    pub fn new(
        exe: PathBuf,
        providers: PathBuf,
        catalog: PathBuf,
        scheme: Scheme,
    ) -> anyhow::Result<Harness> {
        let fixture_path = providers.join(scheme.default_fixture());
        let fixture = std::fs::read(&fixture_path)
            .map_err(|e| anyhow::anyhow!("{}: {e}", fixture_path.display()))?;
        Ok(Harness {
            exe,
            providers: std::path::absolute(providers)?,
            catalog: std::path::absolute(catalog)?,
            scheme,
            fixture,
            body_bytes: 2048,
            http_workers: default_workers(),
            queue_workers: 2,
            gateway_log: "info".into(),
            nats_url: None,
            dir: tempfile::Builder::new()
                .prefix("hookgate-bench")
                .tempdir()?,
            stage_counter: Default::default(),
        })
    }

    fn settings(&self, dir: &Path, storage_url: Option<&str>) -> Settings {
        let mut s = Settings::default();
        s.server.listen = "127.0.0.1:0".into();
        s.server.http_workers = self.http_workers;
        s.storage.url = match storage_url {
            Some(url) => url.to_string(),
            None => format!("sqlite://{}", dir.join("hookgate.db").display()),
        };
        s.api.tokens = vec![API_TOKEN.into()];
        s.queue.workers = self.queue_workers;
        s.paths.providers = self.providers.clone();
        s.paths.catalog = self.catalog.clone();
        s.log = LogSettings {
            format: LogFormat::Json,
            level: self.gateway_log.clone(),
        };
        s.sources = [Scheme::Stripe, Scheme::StandardWebhooks]
            .into_iter()
            .map(|scheme| SourceSettings {
                name: scheme.provider().into(),
                provider: scheme.provider().into(),
                secrets: vec![scheme.secret().into()],
                on_schema_violation: Default::default(),
                max_body_bytes: None,
                allow_ips: Vec::new(),
                auth: None,
                public_url: None,
                rate_limit: None,
            })
            .collect();
        s
    }

    /// Start the stage's server, run `spec` against it (and, with `track`,
    /// a consumer polling `/v1/events`), stop the server.
    pub async fn run(
        &self,
        stage: &Stage,
        spec: LoadSpec,
        track: bool,
    ) -> anyhow::Result<StageOutcome> {
        let n = self
            .stage_counter
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let dir = self.dir.path().join(format!("stage{n}"));
        std::fs::create_dir_all(&dir)?;
        let storage_url = match stage {
            Stage::Gateway { storage_url } => storage_url.as_deref(),
            Stage::Server(_) => None,
        };
        let config = dir.join("hookgate.toml");
        let mut settings = self.settings(&dir, storage_url);
        // The tracked stage publishes to NATS too, into a stream of its own.
        let nats = match (&self.nats_url, track) {
            (Some(url), true) => {
                let tag = format!("{}_{n}", std::process::id());
                let nats = crate::config::NatsSettings {
                    url: url.clone(),
                    subject_prefix: format!("hookgate_bench_{tag}"),
                    stream: format!("HOOKGATE_BENCH_{tag}"),
                    max_age_secs: 3600,
                    duplicate_window_secs: 600,
                    ..Default::default()
                };
                settings.bus.nats = Some(nats.clone());
                Some(nats)
            }
            _ => None,
        };
        std::fs::write(&config, toml::to_string(&settings)?)?;
        let config = config.display().to_string();
        let args: Vec<String> = match stage {
            Stage::Server(kind) => {
                let kind = match kind {
                    ServerKind::Ceiling => "ceiling",
                    ServerKind::Verify => "verify",
                    ServerKind::Schema => "schema",
                };
                vec![
                    "bench-server".into(),
                    "--kind".into(),
                    kind.into(),
                    "--config".into(),
                    config,
                ]
            }
            Stage::Gateway { .. } => vec!["serve".into(), "--config".into(), config],
        };
        let server = Child::spawn(&self.exe, &args, &dir.join("server.log"))?;
        tracing::debug!(pid = server.pid(), port = server.port, "server under test");
        let addr: std::net::SocketAddr = ([127, 0, 0, 1], server.port).into();
        let scheme = crate::providers::load_scheme(&self.providers, self.scheme.provider())?;
        let factory = load::RequestFactory::new(
            self.scheme,
            scheme,
            &self.fixture,
            self.body_bytes,
            addr,
            &format!("/v1/webhooks/{}", self.scheme.provider()),
        )?;

        let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
        // (timings, subscriber task, client) of the NATS consumer.
        let mut subscriber = None;
        if let Some(nats) = &nats {
            let client = async_nats::connect(nats.url.as_str()).await?;
            let published = Arc::new(Tracker::default());
            let task = tokio::spawn(load::subscribe_events(
                client.clone(),
                format!("{}.>", nats.subject_prefix),
                published.clone(),
                stop_rx.clone(),
            ));
            subscriber = Some((published, task, client));
        }
        let tracker = track.then(|| {
            Arc::new(match &subscriber {
                Some((published, _, _)) => Tracker::chained(published.clone()),
                None => Tracker::default(),
            })
        });
        let poll_interval = Duration::from_millis(5);
        let poller = tracker.clone().map(|t| {
            tokio::spawn(load::poll_events(
                addr,
                API_TOKEN,
                t,
                poll_interval,
                stop_rx,
            ))
        });
        let offered = spec.rate;
        let stats = load::run(factory, addr, spec, tracker.clone()).await?;
        let (processing, published) = match (&tracker, poller) {
            (Some(t), Some(poller)) => {
                let backlog_at_stop = t.outstanding();
                let published_backlog = subscriber.as_ref().map(|(p, _, _)| p.outstanding());
                let stopped = Instant::now();
                let mut drain_ms = None;
                let mut published_drain_ms = None;
                while stopped.elapsed() < Duration::from_secs(30) {
                    let elapsed_ms = stopped.elapsed().as_secs_f64() * 1e3;
                    if drain_ms.is_none() && t.outstanding() == 0 {
                        drain_ms = Some(elapsed_ms);
                    }
                    if let Some((p, _, _)) = &subscriber {
                        if published_drain_ms.is_none() && p.outstanding() == 0 {
                            published_drain_ms = Some(elapsed_ms);
                        }
                    }
                    let published_done = subscriber.is_none() || published_drain_ms.is_some();
                    if (drain_ms.is_some() && published_done) || poller.is_finished() {
                        break;
                    }
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
                let _ = stop_tx.send(true);
                if let Err(e) = poller.await? {
                    tracing::warn!(error = %e, "the event poller failed");
                }
                let stats = |t: &Tracker, backlog_at_stop, drain_ms, poll_interval_ms| {
                    let h = t.histogram();
                    ProcessingStats {
                        offered_rate: offered.unwrap_or(0.0),
                        events_timed: h.len(),
                        p50_ms: h.value_at_quantile(0.5) as f64 / 1e3,
                        p99_ms: h.value_at_quantile(0.99) as f64 / 1e3,
                        max_ms: h.max() as f64 / 1e3,
                        backlog_at_stop,
                        drain_ms,
                        poll_interval_ms,
                    }
                };
                let processing = stats(
                    t,
                    backlog_at_stop,
                    drain_ms,
                    poll_interval.as_secs_f64() * 1e3,
                );
                let published = match &mut subscriber {
                    Some((p, task, _)) => {
                        if let Err(e) = task.await? {
                            tracing::warn!(error = %e, "the NATS subscriber failed");
                        }
                        Some(stats(
                            p,
                            published_backlog.unwrap_or(0),
                            published_drain_ms,
                            0.0,
                        ))
                    }
                    None => None,
                };
                (Some(processing), published)
            }
            _ => (None, None),
        };
        if let (Some((_, _, client)), Some(nats)) = (subscriber, &nats) {
            let _ = async_nats::jetstream::new(client)
                .delete_stream(&nats.stream)
                .await;
        }
        let peak_rss_kib = server.peak_rss_kib();
        let group_commits = match stage {
            Stage::Gateway { .. } => load::group_commit_counters(addr).await,
            Stage::Server(_) => None,
        };
        drop(server);
        Ok(StageOutcome {
            load: stats,
            group_commits,
            peak_rss_kib,
            processing,
            published,
        })
    }
}

fn default_workers() -> usize {
    std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(2)
}

/// One row of the report.
#[derive(Debug, Clone, Serialize)]
pub struct Row {
    pub stage: String,
    pub connections: usize,
    pub sent: u64,
    pub accepted: u64,
    pub duplicates: u64,
    pub errors: std::collections::BTreeMap<String, u64>,
    /// 200 answers (accepted + duplicates) per second.
    pub ok_per_sec: f64,
    /// `ok_per_sec` / the ceiling's.
    pub ratio_to_ceiling: Option<f64>,
    pub p50_ms: f64,
    pub p90_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
    pub peak_rss_mib: Option<f64>,
    /// Requests per group commit (warm-up included).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub requests_per_commit: Option<f64>,
    /// Queue writes (claims, completions) that rode in those commits, per
    /// commit.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub queue_writes_per_commit: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub processing: Option<ProcessingStats>,
    /// 200 → message received from NATS (`--nats-url`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub published: Option<ProcessingStats>,
}

impl Row {
    fn new(stage: &str, connections: usize, o: StageOutcome) -> Row {
        let h = &o.load.latency;
        let ms = |q: f64| h.value_at_quantile(q) as f64 / 1e3;
        Row {
            stage: stage.into(),
            connections,
            sent: o.load.sent,
            accepted: o.load.accepted,
            duplicates: o.load.duplicates,
            errors: o.load.errors.clone(),
            ok_per_sec: o.load.ok_rate(),
            ratio_to_ceiling: None,
            p50_ms: ms(0.5),
            p90_ms: ms(0.9),
            p99_ms: ms(0.99),
            max_ms: h.max() as f64 / 1e3,
            peak_rss_mib: o.peak_rss_kib.map(|k| k as f64 / 1024.0),
            requests_per_commit: o
                .group_commits
                .filter(|(c, _, _)| *c > 0.0)
                .map(|(c, r, _)| r / c),
            queue_writes_per_commit: o
                .group_commits
                .filter(|(c, _, _)| *c > 0.0)
                .map(|(c, _, q)| q / c),
            processing: o.processing,
            published: o.published,
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub machine: Machine,
    pub scheme: Scheme,
    pub body_bytes: usize,
    pub duplicate_share: f64,
    pub http_workers: usize,
    pub queue_workers: usize,
    pub client_threads: usize,
    pub duration_secs: Option<f64>,
    pub requests_per_stage: Option<u64>,
    pub rss_method: &'static str,
    pub rows: Vec<Row>,
    pub skipped: Vec<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Machine {
    pub cores: usize,
    pub cpu: Option<String>,
    pub kernel: Option<String>,
    pub note: &'static str,
}

fn machine() -> Machine {
    let cpu = std::fs::read_to_string("/proc/cpuinfo").ok().and_then(|c| {
        c.lines()
            .find_map(|l| l.strip_prefix("model name"))
            .map(|v| v.trim_start_matches([' ', '\t', ':']).to_string())
    });
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .ok()
        .map(|s| s.trim().to_string());
    Machine {
        cores: default_workers(),
        cpu,
        kernel,
        note: "load generator on the same machine",
    }
}

/// Entry point of `hookgate bench`.
pub fn main(args: BenchArgs) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(args.client_threads.max(1))
        .enable_all()
        .build()?;
    let report = runtime.block_on(run_all(&args))?;
    print!("{}", table(&report));
    if let Some(out) = &args.out {
        std::fs::write(out, serde_json::to_string_pretty(&report)?)?;
        println!("report written to {}", out.display());
    }
    Ok(())
}

async fn run_all(args: &BenchArgs) -> anyhow::Result<Report> {
    let mut harness = Harness::new(
        std::env::current_exe()?,
        args.providers.clone(),
        args.catalog.clone(),
        args.scheme,
    )?;
    if let Some(f) = &args.fixture {
        harness.fixture = std::fs::read(f).map_err(|e| anyhow::anyhow!("{}: {e}", f.display()))?;
    }
    harness.body_bytes = args.body_bytes;
    if args.workers > 0 {
        harness.http_workers = args.workers;
    }
    harness.queue_workers = args.queue_workers;
    harness.gateway_log = args.gateway_log.clone();
    harness.nats_url = args.nats_url.clone();

    let wants = |s: &str| args.stages.iter().any(|x| x == s);
    let spec = |connections: usize| LoadSpec {
        connections,
        stop: match args.requests {
            Some(n) => Stop::Count(n),
            None => Stop::Duration(Duration::from_secs_f64(args.duration)),
        },
        warmup: match args.requests {
            Some(_) => Duration::ZERO,
            None => Duration::from_secs_f64(args.warmup),
        },
        rate: None,
        duplicate_share: args.duplicates,
    };
    let mut rows: Vec<Row> = Vec::new();
    let mut skipped = Vec::new();
    let c = args.connections;
    let progress = |name: &str| eprintln!("bench: {name} …");

    let plan = [
        ("ceiling", "ceiling", Stage::Server(ServerKind::Ceiling)),
        ("verify", "verify only", Stage::Server(ServerKind::Verify)),
        (
            "schema",
            "verify + schema",
            Stage::Server(ServerKind::Schema),
        ),
        (
            "sqlite",
            "ingest sqlite",
            Stage::Gateway { storage_url: None },
        ),
    ];
    for (key, name, stage) in plan {
        if wants(key) {
            progress(name);
            rows.push(Row::new(
                name,
                c,
                harness.run(&stage, spec(c), false).await?,
            ));
        }
    }
    if wants("curve") {
        for &n in &args.curve {
            let name = format!("ingest sqlite c={n}");
            if n == c && wants("sqlite") {
                let mut row = rows
                    .iter()
                    .find(|r| r.stage == "ingest sqlite")
                    .cloned()
                    .expect("the sqlite row");
                row.stage = name;
                rows.push(row);
                continue;
            }
            progress(&name);
            let stage = Stage::Gateway { storage_url: None };
            rows.push(Row::new(
                &name,
                n,
                harness.run(&stage, spec(n), false).await?,
            ));
        }
    }
    if wants("postgres") {
        match &args.postgres_url {
            None => skipped.push("ingest postgres: no --postgres-url given".to_string()),
            Some(url) => {
                progress("ingest postgres");
                let stage = Stage::Gateway {
                    storage_url: Some(url.clone()),
                };
                match harness.run(&stage, spec(c), false).await {
                    Ok(o) => rows.push(Row::new("ingest postgres", c, o)),
                    // The PostgreSQL backend may not be merged yet: a
                    // gateway that refuses the URL skips the stage.
                    Err(e) => skipped.push(format!("ingest postgres: {e:#}")),
                }
            }
        }
    }
    if wants("processing") {
        let max = rows
            .iter()
            .find(|r| r.stage == "ingest sqlite")
            .map(|r| r.ok_per_sec);
        match max {
            None => skipped.push("processing: needs the sqlite stage for its rate".into()),
            Some(max) => {
                let rate = (max / 2.0).max(1.0);
                progress("processing");
                let mut s = spec(c);
                s.rate = Some(rate);
                let stage = Stage::Gateway { storage_url: None };
                let o = harness.run(&stage, s, true).await?;
                rows.push(Row::new("processing @ 50% max", c, o));
            }
        }
    }
    let ceiling = rows
        .iter()
        .find(|r| r.stage == "ceiling")
        .map(|r| r.ok_per_sec);
    if let Some(ceiling) = ceiling.filter(|c| *c > 0.0) {
        for r in &mut rows {
            r.ratio_to_ceiling = Some(r.ok_per_sec / ceiling);
        }
    }
    let body_bytes = harness.factory_body_len()?;
    let (http_workers, queue_workers) = (harness.http_workers, harness.queue_workers);
    if args.keep {
        eprintln!("bench: stage files kept in {}", harness.keep().display());
    }
    Ok(Report {
        machine: machine(),
        scheme: args.scheme,
        body_bytes,
        duplicate_share: args.duplicates,
        http_workers,
        queue_workers,
        client_threads: args.client_threads,
        duration_secs: args.requests.is_none().then_some(args.duration),
        requests_per_stage: args.requests,
        rss_method: "VmHWM of the server's own process (a fresh child per stage)",
        rows,
        skipped,
    })
}

impl Harness {
    /// Keep the stage directories (configs, databases, logs) after the run.
    pub fn keep(self) -> PathBuf {
        self.dir.keep()
    }

    /// The size of a generated body, as sent.
    pub fn factory_body_len(&self) -> anyhow::Result<usize> {
        let scheme = crate::providers::load_scheme(&self.providers, self.scheme.provider())?;
        let f = load::RequestFactory::new(
            self.scheme,
            scheme,
            &self.fixture,
            self.body_bytes,
            ([127, 0, 0, 1], 0).into(),
            "/",
        )?;
        Ok(f.body(&f.event_id(0, 0)).len())
    }
}

/// The report as a plain-text table.
pub fn table(report: &Report) -> String {
    use std::fmt::Write;
    let mut out = String::new();
    let m = &report.machine;
    let _ = writeln!(
        out,
        "hookgate bench: {} cores ({}), {}; {} scheme, {} B bodies, {:.0}% duplicates, {} HTTP workers, {} queue workers",
        m.cores,
        m.cpu.as_deref().unwrap_or("unknown cpu"),
        m.note,
        report.scheme.provider(),
        report.body_bytes,
        report.duplicate_share * 100.0,
        report.http_workers,
        report.queue_workers,
    );
    let _ = writeln!(
        out,
        "{:<22} {:>5} {:>9} {:>7} {:>8} {:>8} {:>8} {:>8} {:>7} {:>8} {:>9}",
        "stage",
        "conns",
        "ok/s",
        "×ceil",
        "p50 ms",
        "p90 ms",
        "p99 ms",
        "max ms",
        "errors",
        "RSS MiB",
        "req/commit"
    );
    for r in &report.rows {
        let errors: u64 = r.errors.values().sum();
        let _ = writeln!(
            out,
            "{:<22} {:>5} {:>9.0} {:>7} {:>8.2} {:>8.2} {:>8.2} {:>8.1} {:>7} {:>8} {:>9}",
            r.stage,
            r.connections,
            r.ok_per_sec,
            r.ratio_to_ceiling
                .map(|x| format!("{x:.2}"))
                .unwrap_or_else(|| "-".into()),
            r.p50_ms,
            r.p90_ms,
            r.p99_ms,
            r.max_ms,
            errors,
            r.peak_rss_mib
                .map(|x| format!("{x:.0}"))
                .unwrap_or_else(|| "-".into()),
            r.requests_per_commit
                .map(|x| format!("{x:.1}"))
                .unwrap_or_else(|| "-".into()),
        );
    }
    for r in &report.rows {
        if let Some(p) = &r.processing {
            let _ = writeln!(
                out,
                "processing (200 → event readable on /v1/events, polled every {} ms) at {:.0} req/s offered: {}",
                p.poll_interval_ms,
                p.offered_rate,
                p.summary("backlog when the load stopped"),
            );
        }
        if let Some(p) = &r.published {
            let _ = writeln!(
                out,
                "published (200 → message on a NATS subscription to the stream's subjects): {}",
                p.summary("not yet published when the load stopped"),
            );
        }
    }
    for r in &report.rows {
        if !r.errors.is_empty() {
            let _ = writeln!(out, "errors in {}: {:?}", r.stage, r.errors);
        }
    }
    for s in &report.skipped {
        let _ = writeln!(out, "skipped: {s}");
    }
    out
}
