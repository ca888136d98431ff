//! The dashboard in a real headless browser (Debian's `chromium` and
//! `chromium-driver`): log in, list, open a delivery, replay it. The test
//! starts its own chromedriver on a port it picks (`--port=0`; the driver
//! prints the port once it listens) and speaks W3C WebDriver to it over
//! plain HTTP — a handful of JSON calls, no client crate.
//!
//! Without the browser the test says so and passes, so `cargo test` works
//! on a fresh machine; with `HOOKGATE_REQUIRE_BROWSER=1` (CI) it fails.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};

use serde_json::{json, Value};

use crate::helpers::*;

/// Debian's paths; `HOOKGATE_CHROMIUM` / `HOOKGATE_CHROMEDRIVER` name
/// others.
fn chromium() -> String {
    std::env::var("HOOKGATE_CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into())
}

fn chromedriver() -> String {
    std::env::var("HOOKGATE_CHROMEDRIVER").unwrap_or_else(|_| "/usr/bin/chromedriver".into())
}
/// The key W3C WebDriver names element references by.
const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

/// Whether to run: both binaries present, or a skip notice (a failure when
/// the environment requires the browser).
fn browser_available() -> bool {
    let (chromium, chromedriver) = (chromium(), chromedriver());
    let present = Path::new(&chromium).exists() && Path::new(&chromedriver).exists();
    if !present {
        let required = std::env::var("HOOKGATE_REQUIRE_BROWSER").is_ok_and(|v| v == "1");
        assert!(
            !required,
            "HOOKGATE_REQUIRE_BROWSER=1 but {chromium} or {chromedriver} is missing \
             (apt-get install chromium chromium-driver)"
        );
        // Straight to stderr: the harness captures `eprintln!` of passing
        // tests, and this notice is for whoever runs `cargo test`.
        use std::io::Write;
        let _ = writeln!(
            std::io::stderr(),
            "SKIPPED browser test: {chromium} / {chromedriver} not installed \
             (apt-get install chromium chromium-driver; HOOKGATE_REQUIRE_BROWSER=1 makes this a failure)"
        );
    }
    present
}

/// A chromedriver of this test's own, in its own process group: dropping
/// it ends the driver and any browser it started.
struct Driver {
    child: Child,
    port: u16,
}

impl Driver {
    fn start() -> Driver {
        use std::os::unix::process::CommandExt;
        let mut child = Command::new(chromedriver())
            .arg("--port=0")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .process_group(0)
            .spawn()
            .expect("chromedriver starts");
        let stdout = child.stdout.take().unwrap();
        let mut lines = BufReader::new(stdout).lines();
        // "ChromeDriver was started successfully on port 35739."
        let port = loop {
            let line = match lines.next() {
                Some(Ok(line)) => line,
                _ => panic!("chromedriver exited before it listened"),
            };
            if let Some(rest) = line.split("started successfully on port ").nth(1) {
                break rest.trim_end_matches('.').trim().parse().unwrap();
            }
        };
        // Keep reading its output so the driver never blocks on a full pipe.
        std::thread::spawn(move || lines.for_each(drop));
        Driver { child, port }
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        // The group id is the driver's pid (process_group(0)).
        let _ = Command::new("kill")
            .arg("--")
            .arg(format!("-{}", self.child.id()))
            .status();
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One WebDriver session.
struct Browser {
    http: reqwest::Client,
    base: String,
}

impl Browser {
    async fn open(driver: &Driver, profile: &Path) -> Browser {
        let http = reqwest::Client::new();
        let root = format!("http://127.0.0.1:{}", driver.port);
        let caps = json!({ "capabilities": { "alwaysMatch": {
            "browserName": "chrome",
            // Finding an element waits (inside the browser) until it is
            // there: after a click, the test looks for something only the
            // next page has before it reads anything else.
            "timeouts": { "implicit": 10_000, "pageLoad": 30_000 },
            "goog:chromeOptions": {
                "binary": chromium(),
                "args": [
                    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                    "--no-first-run", "--disable-background-networking",
                    "--disable-component-update", "--disable-sync",
                    "--disable-dev-shm-usage",
                    format!("--user-data-dir={}", profile.display()),
                ],
            },
        } } });
        let r: Value = http
            .post(format!("{root}/session"))
            .json(&caps)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let id = r["value"]["sessionId"]
            .as_str()
            .unwrap_or_else(|| panic!("no WebDriver session: {r}"));
        Browser {
            http,
            base: format!("{root}/session/{id}"),
        }
    }

    async fn call(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> Value {
        let mut req = self.http.request(method, format!("{}{path}", self.base));
        if let Some(b) = body {
            req = req.json(&b);
        }
        let r: Value = req.send().await.unwrap().json().await.unwrap();
        assert!(
            r["value"].get("error").is_none(),
            "WebDriver {path}: {}",
            r["value"]
        );
        r["value"].clone()
    }

    async fn goto(&self, url: &str) {
        self.call(reqwest::Method::POST, "/url", Some(json!({ "url": url })))
            .await;
    }

    async fn url(&self) -> String {
        text(&self.call(reqwest::Method::GET, "/url", None).await)
    }

    async fn find(&self, css: &str) -> String {
        let v = self
            .call(
                reqwest::Method::POST,
                "/element",
                Some(json!({ "using": "css selector", "value": css })),
            )
            .await;
        let id = text(&v[ELEMENT]);
        assert!(!id.is_empty(), "no element {css}: {v}");
        id
    }

    async fn count(&self, css: &str) -> usize {
        let v = self
            .call(
                reqwest::Method::POST,
                "/elements",
                Some(json!({ "using": "css selector", "value": css })),
            )
            .await;
        v.as_array().map(Vec::len).unwrap_or(0)
    }

    async fn text_of(&self, css: &str) -> String {
        let e = self.find(css).await;
        text(
            &self
                .call(reqwest::Method::GET, &format!("/element/{e}/text"), None)
                .await,
        )
    }

    async fn type_into(&self, css: &str, value: &str) {
        let e = self.find(css).await;
        self.call(
            reqwest::Method::POST,
            &format!("/element/{e}/value"),
            Some(json!({ "text": value })),
        )
        .await;
    }

    /// Click. The navigation it starts may still be under way: look for
    /// an element only the next page has.
    async fn click(&self, css: &str) {
        let e = self.find(css).await;
        self.call(
            reqwest::Method::POST,
            &format!("/element/{e}/click"),
            Some(json!({})),
        )
        .await;
    }

    async fn close(self) {
        let _ = self.http.delete(&self.base).send().await;
    }
}

fn text(v: &Value) -> String {
    v.as_str().unwrap_or_default().to_string()
}

#[tokio::test]
async fn browser_login_list_open_and_replay() {
    if !browser_available() {
        return;
    }
    let app = spawn_app(Backend::Sqlite).await;
    let first = app.send_expect(&stripe_request("evt_browser_1"), 200).await;
    app.send_expect(&stripe_request("evt_browser_2"), 200).await;
    app.drain().await;
    let id = first["id"].as_str().unwrap().to_string();

    let profile = tempfile::tempdir().unwrap();
    let driver = Driver::start();
    let browser = Browser::open(&driver, profile.path()).await;

    // Login: a page asks for it, a wrong token is refused, the right one
    // lands on the deliveries.
    browser
        .goto(&format!("{}/ui/deliveries", app.address))
        .await;
    assert!(browser.url().await.ends_with("/ui/login"));
    browser.type_into("#token", "wrong-token").await;
    browser.click("#login").await;
    assert!(browser.text_of("#login-error").await.contains("not one of"));
    browser.type_into("#token", API_TOKEN).await;
    browser.click("#login").await;
    // The deliveries page has loaded (the implicit wait finds its table),
    // so the header read below is not the login page's, gone stale.
    browser.find("#deliveries").await;

    // The style sheet passed the Content-Security-Policy (its hash).
    let header_color = browser
        .call(
            reqwest::Method::GET,
            &format!(
                "/element/{}/css/background-color",
                browser.find("header").await
            ),
            None,
        )
        .await;
    assert_eq!(text(&header_color), "rgba(29, 39, 51, 1)");

    // List: both deliveries, done.
    assert!(browser.url().await.ends_with("/ui/deliveries"));
    assert_eq!(browser.count("#deliveries tbody tr").await, 2);
    let row = format!("tr[data-id=\"{id}\"]");
    assert_eq!(browser.text_of(&format!("{row} .status")).await, "done");

    // Open it: its record.
    browser.click(&format!("{row} a")).await;
    assert_eq!(browser.text_of("#status").await, "done");
    assert!(browser
        .url()
        .await
        .ends_with(&format!("/ui/deliveries/{id}")));
    assert!(browser.text_of("#body").await.contains("\"evt_browser_1\""));
    assert!(browser.text_of("#events").await.contains("invoice.paid"));
    assert_eq!(browser.count("#attempt-log tbody tr").await, 1);

    // Replay: pending again, then processed again by the workers.
    browser.click("#replay").await;
    assert!(browser.text_of("#flash").await.contains("Replay queued"));
    assert_eq!(browser.text_of("#status").await, "pending");
    assert_eq!(app.delivery(&id).await["status"], "pending");
    assert_eq!(app.drain().await, 1);
    browser
        .goto(&format!("{}/ui/deliveries/{id}", app.address))
        .await;
    assert_eq!(browser.text_of("#status").await, "done");
    assert_eq!(browser.count("#attempt-log tbody tr").await, 2);

    // The overview and the rejections page render for the session too.
    browser.goto(&format!("{}/ui/sources", app.address)).await;
    assert!(browser
        .text_of("tr[data-source=\"stripe\"]")
        .await
        .contains("stripe"));
    browser
        .goto(&format!("{}/ui/rejections", app.address))
        .await;
    assert_eq!(browser.text_of("h1").await, "Rejections");

    browser.close().await;
    drop(driver);
}
