//! SQLite on a failing disk: a small tmpfs that the test fills up, and a
//! location that is mounted read-only. The gateway answers 503 with
//! `Retry-After` (never a 200 it could not commit), does not crash,
//! recovers by itself once space is back, and keeps everything it
//! acknowledged.
//!
//! Mounting needs root (CI and the development machines run as root);
//! elsewhere the tests say so and return, unless `HOOKGATE_REQUIRE_MOUNT`
//! is set, as `.ci/run` does.

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::json;

use crate::helpers::*;

/// A tmpfs of `size` mounted on a fresh directory; unmounted on drop.
struct Tmpfs {
    dir: tempfile::TempDir,
}

impl Tmpfs {
    fn mount(size: &str) -> Option<Tmpfs> {
        let dir = tempfile::tempdir().unwrap();
        let ok = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir.path())
            .status()
            .is_ok_and(|s| s.success());
        if ok {
            return Some(Tmpfs { dir });
        }
        assert!(
            std::env::var_os("HOOKGATE_REQUIRE_MOUNT").is_none(),
            "HOOKGATE_REQUIRE_MOUNT is set but mounting a tmpfs failed (not root?)"
        );
        eprintln!("skipped: mounting a tmpfs needs root");
        None
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Remount with `options`. A file open for writing anywhere on the
    /// machine makes a read-only remount fail with "busy": a process that
    /// another test forks inherits every descriptor until it execs, so a
    /// few tries are allowed; a handle still open after them is named.
    fn remount(&self, options: &str) {
        for _ in 0..50 {
            let status = Command::new("mount")
                .args(["-o", &format!("remount,{options}")])
                .arg(self.path())
                .status()
                .unwrap();
            if status.success() {
                return;
            }
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
        panic!(
            "remount {options} failed; files open under {}: {:?}",
            self.path().display(),
            open_files_under(self.path())
        );
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount")
            .arg("-l")
            .arg(self.dir.path())
            .status();
    }
}

/// Every process's descriptors that point under `dir`, as "pid: path".
fn open_files_under(dir: &Path) -> Vec<String> {
    let mut open = Vec::new();
    for process in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let fds = process.path().join("fd");
        for fd in std::fs::read_dir(&fds).into_iter().flatten().flatten() {
            if let Ok(target) = std::fs::read_link(fd.path()) {
                if target.starts_with(dir) {
                    open.push(format!(
                        "{}: {}",
                        process.file_name().to_string_lossy(),
                        target.display()
                    ));
                }
            }
        }
    }
    open
}

/// Fill the filesystem at `dir` to the last byte with one file.
fn fill(dir: &Path) -> PathBuf {
    use std::io::Write;
    let path = dir.join("filler");
    let mut f = std::fs::File::create(&path).unwrap();
    let block = vec![0u8; 64 * 1024];
    while f.write_all(&block).is_ok() {}
    let small = [0u8; 512];
    while f.write_all(&small).is_ok() {}
    let _ = f.sync_all();
    path
}

fn request(id: &str, pad: usize) -> Outgoing {
    let mut v = fixture("stripe", "invoice.paid");
    set_pointer(&mut v, "/id", json!(id));
    // Providers add fields; a large one makes every request need new pages.
    set_pointer(&mut v, "/data/object/description", json!("x".repeat(pad)));
    signed(
        "stripe",
        "stripe",
        "whsec_test_new_secret",
        &serde_json::to_vec(&v).unwrap(),
        NOW,
        id,
    )
}

#[tokio::test]
async fn storage_disk_full_is_503_then_recovers_and_keeps_what_was_acknowledged() {
    let Some(fs) = Tmpfs::mount("6m") else {
        return;
    };
    let db_url = format!("sqlite://{}", fs.path().join("hookgate.db").display());
    let app = spawn_app_with(Spawn {
        db_url: Some(db_url),
        ..Spawn::default()
    })
    .await;
    let mut acknowledged = Vec::new();
    let first = app.send_expect(&request("evt_full_0", 100), 200).await;
    acknowledged.push(first["id"].as_str().unwrap().to_string());

    let filler = fill(fs.path());
    let mut unavailable = 0;
    for i in 1..=40 {
        let id = format!("evt_full_{i}");
        let reply = app.send(&request(&id, 30_000)).await;
        match reply.status {
            // Space the database already had (WAL frames it can reuse) may
            // still take a commit: then it is a real commit.
            200 => acknowledged.push(reply.json["id"].as_str().unwrap().to_string()),
            503 => {
                assert_eq!(reply.code(), "unavailable");
                assert_eq!(
                    reply
                        .headers
                        .get("retry-after")
                        .and_then(|v| v.to_str().ok()),
                    Some("5")
                );
                unavailable += 1;
            }
            other => panic!("{id}: {other} {}", reply.json),
        }
    }
    assert!(unavailable > 0, "a full disk is noticed");

    // Space is back: the gateway recovers by itself.
    std::fs::remove_file(filler).unwrap();
    let after = app.send_expect(&request("evt_full_after", 100), 200).await;
    acknowledged.push(after["id"].as_str().unwrap().to_string());
    assert_eq!(app.send(&request("evt_full_1", 100)).await.status, 200);

    // Everything acknowledged is there and becomes its catalog event.
    app.drain().await;
    for id in &acknowledged {
        let d = app.delivery(id).await;
        assert_eq!(d["status"], "done", "{id}: {d}");
    }
    println!(
        "disk full: {} acknowledged, {unavailable} answered 503, 0 lost",
        acknowledged.len()
    );
}

#[tokio::test]
async fn storage_read_only_location_is_refused_clearly_not_served() {
    let Some(fs) = Tmpfs::mount("8m") else {
        return;
    };
    let db_url = format!("sqlite://{}", fs.path().join("hookgate.db").display());
    // A database that was fine (created and migrated, then closed), then
    // its filesystem went read-only.
    let store = hookgate::store::open(&db_url).await.unwrap();
    store.close().await;
    let ours = format!("{}: ", std::process::id());
    let left: Vec<String> = open_files_under(fs.path())
        .into_iter()
        .filter(|f| f.starts_with(&ours))
        .collect();
    assert!(left.is_empty(), "close() left files open: {left:?}");
    fs.remount("ro");
    let dir = tempfile::tempdir().unwrap();
    let mut settings = settings_for(dir.path(), &db_url, &Spawn::default());
    settings.server.listen = "127.0.0.1:0".into();
    let built = hookgate::app::Application::build(
        settings,
        hookgate::app::Options {
            clock: std::sync::Arc::new(hookgate::clock::ManualClock::at_unix(NOW)),
            env: std::sync::Arc::new(std::collections::HashMap::<String, String>::new()),
        },
    )
    .await;
    match built {
        Err(e) => {
            let message = e.to_string();
            assert!(
                message.contains("database") || message.contains("storage"),
                "the start-up error names the storage: {message}"
            );
            println!("read-only location: start refused: {message}");
        }
        Ok(app) => {
            // If it starts, it must not acknowledge what it cannot write.
            let address = format!("http://127.0.0.1:{}", app.port());
            tokio::spawn(app.run_until_stopped());
            let out = request("evt_ro_1", 100);
            let mut req = reqwest::Client::new()
                .post(format!("{address}{}", out.path))
                .body(out.body);
            for (k, v) in out.headers {
                req = req.header(k, v);
            }
            let r = req.send().await.unwrap();
            assert_eq!(r.status().as_u16(), 503);
            println!("read-only location: served, ingest answered 503");
        }
    }
    fs.remount("rw");
}
