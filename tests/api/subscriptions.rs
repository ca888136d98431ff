//! Push subscriptions, end to end: catalog events POSTed to a real local
//! receiver that checks every request with the official `standardwebhooks`
//! crate (not our verifier); retries on the subscription's schedule by
//! moving the manual clock; dead letters, replay, order per entity, pause,
//! rotation, the SSRF guard and the automatic disable.

use std::net::TcpListener;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use actix_web::{web, App, HttpRequest, HttpResponse, HttpServer};
use base64::Engine;
use hookgate::config::SubscriptionSettings;
use serde_json::{json, Value};

use crate::helpers::*;

/// What the receiver answers.
#[derive(Clone)]
enum Answer {
    Status(u16, &'static str),
    /// A redirect to this URL.
    Redirect(u16, String),
    /// Answer only after the client gave up.
    Hang,
}

type Behaviour = Box<dyn Fn(&Value) -> Answer + Send + Sync>;

/// One request the receiver got.
#[derive(Debug, Clone)]
struct Received {
    webhook_id: String,
    body: Value,
    /// Per secret of `Receiver::secrets`, whether the signature verified.
    verified: Vec<bool>,
    signatures: usize,
    timestamp: i64,
    /// A `v1a` signature verified with the Standard Webhooks test key pair
    /// (`sw_public_key`), by ed25519-dalek.
    v1a: bool,
    /// What it answered (0 for a hang).
    status: u16,
}

struct ReceiverState {
    secrets: Mutex<Vec<String>>,
    behaviour: Mutex<Behaviour>,
    received: Mutex<Vec<Received>>,
    arrived: tokio::sync::mpsc::UnboundedSender<()>,
}

struct Receiver {
    port: u16,
    state: Arc<ReceiverState>,
    arrived: tokio::sync::Mutex<tokio::sync::mpsc::UnboundedReceiver<()>>,
}

impl Receiver {
    /// Bound before it is spawned: ready when this returns.
    fn start(secrets: &[&str]) -> Receiver {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        let state = Arc::new(ReceiverState {
            secrets: Mutex::new(secrets.iter().map(|s| s.to_string()).collect()),
            behaviour: Mutex::new(Box::new(|_| Answer::Status(200, "ok"))),
            received: Mutex::new(Vec::new()),
            arrived: tx,
        });
        let data = web::Data::new(state.clone());
        let server = HttpServer::new(move || {
            App::new()
                .app_data(data.clone())
                .default_service(web::to(receive))
        })
        .workers(1)
        .disable_signals()
        .listen(listener)
        .unwrap()
        .run();
        tokio::spawn(server);
        Receiver {
            port,
            state,
            arrived: tokio::sync::Mutex::new(rx),
        }
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}/hook", self.port)
    }

    fn answer(&self, f: impl Fn(&Value) -> Answer + Send + Sync + 'static) {
        *self.state.behaviour.lock().unwrap() = Box::new(f);
    }

    fn add_secret(&self, secret: &str) {
        self.state.secrets.lock().unwrap().push(secret.to_string());
    }

    fn received(&self) -> Vec<Received> {
        self.state.received.lock().unwrap().clone()
    }

    /// The requests answered 2xx.
    fn accepted(&self) -> Vec<Received> {
        self.received()
            .into_iter()
            .filter(|r| (200..300).contains(&r.status))
            .collect()
    }

    /// Wait (bounded) for the next request to arrive.
    async fn next_arrival(&self) {
        tokio::time::timeout(Duration::from_secs(20), self.arrived.lock().await.recv())
            .await
            .expect("a push arrives")
            .expect("receiver running");
    }
}

async fn receive(
    req: HttpRequest,
    body: web::Bytes,
    state: web::Data<Arc<ReceiverState>>,
) -> HttpResponse {
    let mut headers = http::HeaderMap::new();
    for (name, value) in req.headers() {
        if let (Ok(n), Ok(v)) = (
            http::HeaderName::from_bytes(name.as_str().as_bytes()),
            http::HeaderValue::from_bytes(value.as_bytes()),
        ) {
            headers.append(n, v);
        }
    }
    let secrets = state.secrets.lock().unwrap().clone();
    let verified = secrets
        .iter()
        .map(|s| {
            standardwebhooks::Webhook::new(s)
                .map(|w| w.verify(&body, &headers).is_ok())
                .unwrap_or(false)
        })
        .collect();
    let json: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let answer = (state.behaviour.lock().unwrap())(&json);
    let header = |name: &str| {
        req.headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_string()
    };
    state.received.lock().unwrap().push(Received {
        webhook_id: header("webhook-id"),
        body: json,
        verified,
        signatures: header("webhook-signature").split(' ').count(),
        timestamp: header("webhook-timestamp").parse().unwrap_or(0),
        v1a: v1a_verifies(
            &header("webhook-id"),
            &header("webhook-timestamp"),
            &body,
            &header("webhook-signature"),
        ),
        status: match &answer {
            Answer::Status(code, _) | Answer::Redirect(code, _) => *code,
            Answer::Hang => 0,
        },
    });
    let _ = state.arrived.send(());
    match answer {
        Answer::Status(code, text) => {
            HttpResponse::build(actix_web::http::StatusCode::from_u16(code).unwrap()).body(text)
        }
        Answer::Redirect(code, location) => {
            HttpResponse::build(actix_web::http::StatusCode::from_u16(code).unwrap())
                .insert_header(("location", location))
                .finish()
        }
        Answer::Hang => {
            tokio::time::sleep(Duration::from_secs(30)).await;
            HttpResponse::Ok().finish()
        }
    }
}

/// Whether one of the `v1a,` entries is an Ed25519 signature of
/// `{id}.{timestamp}.{body}` by the RFC 8032 test key.
fn v1a_verifies(id: &str, timestamp: &str, body: &[u8], header: &str) -> bool {
    use ed25519_dalek::{Signature, Verifier, VerifyingKey};
    let public = sw_public_key();
    let Ok(bytes) = base64::engine::general_purpose::STANDARD.decode(&public["whpk_".len()..])
    else {
        return false;
    };
    let Ok(key) = VerifyingKey::try_from(bytes.as_slice()) else {
        return false;
    };
    let signed = [format!("{id}.{timestamp}.").as_bytes(), body].concat();
    header
        .split(' ')
        .filter_map(|s| s.strip_prefix("v1a,"))
        .any(|sig| {
            base64::engine::general_purpose::STANDARD
                .decode(sig)
                .ok()
                .and_then(|b| Signature::from_slice(&b).ok())
                .is_some_and(|sig| key.verify(&signed, &sig).is_ok())
        })
}

/// The receiver's `standardwebhooks` checks the timestamp against the wall
/// clock, so these tests run the app's clock from the real time.
fn real_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

async fn push_app(backend: Backend) -> TestApp {
    let app = spawn_app(backend).await;
    app.clock.set_unix(real_now());
    app
}

/// A Stripe invoice.paid for invoice `invoice`, signed at the app's time.
fn invoice(app: &TestApp, event_id: &str, invoice: &str) -> Outgoing {
    let mut v = fixture("stripe", "invoice.paid");
    set_pointer(&mut v, "/id", json!(event_id));
    set_pointer(&mut v, "/data/object/id", json!(invoice));
    let now = time_of(app);
    signed(
        "stripe",
        "stripe",
        "whsec_test_new_secret",
        &serde_json::to_vec(&v).unwrap(),
        now,
        event_id,
    )
}

fn time_of(app: &TestApp) -> i64 {
    use hookgate::clock::Clock;
    app.clock.now().unix_timestamp()
}

/// Ingest invoices (1 ms apart, so catalog order is send order) and
/// normalize them.
async fn ingest(app: &TestApp, invoices: &[(&str, &str)]) {
    for (event_id, inv) in invoices {
        app.send_expect(&invoice(app, event_id, inv), 200).await;
        app.clock.advance_ms(1);
    }
    app.drain().await;
}

async fn create(app: &TestApp, body: Value) -> Value {
    let (status, answer) = app.post("/v1/admin/subscriptions", Some(body)).await;
    assert_eq!(status, 201, "{answer}");
    answer
}

async fn push(app: &TestApp) -> usize {
    app.push.drain().await.expect("push drains")
}

async fn attempts(app: &TestApp, name: &str) -> Vec<Value> {
    let (status, page) = app
        .get(&format!(
            "/v1/admin/subscriptions/{name}/attempts?limit=100"
        ))
        .await;
    assert_eq!(status, 200, "{page}");
    let mut rows = page["attempts"].as_array().unwrap().clone();
    rows.reverse(); // oldest first
    rows
}

async fn metrics_text(app: &TestApp) -> String {
    app.client
        .get(format!("{}/metrics", app.address))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}

fn third_secret() -> String {
    format!(
        "whsec_{}",
        base64::engine::general_purpose::STANDARD.encode(b"a third secret, for rotation")
    )
}

async fn subscriptions_deliver_signed_catalog_events(backend: Backend) {
    let app = push_app(backend).await;
    let receiver = Receiver::start(&[]);
    let created = create(
        &app,
        json!({
            "name": "billing",
            "url": receiver.url(),
            "types": ["invoice.*"],
            "source": "stripe",
            "allow_private_targets": true,
        }),
    )
    .await;
    // No secret given: one was generated, and is shown this once.
    let secret = created["secret"]
        .as_str()
        .expect("a generated secret")
        .to_string();
    assert!(secret.starts_with("whsec_"));
    receiver.add_secret(&secret);
    ingest(&app, &[("evt_push_1", "in_1"), ("evt_push_2", "in_2")]).await;
    assert_eq!(push(&app).await, 2);

    let events = app.all_events().await;
    let got = receiver.received();
    assert_eq!(got.len(), 2);
    for (r, e) in got.iter().zip(&events) {
        assert_eq!(r.verified, vec![true], "standardwebhooks verifies");
        assert_eq!(r.webhook_id, e["id"].as_str().unwrap());
        assert_eq!(&r.body, e, "the body is the catalog event");
    }
    let log = attempts(&app, "billing").await;
    assert_eq!(log.len(), 2);
    for a in &log {
        assert_eq!(a["outcome"], "delivered");
        assert_eq!(a["status_code"], 200);
        assert_eq!(a["response_body"], "ok");
    }
    // Nothing more to send; the secret shows in no answer after creation.
    assert_eq!(push(&app).await, 0);
    for path in ["/v1/admin/subscriptions", "/v1/admin/subscriptions/billing"] {
        let (status, answer) = app.get(path).await;
        assert_eq!(status, 200);
        assert!(!answer.to_string().contains(&secret[6..]), "{answer}");
    }
    let (_, one) = app.get("/v1/admin/subscriptions/billing").await;
    assert_eq!(one["status"], "active");
    assert_eq!(one["managed_by"], "api");
    assert!(one.get("secret").is_none());
    assert!(!got[0].v1a, "no signing key, no v1a");

    // Retention removes delivered messages and their attempts after
    // push_days (7 by default).
    app.clock.advance_ms(8 * 24 * 3600 * 1000);
    app.retention.run_once().await.unwrap();
    assert!(attempts(&app, "billing").await.is_empty());
    let (_, messages) = app.get("/v1/admin/subscriptions/billing/messages").await;
    assert_eq!(messages["messages"], json!([]));
}

/// Two instances on one PostgreSQL database push every event exactly once,
/// in order per entity.
#[tokio::test]
async fn subscriptions_two_instances_deliver_each_message_once() {
    let first = push_app(Backend::Postgres).await;
    let second = spawn_app_with(Spawn {
        backend: Backend::Postgres,
        db_url: Some(first.db.url.clone()),
        ..Spawn::default()
    })
    .await;
    second.clock.set_unix(time_of(&first));
    let receiver = Receiver::start(&[SW_SECRET]);
    create(
        &first,
        json!({
            "name": "shared",
            "url": receiver.url(),
            "types": ["*"],
            "secret": SW_SECRET,
            "allow_private_targets": true,
        }),
    )
    .await;
    let invoices: Vec<(String, String)> = (0..12)
        .map(|i| (format!("evt_two_{i}"), format!("in_{}", i % 3)))
        .collect();
    let refs: Vec<(&str, &str)> = invoices
        .iter()
        .map(|(e, i)| (e.as_str(), i.as_str()))
        .collect();
    ingest(&first, &refs).await;
    // Queue the messages, then let both instances' dispatchers compete:
    // three entities, so each claim round holds at most three messages.
    while first.push.route_once().await.unwrap() != Some(0) {}
    let (a, b) = tokio::join!(push(&first), push(&second));
    assert_eq!(a + b, 12, "each message sent once ({a} + {b})");
    let got = receiver.received();
    let mut ids: Vec<&str> = got.iter().map(|r| r.webhook_id.as_str()).collect();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), 12);
    assert!(got.iter().all(|r| r.verified == vec![true]));
    let events = first.all_events().await;
    for inv in ["in_0", "in_1", "in_2"] {
        let expected: Vec<&str> = events
            .iter()
            .filter(|e| e["data"]["invoice_id"] == inv)
            .map(|e| e["id"].as_str().unwrap())
            .collect();
        let arrived: Vec<&str> = got
            .iter()
            .filter(|r| r.body["data"]["invoice_id"] == inv)
            .map(|r| r.webhook_id.as_str())
            .collect();
        assert_eq!(arrived, expected, "{inv} in catalog order");
    }
}

async fn subscriptions_retry_after_500_and_timeout(backend: Backend) {
    let app = push_app(backend).await;
    let receiver = Receiver::start(&[SW_SECRET]);
    let calls = Arc::new(AtomicUsize::new(0));
    let counter = calls.clone();
    receiver.answer(move |_| match counter.fetch_add(1, Ordering::SeqCst) {
        0 => Answer::Status(500, "boom"),
        1 => Answer::Hang,
        _ => Answer::Status(204, ""),
    });
    create(
        &app,
        json!({
            "name": "retrying",
            "url": receiver.url(),
            "types": ["*"],
            "secret": SW_SECRET,
            "timeout_ms": 1000,
            "retry_schedule": ["1s", "1s", "1s"],
            "allow_private_targets": true,
        }),
    )
    .await;
    ingest(&app, &[("evt_retry_1", "in_r")]).await;
    push(&app).await;
    // Not due before its delay: nothing is sent again yet.
    assert_eq!(push(&app).await, 0);
    app.clock.advance_ms(1_500);
    push(&app).await; // the timeout
    app.clock.advance_ms(1_500);
    push(&app).await;
    let got = receiver.received();
    assert_eq!(got.len(), 3);
    assert!(got.iter().all(|r| r.verified == vec![true]));
    assert!(got.iter().all(|r| r.webhook_id == got[0].webhook_id));
    assert!(
        got[2].timestamp >= got[0].timestamp + 3,
        "each attempt is signed afresh"
    );
    let log = attempts(&app, "retrying").await;
    let outcomes: Vec<&str> = log.iter().map(|a| a["outcome"].as_str().unwrap()).collect();
    assert_eq!(outcomes, ["failed", "failed", "delivered"], "{log:?}");
    assert_eq!(log[0]["status_code"], 500);
    assert_eq!(log[0]["error"], "HTTP 500");
    assert_eq!(log[0]["response_body"], "boom");
    assert_eq!(log[1]["status_code"], Value::Null);
    assert!(
        log[1]["error"].as_str().unwrap().contains("timed out"),
        "{}",
        log[1]
    );
    assert_eq!(log[2]["status_code"], 204);
    assert_eq!(log[2]["attempt"], 3);
}

/// The dashboard lists subscriptions and shows a subscription's attempts
/// (status code, error, the start of the answer, escaped).
async fn subscriptions_and_their_attempts_show_in_the_dashboard(backend: Backend) {
    use crate::ui::{login, ui_get};
    let app = push_app(backend).await;
    let receiver = Receiver::start(&[SW_SECRET]);
    receiver.answer(|_| Answer::Status(503, "<b>down for maintenance</b>"));
    create(
        &app,
        json!({
            "name": "billing-dash",
            "url": receiver.url(),
            "types": ["invoice.*"],
            "secret": SW_SECRET,
            "retry_schedule": ["1s"],
            "allow_private_targets": true,
        }),
    )
    .await;
    ingest(&app, &[("evt_dash_1", "in_d")]).await;
    push(&app).await;
    let cookie = login(&app).await;
    let list = ui_get(&app, "/ui/subscriptions", Some(&cookie)).await;
    assert_eq!(list.status, 200);
    assert!(
        list.html
            .contains("href=\"/ui/subscriptions/billing-dash\""),
        "{}",
        list.html
    );
    assert!(list.html.contains("invoice.*"));
    assert!(!list.html.contains(SW_SECRET), "no secret on the page");
    let one = ui_get(&app, "/ui/subscriptions/billing-dash", Some(&cookie)).await;
    assert_eq!(one.status, 200);
    assert!(one.html.contains("id=\"attempts\""), "{}", one.html);
    assert!(one.html.contains("HTTP 503"), "{}", one.html);
    assert!(
        one.html.contains("&lt;b&gt;down for maintenance&lt;/b&gt;"),
        "escaped: {}",
        one.html
    );
    assert!(!one.html.contains("<b>down"));
    assert!(!one.html.contains(SW_SECRET));
    let missing = ui_get(&app, "/ui/subscriptions/nope", Some(&cookie)).await;
    assert_eq!(missing.status, 404);
    let anonymous = ui_get(&app, "/ui/subscriptions", None).await;
    assert_eq!(anonymous.status, 303, "login first");
}

async fn subscriptions_treat_redirects_as_failures(backend: Backend) {
    let app = push_app(backend).await;
    let receiver = Receiver::start(&[SW_SECRET]);
    let elsewhere = format!("http://127.0.0.1:{}/elsewhere", receiver.port);
    receiver.answer(move |_| Answer::Redirect(307, elsewhere.clone()));
    create(
        &app,
        json!({
            "name": "redirected",
            "url": receiver.url(),
            "types": ["*"],
            "secret": SW_SECRET,
            "retry_schedule": ["1s"],
            "allow_private_targets": true,
        }),
    )
    .await;
    ingest(&app, &[("evt_redirect_1", "in_r")]).await;
    push(&app).await;
    assert_eq!(receiver.received().len(), 1, "the redirect is not followed");
    let log = attempts(&app, "redirected").await;
    assert_eq!(log[0]["outcome"], "failed");
    assert_eq!(log[0]["status_code"], 307);
    assert!(
        log[0]["error"]
            .as_str()
            .unwrap()
            .contains("redirects are not followed"),
        "{}",
        log[0]
    );
}

async fn subscriptions_dead_letter_and_replay(backend: Backend) {
    let app = push_app(backend).await;
    let receiver = Receiver::start(&[SW_SECRET]);
    receiver.answer(|_| Answer::Status(503, "down for maintenance"));
    create(
        &app,
        json!({
            "name": "flaky",
            "url": receiver.url(),
            "types": ["invoice.paid"],
            "secret": SW_SECRET,
            "retry_schedule": ["1s"],
            "disable_after_dead_letters": 0,
            "allow_private_targets": true,
        }),
    )
    .await;
    ingest(&app, &[("evt_dead_1", "in_d")]).await;
    push(&app).await;
    app.clock.advance_ms(1_500);
    push(&app).await;
    app.clock.advance_ms(60_000);
    assert_eq!(push(&app).await, 0, "a dead letter is not retried");
    assert_eq!(receiver.received().len(), 2);

    let (status, dead) = app.get("/v1/admin/subscriptions/flaky/dead-letters").await;
    assert_eq!(status, 200, "{dead}");
    let dead = dead["messages"].as_array().unwrap().clone();
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0]["status"], "dead");
    assert_eq!(dead[0]["last_error"], "HTTP 503");
    let log = attempts(&app, "flaky").await;
    assert_eq!(log.len(), 2);
    assert_eq!(log[1]["outcome"], "dead");
    let metrics = metrics_text(&app).await;
    assert!(
        metrics.contains("hookgate_push_messages{subscription=\"flaky\",status=\"dead\"} 1"),
        "{metrics}"
    );
    assert_eq!(log[1]["response_body"], "down for maintenance");

    receiver.answer(|_| Answer::Status(200, "ok"));
    let id = dead[0]["id"].as_str().unwrap();
    let (status, answer) = app
        .post(
            &format!("/v1/admin/subscriptions/flaky/dead-letters/{id}/replay"),
            None,
        )
        .await;
    assert_eq!(status, 202, "{answer}");
    assert_eq!(push(&app).await, 1);
    assert_eq!(receiver.accepted().len(), 1);
    let (_, dead) = app.get("/v1/admin/subscriptions/flaky/dead-letters").await;
    assert_eq!(dead["messages"].as_array().unwrap().len(), 0);
    let (status, _) = app
        .post(
            &format!("/v1/admin/subscriptions/flaky/dead-letters/{id}/replay"),
            None,
        )
        .await;
    assert_eq!(status, 409, "a delivered message is no dead letter");
}

async fn subscriptions_keep_order_per_entity_under_failures(backend: Backend) {
    let app = push_app(backend).await;
    let receiver = Receiver::start(&[SW_SECRET]);
    let recovered = Arc::new(AtomicBool::new(false));
    let flag = recovered.clone();
    receiver.answer(move |body| {
        if body["data"]["invoice_id"] == "in_a" && !flag.load(Ordering::SeqCst) {
            Answer::Status(500, "A is broken")
        } else {
            Answer::Status(200, "ok")
        }
    });
    create(
        &app,
        json!({
            "name": "ordered",
            "url": receiver.url(),
            "types": ["invoice.*"],
            "secret": SW_SECRET,
            "retry_schedule": ["1s", "1s", "1s"],
            "allow_private_targets": true,
        }),
    )
    .await;
    ingest(
        &app,
        &[
            ("evt_a1", "in_a"),
            ("evt_b1", "in_b"),
            ("evt_a2", "in_a"),
            ("evt_b2", "in_b"),
        ],
    )
    .await;
    let events = app.all_events().await;
    let ids = |invoice: &str| -> Vec<String> {
        events
            .iter()
            .filter(|e| e["data"]["invoice_id"] == invoice)
            .map(|e| e["id"].as_str().unwrap().to_string())
            .collect()
    };
    let (a, b) = (ids("in_a"), ids("in_b"));
    assert_eq!((a.len(), b.len()), (2, 2));

    push(&app).await;
    // B is not held up by A; A's second event waits behind its first.
    let accepted: Vec<String> = receiver
        .accepted()
        .into_iter()
        .map(|r| r.webhook_id)
        .collect();
    assert_eq!(accepted, b);
    let sent: Vec<String> = receiver
        .received()
        .into_iter()
        .map(|r| r.webhook_id)
        .collect();
    assert!(!sent.contains(&a[1]), "A2 went out before A1: {sent:?}");

    app.clock.advance_ms(1_500);
    push(&app).await; // A1 fails again
    recovered.store(true, Ordering::SeqCst);
    app.clock.advance_ms(1_500);
    push(&app).await;
    let a_accepted: Vec<String> = receiver
        .accepted()
        .into_iter()
        .map(|r| r.webhook_id)
        .filter(|id| a.contains(id))
        .collect();
    assert_eq!(a_accepted, a, "A's events arrive in catalog order");
    let first_a2 = sent_position(&receiver, &a[1]);
    let last_a1 = receiver
        .received()
        .iter()
        .rposition(|r| r.webhook_id == a[0])
        .unwrap();
    assert!(first_a2 > last_a1, "A2 was sent before A1 succeeded");
}

fn sent_position(receiver: &Receiver, id: &str) -> usize {
    receiver
        .received()
        .iter()
        .position(|r| r.webhook_id == id)
        .expect("sent")
}

async fn subscriptions_pause_and_resume(backend: Backend) {
    let app = push_app(backend).await;
    let receiver = Receiver::start(&[SW_SECRET]);
    create(
        &app,
        json!({
            "name": "pausable",
            "url": receiver.url(),
            "types": ["*"],
            "secret": SW_SECRET,
            "allow_private_targets": true,
        }),
    )
    .await;
    let (status, paused) = app
        .post("/v1/admin/subscriptions/pausable/pause", None)
        .await;
    assert_eq!(status, 200, "{paused}");
    assert_eq!(paused["status"], "paused");
    ingest(&app, &[("evt_pause_1", "in_p")]).await;
    assert_eq!(push(&app).await, 0);
    assert!(receiver.received().is_empty());
    let (_, pending) = app
        .get("/v1/admin/subscriptions/pausable/messages?status=pending")
        .await;
    assert_eq!(
        pending["messages"].as_array().unwrap().len(),
        1,
        "{pending}"
    );

    let (status, resumed) = app
        .post("/v1/admin/subscriptions/pausable/resume", None)
        .await;
    assert_eq!(status, 200);
    assert_eq!(resumed["status"], "active");
    assert_eq!(push(&app).await, 1);
    assert_eq!(receiver.accepted().len(), 1);
    let (status, _) = app.post("/v1/admin/subscriptions/nope/pause", None).await;
    assert_eq!(status, 404);
}

async fn subscriptions_rotate_secret_with_overlap(backend: Backend) {
    let app = push_app(backend).await;
    let third = third_secret();
    let receiver = Receiver::start(&[SW_OLD_SECRET, SW_SECRET, &third]);
    create(
        &app,
        json!({
            "name": "rotating",
            "url": receiver.url(),
            "types": ["*"],
            "secret": SW_OLD_SECRET,
            "allow_private_targets": true,
        }),
    )
    .await;
    ingest(&app, &[("evt_rot_1", "in_1")]).await;
    push(&app).await;

    // The new secret signs at once; the old one too, during the overlap.
    let (status, rotated) = app
        .post(
            "/v1/admin/subscriptions/rotating/rotate-secret",
            Some(json!({ "secret": SW_SECRET, "overlap_secs": 3600 })),
        )
        .await;
    assert_eq!(status, 200, "{rotated}");
    assert!(
        rotated.get("secret").is_none(),
        "a given secret is not echoed"
    );
    assert!(rotated["signing"]["previous_secret_signs_until"].is_string());
    ingest(&app, &[("evt_rot_2", "in_2")]).await;
    push(&app).await;

    let (status, answer) = app
        .post(
            "/v1/admin/subscriptions/rotating/rotate-secret",
            Some(json!({ "overlap": 0 })),
        )
        .await;
    assert_eq!(status, 400, "a misspelt field rotates nothing: {answer}");

    // No overlap and no secret given: a generated one, shown once, alone.
    let (status, rotated) = app
        .post(
            "/v1/admin/subscriptions/rotating/rotate-secret",
            Some(json!({ "overlap_secs": 0 })),
        )
        .await;
    assert_eq!(status, 200, "{rotated}");
    let generated = rotated["secret"].as_str().expect("generated").to_string();
    receiver.add_secret(&generated);
    ingest(&app, &[("evt_rot_3", "in_3")]).await;
    push(&app).await;

    let got = receiver.received();
    assert_eq!(got.len(), 3);
    assert_eq!(got[0].verified, vec![true, false, false]);
    assert_eq!(
        (got[1].verified.clone(), got[1].signatures),
        (vec![true, true, false], 2)
    );
    assert_eq!(
        (got[2].verified.clone(), got[2].signatures),
        (vec![false, false, false, true], 1)
    );
}

async fn subscriptions_refuse_private_targets(backend: Backend) {
    let app = push_app(backend).await;
    let receiver = Receiver::start(&[SW_SECRET]);
    // An address literal: refused at creation.
    let (status, answer) = app
        .post(
            "/v1/admin/subscriptions",
            Some(json!({
                "name": "literal",
                "url": receiver.url(),
                "types": ["*"],
                "secret": SW_SECRET,
            })),
        )
        .await;
    assert_eq!(status, 400, "{answer}");
    assert!(answer.to_string().contains("private"), "{answer}");
    // A name that resolves to loopback: refused when connecting, recorded.
    create(
        &app,
        json!({
            "name": "by-name",
            "url": format!("http://localhost:{}/hook", receiver.port),
            "types": ["*"],
            "secret": SW_SECRET,
            "retry_schedule": [],
            "disable_after_dead_letters": 0,
        }),
    )
    .await;
    ingest(&app, &[("evt_ssrf_1", "in_s")]).await;
    push(&app).await;
    assert!(receiver.received().is_empty(), "nothing reached the target");
    let log = attempts(&app, "by-name").await;
    assert_eq!(log.len(), 1);
    assert_eq!(log[0]["outcome"], "dead");
    let error = log[0]["error"].as_str().unwrap();
    assert!(error.contains("private"), "{error}");
}

async fn subscriptions_disable_after_dead_letters(backend: Backend) {
    let app = push_app(backend).await;
    let receiver = Receiver::start(&[SW_SECRET]);
    receiver.answer(|_| Answer::Status(500, "no"));
    create(
        &app,
        json!({
            "name": "doomed",
            "url": receiver.url(),
            "types": ["invoice.*"],
            "secret": SW_SECRET,
            "retry_schedule": [],
            "disable_after_dead_letters": 2,
            "allow_private_targets": true,
        }),
    )
    .await;
    ingest(&app, &[("evt_doom_1", "in_x"), ("evt_doom_2", "in_y")]).await;
    push(&app).await;
    let (_, sub) = app.get("/v1/admin/subscriptions/doomed").await;
    assert_eq!(sub["status"], "disabled", "{sub}");
    assert_eq!(sub["consecutive_dead_letters"], 2);
    let disabled: Vec<Value> = app
        .all_events()
        .await
        .into_iter()
        .filter(|e| e["type"] == "hookgate.subscription.disabled")
        .collect();
    assert_eq!(disabled.len(), 1);
    assert_eq!(disabled[0]["data"]["subscription"], "doomed");
    assert_eq!(disabled[0]["data"]["dead_letters"], 2);
    assert_eq!(disabled[0]["source"], "hookgate");

    // While disabled, new events wait; resuming sends them.
    receiver.answer(|_| Answer::Status(200, "ok"));
    ingest(&app, &[("evt_doom_3", "in_z")]).await;
    assert_eq!(push(&app).await, 0);
    let (status, _) = app
        .post("/v1/admin/subscriptions/doomed/resume", None)
        .await;
    assert_eq!(status, 200);
    assert_eq!(push(&app).await, 1);
    assert_eq!(receiver.accepted().len(), 1);
}

async fn subscriptions_disable_after_failing_for_hours(backend: Backend) {
    let app = push_app(backend).await;
    let receiver = Receiver::start(&[SW_SECRET]);
    receiver.answer(|_| Answer::Status(502, "bad gateway"));
    create(
        &app,
        json!({
            "name": "failing",
            "url": receiver.url(),
            "types": ["*"],
            "secret": SW_SECRET,
            "retry_schedule": ["1h", "1h", "1h", "1h"],
            "disable_after_dead_letters": 0,
            "disable_after_failing_hours": 2,
            "allow_private_targets": true,
        }),
    )
    .await;
    ingest(&app, &[("evt_hours_1", "in_h")]).await;
    push(&app).await;
    let (_, sub) = app.get("/v1/admin/subscriptions/failing").await;
    assert!(sub["failing_since"].is_string(), "{sub}");
    app.clock.advance_ms(75 * 60 * 1000);
    push(&app).await;
    let (_, sub) = app.get("/v1/admin/subscriptions/failing").await;
    assert_eq!(sub["status"], "active", "1 h 15 min of failures: {sub}");
    app.clock.advance_ms(75 * 60 * 1000);
    push(&app).await;
    let (_, sub) = app.get("/v1/admin/subscriptions/failing").await;
    assert_eq!(sub["status"], "disabled", "{sub}");
    assert!(
        sub["status_reason"].as_str().unwrap().contains("2 hours"),
        "{sub}"
    );
    assert_eq!(receiver.received().len(), 3);
    let disabled: Vec<Value> = app
        .all_events()
        .await
        .into_iter()
        .filter(|e| e["type"] == "hookgate.subscription.disabled")
        .collect();
    assert_eq!(disabled.len(), 1);
    assert_eq!(disabled[0]["data"]["last_error"], "HTTP 502");
    // Resuming starts afresh: no failure is counted yet.
    let (_, resumed) = app
        .post("/v1/admin/subscriptions/failing/resume", None)
        .await;
    assert_eq!(resumed["failing_since"], Value::Null, "{resumed}");
}

async fn subscriptions_from_config_are_upserted_and_protected(backend: Backend) {
    let receiver = Receiver::start(&[SW_SECRET]);
    let url = receiver.url();
    let app = spawn_app_configured(
        Spawn {
            backend,
            ..Spawn::default()
        },
        move |s| {
            s.subscriptions = vec![SubscriptionSettings {
                name: "configured".into(),
                url,
                types: vec!["invoice.*".into()],
                source: None,
                secret: SW_SECRET.into(),
                signing_key: Some(sw_signing_key()),
                timeout_ms: 5_000,
                retry_schedule: vec!["1s".into()],
                allow_private_targets: true,
                disable_after_dead_letters: 3,
                disable_after_failing_hours: 0,
            }]
        },
    )
    .await;
    app.clock.set_unix(real_now());
    let (_, list) = app.get("/v1/admin/subscriptions").await;
    let subs = list["subscriptions"].as_array().unwrap();
    assert_eq!(subs.len(), 1, "{list}");
    assert_eq!(subs[0]["managed_by"], "config");
    assert_eq!(subs[0]["signing"]["v1a"], true);
    assert_eq!(subs[0]["retry_schedule"], json!(["1s"]));
    assert!(!list.to_string().contains(&SW_SECRET[6..]));

    ingest(&app, &[("evt_cfg_1", "in_c")]).await;
    assert_eq!(push(&app).await, 1);
    let got = receiver.received();
    assert_eq!(got[0].verified, vec![true]);
    assert_eq!(got[0].signatures, 2, "v1 and v1a");
    assert!(got[0].v1a, "the v1a signature verifies with the public key");

    let response = app
        .client
        .delete(format!("{}/v1/admin/subscriptions/configured", app.address))
        .bearer_auth(API_TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 409);
    let (status, _) = app
        .post("/v1/admin/subscriptions/configured/rotate-secret", None)
        .await;
    assert_eq!(status, 409);

    // Started with a config that no longer names it: disabled, and then an
    // operator may delete it.
    let later = spawn_app_with(Spawn {
        backend,
        db_url: Some(app.db.url.clone()),
        ..Spawn::default()
    })
    .await;
    let (_, sub) = later.get("/v1/admin/subscriptions/configured").await;
    assert_eq!(sub["status"], "disabled", "{sub}");
    assert_eq!(sub["status_reason"], "no longer in the config file");
    let response = later
        .client
        .delete(format!(
            "{}/v1/admin/subscriptions/configured",
            later.address
        ))
        .bearer_auth(API_TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 204);
}

async fn subscriptions_are_woken_by_new_events(backend: Backend) {
    let receiver = Receiver::start(&[SW_SECRET]);
    let app = spawn_app_configured(
        Spawn {
            backend,
            workers: 1,
            ..Spawn::default()
        },
        |s| {
            // A sweep far beyond the test: only the wake-up can deliver.
            s.push.sweep_interval_ms = 600_000;
        },
    )
    .await;
    app.clock.set_unix(real_now());
    create(
        &app,
        json!({
            "name": "live",
            "url": receiver.url(),
            "types": ["*"],
            "secret": SW_SECRET,
            "allow_private_targets": true,
        }),
    )
    .await;
    app.send_expect(&invoice(&app, "evt_live_1", "in_l"), 200)
        .await;
    receiver.next_arrival().await;
    assert_eq!(receiver.received()[0].verified, vec![true]);
    assert!(metrics_text(&app).await.contains("sink=\"push\""));
    let response = app
        .client
        .delete(format!("{}/v1/admin/subscriptions/live", app.address))
        .bearer_auth(API_TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 204);
    let (status, _) = app.get("/v1/admin/subscriptions/live").await;
    assert_eq!(status, 404);
    // The router's cursor went with the last subscription: it holds
    // retention back no longer.
    let metrics = metrics_text(&app).await;
    assert!(!metrics.contains("sink=\"push\""), "{metrics}");
}

async fn subscriptions_validate_requests(backend: Backend) {
    let app = push_app(backend).await;
    let base = json!({
        "name": "valid",
        "url": "https://hooks.example.com/x",
        "types": ["invoice.*"],
    });
    let with = |k: &str, v: Value| {
        let mut b = base.clone();
        b[k] = v;
        b
    };
    for (body, needle) in [
        (with("name", json!("Bad Name")), "name"),
        (with("url", json!("ftp://x/y")), "url"),
        (with("types", json!([])), "types"),
        (with("types", json!(["invoice.%"])), "types"),
        (with("secret", json!("hunter2")), "secret"),
        (with("retry_schedule", json!(["5 days"])), "retry_schedule"),
        (with("timeout_ms", json!(0)), "timeout_ms"),
        (with("source", json!("../stripe")), "source"),
    ] {
        let (status, answer) = app.post("/v1/admin/subscriptions", Some(body)).await;
        assert_eq!(status, 400, "{answer}");
        let message = answer["error"]["message"].as_str().unwrap();
        assert!(message.contains(needle), "{message}");
        assert!(!message.contains("hunter2"), "{message}");
    }
    create(&app, base.clone()).await;
    let (status, _) = app.post("/v1/admin/subscriptions", Some(base)).await;
    assert_eq!(status, 409);
    let unauthorized = app
        .client
        .get(format!("{}/v1/admin/subscriptions", app.address))
        .send()
        .await
        .unwrap();
    assert_eq!(unauthorized.status().as_u16(), 401);
}

crate::backend_tests!(
    subscriptions_and_their_attempts_show_in_the_dashboard,
    subscriptions_deliver_signed_catalog_events,
    subscriptions_retry_after_500_and_timeout,
    subscriptions_treat_redirects_as_failures,
    subscriptions_dead_letter_and_replay,
    subscriptions_keep_order_per_entity_under_failures,
    subscriptions_pause_and_resume,
    subscriptions_rotate_secret_with_overlap,
    subscriptions_refuse_private_targets,
    subscriptions_disable_after_dead_letters,
    subscriptions_disable_after_failing_for_hours,
    subscriptions_from_config_are_upserted_and_protected,
    subscriptions_are_woken_by_new_events,
    subscriptions_validate_requests,
);
