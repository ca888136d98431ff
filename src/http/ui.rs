//! The operator dashboard at `/ui`: server-rendered HTML, readable without
//! JavaScript (there is none), every interpolated value escaped by `maud`.
//! It is a second face of `http::admin`: listings, a delivery's record and
//! replay all go through the admin module's functions, so filters, cursors
//! and header redaction are the API's.
//!
//! Login takes one of the `[api] tokens`. The session cookie never holds
//! the token: it is `v1.<expires_ms>.<nonce>.<tag>`, the tag an HMAC keyed
//! by a key derived from the token, so it proves which token logged in,
//! expires after [`SESSION_MS`], dies when that token leaves the config,
//! and any instance can check it without shared state. Forms that change
//! something carry a CSRF token derived from the same key and the session's
//! nonce; the cookie is also `SameSite=Strict`, `HttpOnly`, `Path=/ui`.

use actix_web::cookie::{time::Duration as CookieDuration, Cookie, SameSite};
use actix_web::http::header;
use actix_web::{web, HttpRequest, HttpResponse, HttpResponseBuilder};
use hmac::{Hmac, Mac};
use maud::{html, Markup, PreEscaped, DOCTYPE};
use rand::RngCore;
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use serde_json::Value;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use super::admin::{self, DeliveryParams, RejectionsQuery};
use super::api::token_index;
use super::error::{ApiError, UiError};
use super::{resource, AppState};
use crate::clock::{from_unix_ms, rfc3339};
use crate::store::{DeliveryRecord, DeliveryStatus, RejectionRecord};

pub const COOKIE: &str = "hookgate_session";
/// How long a login lasts.
pub const SESSION_MS: i64 = 12 * 3600 * 1000;
const PAGE_SIZE: u32 = 50;
/// The overview's window.
const WINDOW_MS: i64 = 3600 * 1000;

const STATUSES: [&str; 7] = [
    "pending",
    "processing",
    "done",
    "failed",
    "dead",
    "quarantined",
    "discarded",
];

pub fn routes(cfg: &mut web::ServiceConfig) {
    // One resource per path, as for the APIs: a method a page lacks is a
    // 405, not a 404.
    cfg.service(resource("/ui", web::get().to(home)))
        .service(resource("/ui/", web::get().to(home)))
        .service(resource("/ui/login", web::get().to(login_page)).route(web::post().to(login)))
        .service(resource("/ui/logout", web::post().to(logout)))
        .service(resource("/ui/deliveries", web::get().to(deliveries)))
        .service(resource("/ui/deliveries/{id}", web::get().to(delivery)))
        .service(resource(
            "/ui/deliveries/{id}/replay",
            web::post().to(replay),
        ))
        .service(resource(
            "/ui/deliveries/{id}/release",
            web::post().to(release),
        ))
        .service(resource(
            "/ui/deliveries/{id}/discard",
            web::post().to(discard),
        ))
        .service(resource("/ui/rejections", web::get().to(rejections)))
        .service(resource("/ui/sources", web::get().to(sources)))
        .service(resource("/ui/subscriptions", web::get().to(subscriptions)))
        .service(resource(
            "/ui/subscriptions/{name}",
            web::get().to(subscription),
        ));
}

// ---------------------------------------------------------------- sessions

/// A checked session: the key of the token that logged in, and the nonce
/// the CSRF token is bound to.
pub struct Session {
    key: [u8; 32],
    nonce: String,
}

impl Session {
    pub fn csrf(&self) -> String {
        hex::encode(tag(&self.key, &["csrf", &self.nonce]))
    }

    fn check_csrf(&self, presented: Option<&str>) -> Result<(), UiError> {
        let expected = self.csrf();
        match presented {
            Some(p) if bool::from(p.as_bytes().ct_eq(expected.as_bytes())) => Ok(()),
            _ => Err(UiError::Csrf),
        }
    }
}

fn session_key(token: &SecretString) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(b"hookgate/ui/session\0");
    h.update(token.expose_secret().as_bytes());
    h.finalize().into()
}

fn tag(key: &[u8; 32], parts: &[&str]) -> [u8; 32] {
    // HMAC takes a key of any length; a 32-byte key can't fail.
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(key).expect("HMAC accepts any key");
    for (i, p) in parts.iter().enumerate() {
        if i > 0 {
            mac.update(b"\0");
        }
        mac.update(p.as_bytes());
    }
    mac.finalize().into_bytes().into()
}

fn issue_session(token: &SecretString, now_ms: i64) -> String {
    let mut nonce = [0u8; 16];
    rand::rngs::OsRng.fill_bytes(&mut nonce);
    let nonce = hex::encode(nonce);
    let expires = (now_ms + SESSION_MS).to_string();
    let t = tag(&session_key(token), &["session", &expires, &nonce]);
    format!("v1.{expires}.{nonce}.{}", hex::encode(t))
}

/// The request's session, when its cookie is one this gateway issued, for
/// a token still configured, and not expired.
pub fn session(req: &HttpRequest, state: &AppState) -> Option<Session> {
    let cookie = req.cookie(COOKIE)?;
    let mut parts = cookie.value().split('.');
    let (Some("v1"), Some(expires), Some(nonce), Some(presented), None) = (
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
    ) else {
        return None;
    };
    let expires_ms: i64 = expires.parse().ok()?;
    if expires_ms <= state.ingestor.now_ms() || nonce.len() != 32 {
        return None;
    }
    let presented = hex::decode(presented).ok()?;
    let mut found = None;
    for token in &state.api_tokens {
        let key = session_key(token);
        let expected = tag(&key, &["session", expires, nonce]);
        if bool::from(expected.as_slice().ct_eq(&presented)) && found.is_none() {
            found = Some(key);
        }
    }
    found.map(|key| Session {
        key,
        nonce: nonce.to_string(),
    })
}

fn require(req: &HttpRequest, state: &AppState) -> Result<Session, UiError> {
    session(req, state).ok_or(UiError::LoginRequired)
}

fn is_https(req: &HttpRequest) -> bool {
    req.connection_info().scheme() == "https"
}

// --------------------------------------------------------------- responses

/// An HTML answer with the dashboard's headers: no caching, no framing, no
/// script, forms only to this origin.
pub fn respond(mut builder: HttpResponseBuilder, body: String) -> HttpResponse {
    builder
        .content_type("text/html; charset=utf-8")
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .insert_header((header::X_FRAME_OPTIONS, "DENY"))
        .insert_header((header::X_CONTENT_TYPE_OPTIONS, "nosniff"))
        .insert_header((header::REFERRER_POLICY, "no-referrer"))
        .insert_header((header::CONTENT_SECURITY_POLICY, csp()))
        .body(body)
}

/// The policy allows exactly the one inline style sheet, by its hash.
fn csp() -> &'static str {
    static CSP: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    CSP.get_or_init(|| {
        use base64::Engine;
        let hash = base64::engine::general_purpose::STANDARD.encode(Sha256::digest(CSS));
        format!(
            "default-src 'none'; style-src 'sha256-{hash}'; form-action 'self'; \
             frame-ancestors 'none'; base-uri 'none'"
        )
    })
}

fn ok(body: String) -> HttpResponse {
    respond(HttpResponse::Ok(), body)
}

fn see_other(location: &str) -> HttpResponseBuilder {
    let mut b = HttpResponse::SeeOther();
    b.insert_header((header::LOCATION, location.to_string()));
    b
}

const CSS: &str = "\
body{font-family:system-ui,sans-serif;margin:0;color:#1d1d1f;background:#fafafa}\
header{background:#1d2733;padding:.5rem 1rem;display:flex;align-items:center;gap:1rem}\
header a{color:#fff;text-decoration:none;font-weight:600}\
header form{margin-left:auto}\
main{padding:1rem 1.5rem}\
table{border-collapse:collapse;width:100%;background:#fff;font-size:.9rem}\
th,td{border-bottom:1px solid #ddd;padding:.3rem .5rem;text-align:left;vertical-align:top}\
th{background:#f0f0f0}\
pre{background:#fff;border:1px solid #ddd;padding:.75rem;overflow:auto;max-height:40rem}\
dl{display:grid;grid-template-columns:max-content auto;gap:.25rem 1rem}\
dt{font-weight:600}dd{margin:0}\
.status{font-weight:600}.s-done{color:#16794c}.s-dead,.s-failed{color:#b3261e}\
.s-quarantined{color:#9a6700}.s-pending,.s-processing{color:#0b57d0}\
.flash{background:#e7f5ec;border:1px solid #16794c;padding:.5rem}\
.error{background:#fdecea;border:1px solid #b3261e;padding:.5rem}\
form.filters{display:flex;gap:.5rem;align-items:end;margin-bottom:1rem}\
code{font-size:.85rem}";

fn layout(title: &str, session: Option<&Session>, content: Markup) -> String {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (title) " · hookgate" }
                style { (PreEscaped(CSS)) }
            }
            body {
                header {
                    a href="/ui/deliveries" { "Deliveries" }
                    a href="/ui/rejections" { "Rejections" }
                    a href="/ui/sources" { "Sources" }
                    a href="/ui/subscriptions" { "Subscriptions" }
                    @if let Some(s) = session {
                        form method="post" action="/ui/logout" {
                            input type="hidden" name="csrf" value=(s.csrf());
                            button type="submit" { "Log out" }
                        }
                    }
                }
                main {
                    h1 { (title) }
                    (content)
                }
            }
        }
    }
    .into_string()
}

/// The page an error becomes (`http::error` picks the status).
pub fn error_page(status: u16, message: &str) -> String {
    layout(
        &format!("Error {status}"),
        None,
        html! {
            p.error { (message) }
            p { a href="/ui/deliveries" { "Back to the deliveries" } }
        },
    )
}

/// The login form, with why the last attempt failed.
pub fn login_form(error: Option<&str>) -> String {
    layout(
        "Log in",
        None,
        html! {
            @if let Some(e) = error { p.error id="login-error" { (e) } }
            form method="post" action="/ui/login" {
                p {
                    label for="token" { "Admin token (one of " code { "[api] tokens" } ")" }
                    br;
                    input type="password" id="token" name="token" autocomplete="current-password" required size="48";
                }
                button type="submit" id="login" { "Log in" }
            }
        },
    )
}

// ---------------------------------------------------------------- helpers

/// A path segment: unreserved characters kept, everything else
/// percent-encoded.
fn segment(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fn query(pairs: &[(&str, Option<&str>)]) -> String {
    let mut q = form_urlencoded::Serializer::new(String::new());
    for (k, v) in pairs {
        if let Some(v) = v.filter(|v| !v.is_empty()) {
            q.append_pair(k, v);
        }
    }
    q.finish()
}

fn time(ms: i64) -> String {
    rfc3339(from_unix_ms(ms))
}

/// `850 ms`, `2.4 s`, `3 min 5 s`, `2 h 10 min`.
pub fn duration(ms: i64) -> String {
    let ms = ms.max(0);
    match ms {
        0..=999 => format!("{ms} ms"),
        1_000..=59_999 => format!("{:.1} s", ms as f64 / 1000.0),
        60_000..=3_599_999 => format!("{} min {} s", ms / 60_000, (ms / 1000) % 60),
        _ => format!("{} h {} min", ms / 3_600_000, (ms / 60_000) % 60),
    }
}

/// A JSON value as display text: strings bare, null empty.
fn text(v: &Value) -> String {
    match v {
        Value::Null => String::new(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

fn status_badge(status: &str) -> Markup {
    html! { span class={ "status s-" (status) } { (status) } }
}

/// A stored body for reading: pretty JSON when it parses, else as is.
fn pretty_body(body: &Value) -> String {
    match body["encoding"].as_str() {
        Some("utf-8") => {
            let raw = body["text"].as_str().unwrap_or_default();
            serde_json::from_str::<Value>(raw)
                .ok()
                .and_then(|v| serde_json::to_string_pretty(&v).ok())
                .unwrap_or_else(|| raw.to_string())
        }
        Some("base64") => format!(
            "(binary, {} bytes, base64)\n{}",
            text(&body["bytes"]),
            text(&body["base64"])
        ),
        _ => String::new(),
    }
}

// ---------------------------------------------------------------- handlers

async fn home(req: HttpRequest, state: web::Data<AppState>) -> HttpResponse {
    let target = if session(&req, &state).is_some() {
        "/ui/deliveries"
    } else {
        "/ui/login"
    };
    see_other(target).finish()
}

async fn login_page() -> HttpResponse {
    ok(login_form(None))
}

#[derive(Debug, Deserialize)]
pub struct LoginForm {
    token: String,
}

/// `POST /ui/login`: a configured token starts a session.
async fn login(
    req: HttpRequest,
    form: web::Form<LoginForm>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, UiError> {
    let Some(index) = token_index(&state, &form.token) else {
        tracing::info!(
            remote = req
                .peer_addr()
                .map(|a| a.ip().to_string())
                .unwrap_or_default(),
            "dashboard login refused"
        );
        return Err(UiError::BadLogin);
    };
    let value = issue_session(&state.api_tokens[index], state.ingestor.now_ms());
    let cookie = Cookie::build(COOKIE, value)
        .path("/ui")
        .http_only(true)
        .same_site(SameSite::Strict)
        .secure(is_https(&req))
        .max_age(CookieDuration::milliseconds(SESSION_MS))
        .finish();
    tracing::info!(token = index, "dashboard login");
    Ok(see_other("/ui/deliveries").cookie(cookie).finish())
}

#[derive(Debug, Default, Deserialize)]
pub struct CsrfForm {
    csrf: Option<String>,
}

/// `POST /ui/logout`: the browser forgets the cookie. (Sessions are
/// stateless: a copied cookie stays valid until it expires or its token is
/// removed from the config.)
async fn logout(
    req: HttpRequest,
    form: web::Form<CsrfForm>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, UiError> {
    let session = require(&req, &state)?;
    session.check_csrf(form.csrf.as_deref())?;
    let mut gone = Cookie::build(COOKIE, "")
        .path("/ui")
        .http_only(true)
        .same_site(SameSite::Strict)
        .finish();
    gone.make_removal();
    Ok(see_other("/ui/login").cookie(gone).finish())
}

#[derive(Debug, Default, Deserialize)]
pub struct ListQuery {
    source: Option<String>,
    status: Option<String>,
    reason: Option<String>,
    cursor: Option<String>,
}

/// `GET /ui/deliveries?source=&status=&cursor=`: newest first.
async fn deliveries(
    req: HttpRequest,
    q: web::Query<ListQuery>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, UiError> {
    let session = require(&req, &state)?;
    let params = DeliveryParams {
        source: q.source.clone(),
        status: q.status.clone(),
        cursor: q.cursor.clone(),
        limit: Some(PAGE_SIZE),
        ..DeliveryParams::default()
    };
    let (rows, next) = admin::delivery_page(&state, &params).await?;
    let sources: Vec<String> = state
        .ingestor
        .sources()
        .iter()
        .map(|s| s.name.clone())
        .collect();
    let chosen_source = q.source.as_deref().unwrap_or_default();
    let chosen_status = q.status.as_deref().unwrap_or_default();
    let next_href = next.map(|c| {
        format!(
            "/ui/deliveries?{}",
            query(&[
                ("source", q.source.as_deref()),
                ("status", q.status.as_deref()),
                ("cursor", Some(&c)),
            ])
        )
    });
    let content = html! {
        form.filters method="get" action="/ui/deliveries" {
            label { "Source" br;
                select name="source" {
                    option value="" { "any" }
                    @for s in &sources {
                        option value=(s) selected[s == chosen_source] { (s) }
                    }
                }
            }
            label { "Status" br;
                select name="status" {
                    option value="" { "any" }
                    @for s in STATUSES {
                        option value=(s) selected[s == chosen_status] { (s) }
                    }
                }
            }
            button type="submit" { "Filter" }
        }
        @if rows.is_empty() {
            p id="empty" { "No deliveries match." }
        } @else {
            table id="deliveries" {
                thead { tr {
                    th { "Received" } th { "Source" } th { "Provider event type" }
                    th { "Status" } th { "Attempts" } th { "Latency" } th { "Delivery" }
                } }
                tbody {
                    @for d in &rows { (delivery_row(d)) }
                }
            }
        }
        @if let Some(href) = next_href {
            p { a href=(href) id="older" { "Older →" } }
        }
    };
    Ok(ok(layout("Deliveries", Some(&session), content)))
}

fn delivery_row(d: &DeliveryRecord) -> Markup {
    let href = format!("/ui/deliveries/{}", segment(&d.id));
    html! {
        tr data-id=(d.id) {
            td { (time(d.received_at_ms)) }
            td { (d.source) }
            td { (d.provider_event_type.as_deref().unwrap_or("—")) }
            td { (status_badge(d.status.as_str())) }
            td { (d.attempts) }
            td { (admin::latency_ms(d).map(duration).unwrap_or_else(|| "—".into())) }
            td { a href=(href) { code { (d.id) } } }
        }
    }
}

#[derive(Debug, Default, Deserialize)]
pub struct DetailQuery {
    /// Which action just happened (`replayed`, `released`, `discarded`).
    done: Option<String>,
}

/// `GET /ui/deliveries/{id}`: the admin API's record of it, for reading.
async fn delivery(
    req: HttpRequest,
    id: web::Path<String>,
    q: web::Query<DetailQuery>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, UiError> {
    let session = require(&req, &state)?;
    let d = admin::delivery_detail(&state, &id).await?;
    let status = d["status"].as_str().unwrap_or_default().to_string();
    let parsed = DeliveryStatus::parse(&status);
    let has_body = d["request"]["body"].is_object();
    let replayable = parsed.is_some_and(|s| admin::REPLAYABLE.contains(&s)) && has_body;
    let releasable = parsed == Some(DeliveryStatus::Quarantined) && has_body;
    let discardable = parsed.is_some_and(|s| admin::DISCARDABLE.contains(&s));
    let flash = match q.done.as_deref() {
        Some("replayed") => Some(
            "Replay queued: the delivery is pending again and will be processed from its stored raw body.",
        ),
        Some("released") => {
            Some("Released: the payload now passes the schema; the delivery is pending.")
        }
        Some("discarded") => Some("Discarded: the delivery is set aside with your reason."),
        _ => None,
    };
    let headers: Vec<(String, String)> = d["request"]["headers"]
        .as_object()
        .map(|m| {
            m.iter()
                .flat_map(|(name, values)| {
                    let values = values.as_array().cloned().unwrap_or_default();
                    values.into_iter().map(move |v| (name.clone(), text(&v)))
                })
                .collect()
        })
        .unwrap_or_default();
    let empty = Vec::new();
    let attempts = d["attempt_log"].as_array().unwrap_or(&empty);
    let events = d["events"].as_array().unwrap_or(&empty);
    let violations = d["schema"]["violations"].as_array().unwrap_or(&empty);
    let action = |verb: &str| format!("/ui/deliveries/{}/{verb}", segment(&id));
    let content = html! {
        @if let Some(message) = flash {
            p.flash id="flash" { (message) }
        }
        dl id="summary" {
            dt { "Delivery" } dd { code { (text(&d["id"])) } }
            dt { "Status" } dd id="status" { (status_badge(&status)) }
            dt { "Source" } dd { (text(&d["source"])) " (" (text(&d["provider"])) ")" }
            dt { "Provider event" } dd { code { (text(&d["provider_event_id"])) } " · " (text(&d["provider_event_type"])) }
            dt { "Received" } dd { (text(&d["received_at"])) }
            dt { "Occurred" } dd { (text(&d["occurred_at"])) }
            dt { "Latency" } dd { (d["latency_ms"].as_i64().map(duration).unwrap_or_else(|| "—".into())) }
            dt { "Attempts" } dd id="attempts" { (text(&d["attempts"])) }
            @if !d["last_error"].is_null() {
                dt { "Last error" } dd { code { (text(&d["last_error"])) } }
            }
            dt { "Verification" } dd id="verification" {
                @if d["verification"]["verified"] == Value::Bool(true) { "verified" } @else { "not verified" }
                " (" (text(&d["verification"]["scheme"])) ")"
            }
            dt { "Schema" } dd {
                @if d["schema"]["valid"] == Value::Bool(true) { "valid" } @else { "violations:" }
            }
            @if !d["discarded"].is_null() {
                dt { "Discarded" } dd { (text(&d["discarded"]["at"])) ": " (text(&d["discarded"]["reason"])) }
            }
        }
        @if !violations.is_empty() {
            ul { @for v in violations { li { code { (text(&v["path"])) } " " (text(&v["message"])) } } }
        }
        @if replayable {
            form method="post" action=(action("replay")) {
                input type="hidden" name="csrf" value=(session.csrf());
                button type="submit" id="replay" { "Replay" }
            }
        }
        @if releasable {
            form method="post" action=(action("release")) {
                input type="hidden" name="csrf" value=(session.csrf());
                button type="submit" id="release" { "Release (re-validate, then process)" }
            }
        }
        @if discardable {
            form method="post" action=(action("discard")) {
                input type="hidden" name="csrf" value=(session.csrf());
                label { "Reason " input type="text" name="reason" id="discard-reason" required maxlength="1000" size="40"; }
                " "
                button type="submit" id="discard" { "Discard" }
            }
        }
        h2 { "Attempts" }
        @if attempts.is_empty() { p { "None yet." } } @else {
            table id="attempt-log" {
                thead { tr { th { "#" } th { "Started" } th { "Duration" } th { "Outcome" } th { "Error" } th { "Retry at" } th { "Events" } } }
                tbody { @for a in attempts { tr {
                    td { (text(&a["attempt"])) }
                    td { (text(&a["started_at"])) }
                    td { (a["duration_ms"].as_i64().map(duration).unwrap_or_default()) }
                    td { (status_badge(a["outcome"].as_str().unwrap_or_default())) }
                    td { (text(&a["error"])) }
                    td { (text(&a["retry_at"])) }
                    td { (a["events"].as_array().map(Vec::len).unwrap_or(0)) }
                } } }
            }
        }
        h2 { "Catalog events" }
        @if events.is_empty() { p { "None." } } @else {
            ul id="events" { @for e in events { li { code { (text(&e["id"])) } " " (text(&e["type"])) } } }
        }
        h2 { "Request" }
        p { "From " (text(&d["request"]["remote_addr"])) }
        table id="headers" {
            thead { tr { th { "Header" } th { "Value" } } }
            tbody { @for (name, value) in &headers { tr { td { code { (name) } } td { code { (value) } } } } }
        }
        h3 { "Body" }
        @if d["request"]["body"].is_null() {
            p { "Removed by retention at " (text(&d["request"]["body_purged_at"])) "." }
        } @else {
            pre id="body" { (pretty_body(&d["request"]["body"])) }
        }
    };
    Ok(ok(layout("Delivery", Some(&session), content)))
}

/// `POST /ui/deliveries/{id}/replay` (CSRF token required): the admin
/// API's replay, then back to the delivery.
async fn replay(
    req: HttpRequest,
    id: web::Path<String>,
    form: web::Form<CsrfForm>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, UiError> {
    let session = session(&req, &state).ok_or(UiError::Unauthorized)?;
    session.check_csrf(form.csrf.as_deref())?;
    admin::replay(&state, &id).await?;
    Ok(back_to(&id, "replayed"))
}

/// `POST /ui/deliveries/{id}/release`: the admin API's release (a payload
/// that still fails the schema is a 422 page naming the violations).
async fn release(
    req: HttpRequest,
    id: web::Path<String>,
    form: web::Form<CsrfForm>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, UiError> {
    let session = session(&req, &state).ok_or(UiError::Unauthorized)?;
    session.check_csrf(form.csrf.as_deref())?;
    admin::release(&state, &id).await?;
    Ok(back_to(&id, "released"))
}

#[derive(Debug, Default, Deserialize)]
pub struct DiscardForm {
    csrf: Option<String>,
    reason: Option<String>,
}

/// `POST /ui/deliveries/{id}/discard` with a reason.
async fn discard(
    req: HttpRequest,
    id: web::Path<String>,
    form: web::Form<DiscardForm>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, UiError> {
    let session = session(&req, &state).ok_or(UiError::Unauthorized)?;
    session.check_csrf(form.csrf.as_deref())?;
    let reason = form.reason.as_deref().unwrap_or_default().trim();
    admin::discard(&state, &id, reason).await?;
    Ok(back_to(&id, "discarded"))
}

/// After an action: back to the delivery, saying what happened.
fn back_to(id: &str, done: &str) -> HttpResponse {
    see_other(&format!("/ui/deliveries/{}?done={done}", segment(id))).finish()
}

/// `GET /ui/rejections?source=&reason=&cursor=`.
async fn rejections(
    req: HttpRequest,
    q: web::Query<ListQuery>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, UiError> {
    let session = require(&req, &state)?;
    let params = RejectionsQuery {
        source: q.source.clone(),
        reason: q.reason.clone(),
        cursor: q.cursor.clone(),
        limit: Some(PAGE_SIZE),
        ..RejectionsQuery::default()
    };
    let (rows, next) = admin::rejection_page(&state, &params).await?;
    let next_href = next.map(|c| {
        format!(
            "/ui/rejections?{}",
            query(&[
                ("source", q.source.as_deref()),
                ("reason", q.reason.as_deref()),
                ("cursor", Some(&c)),
            ])
        )
    });
    let content = html! {
        form.filters method="get" action="/ui/rejections" {
            label { "Source" br; input name="source" value=(q.source.as_deref().unwrap_or_default()); }
            label { "Reason" br; input name="reason" placeholder="invalid_signature" value=(q.reason.as_deref().unwrap_or_default()); }
            button type="submit" { "Filter" }
        }
        @if rows.is_empty() { p id="empty" { "No rejections match." } } @else {
            table id="rejections" {
                thead { tr { th { "Received" } th { "Source" } th { "Reason" } th { "Message" } th { "From" } th { "Body kept" } } }
                tbody { @for r in &rows { (rejection_row(r)) } }
            }
        }
        @if let Some(href) = next_href { p { a href=(href) { "Older →" } } }
    };
    Ok(ok(layout("Rejections", Some(&session), content)))
}

// ----------------------------------------------------------- subscriptions

/// Push subscriptions: where catalog events go, and whether they get there.
async fn subscriptions(
    req: HttpRequest,
    state: web::Data<AppState>,
) -> Result<HttpResponse, UiError> {
    let session = require(&req, &state)?;
    let subs = state
        .store
        .list_subscriptions()
        .await
        .map_err(ApiError::from)?;
    let content = html! {
        @if subs.is_empty() { p id="empty" { "No push subscriptions." } } @else {
            table id="subscriptions" {
                thead { tr { th { "Name" } th { "Status" } th { "URL" } th { "Types" } th { "Source" } th { "Managed by" } th { "Failing since" } } }
                tbody {
                    @for s in &subs {
                        tr {
                            td { a href=(format!("/ui/subscriptions/{}", s.name)) { (s.name) } }
                            td {
                                (s.status.as_str())
                                @if let Some(reason) = &s.status_reason { br; small { (reason) } }
                            }
                            td { code { (s.url) } }
                            td { (s.types.join(", ")) }
                            td { (s.source.as_deref().unwrap_or("any")) }
                            td { (s.managed_by.as_str()) }
                            td { (s.failing_since_ms.map(time).unwrap_or_default()) }
                        }
                    }
                }
            }
        }
    };
    Ok(ok(layout("Subscriptions", Some(&session), content)))
}

/// One subscription and its latest delivery attempts (status code,
/// latency, the start of the receiver's answer, the error).
async fn subscription(
    req: HttpRequest,
    name: web::Path<String>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, UiError> {
    let session = require(&req, &state)?;
    let sub = state
        .store
        .get_subscription(&name)
        .await
        .map_err(ApiError::from)?
        .ok_or_else(|| ApiError::NotFound(format!("no subscription {name:?}")))?;
    let attempts = state
        .store
        .list_push_attempts(&sub.name, None, None, PAGE_SIZE)
        .await
        .map_err(ApiError::from)?;
    let content = html! {
        dl {
            dt { "Status" } dd id="status" { (sub.status.as_str()) @if let Some(r) = &sub.status_reason { " — " (r) } }
            dt { "URL" } dd { code { (sub.url) } }
            dt { "Types" } dd { (sub.types.join(", ")) }
            dt { "Source" } dd { (sub.source.as_deref().unwrap_or("any")) }
            dt { "Managed by" } dd { (sub.managed_by.as_str()) }
            dt { "Dead letters in a row" } dd { (sub.consecutive_dead) }
        }
        h2 { "Latest attempts" }
        @if attempts.is_empty() { p id="no-attempts" { "No attempts yet." } } @else {
            table id="attempts" {
                thead { tr { th { "Finished" } th { "Event" } th { "Attempt" } th { "Outcome" } th { "Status" } th { "Latency" } th { "Error" } th { "Response" } } }
                tbody {
                    @for a in &attempts {
                        tr {
                            td { (time(a.finished_at_ms)) }
                            td { code { (a.event_id) } }
                            td { (a.attempt) }
                            td { (a.outcome) }
                            td { (a.status_code.map(|c| c.to_string()).unwrap_or_default()) }
                            td { (duration(a.latency_ms)) }
                            td { (a.error.as_deref().unwrap_or_default()) }
                            td { code { (a.response_body.as_deref().unwrap_or_default()) } }
                        }
                    }
                }
            }
        }
    };
    Ok(ok(layout(
        &format!("Subscription {}", sub.name),
        Some(&session),
        content,
    )))
}

fn rejection_row(r: &RejectionRecord) -> Markup {
    html! {
        tr {
            td { (time(r.received_at_ms)) }
            td { (r.source) }
            td { code { (r.code) } }
            td { (r.message) }
            td { (r.remote_addr.as_deref().unwrap_or("—")) }
            td { @if r.has_body { "yes" } @else { "no" } }
        }
    }
}

/// `GET /ui/sources`: per source over the last hour, request rate, failure
/// rate (refused, failed or dead out of everything received), quarantined
/// ones, and processing lag (age of the oldest waiting delivery).
async fn sources(req: HttpRequest, state: web::Data<AppState>) -> Result<HttpResponse, UiError> {
    let session = require(&req, &state)?;
    let now = state.ingestor.now_ms();
    let stats = state
        .store
        .source_stats(now - WINDOW_MS)
        .await
        .map_err(ApiError::from)?;
    // Every configured source, and any no longer configured that has data.
    let mut names: Vec<(String, String)> = state
        .ingestor
        .sources()
        .iter()
        .map(|s| (s.name.clone(), s.provider.name.clone()))
        .collect();
    for s in &stats {
        if !names.iter().any(|(n, _)| n == &s.source) {
            names.push((s.source.clone(), "(not configured)".into()));
        }
    }
    let content = html! {
        p { "The last hour, at " (time(now)) "." }
        table id="sources" {
            thead { tr {
                th { "Source" } th { "Provider" } th { "Received" } th { "Rate" }
                th { "Refused" } th { "Failing" } th { "Quarantined" } th { "Failure rate" } th { "Lag" }
            } }
            tbody {
                @for (name, provider) in &names {
                    @let s = stats.iter().find(|s| &s.source == name).cloned().unwrap_or_default();
                    @let total = s.received + s.rejected;
                    tr data-source=(name) {
                        td { a href={ "/ui/deliveries?" (query(&[("source", Some(name))])) } { (name) } }
                        td { (provider) }
                        td { (s.received) }
                        td { (format!("{:.2}/min", s.received as f64 / 60.0)) }
                        td { (s.rejected) }
                        td { (s.failing) }
                        td { (s.quarantined) }
                        td { @if total == 0 { "—" } @else { (format!("{:.1} %", (s.failing + s.rejected) as f64 * 100.0 / total as f64)) } }
                        td { (s.oldest_waiting_ms.map(|t| duration(now - t)).unwrap_or_else(|| "none waiting".into())) }
                    }
                }
            }
        }
    };
    Ok(ok(layout("Sources", Some(&session), content)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn segment_encodes_everything_but_unreserved() {
        assert_eq!(segment("dlv_01AB-c.~"), "dlv_01AB-c.~");
        assert_eq!(segment("a/b c\"<"), "a%2Fb%20c%22%3C");
    }

    #[test]
    fn duration_reads_like_a_person_would_say_it() {
        assert_eq!(duration(-5), "0 ms");
        assert_eq!(duration(850), "850 ms");
        assert_eq!(duration(2_400), "2.4 s");
        assert_eq!(duration(185_000), "3 min 5 s");
        assert_eq!(duration(7_800_000), "2 h 10 min");
    }

    #[test]
    fn session_tag_binds_expiry_and_nonce_and_token() {
        let a = SecretString::from("token-a");
        let b = SecretString::from("token-b");
        let ka = session_key(&a);
        assert_ne!(ka, session_key(&b));
        let t = tag(&ka, &["session", "100", "n"]);
        assert_ne!(t, tag(&ka, &["session", "101", "n"]));
        assert_ne!(t, tag(&ka, &["session", "100", "m"]));
        assert_ne!(t, tag(&session_key(&b), &["session", "100", "n"]));
        let issued = issue_session(&a, 0);
        assert!(!issued.contains("token-a"));
        assert_eq!(issued.split('.').count(), 4);
    }

    #[test]
    fn pretty_body_indents_json_and_keeps_other_text() {
        let json = admin::body_json(br#"{"a":{"b":1}}"#);
        assert_eq!(pretty_body(&json), "{\n  \"a\": {\n    \"b\": 1\n  }\n}");
        assert_eq!(pretty_body(&admin::body_json(b"a=1")), "a=1");
        assert!(pretty_body(&admin::body_json(&[0xff])).starts_with("(binary, 1 bytes"));
    }
}
