//! The dashboard over plain HTTP: login and its cookie, pages refused
//! without a session, hostile provider data escaped, the CSRF token on
//! replay, the per-source overview. (The real browser is `browser.rs`.)

use serde_json::json;

use crate::helpers::*;

/// A client that shows redirects instead of following them.
fn raw_client() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

pub struct Page {
    pub status: u16,
    pub location: Option<String>,
    pub set_cookie: Vec<String>,
    pub html: String,
}

async fn page(response: reqwest::Response) -> Page {
    let status = response.status().as_u16();
    let location = response
        .headers()
        .get("location")
        .and_then(|v| v.to_str().ok())
        .map(String::from);
    let set_cookie = response
        .headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok().map(String::from))
        .collect();
    Page {
        status,
        location,
        set_cookie,
        html: response.text().await.unwrap_or_default(),
    }
}

pub(crate) async fn ui_get(app: &TestApp, path: &str, cookie: Option<&str>) -> Page {
    let mut req = raw_client().get(format!("{}{path}", app.address));
    if let Some(c) = cookie {
        req = req.header("cookie", c);
    }
    page(req.send().await.unwrap()).await
}

async fn ui_post(app: &TestApp, path: &str, cookie: Option<&str>, form: &[(&str, &str)]) -> Page {
    let mut req = raw_client()
        .post(format!("{}{path}", app.address))
        .form(form);
    if let Some(c) = cookie {
        req = req.header("cookie", c);
    }
    page(req.send().await.unwrap()).await
}

/// Log in with the test token; the `name=value` to send back.
pub(crate) async fn login(app: &TestApp) -> String {
    let p = ui_post(app, "/ui/login", None, &[("token", API_TOKEN)]).await;
    assert_eq!(p.status, 303, "{}", p.html);
    let set = p.set_cookie.first().expect("a session cookie");
    set.split(';').next().unwrap().to_string()
}

/// The CSRF token a page's forms carry.
fn csrf(html: &str) -> String {
    let at = html.find("name=\"csrf\" value=\"").expect("a CSRF field") + 19;
    html[at..].split('"').next().unwrap().to_string()
}

async fn ui_pages_redirect_to_login_without_a_session(backend: Backend) {
    let app = spawn_app(backend).await;
    for path in [
        "/ui",
        "/ui/deliveries",
        "/ui/deliveries/dlv_x",
        "/ui/rejections",
        "/ui/sources",
    ] {
        let p = ui_get(&app, path, None).await;
        assert_eq!(p.status, 303, "{path}");
        assert_eq!(p.location.as_deref(), Some("/ui/login"), "{path}");
        // A made-up or tampered cookie is no session either.
        let p = ui_get(&app, path, Some("hookgate_session=v1.99999999999999.00.00")).await;
        assert_eq!(p.location.as_deref(), Some("/ui/login"), "{path}");
    }
    let p = ui_get(&app, "/ui/login", None).await;
    assert_eq!(p.status, 200);
    assert!(p.html.contains("name=\"token\""));
    let p = ui_post(&app, "/ui/deliveries/dlv_x/replay", None, &[("csrf", "x")]).await;
    assert_eq!(p.status, 401, "an action without a session is refused");

    // A method a page lacks is a 405 (a fall-through would be a 404), and
    // a path that is no page a 404.
    let client = raw_client();
    for (method, path, status) in [
        ("DELETE", "/ui/deliveries", 405),
        ("POST", "/ui/deliveries/dlv_x", 405),
        ("GET", "/ui/deliveries/dlv_x/replay", 405),
        ("GET", "/ui/logout", 405),
        ("PUT", "/ui/login", 405),
        ("GET", "/ui/nothing-here", 404),
    ] {
        let method = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
        let r = client
            .request(method.clone(), format!("{}{path}", app.address))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status().as_u16(), status, "{method} {path}");
    }

    // A session cookie signed for another token is refused too.
    let cookie = login(&app).await;
    let (name, value) = cookie.split_once('=').unwrap();
    let mut parts: Vec<String> = value.split('.').map(String::from).collect();
    parts[1] = (parts[1].parse::<i64>().unwrap() + 1).to_string();
    let tampered = format!("{name}={}", parts.join("."));
    let p = ui_get(&app, "/ui/deliveries", Some(&tampered)).await;
    assert_eq!(p.location.as_deref(), Some("/ui/login"), "a longer expiry");
}

async fn ui_login_refuses_a_wrong_token_and_sets_a_safe_cookie(backend: Backend) {
    let app = spawn_app(backend).await;
    let p = ui_post(&app, "/ui/login", None, &[("token", "not-the-token")]).await;
    assert_eq!(p.status, 401);
    assert!(p.set_cookie.is_empty());
    assert!(p.html.contains("login-error"));
    assert!(
        !p.html.contains("not-the-token"),
        "the attempt is not echoed"
    );

    let p = ui_post(&app, "/ui/login", None, &[("token", API_TOKEN)]).await;
    assert_eq!(p.status, 303);
    assert_eq!(p.location.as_deref(), Some("/ui/deliveries"));
    let set = p.set_cookie.first().unwrap();
    for attribute in ["HttpOnly", "SameSite=Strict", "Path=/ui", "Max-Age="] {
        assert!(set.contains(attribute), "{attribute} missing in {set}");
    }
    assert!(
        !set.contains(API_TOKEN),
        "the token itself is not the session"
    );
    let cookie = set.split(';').next().unwrap().to_string();
    let p = ui_get(&app, "/ui/deliveries", Some(&cookie)).await;
    assert_eq!(p.status, 200, "{}", p.html);
    assert!(!p.html.contains(API_TOKEN));
    for header in ["content-security-policy", "x-frame-options"] {
        let r = raw_client()
            .get(format!("{}/ui/deliveries", app.address))
            .header("cookie", &cookie)
            .send()
            .await
            .unwrap();
        assert!(r.headers().contains_key(header), "{header}");
    }

    // A session ends after 12 hours.
    app.clock.advance_ms(12 * 3600 * 1000);
    let p = ui_get(&app, "/ui/deliveries", Some(&cookie)).await;
    assert_eq!(p.location.as_deref(), Some("/ui/login"), "expired");
    let cookie = login(&app).await;

    // Logout needs the form's CSRF token, then clears the cookie.
    let p = ui_post(&app, "/ui/logout", Some(&cookie), &[]).await;
    assert_eq!(p.status, 403);
    let token = csrf(&ui_get(&app, "/ui/deliveries", Some(&cookie)).await.html);
    let p = ui_post(&app, "/ui/logout", Some(&cookie), &[("csrf", &token)]).await;
    assert_eq!(p.status, 303);
    assert_eq!(p.location.as_deref(), Some("/ui/login"));
    assert!(p.set_cookie[0].contains("Max-Age=0"), "{:?}", p.set_cookie);
}

async fn ui_escapes_hostile_provider_data(backend: Backend) {
    let app = spawn_app(backend).await;
    let hostile = "<script>alert(1)</script>";
    let mut v = fixture("stripe", "invoice.paid");
    set_pointer(&mut v, "/id", json!("evt_hostile\"><b>x</b>"));
    set_pointer(&mut v, "/type", json!(hostile));
    v["data"]["object"]["description"] = json!("<img src=x onerror=alert(2)>");
    let req = signed(
        "stripe",
        "stripe",
        "whsec_test_new_secret",
        &serde_json::to_vec(&v).unwrap(),
        NOW,
        "evt_hostile",
    )
    .header("x-hostile", "\"><svg onload=alert(3)>");
    let reply = app.send_expect(&req, 200).await;
    let id = reply["id"].as_str().unwrap().to_string();
    app.drain().await;
    let cookie = login(&app).await;
    let list = ui_get(&app, "/ui/deliveries", Some(&cookie)).await;
    assert_eq!(list.status, 200);
    let detail = ui_get(&app, &format!("/ui/deliveries/{id}"), Some(&cookie)).await;
    assert_eq!(detail.status, 200, "{}", detail.html);
    for html in [&list.html, &detail.html] {
        assert!(!html.contains("<script>"), "raw script tag in {html}");
        assert!(!html.contains("<b>x</b>"));
        assert!(html.contains("&lt;script&gt;alert(1)&lt;/script&gt;"));
    }
    assert!(!detail.html.contains("<img src=x"));
    assert!(!detail.html.contains("<svg"));
    assert!(detail.html.contains("&lt;img src=x onerror=alert(2)&gt;"));
    // The signature header is shown redacted (the admin module's rule).
    assert!(detail.html.contains("stripe-signature"));
    assert!(detail.html.contains("[redacted]"));
    assert!(!detail.html.contains("v1="), "no signature value");
}

async fn ui_replay_requires_the_csrf_token(backend: Backend) {
    let app = spawn_app(backend).await;
    let reply = app.send_expect(&stripe_request("evt_ui_replay"), 200).await;
    let id = reply["id"].as_str().unwrap().to_string();
    app.drain().await;
    let events = app.all_events().await;
    let cookie = login(&app).await;
    let path = format!("/ui/deliveries/{id}/replay");

    for form in [vec![], vec![("csrf", "0".repeat(64))]] {
        let form: Vec<(&str, &str)> = form.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let p = ui_post(&app, &path, Some(&cookie), &form).await;
        assert_eq!(p.status, 403, "{form:?}");
        assert_eq!(app.delivery(&id).await["status"], "done", "unchanged");
    }
    // Another session's token does not fit this session either.
    let other = login(&app).await;
    let detail = ui_get(&app, &format!("/ui/deliveries/{id}"), Some(&other)).await;
    let foreign = csrf(&detail.html);
    let p = ui_post(&app, &path, Some(&cookie), &[("csrf", &foreign)]).await;
    assert_eq!(p.status, 403);

    let detail = ui_get(&app, &format!("/ui/deliveries/{id}"), Some(&cookie)).await;
    assert!(detail.html.contains("id=\"replay\""), "a Replay button");
    let p = ui_post(&app, &path, Some(&cookie), &[("csrf", &csrf(&detail.html))]).await;
    assert_eq!(p.status, 303, "{}", p.html);
    assert_eq!(
        p.location.as_deref(),
        Some(format!("/ui/deliveries/{id}?done=replayed").as_str())
    );
    assert_eq!(app.delivery(&id).await["status"], "pending");
    let shown = ui_get(&app, p.location.as_deref().unwrap(), Some(&cookie)).await;
    assert!(shown.html.contains("id=\"flash\""));
    assert!(shown.html.contains("s-pending"));
    assert_eq!(app.drain().await, 1);
    assert_eq!(app.all_events().await, events, "no second event");

    // A pending delivery can't be replayed: the API's 409, as a page.
    let reply = app
        .send_expect(&stripe_request("evt_ui_pending"), 200)
        .await;
    let pending = reply["id"].as_str().unwrap();
    let token = csrf(&detail.html);
    let p = ui_post(
        &app,
        &format!("/ui/deliveries/{pending}/replay"),
        Some(&cookie),
        &[("csrf", &token)],
    )
    .await;
    assert_eq!(p.status, 409);
    assert!(p.html.contains("can&#39;t be replayed") || p.html.contains("can't be replayed"));
}

async fn ui_lists_filter_and_overview_counts_per_source(backend: Backend) {
    let app = spawn_app(backend).await;
    let a = app.send_expect(&stripe_request("evt_ui_a"), 200).await;
    app.send_expect(&stripe_request("evt_ui_b"), 200).await;
    app.drain().await;
    app.send_expect(&stripe_request("evt_ui_c"), 200).await;
    let forged = stripe_request("evt_ui_forged").header("stripe-signature", "t=1,v1=00");
    app.send_expect(&forged, 401).await;
    let cookie = login(&app).await;

    let done = ui_get(
        &app,
        "/ui/deliveries?source=stripe&status=done",
        Some(&cookie),
    )
    .await;
    assert_eq!(done.status, 200);
    assert_eq!(
        done.html.matches("<tr data-id=").count(),
        2,
        "{}",
        done.html
    );
    assert!(done.html.contains(a["id"].as_str().unwrap()));
    let none = ui_get(&app, "/ui/deliveries?source=pagerduty", Some(&cookie)).await;
    assert!(none.html.contains("id=\"empty\""));
    let bad = ui_get(&app, "/ui/deliveries?status=nonsense", Some(&cookie)).await;
    assert_eq!(bad.status, 400);

    crate::admin::rejections_recorded(&app, 1).await;
    let rejections = ui_get(&app, "/ui/rejections", Some(&cookie)).await.html;
    assert!(rejections.contains("invalid_signature"), "{rejections}");

    let sources = ui_get(&app, "/ui/sources", Some(&cookie)).await;
    assert_eq!(sources.status, 200);
    let row = sources
        .html
        .split("<tr data-source=\"stripe\">")
        .nth(1)
        .unwrap()
        .split("</tr>")
        .next()
        .unwrap();
    // Received 3, refused 1, failing 0, quarantined 0, 1 of 4 failed.
    assert!(
        row.contains("<td>3</td><td>0.05/min</td><td>1</td><td>0</td><td>0</td><td>25.0 %</td>"),
        "{row}"
    );
    assert!(!row.contains("none waiting"), "one delivery waits: {row}");
    assert!(sources.html.contains("data-source=\"pagerduty\""));
}

async fn ui_release_and_discard_quarantined_deliveries(backend: Backend) {
    let app = spawn_app(backend).await;
    let mut v = fixture("stripe", "invoice.paid");
    set_pointer(&mut v, "/id", json!("evt_ui_q"));
    set_pointer(&mut v, "/type", json!(7));
    let req = signed(
        "stripe",
        "stripe",
        "whsec_test_new_secret",
        &serde_json::to_vec(&v).unwrap(),
        NOW,
        "evt_ui_q",
    );
    let reply = app.send_expect(&req, 200).await;
    assert_eq!(reply["status"], "quarantined");
    let id = reply["id"].as_str().unwrap().to_string();
    let cookie = login(&app).await;
    let detail = ui_get(&app, &format!("/ui/deliveries/{id}"), Some(&cookie)).await;
    for button in ["id=\"release\"", "id=\"discard\""] {
        assert!(detail.html.contains(button), "{button}");
    }
    assert!(
        !detail.html.contains("id=\"replay\""),
        "quarantine is released, not replayed"
    );
    assert!(
        detail.html.contains("<code>/type</code>"),
        "the violation's path"
    );
    let token = csrf(&detail.html);

    for verb in ["release", "discard"] {
        let path = format!("/ui/deliveries/{id}/{verb}");
        let p = ui_post(&app, &path, Some(&cookie), &[("reason", "x")]).await;
        assert_eq!(p.status, 403, "{verb} without the CSRF token");
    }
    // Still failing the (unchanged) schema: the API's 422, as a page.
    let release = format!("/ui/deliveries/{id}/release");
    let p = ui_post(&app, &release, Some(&cookie), &[("csrf", &token)]).await;
    assert_eq!(p.status, 422);
    assert_eq!(app.delivery(&id).await["status"], "quarantined");

    let discard = format!("/ui/deliveries/{id}/discard");
    let p = ui_post(
        &app,
        &discard,
        Some(&cookie),
        &[("csrf", &token), ("reason", " ")],
    )
    .await;
    assert_eq!(p.status, 400, "a reason is required");
    let p = ui_post(
        &app,
        &discard,
        Some(&cookie),
        &[("csrf", &token), ("reason", "sandbox <test> event")],
    )
    .await;
    assert_eq!(p.status, 303, "{}", p.html);
    let d = app.delivery(&id).await;
    assert_eq!(d["status"], "discarded");
    assert_eq!(d["discarded"]["reason"], "sandbox <test> event");
    let shown = ui_get(&app, p.location.as_deref().unwrap(), Some(&cookie)).await;
    assert!(shown.html.contains("id=\"flash\""));
    assert!(shown.html.contains("sandbox &lt;test&gt; event"));
    assert!(
        !shown.html.contains("id=\"discard\""),
        "nothing left to discard"
    );
}

crate::backend_tests!(
    ui_release_and_discard_quarantined_deliveries,
    ui_pages_redirect_to_login_without_a_session,
    ui_login_refuses_a_wrong_token_and_sets_a_safe_cookie,
    ui_escapes_hostile_provider_data,
    ui_replay_requires_the_csrf_token,
    ui_lists_filter_and_overview_counts_per_source,
);
