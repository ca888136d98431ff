//! Kill under load: senders post unique signed events continuously while a
//! gateway is killed with SIGKILL at random moments and restarted. At the
//! end every event that got a 200 is stored exactly once, under the id it
//! was given, and is turned into exactly one catalog event, which is in the
//! NATS stream exactly once; what got no answer is resent (as a sender
//! would) and must not be stored twice.
//!
//! Short form (`cargo test`): 3 kills per scenario. Long form: set
//! `HOOKGATE_CRASH_KILLS` (e.g. `HOOKGATE_CRASH_KILLS=20 cargo test --test
//! api crash::load -- --nocapture`); `HOOKGATE_CRASH_SEED` replays the
//! kill timings of a printed run.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use rand::{Rng, SeedableRng};

use super::{account, resend, Db, Figures, Gateway, Load, Outcome};
use crate::bus::{delete_stream, nats_settings};
use crate::helpers::*;

/// Kills per scenario: 3, or `HOOKGATE_CRASH_KILLS`.
fn kills() -> usize {
    std::env::var("HOOKGATE_CRASH_KILLS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3)
}

fn seed() -> u64 {
    std::env::var("HOOKGATE_CRASH_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(rand::random)
}

async fn start(config: &std::path::Path, log: &std::path::Path) -> Gateway {
    let (config, log) = (config.to_path_buf(), log.to_path_buf());
    tokio::task::spawn_blocking(move || Gateway::start(&config, &log))
        .await
        .unwrap()
}

/// `instances` gateways on one database, load spread over them, `kills`
/// SIGKILLs (one instance at a time, in turn), each followed by a restart.
async fn kill_under_load(backend: Backend, instances: usize) {
    let kills = kills();
    let seed = seed();
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let dir = tempfile::tempdir().unwrap();
    let db = TestDb::new(backend, dir.path()).await;
    let nats = nats_settings("nats://127.0.0.1:4222");
    let config = super::write_config(dir.path(), &db.url, Some(&nats));
    let log = dir.path().join("hookgate.log");

    let mut gateways = Vec::new();
    for _ in 0..instances {
        gateways.push(Some(start(&config, &log).await));
    }
    let addresses = Arc::new(RwLock::new(
        gateways
            .iter()
            .map(|g| g.as_ref().unwrap().address().to_string())
            .collect::<Vec<_>>(),
    ));
    let load = Load::start(addresses.clone(), 8, "kill");
    for k in 0..kills {
        // Under load: the current incarnations have acknowledged some more.
        let before = load.acked();
        assert!(
            load.acked_at_least(before + 20, Duration::from_secs(60))
                .await,
            "load stalled before kill {k}; log: {}",
            std::fs::read_to_string(&log).unwrap_or_default()
        );
        // At a random moment of the load.
        tokio::time::sleep(Duration::from_millis(rng.gen_range(0..600))).await;
        let victim = k % instances;
        let gw = gateways[victim].take().unwrap();
        tokio::task::spawn_blocking(move || gw.kill())
            .await
            .unwrap();
        let gw = start(&config, &log).await;
        addresses.write().unwrap()[victim] = gw.address().to_string();
        gateways[victim] = Some(gw);
    }
    let before = load.acked();
    assert!(
        load.acked_at_least(before + 20, Duration::from_secs(60))
            .await,
        "load stalled after the last restart"
    );
    let outcomes = load.stop().await;

    let mut figures = Figures {
        scenario: format!(
            "kill-under-load/{}/{instances}-instance{}",
            match backend {
                Backend::Sqlite => "sqlite",
                Backend::Postgres => "postgres",
            },
            if instances > 1 { "s" } else { "" }
        ),
        kills,
        sent: outcomes.len(),
        nats: true,
        ..Figures::default()
    };
    let mut acked: HashMap<String, String> = HashMap::new();
    let mut retry = Vec::new();
    for (id, outcome) in &outcomes {
        match outcome {
            Outcome::Acked { delivery } => {
                figures.acknowledged += 1;
                acked.insert(id.clone(), delivery.clone());
            }
            Outcome::Refused(status) => {
                // Valid, signed requests: only "try again later" is allowed.
                assert!(
                    *status == 503 || *status == 429,
                    "{id}: a valid request answered {status}"
                );
                figures.refused += 1;
                retry.push((id.clone(), false));
            }
            Outcome::Unknown => {
                figures.unknown += 1;
                retry.push((id.clone(), false));
            }
            Outcome::NotConnected => {
                figures.not_connected += 1;
                retry.push((id.clone(), true));
            }
        }
    }
    // The senders retry what got no 200, now that every gateway is up.
    let client = reqwest::Client::new();
    let first = addresses.read().unwrap()[0].clone();
    for (id, never_connected) in &retry {
        let (outcome, duplicate) = resend(&client, &first, id).await;
        let Outcome::Acked { delivery } = outcome else {
            panic!("{id}: resend answered {outcome:?}");
        };
        match (duplicate, never_connected) {
            (true, true) => figures.phantoms += 1,
            (true, false) => figures.unknown_stored += 1,
            (false, _) => {}
        }
        acked.insert(id.clone(), delivery);
    }
    let sent: HashSet<String> = outcomes.iter().map(|(id, _)| id.clone()).collect();

    let reader = Db::connect(&db.url).await;
    let done = reader.all_done_within(Duration::from_secs(120)).await;
    // Publishing waits for a killed publisher's lease (15 s) to expire.
    let published = reader.published_within(Duration::from_secs(120)).await;
    account(&mut figures, &reader, &acked, &sent, Some(&nats)).await;
    figures.print();
    println!("crash seed: HOOKGATE_CRASH_SEED={seed}");
    assert!(done, "deliveries left unfinished");
    assert!(published, "the stream never caught up");
    figures.assert_clean();
    assert!(figures.acknowledged > 0);
    super::assert_log_keeps_secrets(&log);

    reader.close().await;
    for gw in gateways.into_iter().flatten() {
        gw.kill();
    }
    delete_stream(&nats.url, &nats.stream).await;
}

mod sqlite {
    use super::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn crash_kill_under_load_loses_and_duplicates_nothing() {
        kill_under_load(Backend::Sqlite, 1).await;
    }
}

mod postgres {
    use super::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn crash_kill_under_load_two_instances_lose_and_duplicate_nothing() {
        kill_under_load(Backend::Postgres, 2).await;
    }
}
