//! EVAL, EVALSHA, their read-only forms and SCRIPT: Lua scripts run in
//! this region through [`crate::scripting`], cached per region by the
//! SHA-1 of their body.

use bytes::Bytes;
use meridian_resp::Frame;

use super::spec::{command, Ctx, Spec, READ};
use super::util::{eq_ignore_case, help_reply, subcommand};
use crate::scripting::{self, shebang, Cached, Scripting};

/// What `COMMAND INFO` lists for commands that run a script (EVAL,
/// EVALSHA, FCALL) and for their read-only forms.
pub const RUNS_SCRIPT: &[&str] = &[
    "noscript",
    "skip_monitor",
    "may_replicate",
    "no_mandatory_keys",
    "stale",
    "movablekeys",
];
pub const RUNS_SCRIPT_RO: &[&str] = &[
    "readonly",
    "noscript",
    "skip_monitor",
    "no_mandatory_keys",
    "stale",
    "movablekeys",
];

pub fn specs() -> Vec<Spec> {
    vec![
        command("eval", -3, READ, (0, 0, 0), eval, RUNS_SCRIPT),
        command("evalsha", -3, READ, (0, 0, 0), evalsha, RUNS_SCRIPT),
        command("eval_ro", -3, READ, (0, 0, 0), eval_ro, RUNS_SCRIPT_RO),
        command(
            "evalsha_ro",
            -3,
            READ,
            (0, 0, 0),
            evalsha_ro,
            RUNS_SCRIPT_RO,
        ),
        command("script", -2, READ, (0, 0, 0), script, &["noscript"]),
    ]
}

pub const SCRIPT_SUBCOMMANDS: &[(&str, i32)] = &[
    ("exists", -3),
    ("flush", -2),
    ("help", 2),
    ("kill", 2),
    ("load", 3),
];

fn eval(ctx: &mut Ctx<'_>, args: &[Bytes]) -> Frame {
    run_script(ctx, args, false, false)
}

fn evalsha(ctx: &mut Ctx<'_>, args: &[Bytes]) -> Frame {
    run_script(ctx, args, true, false)
}

fn eval_ro(ctx: &mut Ctx<'_>, args: &[Bytes]) -> Frame {
    run_script(ctx, args, false, true)
}

fn evalsha_ro(ctx: &mut Ctx<'_>, args: &[Bytes]) -> Frame {
    run_script(ctx, args, true, true)
}

/// The key count of EVAL and FCALL (`args[2]`), checked against what
/// follows; `not_a_number` is the command's error for a count that is not
/// an integer.
pub fn numkeys(args: &[Bytes], not_a_number: &str) -> Result<usize, Frame> {
    let n: i64 = std::str::from_utf8(&args[2])
        .ok()
        .and_then(|t| t.parse().ok())
        .ok_or_else(|| Frame::error(not_a_number))?;
    if n < 0 {
        return Err(Frame::error("ERR Number of keys can't be negative"));
    }
    if n as usize > args.len() - 3 {
        return Err(Frame::error(
            "ERR Number of keys can't be greater than number of args",
        ));
    }
    Ok(n as usize)
}

/// The checks before a script or function runs: a `*_RO` command refuses
/// one that declares it writes; one that may write has the keys it
/// declares checked against the keyspace policies first, so a refusal
/// comes before it writes anything. Ok: whether it runs read-only.
pub fn may_run(
    ctx: &Ctx<'_>,
    keys: &[Bytes],
    ro: bool,
    declares_writes: bool,
    no_writes: bool,
) -> Result<bool, Frame> {
    if ro && declares_writes {
        return Err(Frame::error(
            "ERR Can not execute a script with write flag using *_ro command.",
        ));
    }
    let read_only = ro || no_writes;
    if !read_only {
        let declared: Vec<&[u8]> = keys.iter().map(|k| &k[..]).collect();
        if let Some(refusal) = crate::guard::write_refusal(ctx, &declared) {
            return Err(refusal);
        }
    }
    Ok(read_only)
}

fn noscript() -> Frame {
    Frame::error("NOSCRIPT No matching script. Please use EVAL.")
}

/// Compiles `body` into the cache unless it is there; returns its SHA-1.
fn load(scripting: &mut Scripting, body: &[u8]) -> Result<String, Frame> {
    let sha = meridian_script::sha1hex(body);
    if scripting.cache.contains_key(&sha) {
        return Ok(sha);
    }
    let (flags, skip) = shebang(body).map_err(Frame::Error)?;
    let func = scripting
        .engine
        .compile("user_script", &body[skip..])
        .map_err(|e| Frame::error(format!("ERR Error compiling script (new function): {e}")))?;
    scripting.cache.insert(sha.clone(), Cached { func, flags });
    Ok(sha)
}

fn run_script(ctx: &mut Ctx<'_>, args: &[Bytes], by_sha: bool, ro: bool) -> Frame {
    let n = match numkeys(args, "ERR value is not an integer or out of range") {
        Ok(n) => n,
        Err(e) => return e,
    };
    let (keys, argv) = args[3..].split_at(n);
    let shared = ctx.shared;
    let mut scripting = shared.scripting.lock();
    // A SHA is 40 hex digits, in either case: lower-cased on the stack.
    let mut lower = [0u8; 40];
    let loaded;
    let sha: &str = if by_sha {
        if args[1].len() != 40 {
            return noscript();
        }
        for (d, s) in lower.iter_mut().zip(args[1].iter()) {
            *d = s.to_ascii_lowercase();
        }
        match std::str::from_utf8(&lower) {
            Ok(sha) => sha,
            Err(_) => return noscript(),
        }
    } else {
        loaded = match load(&mut scripting, &args[1]) {
            Ok(sha) => sha,
            Err(e) => return e,
        };
        &loaded
    };
    let Some(cached) = scripting.cache.get(sha) else {
        return noscript();
    };
    let (func, flags) = (cached.func.clone(), cached.flags);
    let read_only = match may_run(
        ctx,
        keys,
        ro,
        flags.declared && !flags.no_writes,
        flags.no_writes,
    ) {
        Ok(read_only) => read_only,
        Err(refusal) => return refusal,
    };
    // Redis names an EVAL script by its SHA in errors and statistics.
    scripting::run(
        ctx,
        &scripting.engine,
        &func,
        keys,
        argv,
        sha,
        read_only,
        false,
        args,
    )
}

const SCRIPT_HELP: &[&str] = &[
    "DEBUG (YES|SYNC|NO)",
    "    Set the debug mode for subsequent scripts executed.",
    "EXISTS <sha1> [<sha1> ...]",
    "    Return information about the existence of the scripts in the script cache.",
    "FLUSH [ASYNC|SYNC]",
    "    Flush the Lua scripts cache. Very dangerous on replicas.",
    "    When called without the optional mode argument, the behavior is determined by the",
    "    lazyfree-lazy-user-flush configuration directive. Valid modes are:",
    "    * ASYNC: Asynchronously flush the scripts cache.",
    "    * SYNC: Synchronously flush the scripts cache.",
    "KILL",
    "    Kill the currently executing Lua script.",
    "LOAD <script>",
    "    Load a script into the scripts cache without executing it.",
];

fn script(ctx: &mut Ctx<'_>, args: &[Bytes]) -> Frame {
    let sub = match subcommand(args, SCRIPT_SUBCOMMANDS, "script") {
        Ok(sub) => sub,
        Err(e) => return e,
    };
    let shared = ctx.shared;
    match sub {
        "help" => help_reply(&args[0], SCRIPT_HELP),
        "load" => match load(&mut shared.scripting.lock(), &args[2]) {
            Ok(sha) => Frame::bulk(sha),
            Err(e) => e,
        },
        "exists" => {
            let scripting = shared.scripting.lock();
            Frame::Array(
                args[2..]
                    .iter()
                    .map(|sha| {
                        let sha = String::from_utf8_lossy(sha).to_ascii_lowercase();
                        Frame::Integer(scripting.cache.contains_key(&sha) as i64)
                    })
                    .collect(),
            )
        }
        "flush" => {
            let mode_ok = match args.get(2) {
                None => args.len() == 2,
                Some(m) => {
                    args.len() == 3 && (eq_ignore_case(m, "async") || eq_ignore_case(m, "sync"))
                }
            };
            if !mode_ok {
                return Frame::error("ERR SCRIPT FLUSH only support SYNC|ASYNC option");
            }
            shared.scripting.lock().flush();
            Frame::ok()
        }
        // A script holds the store while it runs, so a SCRIPT KILL that
        // gets here found none; one sent while a script is busy is
        // answered by `conn` without waiting for the store.
        "kill" => Frame::error("NOTBUSY No scripts in execution right now."),
        _ => unreachable!("every SCRIPT subcommand is listed"),
    }
}
