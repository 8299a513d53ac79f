//! deploy/local run as separate processes of the real binary: a registry and two nodes, set up
//! and read across with the CLI; then a node is SIGKILLed and keeps every acknowledged record
//! and audit event.

use std::path::Path;

use crate::harness::exchange_bin;
use crate::process::{run_cli, spawn_server};

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap()
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Runs the CLI, failing the test with its output when it fails.
#[track_caller]
fn cli(args: &[&str]) -> String {
    let (ok, stdout, stderr) = run_cli(args);
    assert!(ok, "exchange {}\n{stdout}\n{stderr}", args.join(" "));
    stdout
}

fn person(n: u32) -> String {
    let first17 = format!("32010219850505{n:03}");
    let id = format!(
        "{first17}{}",
        exchange_core::formats::id_number_check_char(&first17).unwrap()
    );
    format!(
        "{{\"id_number\":\"{id}\",\"name\":\"居民{n}\",\"gender\":\"female\",\"birth_date\":\"1985-05-05\",\"household_register_region\":\"320102\",\"phone\":\"13900000000\",\"updated_at\":\"2026-11-01T00:00:00Z\"}}"
    )
}

#[test]
fn the_local_deployment_runs_as_separate_processes_and_a_killed_node_loses_nothing() {
    // A new node's store is fjall.
    local_deployment_with_a_killed_node(None);
}

#[test]
fn a_killed_node_on_sled_loses_nothing_either() {
    local_deployment_with_a_killed_node(Some("sled"));
}

/// The local deployment, js.gongan's node on `engine` (its default when `None`).
fn local_deployment_with_a_killed_node(engine: Option<&str>) {
    let dir = tempfile::tempdir().unwrap();
    let work = dir.path();
    // The configs as shipped, with free ports instead of 7500-7503 so tests can run in parallel.
    let ports: Vec<u16> = (0..4).map(|_| free_port()).collect();
    for name in ["registry.toml", "node-gongan.toml", "node-scjg.toml", "node-zrzy.toml"] {
        let mut text = std::fs::read_to_string(repo().join("deploy/local").join(name)).unwrap();
        for (i, port) in ports.iter().enumerate() {
            text = text.replace(&format!(":{}", 7500 + i), &format!(":{port}"));
        }
        if name == "registry.toml" {
            // One denied read is warning enough here: the flow below has one.
            assert!(!text.contains("\n[alerts]"), "the test adds the [alerts] table");
            text.push_str("\n[alerts]\ndenied_reads_per_hour = 1\n");
        }
        if let (Some(engine), "node-gongan.toml") = (engine, name) {
            assert!(!text.contains("[store]"), "the test adds the [store] table");
            text.push_str(&format!("\n[store]\nengine = \"{engine}\"\n"));
        }
        std::fs::write(work.join(name), text).unwrap();
    }
    std::fs::copy(repo().join("deploy/local/setup-pki.sh"), work.join("setup-pki.sh")).unwrap();
    let status = std::process::Command::new("bash")
        .arg(work.join("setup-pki.sh"))
        .env("EXCHANGE", exchange_bin())
        .stdout(std::process::Stdio::null())
        .status()
        .unwrap();
    assert!(status.success(), "setup-pki.sh failed");

    let (mut registry, _) = spawn_server("registry", Path::new("registry.toml"), Some(work));
    let registry_url = format!("https://localhost:{}", ports[0]);
    let pki = work.join("pki");
    let as_ = |who: &str| -> Vec<String> {
        vec![
            "--registry".into(),
            registry_url.clone(),
            "--ca".into(),
            pki.join("ca.pem").to_str().unwrap().into(),
            "--cert".into(),
            pki.join(format!("{who}.pem")).to_str().unwrap().into(),
            "--key".into(),
            pki.join(format!("{who}-key.pem")).to_str().unwrap().into(),
        ]
    };
    let run = |who: &str, args: &[&str]| {
        let mut all: Vec<String> = as_(who);
        all.extend(args.iter().map(|a| a.to_string()));
        cli(&all.iter().map(String::as_str).collect::<Vec<_>>())
    };
    let try_run = |who: &str, args: &[&str]| {
        let mut all: Vec<String> = as_(who);
        all.extend(args.iter().map(|a| a.to_string()));
        run_cli(&all.iter().map(String::as_str).collect::<Vec<_>>())
    };

    for (id, name) in [("js.gongan", "江苏省公安厅"), ("js.scjg", "江苏省市场监督管理局")] {
        run(
            "js.dsj-admin",
            &[
                "dept", "register", "--id", id, "--name", name, "--level", "province", "--region", "320000",
            ],
        );
    }
    run(
        "js.gongan-system",
        &[
            "dataset",
            "register",
            "--id",
            "js.gongan/population",
            "--title",
            "人口基础信息",
            "--classification",
            "conditional",
            "--key-field",
            "id_number",
        ],
    );
    let schema = repo().join("schemas/population.json");
    run(
        "js.gongan-system",
        &["schema", "publish", "js.gongan/population", schema.to_str().unwrap()],
    );
    let grant = run(
        "js.scjg-system",
        &[
            "--json",
            "grant",
            "request",
            "--dataset",
            "js.gongan/population",
            "--fields",
            "name",
            "--purpose",
            "business-licensing",
            "--legal-basis",
            "《优化营商环境条例》",
            "--expires",
            "30d",
        ],
    );
    let grant: serde_json::Value = serde_json::from_str(&grant).unwrap();
    // The deployed registry reviews requests first (its default): the data authority passes it,
    // then the owner decides, and nothing waits for anyone after.
    let id = grant["id"].as_str().unwrap();
    assert_eq!(grant["stage"], "GRANT_STAGE_REVIEW", "{grant}");
    assert!(run("js.dsj-admin", &["grant", "list", "--waiting"]).contains(id));
    run("js.dsj-admin", &["grant", "pass-review", id]);
    assert!(run("js.gongan-system", &["grant", "list", "--waiting"]).contains("decision"));
    run("js.gongan-system", &["grant", "approve", id]);
    assert!(!run("js.gongan-system", &["grant", "list", "--waiting"]).contains(id));

    let (mut gongan, _) = spawn_server("node", Path::new("node-gongan.toml"), Some(work));
    let (mut scjg, _) = spawn_server("node", Path::new("node-scjg.toml"), Some(work));
    let gongan_url = format!("https://localhost:{}", ports[1]);

    // Wait for the node to learn the dataset and the grant from the registry.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let status = run("js.gongan-system", &["--node", &gongan_url, "--json", "status"]);
        let status: serde_json::Value = serde_json::from_str(&status).unwrap();
        if status["registryConnected"] == true && status["datasets"][0]["latestVersion"] == 1 {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "node never caught up: {status}");
        std::thread::sleep(std::time::Duration::from_millis(100));
    }

    // The node announced where it serves: a consumer finds it at the registry.
    let dept: serde_json::Value =
        serde_json::from_str(&run("js.scjg-system", &["--json", "dept", "get", "js.gongan"])).unwrap();
    assert_eq!(dept["nodeEndpoint"], gongan_url.as_str(), "{dept}");

    // Publish 50 records (acknowledged when the command succeeds), then read across processes.
    let ndjson = work.join("people.ndjson");
    std::fs::write(&ndjson, (0..50).map(person).collect::<Vec<_>>().join("\n")).unwrap();
    let out = run(
        "js.gongan-system",
        &[
            "--node",
            &gongan_url,
            "publish",
            "js.gongan/population",
            ndjson.to_str().unwrap(),
        ],
    );
    assert!(out.contains("50 stored, 0 rejected"), "{out}");
    let id = serde_json::from_str::<serde_json::Value>(&person(7)).unwrap()["id_number"]
        .as_str()
        .unwrap()
        .to_string();
    let read = |who: &str, purpose: &str| {
        try_run(
            who,
            &[
                "--node",
                &gongan_url,
                "get",
                "js.gongan/population",
                &id,
                "--purpose",
                purpose,
            ],
        )
    };
    let receipts = work.join("receipts.jsonl");
    let (ok, stdout, stderr) = try_run(
        "js.scjg-system",
        &[
            "--node",
            &gongan_url,
            "get",
            "js.gongan/population",
            &id,
            "--purpose",
            "business-licensing",
            "--receipts",
            receipts.to_str().unwrap(),
        ],
    );
    assert!(ok, "{stderr}");
    let record: serde_json::Value = serde_json::from_str(stdout.trim()).unwrap();
    assert_eq!(record["name"], "居**");
    assert!(record.get("phone").is_none(), "phone is not granted");
    // The consumer proves what it received: the receipt's event is in the node's signed ledger
    // and holds the digest of exactly these bytes; any other bytes fail.
    let records = work.join("received.ndjson");
    std::fs::write(&records, &stdout).unwrap();
    let prove = |records: &Path| {
        try_run(
            "js.scjg-system",
            &[
                "--node",
                &gongan_url,
                "audit",
                "receipt",
                "--receipts",
                receipts.to_str().unwrap(),
                "--records",
                records.to_str().unwrap(),
            ],
        )
    };
    let (ok, out, stderr) = prove(&records);
    assert!(
        ok && out.contains("proved") && out.contains("business-licensing"),
        "{out}{stderr}"
    );
    std::fs::write(&records, stdout.replace("居**", "居*")).unwrap();
    let (ok, out, stderr) = prove(&records);
    assert!(
        !ok && out.contains("the records are not the ones served"),
        "{out}{stderr}"
    );
    let (ok, _, stderr) = read("js.scjg-system", "tax-audit");
    assert!(
        !ok && stderr.contains("permission denied: purpose \"tax-audit\" not granted"),
        "{stderr}"
    );

    // SIGKILL the node right after those acknowledged writes and audited reads.
    gongan.kill();
    let (mut gongan, _) = spawn_server("node", Path::new("node-gongan.toml"), Some(work));
    let query = run(
        "js.gongan-system",
        &[
            "--node",
            &gongan_url,
            "query",
            "js.gongan/population",
            "--purpose",
            "internal-check",
            "--fields",
            "name",
        ],
    );
    assert_eq!(query.lines().count(), 50, "every acknowledged record survived");
    let status = run("js.gongan-system", &["--node", &gongan_url, "--json", "status"]);
    let status: serde_json::Value = serde_json::from_str(&status).unwrap();
    // The allowed read, the denied read, then this query: nothing was lost.
    assert_eq!(status["auditEntries"], "3", "{status}"); // proto3 JSON writes 64-bit integers as strings
                                                         // The node signs a checkpoint within a second of the last event and ships it.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let status = run("js.gongan-system", &["--node", &gongan_url, "--json", "status"]);
        let status: serde_json::Value = serde_json::from_str(&status).unwrap();
        if status["auditSigned"] == "3" {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no checkpoint of 3 events: {status}"
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    }

    // The ledger exported, then checked offline with the pinned key; an altered entry is named.
    let export = work.join("gongan.export");
    run(
        "js.gongan-system",
        &[
            "--node",
            &gongan_url,
            "audit",
            "export",
            "--out",
            export.to_str().unwrap(),
        ],
    );
    let status = run("js.gongan-system", &["--node", &gongan_url, "--json", "status"]);
    let vkey = serde_json::from_str::<serde_json::Value>(&status).unwrap()["logVkey"]
        .as_str()
        .unwrap()
        .to_string();
    let verified = cli(&["audit", "verify", export.to_str().unwrap(), "--vkey", &vkey]);
    assert!(verified.starts_with("export verified: entries 0..3"), "{verified}");
    let text = std::fs::read_to_string(&export).unwrap();
    std::fs::write(
        &export,
        text.replacen("\"decision\":\"deny\"", "\"decision\":\"allow\"", 1),
    )
    .unwrap();
    let (ok, _, stderr) = run_cli(&["audit", "verify", export.to_str().unwrap(), "--vkey", &vkey]);
    assert!(!ok && stderr.contains("ledger entry 1: changed"), "{stderr}");
    // The consistency proof from the first entry's tree to the latest checkpoint, a hash a line.
    let proof = run(
        "js.gongan-system",
        &["--node", &gongan_url, "audit", "consistency", "1"],
    );
    assert!(
        !proof.is_empty() && proof.lines().all(|l| l.len() == 44 && l.ends_with('=')),
        "{proof}"
    );
    let held = run("js.gongan-system", &["dept", "ledger", "js.gongan"]);
    assert!(
        held.contains("events:     3 held") && held.contains("log key:    exchange.local/node/js.gongan+"),
        "{held}"
    );
    // The consumer questions the record it read (its read is among those shipped); the owner
    // answers, and both see the answer.
    let raised = run(
        "js.scjg-system",
        &[
            "correction",
            "raise",
            "--dataset",
            "js.gongan/population",
            "--record",
            &id,
            "--fields",
            "name",
            "--sequence",
            "8",
            "--problem",
            "姓名应为 居民八",
            "--evidence",
            "户口簿 第0012345号",
        ],
    );
    assert!(raised.contains("c-000001") && raised.contains("open"), "{raised}");
    assert!(run("js.gongan-system", &["correction", "list", "--waiting"]).contains("c-000001"));
    let (ok, _, stderr) = try_run("js.gongan-system", &["correction", "answer", "c-000001", "--rejected"]);
    assert!(!ok && stderr.contains("say why the request is rejected"), "{stderr}");
    let answered = run(
        "js.gongan-system",
        &[
            "correction",
            "answer",
            "c-000001",
            "--confirmed",
            "--note",
            "与户籍底册一致",
        ],
    );
    assert!(
        answered.contains("confirmed") && answered.contains("与户籍底册一致"),
        "{answered}"
    );
    let seen: serde_json::Value =
        serde_json::from_str(&run("js.scjg-system", &["--json", "correction", "get", "c-000001"])).unwrap();
    assert_eq!(seen["state"], "CORRECTION_STATE_CONFIRMED", "{seen}");
    // The denied read raised an alert; the data authority sees it and says what it found.
    let alerts = run("js.dsj-admin", &["alert", "list", "--rule", "denied_reads"]);
    assert!(
        alerts.contains("a-000001") && alerts.contains("js.scjg had 1 read denied"),
        "{alerts}"
    );
    let (ok, _, stderr) = try_run("js.scjg-system", &["alert", "list"]);
    assert!(!ok && stderr.contains("only admins and auditors"), "{stderr}");
    let acknowledged = run(
        "js.dsj-admin",
        &["alert", "ack", "a-000001", "--note", "a test of a purpose not granted"],
    );
    assert!(
        acknowledged.contains("state:       acknowledged") && acknowledged.contains("a test of a purpose"),
        "{acknowledged}"
    );
    let open = run("js.dsj-admin", &["--json", "alert", "list", "--state", "open"]);
    assert!(!open.contains("a-000001"), "{open}");
    // The scoreboard as CSV: a header, then js.gongan's line with the read it served js.scjg and
    // the one it denied (its own query is not sharing).
    let csv = run("js.scjg-system", &["scoreboard", "--csv"]);
    let mut lines = csv.lines();
    let header: Vec<&str> = lines.next().unwrap().split(',').collect();
    assert_eq!(&header[..3], ["rank", "department", "score"], "{csv}");
    let column = |name: &str| header.iter().position(|h| *h == name).unwrap();
    let served: Vec<&str> = lines
        .map(|l| l.split(',').collect::<Vec<_>>())
        .find(|cells| cells[1] == "js.gongan")
        .unwrap_or_else(|| panic!("{csv}"));
    assert_eq!(
        (served[column("reads_served")], served[column("reads_denied")]),
        ("1", "1"),
        "{csv}"
    );
    for server in [&mut gongan, &mut scjg, &mut registry] {
        server.kill();
    }
    // An auditor verifies the ledger offline; changing one entry is detected and named.
    let data_dir = work.join("data/node-gongan");
    let out = cli(&["verify-ledger", data_dir.to_str().unwrap()]);
    assert!(
        out.starts_with("ledger verified: 3 entries (2 allowed, 1 denied)"),
        "{out}"
    );
    let ledger_path = data_dir.join("ledger/events");
    let original = std::fs::read_to_string(&ledger_path).unwrap();
    std::fs::write(
        &ledger_path,
        original.replacen("\"decision\":\"deny\"", "\"decision\":\"allow\"", 1),
    )
    .unwrap();
    let (ok, _, stderr) = run_cli(&["verify-ledger", data_dir.to_str().unwrap()]);
    assert!(!ok && stderr.contains("ledger entry 1: changed"), "{stderr}");
    std::fs::write(&ledger_path, original).unwrap();
    let ledger = exchange_node::read_ledger(&data_dir).unwrap();
    let decisions: Vec<(String, String)> = ledger
        .iter()
        .map(|e| (e.event.department.clone(), format!("{:?}", e.event.decision)))
        .collect();
    assert_eq!(
        decisions,
        [
            ("js.scjg".into(), "Allow".into()),
            ("js.scjg".into(), "Deny".into()),
            ("js.gongan".into(), "Allow".into())
        ]
    );
    // The store is the engine's it was meant to be.
    let store = work.join("data/node-gongan/store");
    let marker = if engine == Some("sled") { "conf" } else { "version" };
    assert!(store.join(marker).exists(), "{} has no {marker}", store.display());
    if engine != Some("sled") {
        return;
    }
    // A sled node moved to fjall keeps every entry; the config naming sled is pointed out.
    let convert = || {
        let output = std::process::Command::new(exchange_bin())
            .current_dir(work)
            .args(["node", "--config", "node-gongan.toml", "--convert-store", "fjall"])
            .output()
            .unwrap();
        (
            output.status.success(),
            String::from_utf8_lossy(&output.stdout).into_owned(),
            String::from_utf8_lossy(&output.stderr).into_owned(),
        )
    };
    let (ok, out, stderr) = convert();
    assert!(ok, "{out}\n{stderr}");
    assert!(
        out.contains("from sled to fjall") && out.contains("set it to \"fjall\""),
        "{out}"
    );
    assert!(store.join("version").exists() && work.join("data/node-gongan/store.sled-old/conf").exists());
    let converted = exchange_core::store::open(
        &store,
        exchange_core::store::StoreConfig {
            engine: Some(exchange_core::store::Engine::Fjall),
            ..Default::default()
        },
    )
    .unwrap();
    let records = converted.scan_prefix(b"rec/js.gongan/population\0").unwrap();
    assert_eq!(records.len(), 50, "every record moved");
    drop(converted);
    let (ok, _, stderr) = convert();
    assert!(!ok && stderr.contains("on fjall already"), "{stderr}");
}
