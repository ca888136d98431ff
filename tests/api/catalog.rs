//! The published catalog: `docs/catalog.md` is what `hookgate catalog docs`
//! generates from `catalog/` and the providers' mappings, and no type's
//! schema removes, retypes or un-requires a field without a new version
//! (`catalog/catalog.lock`).

use hookgate::catalog::{docs, evolution, Catalog};
use hookgate::providers::Registry;

use crate::helpers::repo;

fn load() -> (Catalog, Registry) {
    let catalog = Catalog::load(&repo().join("catalog")).unwrap();
    let registry = Registry::load(&repo().join("providers"), &catalog).unwrap();
    (catalog, registry)
}

#[test]
fn catalog_docs_are_up_to_date() {
    let (catalog, registry) = load();
    let generated = docs::markdown(&catalog, &registry.catalog_sources());
    let committed = std::fs::read_to_string(repo().join("docs/catalog.md")).unwrap_or_default();
    assert!(
        generated == committed,
        "docs/catalog.md is out of date with catalog/ or providers/*/mapping.toml: \
         run `cargo run -q -- catalog docs > docs/catalog.md`"
    );
    // Every type is documented with what maps to it.
    for t in catalog.types() {
        assert!(
            committed.contains(&format!("\n## {}\n", t.name)),
            "{}",
            t.name
        );
    }
    assert!(committed.contains("- `stripe`: `invoice.paid`"));
}

#[test]
fn catalog_schemas_keep_their_fields_within_a_version() {
    let (catalog, _) = load();
    let text = std::fs::read_to_string(repo().join("catalog/catalog.lock"))
        .expect("catalog/catalog.lock exists");
    let locked: evolution::Lock = serde_json::from_str(&text).unwrap();
    let current = evolution::snapshot(&catalog);
    let breaking = evolution::breaking_changes(&locked, &current);
    assert!(
        breaking.is_empty(),
        "breaking catalog changes need a new x-version and an x-history note:\n  {}",
        breaking.join("\n  ")
    );
    assert!(
        locked == current,
        "catalog/catalog.lock is behind catalog/ (a compatible change): \
         run `cargo run -q -- catalog lock`"
    );
}
