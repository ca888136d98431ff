//! PostgreSQL only: several instances on one database, a cursor that never
//! skips a late commit, and database outages answered with 503.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use serde_json::json;
use sqlx::Connection;

use crate::bus::{delete_stream, nats_settings, stream_messages};
use crate::helpers::*;

/// The classic bug: T1 takes seq 1, T2 takes seq 2 and commits first; a
/// reader sees 2, moves its cursor past 1, and never sees 1. Here T1 is held
/// open by hand at the point where it has taken its sequence value; T2 (a
/// worker completing another delivery) must not become visible before it.
#[tokio::test]
async fn postgres_cursor_never_skips_an_event_that_commits_late() {
    let app = spawn_app(Backend::Postgres).await;
    let a = app.send_expect(&stripe_request("evt_late_a"), 200).await;
    let b = app.send_expect(&stripe_request("evt_late_b"), 200).await;
    let (a, b) = (a["id"].as_str().unwrap(), b["id"].as_str().unwrap());

    let pool = sqlx::PgPool::connect(&app.db.url).await.unwrap();
    let event = |id: &str| hookgate::store::NewEvent {
        id: id.into(),
        event_type: "invoice.paid".into(),
        source: "stripe".into(),
        payload_json: json!({"id": id}).to_string(),
    };
    let mut t1 = pool.begin().await.unwrap();
    hookgate::store::postgres::insert_events(&mut t1, a, &[event("evt_t1")], NOW * 1000)
        .await
        .unwrap();

    let store = hookgate::store::open(&app.db.url).await.unwrap();
    let b_id = b.to_string();
    let t2 = tokio::spawn(async move {
        store
            .complete(&b_id, &[event("evt_t2")], NOW * 1000)
            .await
            .unwrap();
    });
    // Wait until T2 is queued behind T1 (deterministic: ask PostgreSQL).
    let mut conn = sqlx::PgConnection::connect(&app.db.url).await.unwrap();
    loop {
        let waiting: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted",
        )
        .fetch_one(&mut conn)
        .await
        .unwrap();
        if waiting == 1 {
            break;
        }
        tokio::task::yield_now().await;
    }
    let visible = app.all_events().await;
    assert!(
        visible.is_empty(),
        "nothing may be visible yet: {visible:?}"
    );

    t1.commit().await.unwrap();
    t2.await.unwrap();
    let ids: Vec<String> = app
        .all_events()
        .await
        .iter()
        .map(|e| e["id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(ids, ["evt_t1", "evt_t2"], "commit order = cursor order");
}

#[tokio::test]
async fn postgres_two_instances_store_process_and_publish_each_event_once() {
    let nats = nats_settings("nats://127.0.0.1:4222");
    let spawn = |db_url: Option<String>| {
        let nats = nats.clone();
        spawn_app_configured(
            Spawn {
                backend: Backend::Postgres,
                db_url,
                workers: 2,
                ..Spawn::default()
            },
            move |s| {
                s.bus.nats = Some(nats);
                s.queue.sweep_interval_ms = 1_000;
                s.server.http_workers = 2;
            },
        )
    };
    let one = Arc::new(spawn(None).await);
    let two = Arc::new(spawn(Some(one.db.url.clone())).await);

    // 1 500 unique events; 500 of them sent to both instances at once.
    let unique = 1_500;
    let mut jobs: Vec<(Arc<TestApp>, String)> = Vec::new();
    for i in 0..unique {
        let id = format!("evt_multi_{i}");
        if i < 500 {
            jobs.push((one.clone(), id.clone()));
            jobs.push((two.clone(), id));
        } else if i % 2 == 0 {
            jobs.push((one.clone(), id));
        } else {
            jobs.push((two.clone(), id));
        }
    }
    let total = jobs.len();
    let gate = Arc::new(tokio::sync::Semaphore::new(64));
    let replies = futures_util::future::join_all(jobs.into_iter().map(|(app, id)| {
        let gate = gate.clone();
        async move {
            let _permit = gate.acquire().await.unwrap();
            let body = app.send_expect(&stripe_request(&id), 200).await;
            (
                id,
                body["id"].as_str().unwrap().to_string(),
                body["duplicate"] == true,
            )
        }
    }))
    .await;
    assert_eq!(replies.len(), total);
    let mut delivery_of: HashMap<String, HashSet<String>> = HashMap::new();
    let mut originals = 0;
    for (id, delivery, duplicate) in &replies {
        delivery_of
            .entry(id.clone())
            .or_default()
            .insert(delivery.clone());
        if !duplicate {
            originals += 1;
        }
    }
    assert_eq!(
        originals, unique,
        "exactly one original per sender event id"
    );
    assert!(
        delivery_of.values().all(|d| d.len() == 1),
        "both copies answer the same id"
    );

    // Workers of both instances process; one publishes.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
    loop {
        let published = stream_messages_count(&nats.url, &nats.stream).await;
        if published >= unique {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "only {published} published"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;

    let mut conn = sqlx::PgConnection::connect(&one.db.url).await.unwrap();
    let deliveries: i64 = sqlx::query_scalar("SELECT count(*) FROM deliveries")
        .fetch_one(&mut conn)
        .await
        .unwrap();
    assert_eq!(deliveries, unique as i64);
    let not_done: i64 =
        sqlx::query_scalar("SELECT count(*) FROM deliveries WHERE status <> 'done'")
            .fetch_one(&mut conn)
            .await
            .unwrap();
    assert_eq!(not_done, 0, "no delivery left pending");
    let events = one.all_events().await;
    assert_eq!(events.len(), unique);
    let event_ids: HashSet<&str> = events.iter().map(|e| e["id"].as_str().unwrap()).collect();
    assert_eq!(event_ids.len(), unique);

    let messages = stream_messages(&nats.url, &nats.stream).await;
    assert_eq!(messages.len(), unique, "published once each");
    let published: HashSet<&str> = messages.iter().map(|(id, _)| id.as_str()).collect();
    assert_eq!(published, event_ids);
    // In sequence order.
    let in_order: Vec<&str> = events.iter().map(|e| e["id"].as_str().unwrap()).collect();
    let stream_order: Vec<&str> = messages.iter().map(|(id, _)| id.as_str()).collect();
    assert_eq!(stream_order, in_order);
    delete_stream(&nats.url, &nats.stream).await;
}

async fn stream_messages_count(url: &str, stream: &str) -> usize {
    let Ok(client) = async_nats::connect(url).await else {
        return 0;
    };
    let js = async_nats::jetstream::new(client);
    match js.get_stream(stream).await {
        Ok(mut s) => s
            .info()
            .await
            .map(|i| i.state.messages as usize)
            .unwrap_or(0),
        Err(_) => 0,
    }
}

#[tokio::test]
async fn postgres_outage_answers_503_and_recovers() {
    let app = spawn_app(Backend::Postgres).await;
    app.send_expect(&stripe_request("evt_before_outage"), 200)
        .await;
    let name = app.db.name.clone().unwrap();
    let mut admin = sqlx::PgConnection::connect(&format!("{}/postgres", pg_admin_url()))
        .await
        .unwrap();
    sqlx::query(&format!("ALTER DATABASE {name} ALLOW_CONNECTIONS false"))
        .execute(&mut admin)
        .await
        .unwrap();
    sqlx::query("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1")
        .bind(&name)
        .execute(&mut admin)
        .await
        .unwrap();

    for i in 0..3 {
        let req = stripe_request(&format!("evt_during_outage_{i}"));
        let mut b = app
            .client
            .post(format!("{}{}", app.address, req.path))
            .body(req.body);
        for (k, v) in req.headers {
            b = b.header(k, v);
        }
        let r = b.send().await.unwrap();
        assert_eq!(
            r.status().as_u16(),
            503,
            "never a 200 that was not persisted"
        );
        assert!(r.headers().get("retry-after").is_some());
        let body: serde_json::Value = r.json().await.unwrap();
        assert_eq!(body["error"]["code"], "unavailable");
        assert!(
            !body.to_string().contains("postgres"),
            "no internals leak: {body}"
        );
    }
    // A forged request is refused without the database; its rejection
    // waits for the database to come back instead of being dropped.
    let forged = stripe_request("evt_forged_during_outage").header("stripe-signature", "t=1,v1=00");
    let refused = app.send(&forged).await;
    assert_eq!(refused.status, 401, "{}", refused.json);
    let refused_code = refused.code().to_string();
    let r = app
        .client
        .get(format!("{}/readyz", app.address))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 503);

    sqlx::query(&format!("ALTER DATABASE {name} ALLOW_CONNECTIONS true"))
        .execute(&mut admin)
        .await
        .unwrap();
    // Recovers by itself: the same request is accepted once the database is back.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let reply = app.send(&stripe_request("evt_during_outage_0")).await;
        if reply.status == 200 {
            assert_eq!(reply.json["duplicate"], false, "the 503 stored nothing");
            break;
        }
        assert_eq!(reply.status, 503);
        assert!(tokio::time::Instant::now() < deadline, "never recovered");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    app.drain().await;
    let mut ids: Vec<String> = app
        .all_events()
        .await
        .iter()
        .map(|e| e["provider_event_id"].as_str().unwrap().to_string())
        .collect();
    ids.sort();
    assert_eq!(ids, ["evt_before_outage", "evt_during_outage_0"]);

    // The rejection logged during the outage reached the audit trail.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let (status, page) = app.get("/v1/admin/rejections?limit=100").await;
        assert_eq!(status, 200, "{page}");
        let codes: Vec<&str> = page["rejections"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|r| r["code"].as_str())
            .collect();
        if codes == [refused_code.as_str()] {
            break;
        }
        assert!(codes.is_empty(), "one rejection, once: {page}");
        assert!(
            tokio::time::Instant::now() < deadline,
            "the outage's rejection was never recorded"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Instance one has no workers; instance two's sweep is a minute. Only
/// NOTIFY from one's commit can make two process the delivery promptly.
#[tokio::test]
async fn postgres_instances_wake_each_other_with_notify() {
    let one = spawn_app_with(Spawn {
        backend: Backend::Postgres,
        workers: 0,
        ..Spawn::default()
    })
    .await;
    let two = spawn_app_configured(
        Spawn {
            backend: Backend::Postgres,
            db_url: Some(one.db.url.clone()),
            workers: 1,
            ..Spawn::default()
        },
        |s| s.queue.sweep_interval_ms = 60_000,
    )
    .await;
    // Let two's worker finish its first look and go to sleep.
    tokio::time::sleep(Duration::from_millis(300)).await;
    one.send_expect(&stripe_request("evt_notify"), 200).await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while two.all_events().await.is_empty() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the other instance was never woken"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
