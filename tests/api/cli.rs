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

crate::backend_tests!(cli_sign_output_is_accepted_by_the_gateway);
