//! The workspace's layering, checked from `cargo metadata` and the sources:
//! the daemon links neither the simulator, the WAN emulator nor the tools;
//! the simulator runs the replication crate's own state machines; no crate
//! holds most of the code and no file grows past what a reader can hold.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

/// No crate may hold more than this share of the workspace's Rust lines.
const CRATE_SHARE_MAX_PERCENT: usize = 30;
/// No Rust source file may be longer than this.
const FILE_LINES_MAX: usize = 1_200;

struct Package {
    /// Workspace packages this one depends on, with the dependency kind
    /// (`None` for normal dependencies, `"dev"`, `"build"`).
    deps: Vec<(String, Option<String>)>,
    dir: PathBuf,
}

fn workspace() -> BTreeMap<String, Package> {
    let out = Command::new(env!("CARGO"))
        .args([
            "metadata",
            "--no-deps",
            "--format-version",
            "1",
            "--offline",
        ])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("running cargo metadata");
    assert!(
        out.status.success(),
        "cargo metadata failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let meta: Value = serde_json::from_slice(&out.stdout).expect("cargo metadata JSON");
    let members: BTreeSet<String> = meta["packages"]
        .as_array()
        .expect("packages")
        .iter()
        .map(|p| p["name"].as_str().expect("name").to_string())
        .collect();
    meta["packages"]
        .as_array()
        .expect("packages")
        .iter()
        .map(|p| {
            let deps = p["dependencies"]
                .as_array()
                .expect("dependencies")
                .iter()
                .filter(|d| members.contains(d["name"].as_str().unwrap_or("")))
                .map(|d| {
                    (
                        d["name"].as_str().unwrap_or("").to_string(),
                        d["kind"].as_str().map(str::to_string),
                    )
                })
                .collect();
            let manifest = PathBuf::from(p["manifest_path"].as_str().expect("manifest_path"));
            let dir = manifest.parent().expect("crate dir").to_path_buf();
            (
                p["name"].as_str().unwrap().to_string(),
                Package { deps, dir },
            )
        })
        .collect()
}

/// The workspace packages `name` links when built as a library or binary.
fn normal_closure(ws: &BTreeMap<String, Package>, name: &str) -> BTreeSet<String> {
    let mut seen = BTreeSet::new();
    let mut todo = vec![name.to_string()];
    while let Some(next) = todo.pop() {
        for (dep, kind) in &ws[&next].deps {
            if kind.is_none() && seen.insert(dep.clone()) {
                todo.push(dep.clone());
            }
        }
    }
    seen
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir)
        .expect("reading a crate dir")
        .flatten()
    {
        let path = entry.path();
        if path.is_dir() {
            if path.file_name().is_some_and(|n| n != "target") {
                rust_files(&path, out);
            }
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

fn line_count(path: &Path) -> usize {
    std::fs::read_to_string(path)
        .expect("reading a source file")
        .lines()
        .count()
}

#[test]
fn the_daemon_links_neither_the_simulator_nor_the_emulator_nor_the_tools() {
    let ws = workspace();
    let closure = normal_closure(&ws, "meridian-server");
    for outsider in [
        "meridian-sim",
        "meridian-netem",
        "meridian-tools",
        "meridian-ctl",
    ] {
        assert!(
            !closure.contains(outsider),
            "meridian-server links {outsider}: {closure:?}"
        );
    }
    assert!(closure.contains("meridian-repl"), "{closure:?}");
}

#[test]
fn the_simulator_runs_the_replication_crate() {
    let ws = workspace();
    let closure = normal_closure(&ws, "meridian-sim");
    assert!(closure.contains("meridian-repl"), "{closure:?}");
}

#[test]
fn no_crate_holds_more_than_its_share_and_no_file_is_too_long() {
    let ws = workspace();
    let mut lines_by_crate = BTreeMap::new();
    let mut too_long = Vec::new();
    for (name, package) in &ws {
        let mut files = Vec::new();
        rust_files(&package.dir, &mut files);
        let mut lines = 0;
        for file in files {
            let n = line_count(&file);
            if n > FILE_LINES_MAX {
                too_long.push(format!("{} ({n} lines)", file.display()));
            }
            lines += n;
        }
        lines_by_crate.insert(name.clone(), lines);
    }
    assert!(
        too_long.is_empty(),
        "files over {FILE_LINES_MAX} lines: {too_long:?}"
    );
    let total: usize = lines_by_crate.values().sum();
    for (name, lines) in &lines_by_crate {
        assert!(
            lines * 100 <= total * CRATE_SHARE_MAX_PERCENT,
            "{name} holds {lines} of {total} lines, over {CRATE_SHARE_MAX_PERCENT} %: {lines_by_crate:?}"
        );
    }
}
