//! INFO as Redis 7.0 clients read it: the sections and which of them the
//! default, `all` and `everything` sets print, several sections in one
//! call, and the command and error statistics (calls, time, rejected and
//! failed calls, per subcommand; errors by code), which CONFIG RESETSTAT
//! clears.

mod common;

use common::{Conn, Meridian};
use meridian_resp::Frame;

fn info(c: &mut Conn, args: &[&str]) -> String {
    let mut cmd = vec!["INFO"];
    cmd.extend_from_slice(args);
    match c.cmd(&cmd) {
        Frame::Bulk(b) => String::from_utf8_lossy(&b).into_owned(),
        Frame::Verbatim { text, .. } => String::from_utf8_lossy(&text).into_owned(),
        other => panic!("INFO replied {other:?}"),
    }
}

fn titles(text: &str) -> Vec<&str> {
    text.lines()
        .filter_map(|l| l.strip_prefix("# "))
        .map(|t| t.trim_end())
        .collect()
}

fn field(text: &str, name: &str) -> Option<String> {
    text.lines()
        .find_map(|l| l.strip_prefix(&format!("{name}:")))
        .map(|v| v.trim_end().to_string())
}

const DEFAULT: &[&str] = &[
    "Server",
    "Clients",
    "Memory",
    "Persistence",
    "Stats",
    "Replication",
    "CPU",
    "Modules",
    "Errorstats",
    "Cluster",
    "Meridian",
    "Keyspace",
];

#[test]
fn sections_are_chosen_as_redis_7_chooses_them() {
    let m = Meridian::start(&[]);
    let mut c = m.conn();
    assert_eq!(titles(&info(&mut c, &[])), DEFAULT);
    assert_eq!(titles(&info(&mut c, &["default"])), DEFAULT);
    let mut all = DEFAULT.to_vec();
    all.insert(8, "Commandstats");
    assert_eq!(titles(&info(&mut c, &["all"])), all);
    assert_eq!(titles(&info(&mut c, &["everything"])), all);
    assert_eq!(titles(&info(&mut c, &["cpu", "all"])), all);

    assert_eq!(
        titles(&info(&mut c, &["CPU", "nosuch", "commandSTATS", "server"])),
        ["Server", "CPU", "Commandstats"]
    );
    assert_eq!(titles(&info(&mut c, &["cpu", "default"])), DEFAULT);
    assert_eq!(titles(&info(&mut c, &["nosuch"])), Vec::<&str>::new());

    let text = info(&mut c, &[]);
    assert_eq!(field(&text, "cluster_enabled").as_deref(), Some("0"));
    assert_eq!(field(&text, "mem_allocator").as_deref(), Some("libc"));
    assert_eq!(field(&text, "migrate_cached_sockets").as_deref(), Some("0"));
    assert!(field(&text, "used_cpu_user_children").is_some());
    assert!(field(&text, "master_repl_offset").is_some());
    assert!(!text.contains("rejected_calls"));
}

#[test]
fn command_stats_count_calls_rejections_and_failures() {
    let m = Meridian::start(&[]);
    let mut c = m.conn();
    assert_eq!(c.line("CONFIG RESETSTAT"), Frame::Simple("OK".into()));
    c.line("SET k v");
    c.line("SET k2 v2");
    assert!(c.line("SET k").is_error());
    assert!(c.line("INCR k").is_error());
    c.line("CLIENT ID");
    assert!(c.line("CLIENT KILL").is_error());
    assert!(c.line("CLIENT NOSUCH").is_error());
    assert!(c.line("NOSUCHCOMMAND").is_error());

    let text = info(&mut c, &["commandstats"]);
    let set = field(&text, "cmdstat_set").expect("cmdstat_set");
    assert!(
        set.starts_with("calls=2,usec=") && set.ends_with(",rejected_calls=1,failed_calls=0"),
        "{set}"
    );
    let incr = field(&text, "cmdstat_incr").expect("cmdstat_incr");
    assert!(incr.ends_with("rejected_calls=0,failed_calls=1"), "{incr}");
    assert!(field(&text, "cmdstat_client|id")
        .expect("cmdstat_client|id")
        .starts_with("calls=1,"));
    let kill = field(&text, "cmdstat_client|kill").expect("cmdstat_client|kill");
    assert!(
        kill.starts_with("calls=0,") && kill.contains("rejected_calls=1"),
        "{kill}"
    );
    assert!(field(&text, "cmdstat_client").is_none());

    let errors = info(&mut c, &["errorstats"]);
    assert_eq!(field(&errors, "errorstat_ERR").as_deref(), Some("count=5"));
    let stats = info(&mut c, &["stats"]);
    assert_eq!(field(&stats, "total_error_replies").as_deref(), Some("5"));

    assert_eq!(c.line("CONFIG RESETSTAT"), Frame::Simple("OK".into()));
    let text = info(&mut c, &["commandstats", "errorstats"]);
    assert!(field(&text, "cmdstat_set").is_none(), "{text}");
    assert!(field(&text, "errorstat_ERR").is_none(), "{text}");
}

#[test]
fn commands_inside_exec_are_counted_as_called() {
    let m = Meridian::start(&[]);
    let mut c = m.conn();
    c.line("SET s text");
    c.line("CONFIG RESETSTAT");
    c.line("MULTI");
    c.line("SET k v");
    c.line("LCS s k");
    c.line("HSET s f v");
    let replies = c.line("EXEC");
    let Frame::Array(items) = replies else {
        panic!("EXEC replied {replies:?}");
    };
    assert!(items[2].is_error());
    let text = info(&mut c, &["commandstats", "errorstats"]);
    assert!(field(&text, "cmdstat_set").unwrap().starts_with("calls=1,"));
    assert!(field(&text, "cmdstat_hset")
        .unwrap()
        .ends_with("rejected_calls=0,failed_calls=1"));
    assert!(field(&text, "cmdstat_exec")
        .unwrap()
        .ends_with("rejected_calls=0,failed_calls=0"));
    assert_eq!(
        field(&text, "errorstat_WRONGTYPE").as_deref(),
        Some("count=1")
    );

    // A queueing error aborts the block: EXEC fails, the command is rejected.
    c.line("MULTI");
    assert!(c.line("SET k").is_error());
    assert!(c.line("EXEC").is_error());
    let text = info(&mut c, &["commandstats", "errorstats"]);
    assert!(field(&text, "cmdstat_exec")
        .unwrap()
        .ends_with("rejected_calls=0,failed_calls=1"));
    assert_eq!(
        field(&text, "errorstat_EXECABORT").as_deref(),
        Some("count=1")
    );
}

#[test]
fn keyspace_section_lists_keys_and_expiries() {
    let m = Meridian::start(&[]);
    let mut c = m.conn();
    assert_eq!(field(&info(&mut c, &["keyspace"]), "db0"), None);
    c.line("SET a 1");
    c.line("SET b 2 EX 100");
    let db0 = field(&info(&mut c, &["keyspace"]), "db0").expect("db0");
    assert!(db0.starts_with("keys=2,expires=1,avg_ttl="), "{db0}");
}
