//! Every config in deploy/ parses, the settings it documents are the defaults, and every schema
//! in schemas/ is a valid dataset schema.

use std::path::{Path, PathBuf};

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap()
}

fn tomls(dir: &Path, prefix: &str) -> Vec<PathBuf> {
    let mut found: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            let name = p.file_name().unwrap().to_str().unwrap();
            name.starts_with(prefix) && name.ends_with(".toml")
        })
        .collect();
    found.sort();
    found
}

#[test]
fn every_config_in_deploy_parses() {
    let mut registries = 0;
    let mut nodes = 0;
    for dir in ["deploy", "deploy/local", "deploy/compose"] {
        let dir = repo().join(dir);
        for path in tomls(&dir, "registry") {
            let text = std::fs::read_to_string(&path).unwrap();
            registry::Config::from_toml(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            registries += 1;
        }
        for path in tomls(&dir, "node-") {
            let text = std::fs::read_to_string(&path).unwrap();
            exchange_node::Config::from_toml(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            nodes += 1;
        }
    }
    assert_eq!(
        (registries, nodes),
        (3, 9),
        "a registry and three nodes in each of deploy/, local/, compose/"
    );
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

/// The `[alerts]` block deploy/registry.toml documents, uncommented, is what the registry does
/// with it left out (apart from the two examples that have no default).
#[test]
fn the_alert_settings_documented_are_the_defaults() {
    let text = std::fs::read_to_string(repo().join("deploy/registry.toml")).unwrap();
    let (before, block) = text.split_once("# [alerts]\n").expect("an [alerts] block");
    fn setting(line: &str) -> Option<&str> {
        let line = line.strip_prefix("# ")?;
        let (name, _) = line.split_once(" = ")?;
        name.chars().all(|c| c.is_ascii_lowercase() || c == '_').then_some(line)
    }
    let settings: Vec<&str> = block.lines().filter_map(setting).collect();
    assert_eq!(settings.len(), 13, "{settings:?}");
    let uncommented = format!("{before}[alerts]\n{}\n", settings.join("\n"));
    let config = registry::Config::from_toml(&uncommented).unwrap();
    let expected = registry::config::AlertConfig {
        reading_hours: "07:00-22:00".into(),
        round_the_clock: vec!["js.gongan".into()],
        ..Default::default()
    };
    assert_eq!(config.alerts, expected);
    assert_eq!(
        registry::Config::from_toml(before).unwrap().alerts,
        registry::config::AlertConfig::default()
    );
}
