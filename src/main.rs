//! The `hookgate` command line: parsing and dispatch only; everything else
//! lives in the library.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use hookgate::app::{self, Application, Options};
use hookgate::config::{ProcessEnv, Settings};
use hookgate::{providers, telemetry, verify};

#[derive(Parser)]
#[command(name = "hookgate", version, about = "Inbound webhook gateway")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the gateway.
    Serve {
        #[arg(long, short, default_value = "hookgate.toml")]
        config: PathBuf,
    },
    /// Load the config, the catalog and every provider definition, resolve
    /// secrets, and report problems without serving.
    Check {
        #[arg(long, short, default_value = "hookgate.toml")]
        config: PathBuf,
    },
    /// Create the database if needed and apply migrations, then exit.
    Migrate {
        #[arg(long, short, default_value = "hookgate.toml")]
        config: PathBuf,
    },
    /// Process a done, failed or dead delivery again, through the database
    /// (a running gateway's workers pick it up); catalog events are not
    /// duplicated. `hookgate deliveries replay` does it through the API.
    Replay {
        #[arg(long, short, default_value = "hookgate.toml")]
        config: PathBuf,
        /// The delivery id (dlv_…).
        delivery: String,
    },
    /// Inspect, replay and discard deliveries of a running gateway (its
    /// admin API).
    Deliveries(hookgate::admin_cli::DeliveriesArgs),
    /// Inspect what a running gateway refused.
    Rejections(hookgate::admin_cli::RejectionsArgs),
    /// Print the headers a provider would send for a body (FILE or stdin),
    /// as JSON, or with --curl a ready curl command.
    Sign(SignArgs),
    /// Generate the catalog's documentation (`docs/catalog.md`) or its
    /// schema-evolution lock (`catalog/catalog.lock`).
    Catalog(CatalogArgs),
    /// Load-test the gateway against a bare HTTP server in the same run
    /// (see the README's Performance section).
    Bench(hookgate::bench::BenchArgs),
    /// A comparison server for `hookgate bench` (internal).
    #[command(hide = true)]
    BenchServer(hookgate::bench::ServerArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Serve { config } => serve(&config),
        Command::Check { config } => check(&config),
        Command::Migrate { config } => migrate(&config),
        Command::Replay { config, delivery } => replay(&config, &delivery),
        Command::Deliveries(args) => hookgate::admin_cli::deliveries_main(args),
        Command::Rejections(args) => hookgate::admin_cli::rejections_main(args),
        Command::Sign(args) => sign(args),
        Command::Catalog(args) => catalog(args),
        Command::Bench(args) => hookgate::bench::main(args),
        Command::BenchServer(args) => hookgate::bench::serve_main(args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("hookgate: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn load_settings(path: &Path) -> anyhow::Result<Settings> {
    Settings::load(path).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))
}

fn serve(config: &Path) -> anyhow::Result<()> {
    let settings = load_settings(config)?;
    // Dropped last: exports the spans still pending at shutdown.
    let _telemetry = telemetry::init(&settings.log, &settings.telemetry)?;
    tokio::runtime::Runtime::new()?.block_on(async move {
        let listen = settings.server.listen.clone();
        let app = Application::build(settings, Options::default()).await?;
        let host = listen
            .rsplit_once(':')
            .map(|(h, _)| h)
            .unwrap_or("127.0.0.1");
        // One machine-readable line, for scripts and the crash test.
        println!("hookgate listening on http://{host}:{}", app.port());
        tracing::info!(port = app.port(), "hookgate serving");
        app.run_until_stopped().await?;
        tracing::info!("hookgate stopped");
        Ok(())
    })
}

fn check(config: &Path) -> anyhow::Result<()> {
    let settings = load_settings(config)?;
    // Warnings (literal secrets, unauthenticated sources) go to stderr.
    let _telemetry = telemetry::init(
        &hookgate::config::LogSettings {
            level: "warn".into(),
            ..settings.log.clone()
        },
        &Default::default(),
    )?;
    let loaded = app::load_definitions(&settings, &ProcessEnv)?;
    println!(
        "ok: {} catalog types, {} providers ({}), {} sources, {} push subscriptions",
        loaded.catalog.len(),
        loaded.registry.len(),
        loaded
            .registry
            .iter()
            .map(|p| p.name.as_str())
            .collect::<Vec<_>>()
            .join(", "),
        loaded.sources,
        loaded.subscriptions
    );
    Ok(())
}

fn migrate(config: &Path) -> anyhow::Result<()> {
    let settings = load_settings(config)?;
    tokio::runtime::Runtime::new()?.block_on(async move {
        let store = hookgate::store::open(&settings.storage.url).await?;
        store.close().await;
        println!("ok: migrations applied to {}", settings.storage.url);
        Ok(())
    })
}

fn replay(config: &Path, delivery: &str) -> anyhow::Result<()> {
    use hookgate::store::{DeliveryStatus, Transition};
    let settings = load_settings(config)?;
    tokio::runtime::Runtime::new()?.block_on(async move {
        let store = hookgate::store::open(&settings.storage.url).await?;
        let now = hookgate::clock::unix_ms(time::OffsetDateTime::now_utc());
        let allowed = [
            DeliveryStatus::Done,
            DeliveryStatus::Failed,
            DeliveryStatus::Dead,
        ];
        let outcome = store.requeue(delivery, &allowed, now).await?;
        store.close().await;
        match outcome {
            Transition::Applied => {
                println!("ok: {delivery} is pending again");
                Ok(())
            }
            Transition::NotFound => anyhow::bail!("no delivery {delivery}"),
            Transition::Refused(s) => anyhow::bail!("a {} delivery can't be replayed", s.as_str()),
            Transition::BodyPurged => {
                anyhow::bail!("the raw body of {delivery} was removed by retention")
            }
        }
    })
}

#[derive(clap::Args)]
struct CatalogArgs {
    #[command(subcommand)]
    what: CatalogOutput,
    #[arg(long, default_value = "catalog", global = true)]
    catalog: PathBuf,
    #[arg(long, default_value = "providers", global = true)]
    providers: PathBuf,
}

#[derive(clap::Subcommand)]
enum CatalogOutput {
    /// Print `docs/catalog.md`: every type, its fields, example, the
    /// provider events mapped to it, its version history.
    Docs,
    /// Rewrite `<catalog>/catalog.lock` from the catalog, refusing a change
    /// that removes, retypes or un-requires a field without a new version.
    Lock,
}

fn catalog(args: CatalogArgs) -> anyhow::Result<()> {
    use hookgate::catalog::{docs, evolution, Catalog};
    let catalog = Catalog::load(&args.catalog)?;
    match args.what {
        CatalogOutput::Docs => {
            let registry = providers::Registry::load(&args.providers, &catalog)?;
            print!("{}", docs::markdown(&catalog, &registry.catalog_sources()));
        }
        CatalogOutput::Lock => {
            let path = args.catalog.join("catalog.lock");
            let current = evolution::snapshot(&catalog);
            if let Ok(text) = std::fs::read_to_string(&path) {
                let locked: evolution::Lock = serde_json::from_str(&text)
                    .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
                let breaking = evolution::breaking_changes(&locked, &current);
                if !breaking.is_empty() {
                    anyhow::bail!(
                        "breaking changes need a new x-version (and an x-history note):\n  {}",
                        breaking.join("\n  ")
                    );
                }
            }
            std::fs::write(&path, evolution::render(&current))?;
            println!("ok: {} written ({} types)", path.display(), current.len());
        }
    }
    Ok(())
}

#[derive(clap::Args)]
struct SignArgs {
    /// A provider folder name under --providers.
    #[arg(long)]
    provider: String,
    /// The secret as the provider shows it (e.g. whsec_…); for
    /// Standard Webhooks v1a, a whsk_ signing key.
    #[arg(long)]
    secret: String,
    /// Target URL (default: http://127.0.0.1:8080/v1/webhooks/<provider>).
    #[arg(long)]
    url: Option<String>,
    /// Unix timestamp to sign with (default: now).
    #[arg(long)]
    timestamp: Option<i64>,
    /// Message id, for schemes that sign one (default: a fresh msg_… id).
    #[arg(long)]
    id: Option<String>,
    #[arg(long, default_value = "providers")]
    providers: PathBuf,
    /// Print a curl command instead of JSON.
    #[arg(long)]
    curl: bool,
    /// PayPal: the webhook id the source is configured with
    /// (`auth = { scheme = "paypal", webhook_id = … }`); PayPal signs it.
    #[arg(long)]
    webhook_id: Option<String>,
    /// The body's media type (form bodies: application/x-www-form-urlencoded).
    #[arg(long, default_value = "application/json")]
    content_type: String,
    /// The body to sign; stdin when absent.
    file: Option<PathBuf>,
}

fn sign(args: SignArgs) -> anyhow::Result<()> {
    use std::io::Read;
    let mut scheme = providers::load_scheme(&args.providers, &args.provider)?;
    if let (verify::SchemeConfig::Paypal(paypal), Some(id)) = (&mut scheme, &args.webhook_id) {
        paypal.webhook_id = Some(id.clone());
    }
    let body = match &args.file {
        Some(f) => std::fs::read(f).map_err(|e| anyhow::anyhow!("{}: {e}", f.display()))?,
        None => {
            let mut buf = Vec::new();
            std::io::stdin().read_to_end(&mut buf)?;
            buf
        }
    };
    let timestamp = args
        .timestamp
        .unwrap_or_else(|| time::OffsetDateTime::now_utc().unix_timestamp());
    let id = args
        .id
        .unwrap_or_else(|| format!("msg_{}", ulid::Ulid::new()));
    let mut url = args
        .url
        .unwrap_or_else(|| format!("http://127.0.0.1:8080/v1/webhooks/{}", args.provider));
    // Schemes that sign inside the body (Adyen) give back a new body.
    let (signed_body, signed) = verify::sign_full(
        &scheme,
        &args.secret,
        &verify::SignInput {
            body: &body,
            timestamp,
            id: &id,
            url: Some(&url),
        },
    )?;
    let rewritten = (signed_body != body).then_some(signed_body);
    if let Some(token) = &signed.path_token {
        url = format!("{}/{token}", url.trim_end_matches('/'));
    }
    let mut headers = vec![("Content-Type".to_string(), args.content_type.clone())];
    headers.extend(signed.headers);
    if args.curl {
        let quote = |s: &str| format!("'{}'", s.replace('\'', "'\\''"));
        let mut cmd = format!("curl -sS -X POST {}", quote(&url));
        for (k, v) in &headers {
            cmd.push_str(&format!(" \\\n  -H {}", quote(&format!("{k}: {v}"))));
        }
        let data = match (&rewritten, &args.file) {
            (Some(b), _) => String::from_utf8_lossy(b).into_owned(),
            (None, Some(f)) => format!("@{}", f.display()),
            (None, None) => String::from_utf8_lossy(&body).into_owned(),
        };
        cmd.push_str(&format!(" \\\n  --data-binary {}", quote(&data)));
        println!("{cmd}");
    } else {
        let map: serde_json::Map<String, serde_json::Value> = headers
            .into_iter()
            .map(|(k, v)| (k, serde_json::Value::String(v)))
            .collect();
        let mut out = serde_json::json!({ "url": url, "headers": map });
        if let Some(b) = &rewritten {
            out["body"] = serde_json::Value::String(String::from_utf8_lossy(b).into_owned());
        }
        println!("{}", serde_json::to_string_pretty(&out)?);
    }
    Ok(())
}
