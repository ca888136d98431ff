//! Crash safety with the real binary: deliveries are acknowledged, the
//! process is killed with SIGKILL right after the 200s, restarted on the
//! same database, and every acknowledged delivery is there and becomes
//! catalog events exactly once.

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::{json, Value};

use crate::helpers::*;

struct Gateway {
    child: Child,
    address: String,
}

fn write_config(dir: &Path, db_url: &str) -> std::path::PathBuf {
    let config = dir.join("hookgate.toml");
    let text = format!(
        r#"
[server]
listen = "127.0.0.1:0"
http_workers = 2

[storage]
url = "{db}"

[paths]
providers = "{providers}"
catalog = "{catalog}"

[api]
tokens = ["{token}"]

[queue]
workers = 2
sweep_interval_ms = 200
# PostgreSQL leaves a killed instance's leases to expire (other instances
# may share the database): keep the wait short here.
lease_secs = 2

[log]
level = "warn"

[[sources]]
name = "stripe"
provider = "stripe"
secrets = ["whsec_crash_secret"]
"#,
        db = db_url,
        providers = repo().join("providers").display(),
        catalog = repo().join("catalog").display(),
        token = API_TOKEN,
    );
    std::fs::write(&config, text).unwrap();
    config
}

fn start(config: &Path) -> Gateway {
    let mut child = Command::new(env!("CARGO_BIN_EXE_hookgate"))
        .args(["serve", "--config"])
        .arg(config)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("the hookgate binary starts");
    let stdout = child.stdout.take().unwrap();
    let mut line = String::new();
    BufReader::new(stdout).read_line(&mut line).unwrap();
    let address = line
        .trim()
        .strip_prefix("hookgate listening on ")
        .unwrap_or_else(|| panic!("unexpected first line {line:?}"))
        .to_string();
    Gateway { child, address }
}

fn request(id: &str) -> Outgoing {
    let mut v = fixture("stripe", "invoice.paid");
    set_pointer(&mut v, "/id", json!(id));
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    signed(
        "stripe",
        "stripe",
        "whsec_crash_secret",
        &serde_json::to_vec(&v).unwrap(),
        now,
        id,
    )
}

async fn events(client: &reqwest::Client, address: &str) -> Vec<Value> {
    let mut out = Vec::new();
    let mut after = "0".to_string();
    loop {
        let page: Value = client
            .get(format!("{address}/v1/events?after={after}&limit=1000"))
            .bearer_auth(API_TOKEN)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let batch = page["events"].as_array().unwrap().clone();
        if batch.is_empty() {
            return out;
        }
        after = page["next"].as_str().unwrap().to_string();
        out.extend(batch);
    }
}

async fn crash_sigkill_after_ack_loses_nothing_and_duplicates_nothing(backend: Backend) {
    let dir = tempfile::tempdir().unwrap();
    let db = TestDb::new(backend, dir.path()).await;
    let config = write_config(dir.path(), &db.url);
    let client = reqwest::Client::new();
    let mut acknowledged: HashMap<String, String> = HashMap::new();

    for round in 0..3 {
        let mut gw = start(&config);
        let ids: Vec<String> = (0..40).map(|i| format!("evt_crash_{round}_{i}")).collect();
        let replies = futures_util::future::join_all(ids.iter().map(|id| {
            let client = client.clone();
            let address = gw.address.clone();
            let req = request(id);
            async move {
                let mut b = client.post(format!("{address}{}", req.path)).body(req.body);
                for (k, v) in req.headers {
                    b = b.header(k, v);
                }
                let r = b.send().await.ok()?;
                if r.status().as_u16() != 200 {
                    return None;
                }
                let body: Value = r.json().await.ok()?;
                Some(body["id"].as_str()?.to_string())
            }
        }))
        .await;
        for (id, reply) in ids.iter().zip(replies) {
            if let Some(delivery) = reply {
                acknowledged.insert(id.clone(), delivery);
            }
        }
        // SIGKILL, right after the 200s: no graceful anything.
        gw.child.kill().unwrap();
        gw.child.wait().unwrap();
    }
    assert_eq!(acknowledged.len(), 120, "every request was acknowledged");

    // Restart on the same database and let the workers finish.
    let mut gw = start(&config);
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    let all = loop {
        let all = events(&client, &gw.address).await;
        if all.len() >= acknowledged.len() || std::time::Instant::now() > deadline {
            break all;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    // Give any (wrong) second copy a chance to appear before counting.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let all = if all.len() == acknowledged.len() {
        events(&client, &gw.address).await
    } else {
        all
    };
    let mut per_id: HashMap<&str, usize> = HashMap::new();
    for e in &all {
        *per_id
            .entry(e["provider_event_id"].as_str().unwrap())
            .or_default() += 1;
    }
    for id in acknowledged.keys() {
        assert_eq!(
            per_id.get(id.as_str()).copied(),
            Some(1),
            "{id}: exactly one catalog event"
        );
    }
    assert_eq!(all.len(), acknowledged.len());
    // Each acknowledged delivery id is the one stored.
    for (id, delivery) in acknowledged.iter().take(10) {
        let d: Value = client
            .get(format!("{}/v1/admin/deliveries/{delivery}", gw.address))
            .bearer_auth(API_TOKEN)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(d["provider_event_id"], id.as_str());
        assert_eq!(d["status"], "done");
    }
    gw.child.kill().unwrap();
    gw.child.wait().unwrap();
}

crate::backend_tests!(crash_sigkill_after_ack_loses_nothing_and_duplicates_nothing);
