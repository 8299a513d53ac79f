//! Bulk data through the real binary: a generated file imported with the client killed and the
//! node restarted mid-import, then resumed; an export killed and resumed; a subscription's file
//! resumed. Each line and record exactly once, the client's memory bounded by a few batches.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::harness::exchange_bin;
use crate::process::{run_cli, serve_quickstart, Server};

const LINES: usize = 60_000;
const BATCH: usize = 100;
const IN_FLIGHT: usize = 2;

struct Exchange {
    qs: PathBuf,
    endpoint: String,
}

impl Exchange {
    fn args(&self, dept: &str, args: &[&str]) -> Vec<String> {
        let profile = self.qs.join(format!("profiles/{dept}.toml"));
        let mut all = vec![
            "--profile".to_string(),
            profile.to_str().unwrap().to_string(),
            "--registry".to_string(),
            self.endpoint.clone(),
        ];
        all.extend(args.iter().map(|a| a.to_string()));
        all
    }

    fn run(&self, dept: &str, args: &[&str]) -> (bool, String, String) {
        let all = self.args(dept, args);
        run_cli(&all.iter().map(String::as_str).collect::<Vec<_>>())
    }

    /// Starts a command in the background.
    fn spawn(&self, dept: &str, args: &[&str]) -> Server {
        Server::new(
            Command::new(exchange_bin())
                .args(self.args(dept, args))
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .unwrap(),
        )
    }
}

fn state(path: &Path) -> Option<Value> {
    serde_json::from_slice(&std::fs::read(path).ok()?).ok()
}

/// Waits until the state file at `path` says `count(state) >= at_least`, the command `child` still
/// running; panics if it ended first (it would then not be interrupted at all).
fn wait_for_progress(child: &mut Server, path: &Path, count: &str, at_least: u64) -> u64 {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        if let Some(n) = state(path).and_then(|s| s[count].as_u64()) {
            if n >= at_least {
                return n;
            }
        }
        assert!(
            child.running(),
            "the command ended before it could be interrupted (state {:?})",
            state(path)
        );
        assert!(Instant::now() < deadline, "no progress: {:?}", state(path));
        std::thread::sleep(Duration::from_millis(5));
    }
}

#[test]
fn an_import_and_an_export_interrupted_and_resumed_handle_every_line_once() {
    let dir = tempfile::tempdir().unwrap();
    let qs = dir.path().join("qs");
    let (ok, _, stderr) = run_cli(&[
        "quickstart",
        "--dir",
        qs.to_str().unwrap(),
        "--port",
        "0",
        "--exit-after-setup",
    ]);
    assert!(ok, "{stderr}");
    let (mut server, endpoint) = serve_quickstart(&qs);
    let mut ex = Exchange {
        qs: qs.clone(),
        endpoint,
    };

    let file = dir.path().join("people.ndjson");
    let (ok, _, stderr) = run_cli(&[
        "gen",
        "population",
        "--count",
        &LINES.to_string(),
        "--out",
        file.to_str().unwrap(),
    ]);
    assert!(ok, "{stderr}");
    let import_state = dir.path().join("people.ndjson.import-state.json");
    let batch = BATCH.to_string();
    let in_flight = IN_FLIGHT.to_string();
    let publish = |resume: bool| -> Vec<&str> {
        let mut args = vec![
            "publish",
            "js.gongan/population",
            file.to_str().unwrap(),
            "--batch",
            &batch,
            "--in-flight",
            &in_flight,
        ];
        if resume {
            args.push("--resume");
        }
        args
    };

    // The client SIGKILLed mid-file.
    let mut client = ex.spawn("js.gongan", &publish(false));
    let first = wait_for_progress(&mut client, &import_state, "batches", 3);
    client.kill();
    // Run again without --resume: refused, saying how to go on.
    let (ok, _, stderr) = ex.run("js.gongan", &publish(false));
    assert!(!ok && stderr.contains("go on with --resume"), "{stderr}");

    // Resumed, then the whole exchange (the node with it) SIGKILLed mid-file.
    let mut client = ex.spawn("js.gongan", &publish(true));
    wait_for_progress(&mut client, &import_state, "batches", first + 3);
    server.kill();
    let deadline = Instant::now() + Duration::from_secs(60);
    while client.running() {
        assert!(Instant::now() < deadline, "the client did not notice the node was gone");
        std::thread::sleep(Duration::from_millis(20));
    }
    let stopped_at = state(&import_state).expect("the state is kept")["line"]
        .as_u64()
        .unwrap();
    assert!(stopped_at < LINES as u64, "interrupted mid-file at line {stopped_at}");

    // Served again, resumed to the end: every line stored once, in order.
    let (server, endpoint) = serve_quickstart(&qs);
    ex.endpoint = endpoint;
    let _server = server;
    let (ok, stdout, stderr) = ex.run("js.gongan", &{
        let mut args = vec!["--json"];
        args.extend(publish(true));
        args
    });
    assert!(ok, "{stdout}\n{stderr}");
    let summary: Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(
        summary["accepted"], LINES as u64,
        "the summary counts the whole file: {summary}"
    );
    assert_eq!(summary["last_line"], LINES as u64);
    assert_eq!(summary["rejected"], 0);
    // The client held a few batches, not the file.
    let held = summary["lines_held_at_most"].as_u64().unwrap();
    assert!(held <= ((IN_FLIGHT + 3) * BATCH) as u64, "held {held} lines at once");
    assert!(!import_state.exists(), "a finished import leaves no state");
    assert!(
        !dir.path().join("people.ndjson.rejects.ndjson").exists(),
        "no rejects file when nothing was rejected"
    );
    let (ok, stdout, stderr) = ex.run("js.gongan", &["--json", "status"]);
    assert!(ok, "{stderr}");
    let status: Value = serde_json::from_str(&stdout).unwrap();
    let population = status["datasets"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["datasetId"] == "js.gongan/population")
        .unwrap()
        .clone();
    // The quickstart's 200 residents are the file's first 200 (the same generator): updated.
    assert_eq!(population["records"], LINES.to_string(), "{population}");
    assert_eq!(
        population["lastSequence"],
        (200 + LINES).to_string(),
        "a change per line, none twice: {population}"
    );

    // An export (following page tokens) SIGKILLed, then resumed.
    let out = dir.path().join("export.ndjson");
    let export_state = dir.path().join("export.ndjson.export-state.json");
    let export = |resume: bool| -> Vec<&str> {
        let mut args = vec![
            "export",
            "js.gongan/population",
            "--out",
            out.to_str().unwrap(),
            "--purpose",
            "internal-check",
            "--page",
            "7000",
        ];
        if resume {
            args.push("--resume");
        }
        args
    };
    let mut client = ex.spawn("js.gongan", &export(false));
    wait_for_progress(&mut client, &export_state, "records", 1);
    client.kill();
    let (ok, stdout, stderr) = ex.run("js.gongan", &export(true));
    assert!(ok && stdout.contains("resumed after"), "{stdout}\n{stderr}");
    let text = std::fs::read_to_string(&out).unwrap();
    let ids: Vec<String> = text
        .lines()
        .map(|l| {
            serde_json::from_str::<Value>(l).unwrap()["id_number"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect();
    assert_eq!(ids.len(), LINES, "every record once");
    assert!(ids.windows(2).all(|w| w[0] < w[1]), "in key order, none twice");
    assert!(!export_state.exists());

    // A subscription into a file, stopped and resumed after its last cursor.
    let feed = dir.path().join("feed.ndjson");
    let subscribe = |resume: bool| -> Vec<&str> {
        let mut args = vec![
            "subscribe",
            "js.gongan/population",
            "--out",
            feed.to_str().unwrap(),
            "--purpose",
            "internal-check",
        ];
        if resume {
            args.push("--resume");
        }
        args
    };
    let lines_in = |path: &Path| std::fs::read_to_string(path).map_or(0, |t| t.lines().count());
    let mut follower = ex.spawn("js.gongan", &subscribe(false));
    let deadline = Instant::now() + Duration::from_secs(60);
    while lines_in(&feed) < 1000 {
        assert!(Instant::now() < deadline && follower.running());
        std::thread::sleep(Duration::from_millis(5));
    }
    follower.kill();
    let mut follower = ex.spawn("js.gongan", &subscribe(true));
    // The quickstart's 200, then one change per line of the file.
    let every_change = 200 + LINES;
    let deadline = Instant::now() + Duration::from_secs(120);
    while lines_in(&feed) < every_change {
        assert!(
            Instant::now() < deadline && follower.running(),
            "{} lines",
            lines_in(&feed)
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    follower.kill();
    let cursors: Vec<u64> = std::fs::read_to_string(&feed)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap()["cursor"].as_u64().unwrap())
        .collect();
    assert_eq!(cursors.len(), every_change);
    assert!(
        cursors.windows(2).all(|w| w[1] == w[0] + 1),
        "each change once, in order"
    );
}
