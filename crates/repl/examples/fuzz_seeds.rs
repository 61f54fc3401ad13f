//! Writes the seed corpora of the fuzz targets from the real encoders: a
//! store takes writes of every type, and its log segment, its snapshot, the
//! replication frames that would carry its ops and state, and every other
//! message, become seed files.
//!
//! Run: `cargo run -p meridian-repl --example fuzz_seeds [CORPUS_DIR]`
//! (default `fuzz/corpus`). Each seed starts with the target's header bytes
//! (see the targets in `fuzz/fuzz_targets`).

use std::error::Error;
use std::fs;
use std::path::{Path, PathBuf};

use meridian_crdt::{Blob, Delta, RegionId, VersionVector};
use meridian_log::FsyncPolicy;
use meridian_repl::wire::{encode, Msg, MAGIC, PROTOCOL_VERSION};
use meridian_store::{Store, StoreOptions};

/// The region the `snapshot_load` target opens its store as.
const REGION: &str = "fuzz";
/// Target header flag: recompute checksums before decoding.
const REPAIR: u8 = 1;
/// `log_record` header flag, with `REPAIR`: renumber LSNs from 1.
const RENUMBER: u8 = 2;
/// `log_record` header flag: add a newer segment, sealing the fuzzed one.
const SEAL: u8 = 4;

type Result<T> = std::result::Result<T, Box<dyn Error>>;

fn main() -> Result<()> {
    let corpus = std::env::args()
        .nth(1)
        .map_or_else(|| PathBuf::from("fuzz/corpus"), PathBuf::from);
    let region = RegionId::new(REGION)?;
    let tmp = tempfile::tempdir()?;

    // Snapshots of the empty store and after every few writes.
    let (mut growing, _) = Store::open(options(&tmp.path().join("growing"), region))?;
    let mut snapshots = vec![fs::read(growing.snapshot()?.path)?];
    for i in 0..WRITES {
        write(&mut growing, i)?;
        if i % 5 == 4 || i + 1 == WRITES {
            snapshots.push(fs::read(growing.snapshot()?.path)?);
        }
    }

    let dir = tmp.path().join("store");
    let (mut store, _) = Store::open(options(&dir, region))?;
    for i in 0..WRITES {
        write(&mut store, i)?;
    }
    store.flush()?;
    let records: Vec<Vec<u8>> = store
        .log()
        .reader(1)?
        .map(|r| r.map(|(_, payload)| payload))
        .collect::<std::result::Result<_, _>>()?;
    let segment = fs::read(dir.join("seg-00000000000000000001.log"))?;
    let mut state = Vec::new();
    for (key, entry) in store.db().keyspace().iter_all() {
        state = postcard::to_extend(&(key, Some(entry)), state)?;
    }
    let vv = store.db().version_vector().clone();
    let clock = store.db().clock().0;

    log_record_seeds(&corpus.join("log_record"), &segment, &records)?;
    snapshot_load_seeds(&corpus.join("snapshot_load"), &snapshots)?;
    repl_frame_seeds(&corpus.join("repl_frame"), &records, state, vv, clock)?;
    Ok(())
}

fn options(dir: &Path, region: RegionId) -> StoreOptions {
    let mut opts = StoreOptions::new(dir, region);
    opts.fsync = FsyncPolicy::No;
    opts
}

/// Number of writes [`write`] knows.
const WRITES: usize = 14;

/// Write `i` of a sequence covering every effect kind, some overwriting,
/// removing or expiring what earlier ones wrote; committed as one op.
fn write(store: &mut Store, i: usize) -> Result<()> {
    let db = store.db_mut();
    db.set_now_ms(1_700_000_000_000 + i as u64);
    let b = Blob::from;
    match i {
        0 => db.set_string(b"s", b("hello"), false),
        1 => db.set_string(b"s", Blob::from(vec![7u8; 40]), true),
        2 => db.incr(b"n", Delta::Int(42)),
        3 => db.incr(b"f", Delta::Float(1.5)),
        4 => db.set_ttl(b"s", Some(4_000_000_000_000)),
        5 => db.hset(b"h", vec![(b("a"), b("1")), (b("b"), b("2"))]),
        6 => db.hincr(b"h", b("c"), Delta::Int(-3)),
        7 => db.hdel(b"h", vec![b("a")]),
        8 => db.sadd(b"set", vec![b("x"), b("y"), b("z")]),
        9 => db.srem(b"set", vec![b("y")]),
        10 => db.zadd(b"z", vec![(b("m"), 1.0), (b("n"), -2.5)]),
        11 => db.zincr(b"z", b("m"), 0.25),
        12 => db.zrem(b"z", vec![b("n")]),
        _ => {
            db.set_string(b"gone", b("x"), false);
            db.del(b"gone");
        }
    }
    store.commit()?;
    Ok(())
}

/// The whole segment, its prefixes after each record (a torn tail when the
/// cut falls inside a record) and each record alone.
fn log_record_seeds(dir: &Path, segment: &[u8], records: &[Vec<u8>]) -> Result<()> {
    fs::create_dir_all(dir)?;
    const HEADER: usize = 24;
    write_seed(dir, "segment", &[0], segment)?;
    write_seed(dir, "segment-repair", &[REPAIR | RENUMBER], segment)?;
    write_seed(dir, "header-only", &[0], &segment[..HEADER])?;
    let mut end = HEADER;
    for (i, record) in records.iter().enumerate() {
        end += 16 + record.len();
        if i % 4 == 1 {
            write_seed(dir, &format!("prefix-{i:02}"), &[0], &segment[..end])?;
            write_seed(dir, &format!("torn-{i:02}"), &[0], &segment[..end - 3])?;
            write_seed(dir, &format!("sealed-{i:02}"), &[SEAL], &segment[..end])?;
            write_seed(
                dir,
                &format!("sealed-torn-{i:02}"),
                &[SEAL],
                &segment[..end - 3],
            )?;
        }
        let mut single = segment[..HEADER].to_vec();
        single.extend_from_slice(&segment[end - 16 - record.len()..end]);
        write_seed(
            dir,
            &format!("record-{i:02}"),
            &[REPAIR | RENUMBER],
            &single,
        )?;
    }
    Ok(())
}

fn snapshot_load_seeds(dir: &Path, snapshots: &[Vec<u8>]) -> Result<()> {
    fs::create_dir_all(dir)?;
    for (i, snapshot) in snapshots.iter().enumerate() {
        write_seed(dir, &format!("snapshot-{i}"), &[0], snapshot)?;
        write_seed(dir, &format!("snapshot-{i}-repair"), &[REPAIR], snapshot)?;
    }
    Ok(())
}

/// One frame per message kind, op batches of the store's records, and a
/// stream of several frames as a link would carry them.
fn repl_frame_seeds(
    dir: &Path,
    records: &[Vec<u8>],
    state: Vec<u8>,
    vv: VersionVector,
    clock: u64,
) -> Result<()> {
    fs::create_dir_all(dir)?;
    let msgs = [
        Msg::Hello {
            magic: MAGIC,
            version: PROTOCOL_VERSION,
            cluster: "meridian".into(),
            region: "eu-west".into(),
            nonce: [1; 16],
        },
        Msg::Challenge {
            region: "us-east".into(),
            nonce: [2; 16],
            proof: [3; 32],
        },
        Msg::Proof { proof: [4; 32] },
        Msg::Welcome {
            vv: vv.clone(),
            witness: false,
        },
        Msg::Refuse {
            reason: "wrong cluster".into(),
        },
        Msg::Ops {
            upto_lsn: records.len() as u64,
            records: records.to_vec(),
        },
        Msg::Ops {
            upto_lsn: 1,
            records: records[..1].to_vec(),
        },
        Msg::Heartbeat {
            upto_lsn: 9,
            hlc: clock,
            wall_ms: 1_700_000_000_000,
        },
        Msg::Ack {
            upto_lsn: 9,
            vv: vv.clone(),
            durable_vv: vv.clone(),
            wall_ms: 1_700_000_000_000,
            direct: vec![RegionId::new("eu").unwrap()],
        },
        Msg::AeBegin { vv: vv.clone() },
        Msg::AeAheadEnd { vv: vv.clone() },
        Msg::AeNodes {
            digests: (0u8..32).collect(),
        },
        Msg::AeDescend {
            bitmap: vec![0b1010_0101, 1],
        },
        Msg::AeState {
            ranges: vec![(0, 8), (0xff00_0000_0000_0000, 8)],
            entries: state,
        },
        Msg::AeEnd {
            vv: vv.clone(),
            clock,
            libraries: postcard::to_stdvec(&meridian_crdt::Libraries::new()).unwrap(),
        },
        Msg::AeDone {
            vv,
            clock,
            libraries: postcard::to_stdvec(&meridian_crdt::Libraries::new()).unwrap(),
        },
        Msg::AeBusy,
    ];
    let mut stream = Vec::new();
    for (i, msg) in msgs.iter().enumerate() {
        let frame = encode(msg);
        write_seed(dir, &format!("frame-{i:02}"), &[0, 0], &frame)?;
        stream.extend_from_slice(&frame);
    }
    write_seed(dir, "stream", &[0, 7], &stream)?;
    write_seed(dir, "stream-repair", &[REPAIR, 7], &stream)?;
    Ok(())
}

fn write_seed(dir: &Path, name: &str, header: &[u8], body: &[u8]) -> Result<()> {
    let mut bytes = header.to_vec();
    bytes.extend_from_slice(body);
    fs::write(dir.join(name), bytes)?;
    Ok(())
}
