//! The deployment in `deploy/` starts `meridian` only with flags, environment
//! variables and config-file keys that the binary accepts.
//!
//! Flags are collected where deploy/ runs the binary: container `args` lists
//! and JSON patches that append to them (Kubernetes YAML), and command lines
//! that invoke `meridian` (Dockerfile, systemd unit, Packer and Terraform
//! files). Every `MERIDIAN_*` name anywhere in deploy/ must be the variable
//! of a flag, every key of a `meridian.toml` must be a flag's name, and every
//! `meridian.toml` must be accepted by `meridian serve --config`.

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

const MERIDIAN: &str = env!("CARGO_BIN_EXE_meridian");

/// Flags that only exist once replication lands; a config file that sets one
/// is allowed to be refused by a single-region release.
const MULTI_REGION_KEYS: &[&str] = &[
    "peer",
    "witness",
    "policy",
    "lease-ms",
    "repl-backlog-ops",
    "tls-listen",
    "tls-cert",
    "tls-key",
    "tls-ca",
    "tls-auth-clients",
];

fn deploy_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../deploy")
}

fn help(args: &[&str]) -> String {
    let out = Command::new(MERIDIAN)
        .args(args)
        .output()
        .expect("run meridian --help");
    assert!(out.status.success(), "meridian {args:?} failed");
    String::from_utf8(out.stdout).expect("help is UTF-8")
}

/// `--name` of every option line in clap's help output.
fn long_flags(help: &str) -> BTreeSet<String> {
    help.lines()
        .map(str::trim_start)
        .filter_map(|line| {
            let line = line
                .strip_prefix("-")
                .filter(|rest| rest.len() > 2 && rest.as_bytes()[1] == b',')
                .map(|rest| rest[2..].trim_start())
                .unwrap_or(line);
            let name = line.strip_prefix("--")?;
            let end = name
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '-'))
                .unwrap_or(name.len());
            Some(format!("--{}", &name[..end]))
        })
        .collect()
}

/// `MERIDIAN_*` names from clap's `[env: NAME=]` notes (`[env: NAME]` for
/// flags whose values the help hides).
fn env_names(help: &str) -> BTreeSet<String> {
    help.match_indices("[env: ")
        .filter_map(|(at, tag)| {
            let rest = &help[at + tag.len()..];
            rest.find(['=', ']']).map(|end| rest[..end].to_string())
        })
        .collect()
}

fn files_under(dir: &Path, out: &mut Vec<PathBuf>) {
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("reading {}: {e}", dir.display()))
        .map(|entry| entry.expect("directory entry").path())
        .collect();
    entries.sort();
    for path in entries {
        if path.is_dir() {
            if path.file_name().is_some_and(|n| n == ".terraform") {
                continue;
            }
            files_under(&path, out);
        } else {
            out.push(path);
        }
    }
}

/// Where a flag was found and whether it belongs to `meridian serve`
/// (`false`: to `meridian` itself, like `--version`).
struct FlagUse {
    place: String,
    flag: String,
    serve: bool,
}

fn flag_name(token: &str) -> Option<String> {
    let token = token.trim_matches(|c| c == '"' || c == '\'' || c == ',');
    let name = token.strip_prefix("--")?;
    let name = name.split('=').next().unwrap_or(name);
    let valid = !name.is_empty()
        && name.starts_with(|c: char| c.is_ascii_lowercase())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
    valid.then(|| format!("--{name}"))
}

fn is_comment(line: &str) -> bool {
    line.trim_start().starts_with('#')
}

/// Kubernetes YAML: items of an `args:` list, and the `value:` of a JSON
/// patch operation whose path ends in `/args/-` or `/args/<n>`. Any other
/// list item or value that looks like a flag fails the test, so a new way of
/// passing arguments cannot slip past the scan.
fn yaml_flags(place: &str, text: &str, uses: &mut Vec<FlagUse>, strays: &mut Vec<String>) {
    let lines: Vec<&str> = text.lines().collect();
    let mut in_args = false;
    let mut patch_path_is_args = false;
    for (i, raw) in lines.iter().enumerate() {
        if is_comment(raw) {
            continue;
        }
        let line = raw.trim_start();
        let item = line.strip_prefix("- ").map(str::trim);
        if line.starts_with("- op:") {
            patch_path_is_args = false;
        }
        if let Some(path) = line.strip_prefix("path:").map(str::trim) {
            let last = path.rsplit('/').nth(1).unwrap_or("");
            let tail = path.rsplit('/').next().unwrap_or("");
            patch_path_is_args =
                last == "args" && (tail == "-" || tail.chars().all(|c| c.is_ascii_digit()));
        }
        let scalar = if let Some(value) = line.strip_prefix("value:").map(str::trim) {
            let found = value.trim_matches(|c| c == '"' || c == '\'');
            if patch_path_is_args {
                if let Some(flag) = flag_name(found) {
                    uses.push(FlagUse {
                        place: format!("{place}:{}", i + 1),
                        flag,
                        serve: true,
                    });
                }
                continue;
            }
            Some(found)
        } else if in_args {
            match item {
                Some(value) => {
                    if let Some(flag) = flag_name(value) {
                        uses.push(FlagUse {
                            place: format!("{place}:{}", i + 1),
                            flag,
                            serve: true,
                        });
                    }
                    continue;
                }
                None => {
                    in_args = false;
                    None
                }
            }
        } else {
            item
        };
        if line == "args:" || line == "- args:" {
            in_args = true;
            continue;
        }
        if let Some(value) = scalar {
            if value.starts_with("--") {
                strays.push(format!("{place}:{}: {value}", i + 1));
            }
        }
    }
}

/// Command lines that run the binary: a token `meridian` or `.../meridian`
/// in command position, then `serve` and its flags, or flags of `meridian`
/// itself.
fn command_line_flags(place: &str, text: &str, uses: &mut Vec<FlagUse>) {
    for (i, line) in text.lines().enumerate() {
        let tokens: Vec<&str> = line
            .split(|c: char| c.is_whitespace() || c == '[' || c == ']')
            .map(|t| t.trim_matches(|c| c == '"' || c == '\'' || c == ','))
            .filter(|t| !t.is_empty())
            .collect();
        for (at, token) in tokens.iter().enumerate() {
            let program = token.rsplit(['/', '=']).next().unwrap_or(token);
            // Only in command position: a path like /var/lib/meridian given
            // to another program is not an invocation.
            let command_position = at == 0
                || matches!(
                    tokens[at - 1],
                    "&&" | "||" | ";" | "|" | "exec" | "RUN" | "CMD" | "ENTRYPOINT" | "sudo"
                );
            if program != "meridian" || !command_position {
                continue;
            }
            let serve = tokens.get(at + 1) == Some(&"serve");
            let start = at + 1 + usize::from(serve);
            for arg in &tokens[start..] {
                if matches!(*arg, "|" | "&&" | "||" | ";" | "\\") {
                    break;
                }
                if let Some(flag) = flag_name(arg) {
                    uses.push(FlagUse {
                        place: format!("{place}:{}", i + 1),
                        flag,
                        serve,
                    });
                }
            }
        }
    }
}

/// Keys of a meridian.toml, including commented-out `# key = value` lines,
/// which document settings for later releases and must be valid names too.
fn toml_keys(text: &str) -> Vec<(usize, String)> {
    text.lines()
        .enumerate()
        .filter_map(|(i, line)| {
            let line = line.trim_start();
            let line = line.strip_prefix('#').map(str::trim_start).unwrap_or(line);
            let (key, _) = line.split_once('=')?;
            let key = key.trim();
            let valid = !key.is_empty()
                && key
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
            valid.then(|| (i + 1, key.to_string()))
        })
        .collect()
}

fn meridian_env_names(text: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    for (at, _) in text.match_indices("MERIDIAN_") {
        let rest = &text[at..];
        let end = rest
            .find(|c: char| !(c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_'))
            .unwrap_or(rest.len());
        let name = &rest[..end];
        if name.len() > "MERIDIAN_".len() {
            names.insert(name.to_string());
        }
    }
    names
}

struct Scan {
    uses: Vec<FlagUse>,
    strays: Vec<String>,
    env: Vec<(String, String)>,
    tomls: Vec<PathBuf>,
    toml_keys: Vec<(String, String)>,
}

fn scan_deploy() -> Scan {
    let deploy = deploy_dir();
    let mut files = Vec::new();
    files_under(&deploy, &mut files);
    let mut scan = Scan {
        uses: Vec::new(),
        strays: Vec::new(),
        env: Vec::new(),
        tomls: Vec::new(),
        toml_keys: Vec::new(),
    };
    for path in files {
        let Ok(text) = std::fs::read_to_string(&path) else {
            continue;
        };
        let place = path
            .strip_prefix(&deploy)
            .unwrap_or(&path)
            .display()
            .to_string();
        for name in meridian_env_names(&text) {
            scan.env.push((place.clone(), name));
        }
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
        if name.ends_with(".yaml") || name.ends_with(".yml") {
            yaml_flags(&place, &text, &mut scan.uses, &mut scan.strays);
        } else if name.ends_with(".toml") {
            for (line, key) in toml_keys(&text) {
                scan.toml_keys.push((format!("{place}:{line}"), key));
            }
            scan.tomls.push(path.clone());
        } else {
            command_line_flags(&place, &text, &mut scan.uses);
        }
    }
    scan
}

#[test]
fn every_flag_used_in_deploy_is_accepted_by_meridian_serve() {
    let serve_help = help(&["serve", "--help"]);
    let serve_flags = long_flags(&serve_help);
    let top_flags = long_flags(&help(&["--help"]));
    assert!(serve_flags.contains("--peer") && serve_flags.contains("--config"));

    let scan = scan_deploy();
    let unknown: Vec<String> = scan
        .uses
        .iter()
        .filter(|u| {
            let known = if u.serve { &serve_flags } else { &top_flags };
            !known.contains(&u.flag)
        })
        .map(|u| {
            let command = if u.serve {
                "meridian serve"
            } else {
                "meridian"
            };
            format!("{}: {command} {}", u.place, u.flag)
        })
        .collect();
    assert!(
        unknown.is_empty(),
        "flags meridian does not accept: {unknown:#?}"
    );
    assert!(
        scan.strays.is_empty(),
        "flag-like values outside a recognised meridian argument list: {:#?}",
        scan.strays
    );

    // The scan must have seen the places the deployment actually starts
    // meridian, or it proves nothing.
    let used: BTreeSet<_> = scan.uses.iter().map(|u| u.flag.as_str()).collect();
    for expected in [
        "--config",
        "--region",
        "--peer",
        "--witness",
        "--listen",
        "--http",
        "--repl",
        "--data-dir",
    ] {
        assert!(
            used.contains(expected),
            "no use of {expected} found in deploy/: the scan missed a file"
        );
    }
}

#[test]
fn every_meridian_env_var_in_deploy_belongs_to_a_flag() {
    let names = env_names(&help(&["serve", "--help"]));
    assert!(names.contains("MERIDIAN_REQUIREPASS"));
    let scan = scan_deploy();
    let unknown: Vec<_> = scan
        .env
        .iter()
        .filter(|(_, n)| !names.contains(n))
        .collect();
    assert!(
        unknown.is_empty(),
        "MERIDIAN_* names with no flag: {unknown:#?}"
    );
    assert!(
        scan.env.iter().any(|(_, n)| n == "MERIDIAN_REQUIREPASS"),
        "the password should reach meridian through MERIDIAN_REQUIREPASS"
    );
}

#[test]
fn every_meridian_toml_key_in_deploy_is_a_flag_name() {
    let serve_flags = long_flags(&help(&["serve", "--help"]));
    let scan = scan_deploy();
    assert!(
        scan.tomls.len() >= 3,
        "expected the base, cluster and machine-image configs"
    );
    let unknown: Vec<_> = scan
        .toml_keys
        .iter()
        .filter(|(_, key)| key == "config" || !serve_flags.contains(&format!("--{key}")))
        .collect();
    assert!(
        unknown.is_empty(),
        "config keys meridian does not accept: {unknown:#?}"
    );
}

/// Starts `meridian serve --config FILE` on ephemeral loopback ports and
/// returns `Ok` once it listens, or its stderr if it exits first.
fn start_with_config(config: &Path) -> Result<(), String> {
    let data = tempfile::tempdir().expect("temp dir");
    let mut command = Command::new(MERIDIAN);
    command
        .arg("serve")
        .arg("--config")
        .arg(config)
        .args([
            "--listen",
            "127.0.0.1:0",
            "--http",
            "127.0.0.1:0",
            "--repl",
            "127.0.0.1:0",
        ])
        .arg("--data-dir")
        .arg(data.path())
        .env("RUST_BACKTRACE", "0")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (name, _) in std::env::vars() {
        if name.starts_with("MERIDIAN_") {
            command.env_remove(name);
        }
    }
    let mut child = command.spawn().expect("spawn meridian");
    let stdout = child.stdout.take().expect("stdout");
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if line.starts_with("meridian listening") {
                let _ = tx.send(());
                return;
            }
        }
    });
    let started = rx.recv_timeout(Duration::from_secs(20)).is_ok();
    if started {
        child.kill().expect("stop meridian");
        child.wait().expect("reap meridian");
        return Ok(());
    }
    let _ = child.kill();
    child.wait().expect("reap meridian");
    let mut stderr = String::new();
    child
        .stderr
        .take()
        .expect("stderr")
        .read_to_string(&mut stderr)
        .expect("read stderr");
    Err(stderr)
}

#[test]
fn every_meridian_toml_in_deploy_is_accepted_by_meridian_serve() {
    let scan = scan_deploy();
    for config in &scan.tomls {
        let text = std::fs::read_to_string(config).expect("read config");
        let multi_region = toml_keys(&text).iter().any(|(line, key)| {
            MULTI_REGION_KEYS.contains(&key.as_str())
                && !is_comment(text.lines().nth(line - 1).unwrap_or(""))
        });
        match start_with_config(config) {
            Ok(()) => {}
            Err(stderr) => {
                assert!(
                    !stderr.contains("parsing config file"),
                    "{} does not parse: {stderr}",
                    config.display()
                );
                assert!(
                    multi_region,
                    "{} has only single-region settings but meridian did not start: {stderr}",
                    config.display()
                );
            }
        }
    }
}

/// `meridian serve --print-config` shows the settings in force: a flag
/// beats `MERIDIAN_*`, which beats the file; secrets never appear.
#[test]
fn print_config_shows_flags_over_env_over_file() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("meridian.toml");
    std::fs::write(
        &file,
        "region = \"from-file\"\nlease-ms = 4000\nheartbeat-ms = 100\ncluster-secret = \"file-secret\"\npeer = [\"b=10.0.0.2:7381\"]\n",
    )
    .unwrap();
    let out = Command::new(MERIDIAN)
        .args(["serve", "--print-config", "--config"])
        .arg(&file)
        .args(["--lease-ms", "2500"])
        .env("MERIDIAN_LEASE_MS", "9000")
        .env("MERIDIAN_HEARTBEAT_MS", "200")
        .output()
        .expect("run meridian serve --print-config");
    assert!(out.status.success(), "{out:?}");
    let text = String::from_utf8(out.stdout).unwrap();
    for line in [
        "region = \"from-file\"",
        "lease-ms = 2500",
        "heartbeat-ms = 200",
        "peer = [\"b=10.0.0.2:7381\"]",
        "cluster-secret = \"<hidden>\"",
    ] {
        assert!(text.contains(line), "{line:?} missing from\n{text}");
    }
    assert!(!text.contains("file-secret"), "{text}");

    let bad = Command::new(MERIDIAN)
        .args(["serve", "--print-config", "--fsync", "sometimes"])
        .output()
        .unwrap();
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("--fsync"));
}
