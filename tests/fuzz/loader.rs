//! Target of the provider-definition loader (`Registry::load`): real
//! provider folders with their `provider.toml`, `mapping.toml` or JSON
//! schema mutated, byte by byte and line by line, written to a temporary
//! directory and loaded. A broken definition must be an error naming its
//! file, never a panic; one that loads is then used (a verifier is built,
//! a fixture decoded, extracted and mapped).

use std::path::Path;

use hookgate::providers::Registry;
use hookgate::verify::Verifier;
use proptest::prelude::*;
use secrecy::SecretString;

use super::{arb_mutation, catalog, fixtures, repo, runner, secret_for, source_scheme};
use super::{Executions, Mutation};

/// One real provider folder, in memory.
struct Folder {
    name: String,
    provider: String,
    mapping: Option<String>,
    /// `schemas/<file>` → text.
    schemas: Vec<(String, String)>,
}

fn folders() -> Vec<Folder> {
    let dir = repo().join("providers");
    let mut names: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.path().join("provider.toml").is_file())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
        .into_iter()
        .map(|name| {
            let d = dir.join(&name);
            let schemas = std::fs::read_dir(d.join("schemas"))
                .map(|r| {
                    r.filter_map(|e| e.ok())
                        .map(|e| {
                            (
                                e.file_name().to_string_lossy().into_owned(),
                                std::fs::read_to_string(e.path()).unwrap(),
                            )
                        })
                        .collect()
                })
                .unwrap_or_default();
            Folder {
                provider: std::fs::read_to_string(d.join("provider.toml")).unwrap(),
                mapping: std::fs::read_to_string(d.join("mapping.toml")).ok(),
                schemas,
                name,
            }
        })
        .collect()
}

/// Line-level edits: what a hand-edited definition gets wrong.
#[derive(Debug, Clone)]
enum LineEdit {
    Delete(prop::sample::Index),
    Duplicate(prop::sample::Index),
    Swap(prop::sample::Index, prop::sample::Index),
    /// Replace what follows `=` on a line with another line's value.
    Revalue(prop::sample::Index, prop::sample::Index),
    /// Move a line into another table (after another line).
    Move(prop::sample::Index, prop::sample::Index),
}

fn arb_line_edit() -> impl Strategy<Value = LineEdit> {
    let i = any::<prop::sample::Index>;
    prop_oneof![
        1 => i().prop_map(LineEdit::Delete),
        1 => i().prop_map(LineEdit::Duplicate),
        1 => (i(), i()).prop_map(|(a, b)| LineEdit::Swap(a, b)),
        2 => (i(), i()).prop_map(|(a, b)| LineEdit::Revalue(a, b)),
        1 => (i(), i()).prop_map(|(a, b)| LineEdit::Move(a, b)),
    ]
}

impl LineEdit {
    fn apply(&self, text: &str) -> String {
        let mut lines: Vec<String> = text.lines().map(str::to_string).collect();
        if lines.is_empty() {
            return String::new();
        }
        let n = lines.len();
        match self {
            LineEdit::Delete(i) => {
                lines.remove(i.index(n));
            }
            LineEdit::Duplicate(i) => {
                let l = lines[i.index(n)].clone();
                lines.insert(i.index(n), l);
            }
            LineEdit::Swap(a, b) => lines.swap(a.index(n), b.index(n)),
            LineEdit::Revalue(a, b) => {
                let value = lines[b.index(n)]
                    .split_once('=')
                    .map(|(_, v)| v.to_string());
                let target = &mut lines[a.index(n)];
                if let (Some((key, _)), Some(value)) = (target.split_once('='), value) {
                    *target = format!("{key}={value}");
                }
            }
            LineEdit::Move(..) if n < 2 => {}
            LineEdit::Move(a, b) => {
                let l = lines.remove(a.index(n));
                lines.insert(b.index(n - 1).min(lines.len()), l);
            }
        }
        lines.join("\n")
    }
}

#[derive(Debug, Clone)]
enum Edit {
    Bytes(Mutation),
    Lines(LineEdit),
}

fn arb_edit() -> impl Strategy<Value = Edit> {
    prop_oneof![
        1 => arb_mutation().prop_map(Edit::Bytes),
        2 => arb_line_edit().prop_map(Edit::Lines),
    ]
}

fn edit(text: &str, edits: &[Edit]) -> String {
    let mut text = text.to_string();
    for e in edits {
        text = match e {
            Edit::Bytes(m) => m.apply_str(&text),
            Edit::Lines(l) => l.apply(&text),
        };
    }
    text
}

/// Which file of the folder the case mutates.
#[derive(Debug, Clone, Copy)]
enum Which {
    Provider,
    Mapping,
    Schema,
}

fn write(dir: &Path, folder: &Folder, which: Which, edits: &[Edit]) {
    let d = dir.join(&folder.name);
    std::fs::create_dir_all(d.join("schemas")).unwrap();
    let provider = match which {
        Which::Provider => edit(&folder.provider, edits),
        _ => folder.provider.clone(),
    };
    std::fs::write(d.join("provider.toml"), provider).unwrap();
    if let Some(mapping) = &folder.mapping {
        let mapping = match which {
            Which::Mapping => edit(mapping, edits),
            _ => mapping.clone(),
        };
        std::fs::write(d.join("mapping.toml"), mapping).unwrap();
    }
    for (i, (file, text)) in folder.schemas.iter().enumerate() {
        let text = match which {
            Which::Schema if i == 0 => edit(text, edits),
            _ => text.clone(),
        };
        std::fs::write(d.join("schemas").join(file), text).unwrap();
    }
}

#[test]
fn loader_mutated_provider_definitions_never_panic() {
    let folders = folders();
    let catalog = catalog();
    let tmp = tempfile::tempdir().unwrap();
    let executions = Executions::new("provider_loader");
    let loaded = std::cell::Cell::new(0u64);
    let case = std::cell::Cell::new(0u64);
    let mut runner = runner(256, file!());
    let cases = runner.config().cases;
    let strategy = (
        0..folders.len(),
        prop_oneof![
            3 => Just(Which::Provider),
            2 => Just(Which::Mapping),
            1 => Just(Which::Schema),
        ],
        proptest::collection::vec(arb_edit(), 1..4),
    );
    runner
        .run(&strategy, |(i, which, edits)| {
            let folder = &folders[i];
            case.set(case.get() + 1);
            let dir = tmp.path().join(format!("case{}", case.get()));
            write(&dir, folder, which, &edits);
            executions.add(1);
            let result = Registry::load(&dir, &catalog);
            std::fs::remove_dir_all(&dir).unwrap();
            let registry = match result {
                Ok(r) => r,
                Err(e) => {
                    // The error names a file of the folder.
                    prop_assert!(
                        e.file.starts_with(&dir),
                        "error names {}: {}",
                        e.file.display(),
                        e.message
                    );
                    return Ok(());
                }
            };
            loaded.set(loaded.get() + 1);
            // What loads is used the way the gateway uses it.
            for p in registry.iter() {
                let scheme = source_scheme(p);
                let _ = Verifier::new(&scheme, &[SecretString::from(secret_for(&scheme))]);
                for body in fixtures(&folder.name) {
                    super::mapping::through_pipeline(p, &body, None, &catalog);
                    executions.add(1);
                }
            }
            Ok(())
        })
        .unwrap();
    println!(
        "fuzz figures: target=provider_loader definitions_that_loaded={}",
        loaded.get()
    );
    executions.report(cases);
}
