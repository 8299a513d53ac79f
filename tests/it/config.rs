//! Every config in deploy/ parses, and every schema in schemas/ is a valid dataset schema.

use std::path::Path;

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap()
}

#[test]
fn every_registry_config_in_deploy_parses() {
    let mut seen = 0;
    for entry in std::fs::read_dir(repo().join("deploy")).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_str().unwrap().to_string();
        if name.starts_with("registry") && name.ends_with(".toml") {
            let text = std::fs::read_to_string(&path).unwrap();
            registry::Config::from_toml(&text).unwrap_or_else(|e| panic!("{name}: {e}"));
            seen += 1;
        }
    }
    assert!(seen >= 2, "expected the registry configs in deploy/");
}

#[test]
fn every_sample_schema_is_a_valid_dataset_schema_with_its_key() {
    let mut seen = 0;
    for entry in std::fs::read_dir(repo().join("schemas")).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().and_then(|e| e.to_str()) != Some("json") {
            continue;
        }
        let text = std::fs::read_to_string(&path).unwrap();
        let value: serde_json::Value = serde_json::from_str(&text).unwrap();
        let key = value["x-key"]
            .as_str()
            .unwrap_or_else(|| panic!("{} has no x-key", path.display()));
        exchange_core::schema::parse_dataset_schema(&text, key).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        seen += 1;
    }
    assert!(seen >= 5, "expected the five sample schemas");
}
