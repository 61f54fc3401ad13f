//! Scripts in a region: the Lua state EVAL scripts run in with its cache
//! of compiled scripts (per region, as Redis's script cache is per server),
//! the script running now (for BUSY, SCRIPT KILL and FUNCTION KILL), and
//! the [`Host`] through which a script's `redis.call` runs commands with
//! every check a client's command passes.
//!
//! A script runs inside its client's batch, under the store lock, so it is
//! atomic in its region and everything it writes is part of the batch's one
//! op: a peer applies all of a script's writes or none.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use meridian_resp::{Frame, Protocol};
use meridian_script::{Engine, Function, Host, Mode, Watch};

use crate::cmd::spec::{lookup, Ctx};
use crate::shared::Shared;

/// A script in the cache: what SCRIPT LOAD or EVAL compiled.
pub struct Cached {
    pub func: Function,
    pub flags: ScriptFlags,
}

/// The flags a script declares on its shebang line (`#!lua flags=...`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ScriptFlags {
    /// The script has a shebang line: Redis 7 semantics.
    pub declared: bool,
    pub no_writes: bool,
    pub allow_oom: bool,
    pub allow_stale: bool,
    pub no_cluster: bool,
    pub allow_cross_slot_keys: bool,
}

/// Flags newer Redis versions added that mean nothing for a single
/// region's keyspace here; scripts that declare them still run.
const NO_OP_FLAGS: &[&str] = &["allow-key-locking"];

impl ScriptFlags {
    /// Sets one flag by its shebang name; false for an unknown name.
    pub fn set(&mut self, name: &str) -> bool {
        match name {
            "no-writes" => self.no_writes = true,
            "allow-oom" => self.allow_oom = true,
            "allow-stale" => self.allow_stale = true,
            "no-cluster" => self.no_cluster = true,
            "allow-cross-slot-keys" => self.allow_cross_slot_keys = true,
            other if NO_OP_FLAGS.contains(&other) => {}
            _ => return false,
        }
        true
    }
}

/// The EVAL scripting state of a region.
pub struct Scripting {
    pub engine: Engine,
    pub cache: HashMap<String, Cached>,
}

impl Scripting {
    pub fn new() -> Scripting {
        Scripting {
            engine: Engine::new(Mode::Eval).expect("the scripting state starts"),
            cache: HashMap::new(),
        }
    }

    /// SCRIPT FLUSH: a new interpreter, an empty cache.
    pub fn flush(&mut self) {
        *self = Scripting::new();
    }
}

impl Default for Scripting {
    fn default() -> Self {
        Scripting::new()
    }
}

/// A function of a loaded library.
pub struct LibFunction {
    pub callback: Function,
    pub description: Option<String>,
    pub flags: Vec<String>,
}

/// A library FUNCTION LOAD loaded: its code and the functions it registered.
pub struct Library {
    pub code: Bytes,
    pub functions: std::collections::BTreeMap<String, LibFunction>,
}

/// Redis 7 functions in this region: their own Lua state, the libraries
/// compiled in it and which library each function belongs to.
///
/// The libraries themselves are replicated state of the store
/// ([`meridian_store::Db::libraries`]); this is their compiled form, kept
/// in step by [`Functions::sync`] before every use (FCALL, FUNCTION), so
/// a library another region loaded, a merge, or a restart is picked up
/// without a hook of its own.
pub struct Functions {
    pub engine: Engine,
    pub libraries: std::collections::BTreeMap<String, Library>,
    /// Library of each function, by the function's lower-case name.
    pub owner: HashMap<String, String>,
    /// The store's libraries generation these were compiled from.
    synced: Option<u64>,
    /// Libraries the store holds that could not be loaded here, and why
    /// (a function name another library holds: the one first by library
    /// name is loaded, the same one in every region).
    pub failed: std::collections::BTreeMap<String, String>,
}

impl Functions {
    pub fn new() -> Functions {
        Functions {
            engine: Engine::new(Mode::Function).expect("the function state starts"),
            libraries: Default::default(),
            owner: HashMap::new(),
            synced: None,
            failed: Default::default(),
        }
    }

    /// Compiles the store's libraries again if they changed since they were
    /// last compiled: all of them, in a fresh Lua state, in library-name
    /// order, so every region holding the same libraries loads the same
    /// ones (on a clash of function names, the first library by name).
    pub fn sync(&mut self, db: &meridian_store::Db) {
        let generation = db.libraries_generation();
        if self.synced == Some(generation) {
            return;
        }
        let mut fresh = Functions::new();
        fresh.synced = Some(generation);
        for (name, version) in db.libraries().iter() {
            let name = String::from_utf8_lossy(name).into_owned();
            let code = Bytes::copy_from_slice(&version.code);
            let error = match fresh.prepare(&code, false) {
                Ok((declared, library)) if declared == name => {
                    fresh.add(declared, library);
                    continue;
                }
                Ok((declared, _)) => format!("ERR the code declares library '{declared}'"),
                Err(e) => e,
            };
            tracing::warn!(
                target: "meridian::script",
                library = %name,
                error = %error,
                "a replicated FUNCTION library could not be loaded in this region"
            );
            fresh.failed.insert(name, error);
        }
        *self = fresh;
    }

    /// The libraries compiled here match the store's now (a FUNCTION
    /// command changed both the same way).
    pub fn mark_synced(&mut self, db: &meridian_store::Db) {
        self.synced = Some(db.libraries_generation());
    }

    /// The library a library's code declares, with its functions, ready
    /// to be added by [`Functions::add`]; `replace` allows an existing
    /// library of that name to be replaced.
    pub fn prepare(&self, code: &Bytes, replace: bool) -> Result<(String, Library), String> {
        let (name, skip) = library_metadata(code)?;
        if !replace && self.libraries.contains_key(&name) {
            return Err(format!("ERR Library '{name}' already exists"));
        }
        let registered = self.engine.load_library(&code[skip..])?;
        let mut functions = std::collections::BTreeMap::new();
        for r in registered {
            if let Some(lib) = self.owner.get(&r.name.to_ascii_lowercase()) {
                if *lib != name {
                    return Err(format!("ERR Function {} already exists", r.name));
                }
            }
            functions.insert(
                r.name,
                LibFunction {
                    callback: r.callback,
                    description: r.description,
                    flags: r.flags,
                },
            );
        }
        Ok((
            name,
            Library {
                code: code.clone(),
                functions,
            },
        ))
    }

    /// Adds (or replaces) a prepared library.
    pub fn add(&mut self, name: String, library: Library) {
        self.delete(&name);
        for f in library.functions.keys() {
            self.owner.insert(f.to_ascii_lowercase(), name.clone());
        }
        self.libraries.insert(name, library);
    }

    pub fn delete(&mut self, name: &str) -> bool {
        let Some(lib) = self.libraries.remove(name) else {
            return false;
        };
        for f in lib.functions.keys() {
            self.owner.remove(&f.to_ascii_lowercase());
        }
        true
    }

    /// Drops every library and the Lua state they were compiled in.
    pub fn flush(&mut self) {
        let synced = self.synced;
        *self = Functions::new();
        self.synced = synced;
    }

    /// A function by name, ignoring case as Redis does.
    pub fn function(&self, name: &str) -> Option<&LibFunction> {
        let lib = self
            .libraries
            .get(self.owner.get(&name.to_ascii_lowercase())?)?;
        lib.functions
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, f)| f)
    }
}

impl Default for Functions {
    fn default() -> Self {
        Functions::new()
    }
}

/// The library name a library's first line declares (`#!lua name=mylib`)
/// and where its code starts.
pub fn library_metadata(code: &[u8]) -> Result<(String, usize), String> {
    if !code.starts_with(b"#!") {
        return Err("ERR Missing library metadata".into());
    }
    let end = code.iter().position(|&b| b == b'\n').unwrap_or(code.len());
    let line = String::from_utf8_lossy(&code[2..end]).into_owned();
    // The engine is what follows `#!` up to the first space; the rest are
    // arguments, split as Redis splits them (double quotes removed).
    let (engine, rest) = line.split_once(' ').unwrap_or((&line, ""));
    if !engine.eq_ignore_ascii_case("lua") {
        return Err(format!("ERR Engine '{engine}' not found"));
    }
    let mut name = None;
    let parts: Vec<String> = rest
        .split(' ')
        .filter(|p| !p.is_empty())
        .map(|p| p.replace('"', ""))
        .collect();
    for part in &parts {
        let Some(value) = part.strip_prefix("name=") else {
            return Err(format!("ERR Invalid metadata value given: {part}"));
        };
        if name.is_some() {
            return Err(
                "ERR Invalid metadata value, name argument was given multiple times".into(),
            );
        }
        name = Some(value.to_string());
    }
    let name = name.ok_or("ERR Library name was not given")?;
    if !meridian_script::engine::valid_name(name.as_bytes()) {
        return Err(format!("ERR {}", meridian_script::engine::BAD_NAME));
    }
    Ok((name, end))
}

/// The script running now, seen by other connections.
pub struct Running {
    pub watch: Arc<Watch>,
    /// The function's name or the script's `f_<sha>` (FUNCTION STATS).
    pub name: String,
    /// The command that runs it, for FUNCTION STATS.
    pub command: Vec<Bytes>,
    /// Run by FCALL (FUNCTION KILL stops it) rather than EVAL (SCRIPT KILL).
    pub function: bool,
    /// It has called a write command: killing it would leave half its
    /// writes, so only SHUTDOWN NOSAVE stops it.
    pub wrote: AtomicBool,
}

impl Running {
    /// The record of a script starting now: the last script's, reset, when
    /// nobody holds it any more (a client that read it while it ran may
    /// still), else a new one.
    fn start(shared: &Shared, name: &str, command: &[Bytes], function: bool) -> Arc<Running> {
        let busy_after = busy_threshold(shared);
        let spare = shared.spare_running.lock().take();
        if let Some(mut running) = spare {
            if let Some(r) = Arc::get_mut(&mut running) {
                if let Some(watch) = Arc::get_mut(&mut r.watch) {
                    watch.restart(busy_after);
                    r.name.clear();
                    r.name.push_str(name);
                    r.command.clear();
                    r.command.extend_from_slice(command);
                    r.function = function;
                    *r.wrote.get_mut() = false;
                    return running;
                }
            }
        }
        Arc::new(Running {
            watch: Arc::new(Watch::with_long_hook(busy_after, leave_the_runtime)),
            name: name.to_string(),
            command: command.to_vec(),
            function,
            wrote: AtomicBool::new(false),
        })
    }
}

/// Splits a body's shebang line from its code: `#!lua flags=a,b`. Returns
/// the flags and how many bytes the line takes (the line break stays in
/// the code, so line numbers match what the user wrote).
pub fn shebang(body: &[u8]) -> Result<(ScriptFlags, usize), String> {
    if !body.starts_with(b"#!") {
        return Ok((ScriptFlags::default(), 0));
    }
    let end = body.iter().position(|&b| b == b'\n').unwrap_or(body.len());
    let line = String::from_utf8_lossy(&body[..end]);
    let mut parts = line.split(' ').filter(|p| !p.is_empty());
    let engine = parts.next().unwrap_or("");
    if engine != "#!lua" {
        return Err(format!(
            "ERR Unexpected engine in script shebang: {}",
            &engine[2.min(engine.len())..]
        ));
    }
    let mut flags = ScriptFlags {
        declared: true,
        ..ScriptFlags::default()
    };
    for part in parts {
        let Some(list) = part.strip_prefix("flags=") else {
            return Err(format!("ERR Unknown lua shebang option: {part}"));
        };
        for name in list.split(',').filter(|f| !f.is_empty()) {
            if !flags.set(name) {
                return Err(format!("ERR Unexpected flag in script shebang: {name}"));
            }
        }
    }
    Ok((flags, end))
}

/// How long a script runs before other clients get BUSY
/// (`busy-reply-threshold`, alias `lua-time-limit`; 0 = never).
pub fn busy_threshold(shared: &Shared) -> Duration {
    let ms = shared
        .config_kept
        .lock()
        .get("busy-reply-threshold")
        .and_then(|v| v.parse::<u64>().ok())
        .unwrap_or(5000);
    Duration::from_millis(ms)
}

/// The reply other clients get while a script is busy.
pub fn busy_error(function: bool) -> Frame {
    if function {
        Frame::error("BUSY Redis is busy running a script. You can only call FUNCTION KILL or SHUTDOWN NOSAVE.")
    } else {
        Frame::error(
            "BUSY Redis is busy running a script. You can only call SCRIPT KILL or SHUTDOWN NOSAVE.",
        )
    }
}

/// Runs a compiled script with every check its commands pass, registered
/// as the running script for the length of the run.
#[allow(clippy::too_many_arguments)]
pub fn run(
    ctx: &mut Ctx<'_>,
    engine: &Engine,
    func: &Function,
    keys: &[Bytes],
    args: &[Bytes],
    name: &str,
    read_only: bool,
    function: bool,
    command: &[Bytes],
) -> Frame {
    let shared = ctx.shared;
    let running = Running::start(shared, name, command, function);
    let watch = running.watch.clone();
    *shared.running_script.lock() = Some(running.clone());
    let saved_proto = ctx.client.proto;
    let saved_exec = ctx.client.in_exec;
    ctx.client.in_exec = true;
    ctx.client.in_script = true;
    let (reply, read_called) = {
        let mut host = ScriptHost {
            ctx: &mut *ctx,
            read_only,
            running: &running,
            caller_proto: saved_proto,
            read_called: false,
        };
        let reply = engine.invoke(func, keys, args, name, &mut host, &watch);
        (reply, host.read_called)
    };
    if read_called {
        crate::tracking::track_script_keys(ctx, keys);
    }
    ctx.client.proto = saved_proto;
    ctx.client.in_exec = saved_exec;
    ctx.client.in_script = false;
    drop(watch);
    let finished = shared.running_script.lock().take();
    *shared.spare_running.lock() = finished;
    reply
}

/// Called from a script that has run past 1 ms (and every 100 ms after):
/// its thread hands the runtime worker it holds to another thread, so the
/// runtime keeps serving clients (BUSY, SCRIPT KILL) however long the
/// script runs. The short sleep lets the new thread take the worker
/// before this one would take it back; a script that still holds it tries
/// again 100 ms later. Most scripts end well within 1 ms and never pay
/// for the hand-off.
fn leave_the_runtime() {
    if meridian_repl::in_multi_thread_runtime() {
        tokio::task::block_in_place(|| std::thread::sleep(Duration::from_millis(1)));
    }
}

/// Commands Redis refuses inside scripts (`noscript`), beyond what its
/// command description lists for commands Meridian has.
fn not_from_scripts(name: &str) -> bool {
    crate::cmd::redis_meta::has_flag(name, "noscript")
}

struct ScriptHost<'c, 'a> {
    ctx: &'c mut Ctx<'a>,
    read_only: bool,
    running: &'c Running,
    caller_proto: Protocol,
    /// The script called a command Redis flags `readonly` (client
    /// tracking then remembers its declared keys).
    read_called: bool,
}

impl Host for ScriptHost<'_, '_> {
    fn call(&mut self, args: Vec<Bytes>, resp3: bool) -> Frame {
        let ctx = &mut *self.ctx;
        let Some(spec) = lookup(ctx.table, &args[0]) else {
            // A command Meridian lacks that Redis never allows in scripts
            // gets Redis's refusal, not "unknown".
            let name = String::from_utf8_lossy(&args[0]).to_ascii_lowercase();
            let sub = args
                .get(1)
                .map(|s| format!("{name}|{}", String::from_utf8_lossy(s).to_ascii_lowercase()));
            if not_from_scripts(&name) || sub.is_some_and(|s| not_from_scripts(&s)) {
                return Frame::error("ERR This Redis command is not allowed from script");
            }
            return Frame::error("ERR Unknown Redis command called from script");
        };
        if !crate::cmd::spec::arity_ok(spec, args.len()) {
            return Frame::error("ERR Wrong number of args calling Redis command from script");
        }
        if spec.redis_flags.noscript {
            return Frame::error("ERR This Redis command is not allowed from script");
        }
        if let Some(refusal) = crate::guard::permission_refusal(ctx, spec, &args) {
            let why = match &refusal {
                Frame::Error(t) if t.contains("keys") => {
                    "no permissions to access one of the keys used as arguments"
                }
                Frame::Error(t) if t.contains("channels") => {
                    "no permissions to access one of the channels used as arguments"
                }
                _ => "can't run this command or subcommand",
            };
            return Frame::error(format!("ERR The user executing the script {why}"));
        }
        if self.read_only && !spec.flags.write && spec.redis_flags.may_replicate {
            return Frame::error("ERR Write commands are not allowed from read-only scripts.");
        }
        if spec.flags.write {
            if self.read_only {
                return Frame::error("ERR Write commands are not allowed from read-only scripts.");
            }
            if ctx.store.is_poisoned() {
                return crate::commit::poisoned_error();
            }
            if let Some(refusal) = crate::guard::policy_refusal(ctx, spec, &args) {
                return refusal;
            }
            self.running.wrote.store(true, Ordering::Release);
        }
        if !self.read_called && spec.redis_flags.readonly {
            self.read_called = true;
        }
        ctx.client.proto = if resp3 {
            Protocol::Resp3
        } else {
            Protocol::Resp2
        };
        spec.calls.fetch_add(1, Ordering::Relaxed);
        crate::monitor::feed_script(ctx.shared, &args);
        let started = std::time::Instant::now();
        let reply = (spec.handler)(ctx, &args);
        let usec = u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX);
        ctx.shared
            .cmdstats
            .lock()
            .called(spec.name, usec, reply.is_error());
        ctx.client.proto = self.caller_proto;
        reply
    }

    fn acl_check(&mut self, args: &[Bytes]) -> Option<bool> {
        let spec = lookup(self.ctx.table, &args[0])?;
        Some(crate::guard::permitted(self.ctx, spec, args))
    }

    fn log(&mut self, level: u8, message: &[u8]) {
        let text = String::from_utf8_lossy(message);
        match level {
            0 | 1 => tracing::debug!(target: "meridian::script", "{text}"),
            2 => tracing::info!(target: "meridian::script", "{text}"),
            _ => tracing::warn!(target: "meridian::script", "{text}"),
        }
    }
}

/// Takes the store lock for a batch, unless a script holds it past the
/// busy threshold: then the running script is returned, and the batch is
/// answered by [`while_busy`] without the store.
pub fn lock_store_or_busy(
    shared: &Shared,
) -> Result<parking_lot::MutexGuard<'_, meridian_store::Store>, Arc<Running>> {
    loop {
        if let Some(store) = shared.store.try_lock_for(BUSY_POLL) {
            return Ok(store);
        }
        let running = shared.running_script.lock().clone();
        if let Some(running) = running {
            if running.watch.is_busy() {
                return Err(running);
            }
        }
    }
}

/// How often a connection waiting for the store checks whether a script
/// has turned busy.
const BUSY_POLL: Duration = Duration::from_millis(5);

/// The reply to one command sent while a script is busy: only the commands
/// that stop it run (SCRIPT KILL for EVAL, FUNCTION KILL for FCALL,
/// SHUTDOWN NOSAVE for either); everything else gets BUSY.
pub fn while_busy(
    shared: &Shared,
    client: &mut crate::client::Client,
    running: &Running,
    args: &[Bytes],
) -> Frame {
    let word = |i: usize, w: &str| {
        args.get(i)
            .is_some_and(|a| a.eq_ignore_ascii_case(w.as_bytes()))
    };
    let kill_script = word(0, "script") && word(1, "kill") && args.len() == 2;
    let kill_function = word(0, "function") && word(1, "kill") && args.len() == 2;
    if word(0, "function") && word(1, "stats") && args.len() == 2 {
        return crate::cmd::function::stats(shared, Some(running));
    }
    if (kill_script && !running.function) || (kill_function && running.function) {
        if running.wrote.load(Ordering::Acquire) {
            return Frame::error("UNKILLABLE Sorry the script already executed write commands against the dataset. You can either wait the script termination or kill the server in a hard way using the SHUTDOWN NOSAVE command.");
        }
        running.watch.kill();
        return Frame::ok();
    }
    if word(0, "shutdown") && word(1, "nosave") {
        // The script's writes were never committed: they are lost, as
        // SHUTDOWN NOSAVE promises; everything acknowledged is in the log.
        tracing::warn!("SHUTDOWN NOSAVE while a script is busy: exiting without its writes");
        std::process::exit(0);
    }
    // MULTI may start a transaction meanwhile, as in Redis; anything else
    // refused inside one dooms it, and an EXEC refused ends it.
    if word(0, "multi") && args.len() == 1 {
        if client.multi.is_some() {
            return Frame::error("ERR MULTI calls can not be nested");
        }
        client.multi = Some(Vec::new());
        return Frame::ok();
    }
    let busy = busy_error(running.function);
    if client.multi.is_some() {
        if word(0, "exec") {
            client.multi = None;
            client.multi_failed = false;
            let Frame::Error(why) = busy else {
                return busy;
            };
            return Frame::error(format!("EXECABORT Transaction discarded because of: {why}"));
        }
        client.multi_failed = true;
    }
    busy
}
