//! Fuzzing with proptest (the toolchain is stable; `cargo fuzz` needs
//! nightly and a sanitizer build the CI machine can't afford): arbitrary
//! and mutated input into every signature-header parser and every scheme's
//! `Verifier::verify` (through every real provider definition), arbitrary
//! `[signature]` tables into `Verifier::new`, mutated provider definitions
//! into the loader, and arbitrary or mutated payloads into body decoding
//! (JSON, form, XML), event extraction, schema validation and every
//! provider's mapping. The
//! property of every target is the same: it returns, it never panics.
//!
//! `cargo test --test fuzz` runs a short pass (a few seconds); set
//! `PROPTEST_CASES` for a long one, see `tests/fuzz/README.md`. Each
//! target prints a `fuzz figures:` line with its case and execution counts
//! (`-- --nocapture`).

mod loader;
mod mapping;
mod verify;

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use hookgate::catalog::Catalog;
use hookgate::providers::Registry;
use hookgate::verify::SchemeConfig;
use proptest::test_runner::{Config, FileFailurePersistence, TestRunner};

pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

pub fn catalog() -> Catalog {
    Catalog::load(&repo().join("catalog")).unwrap()
}

pub fn registry(catalog: &Catalog) -> Registry {
    Registry::load(&repo().join("providers"), catalog).unwrap()
}

/// A target's runner: `default_cases` cases unless `PROPTEST_CASES` says
/// otherwise; failures (shrunk) are kept in `<target file>.regressions`
/// beside it (`tests/fuzz/mapping.regressions`) and replayed first on
/// every run.
pub fn runner(default_cases: u32, source_file: &'static str) -> TestRunner {
    let mut config = Config::default();
    if std::env::var_os("PROPTEST_CASES").is_none() {
        config.cases = default_cases;
    }
    config.source_file = Some(source_file);
    config.failure_persistence = Some(Box::new(FileFailurePersistence::WithSource("regressions")));
    // Shrinking a failure must not outlive the CI budget either.
    config.max_shrink_iters = 2_000;
    TestRunner::new(config)
}

/// Counts the calls into the code under test, for the figures line.
pub struct Executions {
    target: &'static str,
    count: AtomicU64,
    started: Instant,
}

impl Executions {
    pub fn new(target: &'static str) -> Executions {
        Executions {
            target,
            count: AtomicU64::new(0),
            started: Instant::now(),
        }
    }

    pub fn add(&self, n: u64) {
        self.count.fetch_add(n, Ordering::Relaxed);
    }

    pub fn report(&self, cases: u32) {
        println!(
            "fuzz figures: target={} cases={} executions={} seconds={:.1}",
            self.target,
            cases,
            self.count.load(Ordering::Relaxed),
            self.started.elapsed().as_secs_f64()
        );
    }
}

/// PayPal signs with the receiver's webhook id, which a source sets.
pub const PAYPAL_WEBHOOK_ID: &str = "5GP028458E2496506";

/// The scheme a source of `provider` verifies with (PayPal's needs the
/// webhook id a source adds).
pub fn source_scheme(provider: &hookgate::providers::Provider) -> SchemeConfig {
    match &provider.scheme {
        SchemeConfig::Paypal(_) => serde_json::from_value(serde_json::json!({
            "scheme": "paypal",
            "webhook_id": PAYPAL_WEBHOOK_ID,
        }))
        .unwrap(),
        other => other.clone(),
    }
}

/// A secret in the format each scheme expects (the ones the fixture
/// tests use).
pub fn secret_for(scheme: &SchemeConfig) -> &'static str {
    match scheme.name() {
        "standard-webhooks" => "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
        "stripe" => "whsec_fixture_secret",
        "basic" => "hookgate:fixture-secret",
        "braintree" => "hookgate_public_key:hookgate_private_key",
        // RFC 8032 test 1 key pair (seed, public key).
        "ed25519" => "9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a",
        "adyen-items" => "44782DEF547AAA06C910C43932B1EB0C71FC68D9D0C057550C48EC2ACF6BA056",
        "paypal" => concat!(
            include_str!("../vectors/paypal_test_cert.pem"),
            include_str!("../vectors/paypal_test_key.pem")
        ),
        _ => "fixture-secret",
    }
}

/// Every fixture body of a provider (`fixtures/*.json`, `*.form`).
pub fn fixtures(provider: &str) -> Vec<Vec<u8>> {
    let dir = repo().join("providers").join(provider).join("fixtures");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .map(|d| d.filter_map(|e| e.ok().map(|e| e.path())).collect())
        .unwrap_or_default();
    files.retain(|p| {
        let f = p.file_name().unwrap().to_string_lossy();
        (f.ends_with(".json") || f.ends_with(".form"))
            && !f.ends_with(".expected.json")
            && !f.ends_with(".headers.json")
    });
    files.sort();
    files.iter().map(|f| std::fs::read(f).unwrap()).collect()
}

/// Byte-level mutations, the bread and butter of a fuzzer.
#[derive(Debug, Clone)]
pub enum Mutation {
    /// Flip bits of the byte at a position.
    Flip(proptest::sample::Index, u8),
    /// Cut at a position.
    Truncate(proptest::sample::Index),
    /// Insert bytes at a position.
    Insert(proptest::sample::Index, Vec<u8>),
    /// Remove a range.
    Remove(proptest::sample::Index, usize),
    /// Repeat a range (a duplicated field, a doubled separator).
    Repeat(proptest::sample::Index, usize, usize),
    /// Replace everything.
    Replace(Vec<u8>),
}

pub fn arb_mutation() -> impl proptest::strategy::Strategy<Value = Mutation> {
    use proptest::prelude::*;
    let interesting = prop_oneof![
        proptest::collection::vec(any::<u8>(), 0..16),
        Just(b",".to_vec()),
        Just(b"=".to_vec()),
        Just(b";".to_vec()),
        Just(b" ".to_vec()),
        Just(b"\"".to_vec()),
        Just(b"{".to_vec()),
        Just(b"}".to_vec()),
        Just(b"[".to_vec()),
        Just(b"\\u0000".to_vec()),
        Just("é€𝄞".as_bytes().to_vec()),
        Just(b"\xff\xfe".to_vec()),
        Just(b"99999999999999999999999".to_vec()),
        Just(b"-1".to_vec()),
        Just(b"1e400".to_vec()),
        Just(b"%00".to_vec()),
        Just(b"\r\n".to_vec()),
    ];
    prop_oneof![
        3 => (any::<proptest::sample::Index>(), 1u8..=255).prop_map(|(i, b)| Mutation::Flip(i, b)),
        1 => any::<proptest::sample::Index>().prop_map(Mutation::Truncate),
        3 => (any::<proptest::sample::Index>(), interesting).prop_map(|(i, b)| Mutation::Insert(i, b)),
        2 => (any::<proptest::sample::Index>(), 1usize..16).prop_map(|(i, n)| Mutation::Remove(i, n)),
        1 => (any::<proptest::sample::Index>(), 1usize..16, 2usize..4)
            .prop_map(|(i, n, k)| Mutation::Repeat(i, n, k)),
        1 => proptest::collection::vec(any::<u8>(), 0..64).prop_map(Mutation::Replace),
    ]
}

impl Mutation {
    pub fn apply(&self, bytes: &mut Vec<u8>) {
        let at =
            |i: &proptest::sample::Index, len: usize| if len == 0 { 0 } else { i.index(len + 1) };
        match self {
            Mutation::Flip(i, b) => {
                if !bytes.is_empty() {
                    let n = i.index(bytes.len());
                    bytes[n] ^= b;
                }
            }
            Mutation::Truncate(i) => {
                let n = at(i, bytes.len());
                bytes.truncate(n);
            }
            Mutation::Insert(i, b) => {
                let n = at(i, bytes.len());
                bytes.splice(n..n, b.iter().copied());
            }
            Mutation::Remove(i, len) => {
                let n = at(i, bytes.len());
                let end = (n + len).min(bytes.len());
                bytes.drain(n..end);
            }
            Mutation::Repeat(i, len, times) => {
                let n = at(i, bytes.len());
                let end = (n + len).min(bytes.len());
                let piece: Vec<u8> = bytes[n..end].to_vec();
                for _ in 1..*times {
                    bytes.splice(end..end, piece.iter().copied());
                }
            }
            Mutation::Replace(b) => *bytes = b.clone(),
        }
    }

    /// Mutate a string, keeping it a string (invalid UTF-8 is replaced:
    /// the HTTP edge drops header values that are not UTF-8).
    pub fn apply_str(&self, s: &str) -> String {
        let mut bytes = s.as_bytes().to_vec();
        self.apply(&mut bytes);
        String::from_utf8_lossy(&bytes).into_owned()
    }
}
