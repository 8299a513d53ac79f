//! Records the commit the binary is built from, for `exchange bench`'s report.

use std::process::Command;

fn main() {
    // Re-run when HEAD moves (a commit, a checkout); not on every build.
    for path in ["../.git/HEAD", "../.git/logs/HEAD"] {
        if std::path::Path::new(path).exists() {
            println!("cargo:rerun-if-changed={path}");
        }
    }
    println!("cargo:rerun-if-changed=build.rs");
    let git = |args: &[&str]| {
        Command::new("git")
            .args(args)
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
    };
    if let Some(commit) = git(&["rev-parse", "--short=12", "HEAD"]) {
        println!("cargo:rustc-env=EXCHANGE_BUILD_COMMIT={commit}");
    }
}
