//! The command line: `check` names the file and field of a problem, `sign`
//! produces requests the gateway accepts.

use std::process::Command;

use serde_json::Value;

use crate::helpers::*;

fn hookgate(args: &[&str]) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_hookgate"))
        .args(args)
        .env_remove("HOOKGATE_STORAGE__URL")
        .output()
        .expect("hookgate runs");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn copy_dir(from: &std::path::Path, to: &std::path::Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}

#[test]
fn cli_check_accepts_the_example_config() {
    let config = repo().join("hookgate.example.toml");
    let (ok, stdout, stderr) = hookgate(&["check", "--config", config.to_str().unwrap()]);
    assert!(ok, "{stdout}{stderr}");
    assert!(
        stdout.starts_with("ok:") && stdout.contains("stripe"),
        "{stdout}"
    );
}

#[test]
fn cli_check_names_file_and_field_of_a_broken_provider() {
    let dir = tempfile::tempdir().unwrap();
    copy_dir(&repo().join("providers"), &dir.path().join("providers"));
    let mapping = dir.path().join("providers/pagerduty/mapping.toml");
    let text = std::fs::read_to_string(&mapping).unwrap();
    std::fs::write(
        &mapping,
        text.replacen("emit = \"alert.triggered\"", "emit = \"alert.trigered\"", 1),
    )
    .unwrap();
    let config = dir.path().join("hookgate.toml");
    std::fs::write(
        &config,
        format!(
            "[paths]\ncatalog = \"{}\"\n[[sources]]\nname = \"pd\"\nprovider = \"pagerduty\"\nsecrets = [\"s\"]\n",
            repo().join("catalog").display()
        ),
    )
    .unwrap();
    let (ok, _, stderr) = hookgate(&["check", "--config", config.to_str().unwrap()]);
    assert!(!ok);
    assert!(stderr.contains("pagerduty/mapping.toml"), "{stderr}");
    assert!(
        stderr.contains(".emit") && stderr.contains("alert.trigered"),
        "{stderr}"
    );
}

#[test]
fn cli_check_names_a_missing_secret_reference() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("hookgate.toml");
    std::fs::write(
        &config,
        format!(
            "[paths]\nproviders = \"{}\"\ncatalog = \"{}\"\n[[sources]]\nname = \"s\"\nprovider = \"stripe\"\nsecrets = [\"env:HOOKGATE_TEST_SURELY_UNSET\"]\n",
            repo().join("providers").display(),
            repo().join("catalog").display()
        ),
    )
    .unwrap();
    let (ok, _, stderr) = hookgate(&["check", "--config", config.to_str().unwrap()]);
    assert!(!ok);
    assert!(
        stderr.contains("sources[0].secrets[0]") && stderr.contains("HOOKGATE_TEST_SURELY_UNSET"),
        "{stderr}"
    );
}

#[test]
fn cli_check_warns_about_a_source_without_authentication() {
    let dir = tempfile::tempdir().unwrap();
    // A file reference, so the signed source draws no literal-secret
    // warning either.
    let secret = dir.path().join("stripe-secret");
    std::fs::write(&secret, "whsec_check_secret\n").unwrap();
    let config = dir.path().join("hookgate.toml");
    std::fs::write(
        &config,
        format!(
            r#"[paths]
providers = "{providers}"
catalog = "{catalog}"

[[sources]]
name = "stripe-open"
provider = "stripe"
auth = "none"

[[sources]]
name = "stripe-signed"
provider = "stripe"
secrets = ["file:{secret}"]
"#,
            providers = repo().join("providers").display(),
            catalog = repo().join("catalog").display(),
            secret = secret.display(),
        ),
    )
    .unwrap();
    let (ok, stdout, stderr) = hookgate(&["check", "--config", config.to_str().unwrap()]);
    assert!(
        ok,
        "a source without authentication is allowed: {stdout}{stderr}"
    );
    assert!(
        stdout.starts_with("ok:") && stdout.contains("2 sources"),
        "{stdout}"
    );
    let warnings: Vec<&str> = stderr
        .lines()
        .filter(|l| l.contains("without any authentication"))
        .collect();
    assert_eq!(
        warnings.len(),
        1,
        "one warning, for the open source: {stderr}"
    );
    assert!(warnings[0].contains("stripe-open"), "{stderr}");
    assert!(
        !stderr.contains("stripe-signed"),
        "the signed source draws no warning: {stderr}"
    );
}

#[test]
fn cli_check_rejects_unknown_config_keys() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("hookgate.toml");
    std::fs::write(
        &config,
        "[server]\nlisten = \"127.0.0.1:1\"\nmax_body = 3\n",
    )
    .unwrap();
    let (ok, _, stderr) = hookgate(&["check", "--config", config.to_str().unwrap()]);
    assert!(!ok);
    assert!(stderr.contains("max_body"), "{stderr}");
}

async fn cli_sign_output_is_accepted_by_the_gateway(backend: Backend) {
    let app = spawn_app(backend).await;
    for (provider, secret, fixture_name) in [
        ("stripe", "whsec_test_new_secret", "invoice.paid"),
        ("standard-webhooks", SW_SECRET, "invoice.paid"),
        ("pagerduty", "pd-secret-new", "incident.triggered"),
        ("dnsimple", "dnsimple-token-new", "domain.renew"),
    ] {
        let file = repo()
            .join("providers")
            .join(provider)
            .join("fixtures")
            .join(format!("{fixture_name}.json"));
        let url = format!("{}/v1/webhooks/{provider}", app.address);
        let (ok, stdout, stderr) = hookgate(&[
            "sign",
            "--provider",
            provider,
            "--secret",
            secret,
            "--timestamp",
            &NOW.to_string(),
            "--providers",
            repo().join("providers").to_str().unwrap(),
            "--url",
            &url,
            file.to_str().unwrap(),
        ]);
        assert!(ok, "{provider}: {stderr}");
        let out: Value = serde_json::from_str(&stdout).unwrap();
        let mut req = app
            .client
            .post(out["url"].as_str().unwrap())
            .body(std::fs::read(&file).unwrap());
        for (k, v) in out["headers"].as_object().unwrap() {
            req = req.header(k, v.as_str().unwrap());
        }
        let r = req.send().await.unwrap();
        assert_eq!(
            r.status().as_u16(),
            200,
            "{provider}: {}",
            r.text().await.unwrap()
        );

        let (ok, curl, _) = hookgate(&[
            "sign",
            "--provider",
            provider,
            "--secret",
            secret,
            "--curl",
            "--providers",
            repo().join("providers").to_str().unwrap(),
            file.to_str().unwrap(),
        ]);
        assert!(ok);
        assert!(
            curl.starts_with("curl ") && curl.contains("--data-binary '@"),
            "{curl}"
        );
    }
}

/// Run the binary off the test's runtime thread (the gateway under test
/// shares it), with extra environment variables.
async fn hookgate_off_thread(
    args: Vec<String>,
    env: Vec<(&'static str, String)>,
) -> (bool, String, String) {
    tokio::task::spawn_blocking(move || {
        let out = Command::new(env!("CARGO_BIN_EXE_hookgate"))
            .args(&args)
            .envs(env)
            .output()
            .expect("hookgate runs");
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    })
    .await
    .unwrap()
}

async fn cli_deliveries_and_rejections_talk_to_a_running_gateway(backend: Backend) {
    let app = spawn_app(backend).await;
    let first = app.send_expect(&stripe_request("evt_cli_1"), 200).await;
    let first = first["id"].as_str().unwrap().to_string();
    app.clock.advance_ms(1_000);
    let second = app.send_expect(&stripe_request("evt_cli_2"), 200).await;
    let second = second["id"].as_str().unwrap().to_string();
    app.drain().await;
    let events = app.all_events().await;
    assert_eq!(events.len(), 2);
    let forged = stripe_request("evt_cli_forged").header("stripe-signature", "t=1,v1=00");
    assert_eq!(app.send(&forged).await.status, 401);

    let remote = |args: &[&str]| {
        let mut all: Vec<String> = args.iter().map(|s| s.to_string()).collect();
        all.extend([
            "--url".into(),
            app.address.clone(),
            "--token".into(),
            API_TOKEN.into(),
        ]);
        hookgate_off_thread(all, Vec::new())
    };
    let (ok, out, err) = remote(&["deliveries", "list"]).await;
    assert!(ok, "{err}");
    for expected in [
        first.as_str(),
        second.as_str(),
        "evt_cli_1",
        "invoice.paid",
        "done",
        "STATUS",
    ] {
        assert!(out.contains(expected), "{expected} missing:\n{out}");
    }
    assert!(
        out.find(second.as_str()) < out.find(first.as_str()),
        "newest first:\n{out}"
    );
    let (_, out, _) = remote(&["deliveries", "list", "--limit", "1"]).await;
    assert!(out.contains(&second) && !out.contains(&first), "{out}");
    let cursor = out
        .lines()
        .find_map(|l| l.strip_prefix("more: --cursor "))
        .unwrap_or_else(|| panic!("no cursor:\n{out}"))
        .to_string();
    let (_, out, _) = remote(&["deliveries", "list", "--limit", "1", "--cursor", &cursor]).await;
    assert!(out.contains(&first) && !out.contains(&second), "{out}");
    let (_, out, _) = remote(&["deliveries", "list", "--source", "pagerduty"]).await;
    assert_eq!(out, "no deliveries match\n");

    let (ok, out, err) = remote(&["deliveries", "show", &first]).await;
    assert!(ok, "{err}");
    let signature = stripe_request("evt_cli_1")
        .headers
        .into_iter()
        .find(|(n, _)| n.eq_ignore_ascii_case("stripe-signature"))
        .unwrap()
        .1;
    for expected in [
        "verified (stripe)",
        events[0]["id"].as_str().unwrap(),
        "\"id\": \"evt_cli_1\"",
        "Attempts (1)",
    ] {
        assert!(out.contains(expected), "{expected} missing:\n{out}");
    }
    assert!(!out.contains(&signature), "{out}");
    assert!(
        out.lines()
            .any(|l| l.contains("stripe-signature") && l.contains("[redacted]")),
        "{out}"
    );

    let (ok, out, err) = remote(&["deliveries", "replay", &first]).await;
    assert!(ok, "{err}");
    assert_eq!(out, format!("ok: {first} is pending again\n"));
    assert_eq!(app.delivery(&first).await["status"], "pending");
    let (_, out, _) = remote(&[
        "deliveries",
        "replay",
        "--source",
        "stripe",
        "--status",
        "done",
        "--dry-run",
    ])
    .await;
    assert_eq!(out, "dry run: 1 deliveries would be replayed\n");
    let (_, out, _) = remote(&[
        "deliveries",
        "replay",
        "--source",
        "stripe",
        "--status",
        "done",
    ])
    .await;
    assert_eq!(out, "ok: 1 deliveries replayed\n");
    assert_eq!(app.drain().await, 2);
    assert_eq!(app.all_events().await, events, "replays add no event");
    let (ok, _, err) = remote(&["deliveries", "replay"]).await;
    assert!(!ok && err.contains("give a delivery id"), "{err}");

    let (ok, out, _) = remote(&["deliveries", "list", "--json", "--status", "done"]).await;
    assert!(ok);
    let page: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(page["deliveries"].as_array().unwrap().len(), 2);

    // The rejection log is written in the background.
    let mut out = String::new();
    for _ in 0..250 {
        out = remote(&["rejections", "list"]).await.1;
        if out.contains("invalid_signature") {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert!(
        out.contains("invalid_signature") && out.contains("127.0.0.1"),
        "{out}"
    );

    // URL and token from the gateway's config; the token through an env:
    // reference to a HOOKGATE_ variable that is no setting.
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("hookgate.toml");
    let port = app.address.rsplit(':').next().unwrap();
    std::fs::write(
        &config,
        format!(
            "[server]\nlisten = \"0.0.0.0:{port}\"\n[api]\ntokens = [\"env:HOOKGATE_API_TOKEN\"]\n"
        ),
    )
    .unwrap();
    let args = |token: &str| {
        hookgate_off_thread(
            vec![
                "deliveries".into(),
                "list".into(),
                "--config".into(),
                config.display().to_string(),
            ],
            vec![("HOOKGATE_API_TOKEN", token.to_string())],
        )
    };
    let (ok, out, err) = args(API_TOKEN).await;
    assert!(ok && out.contains(&first), "{out}{err}");
    let (ok, _, err) = args("wrong").await;
    assert!(
        !ok && err.contains("401") && err.contains("unauthorized"),
        "{err}"
    );
}

/// `hookgate sign` for every provider, on one of its fixtures, as an
/// operator would use it against a gateway configured like the fixture
/// test's: the gateway accepts every one.
async fn cli_sign_output_is_accepted_for_every_provider(backend: Backend) {
    use crate::fixtures::{
        app_with_every_provider, fixture_files, provider_names, secret_for, PAYPAL_WEBHOOK_ID,
    };
    let providers_dir = repo().join("providers");
    let names = provider_names();
    let app =
        app_with_every_provider(backend, hookgate::config::OnSchemaViolation::Quarantine).await;
    for name in &names {
        let files = fixture_files(name);
        let file = &files[0];
        let stem = file.file_stem().unwrap().to_string_lossy().into_owned();
        let form = file.extension().is_some_and(|e| e == "form");
        let query = std::fs::read_to_string(file.with_file_name(format!("{stem}.query")))
            .map(|q| format!("?{}", q.trim()))
            .unwrap_or_default();
        let url = format!("{}/v1/webhooks/{name}{query}", app.address);
        let secret = secret_for(&scheme(name));
        let timestamp = NOW.to_string();
        let id = format!("msg_cli_{}", name.replace('-', "_"));
        // `--secret=…`: a PEM secret (PayPal) starts with dashes.
        let secret_arg = format!("--secret={secret}");
        let mut args = vec![
            "sign",
            "--provider",
            name,
            &secret_arg,
            "--timestamp",
            &timestamp,
            "--id",
            &id,
            "--providers",
            providers_dir.to_str().unwrap(),
            "--url",
            &url,
            "--content-type",
            if form {
                "application/x-www-form-urlencoded"
            } else {
                "application/json"
            },
        ];
        if name == "paypal" {
            args.extend(["--webhook-id", PAYPAL_WEBHOOK_ID]);
        }
        args.push(file.to_str().unwrap());
        let (ok, stdout, stderr) = hookgate(&args);
        assert!(ok, "{name}: {stderr}");
        let out: Value = serde_json::from_str(&stdout).unwrap();
        let body = match out["body"].as_str() {
            Some(rewritten) => rewritten.as_bytes().to_vec(),
            None => std::fs::read(file).unwrap(),
        };
        let mut req = app.client.post(out["url"].as_str().unwrap()).body(body);
        for (k, v) in out["headers"].as_object().unwrap() {
            req = req.header(k, v.as_str().unwrap());
        }
        let extra = file.with_file_name(format!("{stem}.headers.json"));
        if let Ok(bytes) = std::fs::read(&extra) {
            let extra: serde_json::Map<String, Value> = serde_json::from_slice(&bytes).unwrap();
            for (k, v) in extra {
                req = req.header(&k, v.as_str().unwrap());
            }
        }
        let r = req.send().await.unwrap();
        let status = r.status().as_u16();
        let text = r.text().await.unwrap();
        assert_eq!(status, 200, "{name} ({}): {text}", file.display());
        assert!(
            !text.contains("\"quarantined\""),
            "{name}: the fixture passes its schema: {text}"
        );
    }
}

crate::backend_tests!(
    cli_sign_output_is_accepted_for_every_provider,
    cli_sign_output_is_accepted_by_the_gateway,
    cli_deliveries_and_rejections_talk_to_a_running_gateway,
);
