//! Spans: the request's `ingress` span and the worker's `process` span
//! carry source, provider, provider event id and delivery id; with OTLP
//! export configured, those spans reach a collector (a tiny receiver here,
//! decoding the protobuf the exporter posts to `/v1/traces`).
//!
//! The HTTP server runs on threads of its own, so the spans are captured by
//! a process-wide subscriber, installed once for this test binary by the
//! first test app started (`helpers::spawn_app_configured`; nothing else
//! installs one): hookgate's info spans go to an in-memory capture layer
//! and to the OTLP layer built by `telemetry::otlp_layer`, and its debug
//! events and spans to `helpers::LeakLayer`, which looks for configured
//! secrets. Tests find their own spans by their delivery ids.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::sync::{Arc, Mutex, OnceLock};

use hookgate::config::OtlpSettings;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::any_value::Value as AnyValue;
use prost::Message;
use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing_subscriber::layer::{Context, SubscriberExt};
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::Layer;

use crate::helpers::*;

/// A closed span: its name and fields.
#[derive(Debug, Clone)]
struct SpanRecord {
    name: String,
    fields: BTreeMap<String, String>,
}

struct Fields(BTreeMap<String, String>);

impl Visit for Fields {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.0.insert(field.name().to_string(), value.to_string());
    }
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        self.0
            .insert(field.name().to_string(), format!("{value:?}"));
    }
}

struct CaptureLayer(Arc<Mutex<Vec<SpanRecord>>>);

impl<S: tracing::Subscriber + for<'a> LookupSpan<'a>> Layer<S> for CaptureLayer {
    fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, ctx: Context<'_, S>) {
        let mut fields = Fields(BTreeMap::new());
        attrs.record(&mut fields);
        if let Some(span) = ctx.span(id) {
            span.extensions_mut().insert(fields);
        }
    }

    fn on_record(&self, id: &Id, values: &Record<'_>, ctx: Context<'_, S>) {
        if let Some(span) = ctx.span(id) {
            if let Some(fields) = span.extensions_mut().get_mut::<Fields>() {
                values.record(fields);
            }
        }
    }

    fn on_close(&self, id: Id, ctx: Context<'_, S>) {
        if let Some(span) = ctx.span(&id) {
            let fields = span
                .extensions()
                .get::<Fields>()
                .map(|f| f.0.clone())
                .unwrap_or_default();
            self.0.lock().unwrap().push(SpanRecord {
                name: span.name().to_string(),
                fields,
            });
        }
    }
}

pub struct Global {
    spans: Arc<Mutex<Vec<SpanRecord>>>,
    /// Bodies posted to the receiver's `/v1/traces`.
    exports: Arc<Mutex<Vec<Vec<u8>>>>,
    provider: opentelemetry_sdk::trace::SdkTracerProvider,
}

/// A minimal OTLP/HTTP receiver: reads each request's body by its
/// Content-Length and answers 200 with an empty protobuf response.
fn start_receiver(exports: Arc<Mutex<Vec<Vec<u8>>>>) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let exports = exports.clone();
            std::thread::spawn(move || {
                let mut reader = BufReader::new(stream.try_clone().unwrap());
                let mut stream = stream;
                loop {
                    let mut request_line = String::new();
                    if reader.read_line(&mut request_line).unwrap_or(0) == 0 {
                        return;
                    }
                    let mut length = 0usize;
                    loop {
                        let mut line = String::new();
                        if reader.read_line(&mut line).unwrap_or(0) == 0 {
                            return;
                        }
                        let line = line.trim_end();
                        if line.is_empty() {
                            break;
                        }
                        if let Some((name, value)) = line.split_once(':') {
                            if name.eq_ignore_ascii_case("content-length") {
                                length = value.trim().parse().unwrap_or(0);
                            }
                        }
                    }
                    let mut body = vec![0; length];
                    if reader.read_exact(&mut body).is_err() {
                        return;
                    }
                    if request_line.starts_with("POST /v1/traces ") {
                        exports.lock().unwrap().push(body);
                    }
                    let answer = "HTTP/1.1 200 OK\r\ncontent-type: application/x-protobuf\r\ncontent-length: 0\r\n\r\n";
                    if stream.write_all(answer.as_bytes()).is_err() {
                        return;
                    }
                }
            });
        }
    });
    port
}

/// Every span in the OTLP export bodies: the resources' `service.name`s,
/// and each span's name with its string and integer attributes.
#[allow(clippy::type_complexity)]
fn decode_exports(exports: &[Vec<u8>]) -> (Vec<String>, Vec<(String, BTreeMap<String, String>)>) {
    let mut seen: Vec<(String, BTreeMap<String, String>)> = Vec::new();
    let mut service_names = Vec::new();
    for body in exports {
        let request = ExportTraceServiceRequest::decode(body.as_slice()).expect("OTLP protobuf");
        for resource_spans in request.resource_spans {
            for kv in resource_spans
                .resource
                .map(|r| r.attributes)
                .unwrap_or_default()
            {
                if kv.key == "service.name" {
                    if let Some(AnyValue::StringValue(v)) = kv.value.and_then(|v| v.value) {
                        service_names.push(v);
                    }
                }
            }
            for scope in resource_spans.scope_spans {
                for span in scope.spans {
                    let attributes = span
                        .attributes
                        .into_iter()
                        .filter_map(|kv| match kv.value.and_then(|v| v.value) {
                            Some(AnyValue::StringValue(v)) => Some((kv.key, v)),
                            Some(AnyValue::IntValue(n)) => Some((kv.key, n.to_string())),
                            _ => None,
                        })
                        .collect();
                    seen.push((span.name, attributes));
                }
            }
        }
    }
    (service_names, seen)
}

pub fn global() -> &'static Global {
    static GLOBAL: OnceLock<Global> = OnceLock::new();
    GLOBAL.get_or_init(|| {
        let exports = Arc::new(Mutex::new(Vec::new()));
        let port = start_receiver(exports.clone());
        let settings = OtlpSettings {
            endpoint: format!("http://127.0.0.1:{port}"),
            service_name: "hookgate-test".into(),
            ..OtlpSettings::default()
        };
        let (otlp, provider) = hookgate::telemetry::otlp_layer(&settings).unwrap();
        let spans = Arc::new(Mutex::new(Vec::new()));
        let info = || {
            tracing_subscriber::filter::Targets::new().with_target("hookgate", tracing::Level::INFO)
        };
        let debug = tracing_subscriber::filter::Targets::new()
            .with_target("hookgate", tracing::Level::DEBUG);
        let subscriber = tracing_subscriber::registry()
            .with(CaptureLayer(spans.clone()).with_filter(info()))
            .with(otlp.with_filter(info()))
            .with(LeakLayer.with_filter(debug));
        tracing::subscriber::set_global_default(subscriber)
            .expect("no other test installs a global subscriber");
        Global {
            spans,
            exports,
            provider,
        }
    })
}

fn spans_named(name: &str, delivery_id: &str) -> Vec<SpanRecord> {
    global()
        .spans
        .lock()
        .unwrap()
        .iter()
        .filter(|s| {
            s.name == name && s.fields.get("delivery_id").map(String::as_str) == Some(delivery_id)
        })
        .cloned()
        .collect()
}

#[tokio::test]
async fn telemetry_spans_carry_source_provider_and_ids_from_request_to_worker() {
    global();
    let app = spawn_app(Backend::Sqlite).await;
    let reply = app.send_expect(&stripe_request("evt_span_1"), 200).await;
    let id = reply["id"].as_str().unwrap().to_string();
    app.drain().await;

    for name in ["ingress", "process"] {
        let found = spans_named(name, &id);
        assert_eq!(found.len(), 1, "one {name} span for {id}: {found:?}");
        let f = &found[0].fields;
        assert_eq!(f["source"], "stripe", "{name}: {f:?}");
        assert_eq!(f["provider"], "stripe", "{name}: {f:?}");
        assert_eq!(f["provider_event_id"], "evt_span_1", "{name}: {f:?}");
    }
    assert_eq!(spans_named("ingress", &id)[0].fields["outcome"], "accepted");

    // A refusal says why on the request's span.
    let forged = stripe_request("evt_span_forged").header("stripe-signature", "t=1,v1=00");
    app.send_expect(&forged, 401).await;
    let refused = global().spans.lock().unwrap().iter().any(|s| {
        let outcome = s.fields.get("outcome").map(String::as_str);
        s.name == "ingress"
            && matches!(
                outcome,
                Some("timestamp_out_of_tolerance" | "invalid_signature")
            )
    });
    assert!(refused, "the refusal's code is on the span");
}

#[tokio::test]
async fn telemetry_otlp_export_delivers_spans_with_their_attributes() {
    let g = global();
    let app = spawn_app(Backend::Sqlite).await;
    let reply = app.send_expect(&stripe_request("evt_otlp_1"), 200).await;
    let id = reply["id"].as_str().unwrap().to_string();
    app.drain().await;

    // The batch processor exports on its own thread; flush it and wait.
    let provider = g.provider.clone();
    tokio::task::spawn_blocking(move || provider.force_flush())
        .await
        .unwrap()
        .expect("the export succeeds");

    let exports = g.exports.lock().unwrap().clone();
    assert!(!exports.is_empty(), "nothing was posted to /v1/traces");
    let (service_names, seen) = decode_exports(&exports);
    assert!(service_names.iter().any(|n| n == "hookgate-test"));
    for name in ["ingress", "process"] {
        let span = seen
            .iter()
            .find(|(n, a)| n == name && a.get("delivery_id") == Some(&id))
            .unwrap_or_else(|| panic!("no exported {name} span for {id}"));
        assert_eq!(span.1["source"], "stripe");
        assert_eq!(span.1["provider"], "stripe");
        assert_eq!(span.1["provider_event_id"], "evt_otlp_1");
    }
}

/// The real binary, configured from TOML: `[log] format = "json"` writes
/// JSON lines whose spans carry the ids, and `[telemetry.otlp]` exports the
/// spans (flushed at a graceful shutdown).
#[tokio::test]
async fn telemetry_serve_from_config_writes_json_logs_and_exports_spans() {
    use std::process::{Command, Stdio};
    let exports = Arc::new(Mutex::new(Vec::new()));
    let port = start_receiver(exports.clone());
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("hookgate.toml");
    std::fs::write(
        &config,
        format!(
            r#"
[server]
listen = "127.0.0.1:0"
http_workers = 1

[storage]
url = "sqlite://{db}"

[paths]
providers = "{providers}"
catalog = "{catalog}"

[api]
tokens = ["{token}"]

[queue]
workers = 1

[log]
format = "json"
level = "info"

[telemetry.otlp]
endpoint = "http://127.0.0.1:{port}"
service_name = "hookgate-serve-test"

[[sources]]
name = "stripe"
provider = "stripe"
secrets = ["whsec_json_secret"]
"#,
            db = dir.path().join("hookgate.db").display(),
            providers = repo().join("providers").display(),
            catalog = repo().join("catalog").display(),
            token = API_TOKEN,
        ),
    )
    .unwrap();
    /// Ends the gateway if the test fails before stopping it.
    struct Serve(std::process::Child);
    impl Drop for Serve {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let mut serve = Serve(
        Command::new(env!("CARGO_BIN_EXE_hookgate"))
            .args(["serve", "--config"])
            .arg(&config)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("the hookgate binary starts"),
    );
    let child = &mut serve.0;
    let mut first = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut first)
        .unwrap();
    let address = first
        .trim()
        .strip_prefix("hookgate listening on ")
        .unwrap_or_else(|| panic!("unexpected first line {first:?}"))
        .to_string();
    let (lines_tx, lines) = std::sync::mpsc::channel::<String>();
    let stderr = child.stderr.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let _ = lines_tx.send(line);
        }
    });

    let mut payload = fixture("stripe", "invoice.paid");
    set_pointer(&mut payload, "/id", serde_json::json!("evt_json_1"));
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    let req = signed(
        "stripe",
        "stripe",
        "whsec_json_secret",
        &serde_json::to_vec(&payload).unwrap(),
        now,
        "evt_json_1",
    );
    let mut post = reqwest::Client::new()
        .post(format!("{address}{}", req.path))
        .body(req.body.clone());
    for (k, v) in &req.headers {
        post = post.header(k, v);
    }
    let reply: serde_json::Value = post.send().await.unwrap().json().await.unwrap();
    let id = reply["id"].as_str().expect("accepted").to_string();

    // Every stderr line is JSON; wait for the worker's line about this
    // delivery, inside its `process` span.
    let mut stored = None;
    let processed = loop {
        let line = lines
            .recv_timeout(std::time::Duration::from_secs(60))
            .expect("the worker logs the delivery");
        let v: serde_json::Value =
            serde_json::from_str(&line).unwrap_or_else(|_| panic!("not JSON: {line}"));
        if v["fields"]["message"] == "delivery stored" {
            stored = Some(v.clone());
        }
        if v["span"]["name"] == "process" && v["span"]["delivery_id"] == id.as_str() {
            break v;
        }
    };
    assert_eq!(processed["span"]["source"], "stripe", "{processed}");
    assert_eq!(processed["span"]["provider"], "stripe");
    assert_eq!(processed["span"]["provider_event_id"], "evt_json_1");
    let stored = stored.expect("the ingest path logged the delivery");
    assert_eq!(stored["span"]["name"], "ingress", "{stored}");
    assert_eq!(stored["fields"]["delivery_id"], id.as_str());
    assert_eq!(stored["span"]["provider"], "stripe");

    // A graceful stop flushes the exporter.
    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    assert!(child.wait().unwrap().success(), "hookgate exits cleanly");
    let (services, spans) = decode_exports(&exports.lock().unwrap());
    assert!(
        services.iter().any(|n| n == "hookgate-serve-test"),
        "{services:?}"
    );
    for name in ["ingress", "process"] {
        let span = spans
            .iter()
            .find(|(n, a)| n == name && a.get("delivery_id") == Some(&id))
            .unwrap_or_else(|| panic!("no exported {name} span for {id}: {spans:?}"));
        assert_eq!(span.1["provider_event_id"], "evt_json_1");
    }
}
