//! The `exchange` binary as a real child process: SIGKILL durability, the quickstart, the CLI.

use std::io::{BufRead as _, BufReader};
use std::process::{Child, Command, Stdio};

use exchange_core::identity::Role;
use exchange_proto::registry::v1 as pb;

use crate::harness::*;

/// A child process that is killed when dropped, so a failing test leaves no server behind.
pub struct Server(Child);

impl Server {
    pub fn new(child: Child) -> Self {
        Self(child)
    }

    /// Whether the process has not exited yet.
    pub fn running(&mut self) -> bool {
        matches!(self.0.try_wait(), Ok(None))
    }

    /// SIGKILLs the process and reaps it.
    pub fn kill(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Starts `exchange registry` and returns it with the address it logged.
fn spawn_registry(config: &std::path::Path) -> (Server, String) {
    spawn_server("registry", config, None)
}

/// Starts `exchange <kind> --config <config>` (in `cwd`, if given) and returns it with the
/// address it logged once serving.
pub fn spawn_server(kind: &str, config: &std::path::Path, cwd: Option<&std::path::Path>) -> (Server, String) {
    let (server, address, _) = spawn_server_logging(kind, config, cwd);
    (server, address)
}

/// [`spawn_server`], also returning what the server logged before it served.
pub fn spawn_server_logging(
    kind: &str,
    config: &std::path::Path,
    cwd: Option<&std::path::Path>,
) -> (Server, String, Vec<serde_json::Value>) {
    let mut command = Command::new(exchange_bin());
    if let Some(cwd) = cwd {
        command.current_dir(cwd);
    }
    let mut child = command
        .args(["--log-json", kind, "--config"])
        .arg(config)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let mut lines = BufReader::new(stderr).lines();
    let mut logged = Vec::new();
    let address = loop {
        let line = lines.next().expect("server exited before serving").unwrap();
        let log: serde_json::Value = serde_json::from_str(&line).unwrap_or_default();
        if let Some(address) = log["fields"]["address"].as_str() {
            break address.to_string();
        }
        logged.push(log);
    };
    // Keep draining stderr so the child never blocks on a full pipe.
    std::thread::spawn(move || for _ in lines {});
    (Server(child), address, logged)
}

/// A registry's configuration file in `dir`, serving on any free port.
fn registry_toml(dir: &std::path::Path) -> std::path::PathBuf {
    let config = registry_config(dir, "127.0.0.1:0".parse().unwrap());
    let config_path = dir.join("registry.toml");
    std::fs::write(
        &config_path,
        format!(
            "listen = \"127.0.0.1:0\"\ndata_dir = {:?}\ntrust_domain = \"{TRUST_DOMAIN}\"\n[tls]\nca = {:?}\ncert = {:?}\nkey = {:?}\n",
            config.data_dir, config.tls.ca, config.tls.cert, config.tls.key
        ),
    )
    .unwrap();
    config_path
}

#[test]
fn a_server_whose_data_dir_others_can_read_says_so_at_start_and_fixes_it() {
    use std::os::unix::fs::PermissionsExt as _;
    let dir = tempfile::tempdir().unwrap();
    make_pki(dir.path());
    let config_path = registry_toml(dir.path());
    // Left by an operator's copy: the directory and sled's blob directory open to everyone.
    let data = dir.path().join("data");
    std::fs::create_dir_all(data.join("blobs")).unwrap();
    for path in [&data, &data.join("blobs")] {
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    let (_server, _, logged) = spawn_server_logging("registry", &config_path, None);
    let warning = logged
        .iter()
        .find(|log| {
            log["level"] == "WARN"
                && log["fields"]["message"]
                    .as_str()
                    .unwrap_or("")
                    .contains("readable by other users")
        })
        .unwrap_or_else(|| panic!("no warning in {logged:?}"));
    assert_eq!(warning["fields"]["count"], 2, "{warning}");
    assert!(
        warning["fields"]["paths"].as_str().unwrap().contains("blobs (755)"),
        "{warning}"
    );
    let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!((mode(&data), mode(&data.join("blobs"))), (0o700, 0o700));
}

#[tokio::test]
async fn a_sigkilled_registry_keeps_every_acknowledged_write() {
    let dir = tempfile::tempdir().unwrap();
    let ca = make_pki(dir.path());
    let config_path = registry_toml(dir.path());
    let (mut child, address) = spawn_registry(&config_path);
    let port = address.rsplit(':').next().unwrap().to_string();
    let ex = ProcessExchange {
        ca,
        endpoint: format!("https://localhost:{port}"),
    };

    let mut admin = ex.client("js.dsj", Role::Admin).await;
    let mut acknowledged = Vec::new();
    for i in 0..20 {
        let id = format!("js.d{i}");
        admin
            .register_department(pb::RegisterDepartmentRequest {
                department: Some(department(&id, pb::Level::Province, "320000", "")),
            })
            .await
            .unwrap();
        acknowledged.push(id);
    }
    let mut owner = ex.client("js.d0", Role::System).await;
    owner
        .register_dataset(pb::RegisterDatasetRequest {
            dataset: Some(dataset("js.d0/people", pb::Classification::Conditional, "id")),
        })
        .await
        .unwrap();
    owner
        .publish_schema(pb::PublishSchemaRequest {
            dataset_id: "js.d0/people".into(),
            schema_json: person_schema().to_string(),
        })
        .await
        .unwrap();
    let mut consumer = ex.client("js.d1", Role::System).await;
    let g = consumer
        .request_grant(grant_request("js.d0/people", &["name"]))
        .await
        .unwrap()
        .into_inner();
    // The registry reviews requests first (its default).
    admin
        .pass_review(pb::DecideGrantRequest {
            grant_id: g.id.clone(),
            reason: String::new(),
        })
        .await
        .unwrap();
    let approved = owner
        .approve_grant(pb::DecideGrantRequest {
            grant_id: g.id.clone(),
            reason: "ok".into(),
        })
        .await
        .unwrap()
        .into_inner();

    // SIGKILL right after the last acknowledgement: no graceful shutdown, no flush on exit.
    child.kill();

    let (mut child, address) = spawn_registry(&config_path);
    let port = address.rsplit(':').next().unwrap().to_string();
    let ex = ProcessExchange {
        ca: ex.ca,
        endpoint: format!("https://localhost:{port}"),
    };
    let mut admin = ex.client("js.dsj", Role::Admin).await;
    let departments = admin
        .list_departments(pb::ListDepartmentsRequest::default())
        .await
        .unwrap()
        .into_inner();
    let mut ids: Vec<String> = departments.departments.into_iter().map(|d| d.id).collect();
    ids.sort();
    acknowledged.sort();
    assert_eq!(ids, acknowledged);
    let people = admin
        .get_dataset(pb::GetDatasetRequest {
            id: "js.d0/people".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(people.latest_version, 1);
    let got = admin
        .get_grant(pb::GetGrantRequest { grant_id: g.id })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(got, approved);
    child.kill();
}

struct ProcessExchange {
    ca: exchange_transport::pki::Ca,
    endpoint: String,
}

impl ProcessExchange {
    async fn client(&self, dept: &str, role: Role) -> Client {
        use exchange_core::identity::Principal;
        use exchange_transport::pki::CertSpec;
        let issued = self
            .ca
            .issue(&CertSpec::for_principal(Principal::new(dept, role), 1))
            .unwrap();
        Client::new(channel_with(&self.ca, &self.endpoint, Some(&issued)).await)
    }
}

/// Runs the CLI as a user's shell would: with the common umask 022, whatever this test process
/// has (servers started in it set 077).
pub fn run_cli(args: &[&str]) -> (bool, String, String) {
    let output = Command::new("sh")
        .args(["-c", "umask 022 && exec \"$0\" \"$@\""])
        .arg(exchange_bin())
        .args(args)
        .output()
        .unwrap();
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

/// Serves the quickstart set up in `qs`; returns it with the registry's URL, once it serves.
pub fn serve_quickstart(qs: &std::path::Path) -> (Server, String) {
    let mut child = Command::new(exchange_bin())
        .args(["quickstart", "--port", "0", "--dir"])
        .arg(qs)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let server = Server(child);
    let mut lines = BufReader::new(stdout).lines();
    let endpoint = loop {
        let line = lines.next().expect("quickstart exited").unwrap();
        if let Some(rest) = line.strip_prefix("Exchange quickstart: a registry is serving mutual TLS on ") {
            break rest.trim().to_string();
        }
    };
    std::thread::spawn(move || for _ in lines {});
    (server, endpoint)
}

#[test]
fn the_quickstart_sets_up_a_working_exchange_and_the_cli_uses_it() {
    let dir = tempfile::tempdir().unwrap();
    let qs = dir.path().join("qs");
    let qs_str = qs.to_str().unwrap();
    let (ok, stdout, stderr) = run_cli(&["quickstart", "--dir", qs_str, "--port", "0", "--exit-after-setup"]);
    assert!(ok, "quickstart failed: {stderr}");
    assert!(stdout.contains("set up on https://localhost:"), "{stdout}");
    assert!(stdout.contains("stopped (--exit-after-setup)"), "{stdout}");
    // The three example reads ran and show what they promise.
    assert!(
        stdout.contains("\"status\":"),
        "the allowed read returned a record:\n{stdout}"
    );
    assert!(
        stdout.contains("\"id_number\":\"32") && stdout.contains("**********"),
        "the masked read is masked:\n{stdout}"
    );
    assert!(
        stdout.contains("permission denied: grant g-000003"),
        "the denied read was denied:\n{stdout}"
    );
    // An auditor's who-read of that resident names both reads, as the registry holds them.
    assert!(
        stdout.contains("auditor.toml audit who-read js.gongan/population 32")
            && stdout.contains("js.scjg get for business-licensing: allow, grant g-")
            && stdout.contains("js.rsj get for social-assistance-review: deny, no grant"),
        "the who-read example shows the shipped reads:\n{stdout}"
    );
    for key in ["pki/ca-key.pem", "pki/js.dsj-admin-key.pem"] {
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(qs.join(key)).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "{key}");
    }

    // Serve it again (state is kept) and use the CLI with the written profiles.
    let (mut server, endpoint) = serve_quickstart(&qs);
    let admin = qs.join("profiles/admin.toml");
    let admin = admin.to_str().unwrap();
    let with = |profile: &str, args: &[&str]| {
        let mut all = vec!["--profile", profile, "--registry", &endpoint];
        all.extend_from_slice(args);
        run_cli(&all)
    };
    let (ok, stdout, stderr) = with(admin, &["--json", "dept", "list"]);
    assert!(ok, "{stderr}");
    let departments: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    let ids: Vec<&str> = departments["departments"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["id"].as_str().unwrap())
        .collect();
    assert!(ids.contains(&"js.gongan") && ids.contains(&"js.nj.gongan"), "{ids:?}");
    let city = departments["departments"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["id"] == "js.nj.gongan")
        .unwrap();
    assert_eq!(city["level"], "LEVEL_CITY");

    // An auditor's questions through the CLI: the example reads, shipped and searchable.
    let auditor = qs.join("profiles/auditor.toml");
    let auditor = auditor.to_str().unwrap();
    let (ok, stdout, stderr) = with(
        auditor,
        &["audit", "query", "--provider", "js.gongan", "--decision", "deny"],
    );
    assert!(
        ok && stdout.contains("js.rsj") && stdout.contains("js.gongan#"),
        "{stdout}{stderr}"
    );
    let (ok, stdout, stderr) = with(auditor, &["audit", "report", "--by", "consumer"]);
    assert!(ok && stdout.contains("js.scjg"), "{stdout}{stderr}");
    let (ok, stdout, stderr) = with(
        admin,
        &["audit", "query", "--provider", "registry", "--consumer", "js.dsj"],
    );
    assert!(
        ok && stdout.contains("search_audit_events"),
        "the auditor's question is on the record: {stdout}{stderr}"
    );
    let (ok, _, stderr) = with(
        &qs.join("profiles/js.scjg.toml").to_string_lossy(),
        &["audit", "query", "--consumer", "js.scjg"],
    );
    assert!(!ok && stderr.contains("only admins and auditors"), "{stderr}");

    let (ok, stdout, stderr) = with(admin, &["dataset", "search"]);
    assert!(ok, "{stderr}");
    for id in [
        "js.gongan/population",
        "js.scjg/legal-persons",
        "js.zrzy/places",
        "js.swj/tax-registrations",
        "js.rsj/social-insurance",
    ] {
        assert!(stdout.contains(id), "{id} missing from\n{stdout}");
    }
    let gongan = qs.join("profiles/js.gongan.toml");
    let (ok, stdout, stderr) = with(gongan.to_str().unwrap(), &["grant", "list", "--state", "requested"]);
    assert!(ok, "{stderr}");
    assert!(
        stdout.contains("js.rsj") && stdout.contains("social-assistance-review"),
        "{stdout}"
    );

    // A person's mistake gets a message they can act on, and a failing exit code.
    let (ok, _, stderr) = with(
        admin,
        &[
            "dept", "register", "--id", "js.x", "--name", "X", "--level", "province", "--region", "12345",
        ],
    );
    assert!(!ok);
    assert!(stderr.contains("invalid argument: field \"region_code\""), "{stderr}");
    let auditor = qs.join("profiles/auditor.toml");
    let (ok, _, stderr) = with(auditor.to_str().unwrap(), &["grant", "approve", "g-000003"]);
    assert!(!ok);
    assert!(stderr.contains("permission denied"), "{stderr}");

    // A schema version, by number.
    let (ok, stdout, stderr) = with(admin, &["schema", "get", "js.gongan/population", "--version", "1"]);
    assert!(ok, "{stderr}");
    assert!(stdout.contains("id_number"), "{stdout}");
    // An update changes only what it names: the parent and the node URL stay.
    let (ok, _, stderr) = with(
        admin,
        &["dept", "update", "--id", "js.nj.gongan", "--name", "南京市公安局（新）"],
    );
    assert!(ok, "{stderr}");
    let (_, stdout, _) = with(admin, &["--json", "dept", "get", "js.nj.gongan"]);
    let city: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(
        (city["name"].as_str(), city["parentId"].as_str()),
        (Some("南京市公安局（新）"), Some("js.gongan"))
    );
    // A registry URL given as a node's says so.
    let (ok, _, stderr) = with(admin, &["--node", &endpoint, "status"]);
    assert!(
        !ok && stderr.contains("is --node pointing at a department's node"),
        "{stderr}"
    );
    // A read goes only to the owner's node: another server is refused before anything is sent.
    let (ok, _, stderr) = with(
        admin,
        &[
            "--node",
            &endpoint,
            "get",
            "js.gongan/population",
            "x",
            "--purpose",
            "audit",
        ],
    );
    assert!(
        !ok && stderr
            .contains("names spiffe://exchange.local/registry, not spiffe://exchange.local/dept/js.gongan/node"),
        "{stderr}"
    );
    // An auditor's typo in a path is an error, not an empty ledger that verifies.
    let (ok, _, stderr) = run_cli(&["verify-ledger", qs.join("no-such-node").to_str().unwrap()]);
    assert!(!ok && stderr.contains("no audit ledger at"), "{stderr}");

    // Node commands: publish NDJSON with a reject file, publish CSV, get, query, status.
    let node_of = |dept: &str| -> String {
        let profile: toml::Value =
            toml::from_str(&std::fs::read_to_string(qs.join(format!("profiles/{dept}.toml"))).unwrap()).unwrap();
        profile["node"].as_str().unwrap().to_string()
    };
    let gongan_node = node_of("js.gongan");
    let gongan_profile = gongan.to_str().unwrap();
    let ndjson = dir.path().join("people.ndjson");
    let first17 = "32010220000101001";
    let good_id = format!(
        "{first17}{}",
        exchange_core::formats::id_number_check_char(first17).unwrap()
    );
    std::fs::write(
        &ndjson,
        format!(
            "{{\"id_number\":\"{good_id}\",\"name\":\"测试\",\"gender\":\"male\",\"birth_date\":\"2000-01-01\",\"household_register_region\":\"320102\",\"updated_at\":\"2026-11-01T00:00:00Z\"}}\n{{\"id_number\":\"320102200001010010\",\"name\":\"坏\",\"gender\":\"x\",\"birth_date\":\"2000-13-01\",\"household_register_region\":\"320102\",\"updated_at\":\"2026-11-01T00:00:00Z\"}}\n"
        ),
    )
    .unwrap();
    let (ok, stdout, stderr) = with(
        gongan_profile,
        &[
            "--node",
            &gongan_node,
            "publish",
            "js.gongan/population",
            ndjson.to_str().unwrap(),
        ],
    );
    assert!(!ok, "a rejected line makes publish fail");
    assert!(stdout.contains("1 stored, 1 rejected"), "{stdout}\n{stderr}");
    let rejects_path = dir.path().join("people.ndjson.rejects.ndjson");
    // It holds the rejected records, personal data and all: for its writer only.
    let mode = std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(&rejects_path).unwrap().permissions());
    assert_eq!(mode & 0o777, 0o600);
    let rejects = std::fs::read_to_string(&rejects_path).unwrap();
    let reject: serde_json::Value = serde_json::from_str(rejects.lines().next().unwrap()).unwrap();
    assert_eq!(reject["line"], 2);
    let pointers: Vec<&str> = reject["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["pointer"].as_str().unwrap())
        .collect();
    for pointer in ["/id_number", "/gender", "/birth_date"] {
        assert!(pointers.contains(&pointer), "{pointer} missing from {reject}");
    }

    let csv = dir.path().join("places.csv");
    std::fs::write(
        &csv,
        "place_id,name,category,region_code,longitude,latitude,area_sq_m\n320102-900001,测试地块,land_parcel,320102,118.8,32.05,1200\n320102-900002,测试公园,park,320102,118.81,32.06,\n320102-900003,短行,park\n",
    )
    .unwrap();
    let zrzy = qs.join("profiles/js.zrzy.toml");
    let (ok, stdout, stderr) = with(
        zrzy.to_str().unwrap(),
        &["publish", "js.zrzy/places", csv.to_str().unwrap()],
    );
    // A short row is rejected with the others going on.
    assert!(!ok && stderr.contains("1 record was rejected"), "{stdout}\n{stderr}");
    assert!(stdout.contains("2 stored, 1 rejected"), "{stdout}");
    let rejects = std::fs::read_to_string(dir.path().join("places.csv.rejects.ndjson")).unwrap();
    assert!(
        rejects.contains("\"line\":4") && rejects.contains("the row has 3 cells; the header has 7"),
        "{rejects}"
    );
    // A misspelt header is named once, before anything is sent.
    std::fs::write(&csv, "PLACE_ID,name\n320102-900004,x\n").unwrap();
    let (ok, _, stderr) = with(
        zrzy.to_str().unwrap(),
        &["publish", "js.zrzy/places", csv.to_str().unwrap()],
    );
    assert!(
        !ok && stderr.contains("unknown columns PLACE_ID; the dataset's fields are"),
        "{stderr}"
    );

    let scjg = qs.join("profiles/js.scjg.toml");
    let get_names = |keys: &[&str]| {
        let mut args = vec!["--node", &gongan_node, "get", "js.gongan/population"];
        args.extend_from_slice(keys);
        args.extend(["--fields", "name", "--purpose", "business-licensing"]);
        with(scjg.to_str().unwrap(), &args)
    };
    let (ok, stdout, stderr) = get_names(&[&good_id]);
    assert!(ok, "{stderr}");
    let record: serde_json::Value = serde_json::from_str(stdout.trim()).unwrap();
    assert_eq!(record["name"], "测*");
    // A key not found fails the command after what was found is written.
    let (ok, stdout, stderr) = get_names(&[&good_id, "320102199001010000"]);
    assert!(
        !ok && stderr.contains("not found or not visible under your grant: 320102199001010000"),
        "{stderr}"
    );
    assert_eq!(stdout.lines().count(), 1, "{stdout}");
    let (ok, stdout, stderr) = with(
        scjg.to_str().unwrap(),
        &[
            "--node",
            &gongan_node,
            "query",
            "js.gongan/population",
            "--filter",
            "household_register_region = \"320102\"",
            "--fields",
            "name",
            "--purpose",
            "business-licensing",
        ],
    );
    assert!(ok, "{stderr}");
    assert!(stdout.lines().count() >= 1);
    assert!(
        stdout.contains(&format!("3201**********{}", &good_id[14..])),
        "{stdout}"
    );
    let (ok, stdout, stderr) = with(gongan_profile, &["status"]);
    assert!(ok, "{stderr}");
    assert!(
        stdout.contains("connected, current") && stdout.contains("js.gongan/population"),
        "{stdout}"
    );
    let (ok, stdout, stderr) = with(gongan_profile, &["status", "--prometheus"]);
    assert!(ok, "{stderr}");
    assert!(
        stdout.contains("exchange_node_registry_view_current{department=\"js.gongan\"} 1"),
        "{stdout}"
    );
    // 200 sample residents and the one published above.
    assert!(
        stdout.contains("exchange_node_dataset_records{department=\"js.gongan\",dataset=\"js.gongan/population\"} 201"),
        "{stdout}"
    );

    server.kill();
}

/// `exchange bench` at a tiny size, so that it cannot rot: every row of the issue's table is
/// measured (a figure for each), whatever the speed; BENCHMARKS.md's other content is kept.
#[test]
fn the_bench_measures_every_row() {
    let dir = tempfile::tempdir().unwrap();
    let report = dir.path().join("BENCHMARKS.md");
    std::fs::write(&report, "# Benchmarks\n\nEarlier runs, kept.\n").unwrap();
    let json = dir.path().join("bench.json");
    let (ok, stdout, stderr) = run_cli(&[
        "--log",
        "error",
        "bench",
        "--seconds",
        "0.5",
        "--records",
        "2000",
        "--events",
        "3000",
        "--watchers",
        "3",
        "--samples",
        "3",
        "--dir",
        dir.path().to_str().unwrap(),
        "--report",
        report.to_str().unwrap(),
        "--json-report",
        json.to_str().unwrap(),
    ]);
    assert!(ok, "bench failed:\n{stdout}\n{stderr}");
    let rows: serde_json::Value = serde_json::from_slice(&std::fs::read(&json).unwrap()).unwrap();
    let rows = rows["rows"].as_array().unwrap();
    let numbers: Vec<u64> = rows.iter().map(|r| r["number"].as_u64().unwrap()).collect();
    assert_eq!(numbers, (1..=9).collect::<Vec<_>>(), "{stdout}");
    for row in rows {
        let figures = row["figures"].as_object().unwrap();
        assert!(!figures.is_empty(), "row {} has no figures", row["number"]);
        for (name, value) in figures {
            let value = value.as_f64().unwrap();
            assert!(value.is_finite(), "row {} {name} = {value}", row["number"]);
        }
        assert!(!row["measured"].as_str().unwrap().is_empty());
    }
    // Rates were measured, not left at zero.
    let figure = |row: usize, name: &str| rows[row - 1]["figures"][name].as_f64().unwrap();
    for (row, name) in [
        (1, "requests_per_s"),
        (1, "baseline_requests_per_s"),
        (2, "masked_records_per_s"),
        (2, "baseline_records_per_s"),
        (3, "records_per_s"),
        (3, "baseline_records_per_s"),
        (4, "ledger_off_requests_per_s"),
        (5, "full_scan_ms"),
        (6, "p99_ms"),
        (7, "idle_mib"),
        (8, "written_events_per_s"),
        (9, "watched_p99_ms"),
    ] {
        assert!(figure(row, name) > 0.0, "row {row} {name} is 0:\n{stdout}");
    }
    let text = std::fs::read_to_string(&report).unwrap();
    assert!(text.contains("| 9 | a grant decision"), "{text}");
    assert!(text.trim_end().ends_with("Earlier runs, kept."), "{text}");
    // The bench's data went with it.
    let left: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .filter(|n| n.to_string_lossy().starts_with("exchange-bench-"))
        .collect();
    assert!(left.is_empty(), "{left:?}");
}

#[test]
fn the_bulk_bench_measures_both_engines_and_keeps_the_report() {
    let dir = tempfile::tempdir().unwrap();
    let report = dir.path().join("BENCHMARKS.md");
    std::fs::write(&report, "# Benchmarks\n\nEarlier runs, kept.\n").unwrap();
    let json = dir.path().join("bulk.json");
    let (ok, stdout, stderr) = run_cli(&[
        "--log",
        "error",
        "bench",
        "--bulk",
        "3000",
        "--bulk-compare",
        "2000",
        "--dir",
        dir.path().to_str().unwrap(),
        "--report",
        report.to_str().unwrap(),
        "--json-report",
        json.to_str().unwrap(),
    ]);
    assert!(ok, "bench --bulk failed:\n{stdout}\n{stderr}");
    let bulk: serde_json::Value = serde_json::from_slice(&std::fs::read(&json).unwrap()).unwrap();
    let runs: Vec<(String, u64)> = bulk["bulk"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            (
                m["engine"].as_str().unwrap().to_string(),
                m["records"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        runs,
        vec![("fjall".into(), 2000), ("sled".into(), 2000), ("fjall".into(), 3000)]
    );
    for m in bulk["bulk"].as_array().unwrap() {
        for figure in [
            m["import"]["seconds"].as_f64(),
            m["import"]["node_peak_mib"].as_f64(),
            m["export"]["seconds"].as_f64(),
            m["disk_bytes"].as_f64(),
            m["restart_to_first_read_seconds"].as_f64(),
            m["stream_records_per_s"].as_f64(),
        ] {
            assert!(figure.unwrap() > 0.0, "{m}");
        }
    }
    let text = std::fs::read_to_string(&report).unwrap();
    assert!(text.contains("## The latest run of `exchange bench --bulk`"), "{text}");
    assert!(text.contains("Earlier runs, kept."), "{text}");
}
