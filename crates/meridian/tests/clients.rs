//! Unmodified Redis clients against the real binary: redis-cli (Debian's
//! redis-tools) and redis-py. `scripts/test` installs both; a missing one
//! fails the test instead of skipping it.

mod common;

use std::process::Command;

use common::Meridian;

fn redis_cli(m: &Meridian, args: &[&str]) -> String {
    let out = Command::new("redis-cli")
        .args(["-h", "127.0.0.1", "-p", &m.resp.port().to_string()])
        .args(args)
        .output()
        .expect("redis-cli not found: run scripts/test, which installs redis-tools");
    assert!(out.status.success(), "redis-cli {args:?} failed: {out:?}");
    String::from_utf8(out.stdout)
        .unwrap()
        .trim_end()
        .to_string()
}

#[test]
fn redis_cli_works_unchanged() {
    let m = Meridian::start(&[]);
    assert_eq!(redis_cli(&m, &["PING"]), "PONG");
    assert_eq!(redis_cli(&m, &["SET", "greeting", "hello world"]), "OK");
    assert_eq!(redis_cli(&m, &["GET", "greeting"]), "hello world");
    assert_eq!(redis_cli(&m, &["INCRBY", "visits", "41"]), "41");
    assert_eq!(redis_cli(&m, &["INCR", "visits"]), "42");
    assert_eq!(redis_cli(&m, &["GET", "nothing"]), "");
    // RESP3 through redis-cli's -3 flag.
    let out = Command::new("redis-cli")
        .args(["-3", "-p", &m.resp.port().to_string(), "GET", "visits"])
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "42");
    // Pipe mode: raw RESP in, replies counted by redis-cli itself.
    let mut child = Command::new("redis-cli")
        .args(["-p", &m.resp.port().to_string(), "--pipe"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    {
        use std::io::Write;
        let stdin = child.stdin.as_mut().unwrap();
        for i in 0..1000 {
            let (k, v) = (format!("pipe:{i}"), i.to_string());
            write!(
                stdin,
                "*3\r\n$3\r\nSET\r\n${}\r\n{k}\r\n${}\r\n{v}\r\n",
                k.len(),
                v.len()
            )
            .unwrap();
        }
    }
    let out = child.wait_with_output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("errors: 0, replies: 1000"), "{text}");
    assert_eq!(redis_cli(&m, &["GET", "pipe:999"]), "999");
}

#[test]
fn redis_py_works_unchanged() {
    let m = Meridian::start(&[]);
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/clients/redis_py_check.py"
    );
    let out = Command::new("python3")
        .arg(script)
        .arg(m.resp.port().to_string())
        .output()
        .expect("python3");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "redis-py check failed:\n{stdout}\n{stderr}"
    );
    println!("{stdout}");
}

/// redis-py's `Lock` (acquire, extend, reacquire, release: Lua scripts run
/// by EVALSHA) works unchanged.
#[test]
fn redis_py_lock_works_unchanged() {
    let m = Meridian::start(&[]);
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/clients/redis_py_lock.py"
    );
    let out = Command::new("python3")
        .arg(script)
        .arg(m.resp.port().to_string())
        .output()
        .expect("python3");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "redis-py Lock check failed:\n{stdout}\n{stderr}"
    );
    println!("{stdout}");
}
