//! One scripting state: a Lua 5.1 interpreter set up as Redis sets up its
//! own (libraries, the `redis` table, a sandbox of read-only globals), and
//! how a compiled script is invoked against a [`Host`].

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use meridian_resp::Frame;
use mlua::{
    Function, HookTriggers, LightUserData, Lua, LuaOptions, MultiValue, StdLib, Table, Value,
    VmState,
};

use crate::convert;
use crate::invoke::{invoke_raw, InvocationArgs, REUSED_TABLE_MAX};

/// The version scripts read in `redis.REDIS_VERSION`: the Redis release
/// whose behaviour Meridian reproduces.
pub const REDIS_VERSION: &str = "7.0.15";
const REDIS_VERSION_NUM: u32 = 0x0007_000f;

/// Where the raise marker (see the prelude) is kept in the registry.
const RAISE_KEY: &str = "meridian.raise";

/// How often (in Lua instructions) a running script checks its watch.
const HOOK_EVERY_INSTRUCTIONS: u32 = 1000;

/// The most memory one scripting state may hold (its scripts' values and
/// the script cache together). Past it an allocation fails with Lua's
/// `not enough memory` error, which the script sees like any error;
/// without it one `string.rep('x', 1e9)` takes a gigabyte of the region's
/// memory. Redis sets no limit; this one is the largest value a client may
/// send (a 512 MiB bulk string), which no script needs to build.
pub const MEMORY_LIMIT: usize = 512 << 20;

/// What a script does to the region it runs in. The server implements it
/// over its command table; every check a client's command passes applies.
pub trait Host: Send {
    /// Runs one command for `redis.call`/`redis.pcall` and returns its
    /// reply, an error reply included (a refusal before the command ran
    /// too: unknown command, wrong arity, not allowed from scripts, ACL,
    /// writes from a read-only script, keyspace policy).
    fn call(&mut self, args: Vec<Bytes>, resp3: bool) -> Frame;
    /// Whether the calling user may run this command on these keys;
    /// `None` for an unknown command.
    fn acl_check(&mut self, args: &[Bytes]) -> Option<bool>;
    /// `redis.log`: level 0 (debug) to 3 (warning).
    fn log(&mut self, level: u8, message: &[u8]);
}

/// How long a script may run before other clients are told BUSY, and the
/// means to stop it: shared between the running script and the rest of
/// the server.
pub struct Watch {
    started: Instant,
    busy_after: Duration,
    busy: AtomicBool,
    kill: AtomicBool,
    /// Milliseconds the script had run when it was last checked.
    ran_ms: AtomicU64,
    /// Called once the script has run [`LONG_AFTER`], then every
    /// [`LONG_AGAIN`]: the host moves a long script off whatever else its
    /// thread serves.
    on_long: Option<fn()>,
    /// When `on_long` is due next, in milliseconds of the script's run.
    long_due_ms: AtomicU64,
}

/// A script that runs longer than this is long (see [`Watch::on_long`]).
pub const LONG_AFTER: Duration = Duration::from_millis(1);
const LONG_AGAIN: Duration = Duration::from_millis(100);

impl std::fmt::Debug for Watch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Watch")
            .field("busy_after", &self.busy_after)
            .field("busy", &self.is_busy())
            .field("killed", &self.killed())
            .finish()
    }
}

impl Watch {
    /// A watch for a script that runs long: `on_long` is called once it has
    /// run 1 ms, then every 100 ms.
    pub fn with_long_hook(busy_after: Duration, on_long: fn()) -> Watch {
        Watch {
            on_long: Some(on_long),
            ..Watch::new(busy_after)
        }
    }

    /// Makes this watch a new one, for a script starting now, without
    /// allocating: the host keeps one for the next script.
    pub fn restart(&mut self, busy_after: Duration) {
        *self = Watch {
            on_long: self.on_long,
            ..Watch::new(busy_after)
        };
    }

    /// A watch for a script starting now; `busy_after` zero never turns busy.
    pub fn new(busy_after: Duration) -> Watch {
        Watch {
            on_long: None,
            long_due_ms: AtomicU64::new(LONG_AFTER.as_millis() as u64),
            started: Instant::now(),
            busy_after,
            busy: AtomicBool::new(false),
            kill: AtomicBool::new(false),
            ran_ms: AtomicU64::new(0),
        }
    }

    /// The script has run past the busy threshold: other clients get BUSY.
    pub fn is_busy(&self) -> bool {
        self.busy.load(Ordering::Acquire)
    }

    /// SCRIPT KILL / FUNCTION KILL: the script stops at its next check.
    pub fn kill(&self) {
        self.kill.store(true, Ordering::Release);
    }

    pub fn killed(&self) -> bool {
        self.kill.load(Ordering::Acquire)
    }

    pub fn ran_ms(&self) -> u64 {
        self.ran_ms.load(Ordering::Relaxed)
    }

    /// Called from the interpreter's hook: false once the script must stop.
    fn check(&self) -> bool {
        let ran = self.started.elapsed();
        let ran_ms = ran.as_millis() as u64;
        self.ran_ms.store(ran_ms, Ordering::Relaxed);
        if let Some(on_long) = &self.on_long {
            if ran_ms >= self.long_due_ms.load(Ordering::Relaxed) {
                self.long_due_ms
                    .store(ran_ms + LONG_AGAIN.as_millis() as u64, Ordering::Relaxed);
                on_long();
            }
        }
        if !self.busy_after.is_zero() && ran >= self.busy_after {
            self.busy.store(true, Ordering::Release);
        }
        !self.killed()
    }
}

/// Which scripts a state runs: EVAL scripts see KEYS and ARGV as globals,
/// function libraries get them as arguments.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Eval,
    Function,
}

/// What the prelude hands back, kept for each invocation.
struct Parts {
    /// [`invoke_raw`], made once.
    invoke: Function,
    /// The prelude's error handler (where a script's error happened).
    handler: Function,
    /// Resets the prelude's count of nested pcalls.
    reset: Function,
    raise: Table,
    impl_: Table,
    env: Table,
    /// Runs a function library's code as it loads.
    run: Function,
    set_source: Function,
    library_api: Table,
}

/// A function a library registered when it loaded.
#[derive(Debug, Clone)]
pub struct Registered {
    pub name: String,
    pub callback: Function,
    pub description: Option<String>,
    pub flags: Vec<String>,
}

/// How long a library's code may run while it loads (Redis's limit).
pub const LOAD_TIMEOUT: Duration = Duration::from_millis(500);

/// The flags a function may declare.
const FUNCTION_FLAGS: &[&str] = &[
    "no-writes",
    "allow-oom",
    "allow-stale",
    "no-cluster",
    "allow-cross-slot-keys",
    "allow-key-locking",
];

/// Redis's rule for library and function names.
pub fn valid_name(name: &[u8]) -> bool {
    !name.is_empty() && name.iter().all(|b| b.is_ascii_alphanumeric() || *b == b'_')
}

pub const BAD_NAME: &str = "Library names can only contain letters, numbers, or underscores(_) and must be at least one character long";

pub struct Engine {
    lua: Lua,
    parts: Parts,
    mode: Mode,
    /// The invocation running now, which the `redis` API acts for.
    current: Arc<Mutex<Current>>,
    /// The hook raises at every instruction (a script was killed): the
    /// watching hook goes back in when the invocation ends.
    kill_hook: Arc<AtomicBool>,
    memory_limit: usize,
    /// What the state held after its last full collection.
    gc_floor: std::sync::atomic::AtomicUsize,
    /// Registry slots of EVAL's KEYS and ARGV tables (see
    /// [`REUSED_TABLE_MAX`]).
    argument_tables: (std::ffi::c_int, std::ffi::c_int),
    /// The globals KEYS and ARGV hold those two tables.
    globals_reused: AtomicBool,
}

/// After an invocation, the state is collected once it holds this much
/// more than the last collection left, or a quarter more if that is more.
/// Redis forces a step of 50 KB of collector work every 50 scripts, which
/// here cost a short script 3.6k instructions, because such a script
/// leaves little garbage while each step walks the whole sandbox; Lua's
/// own pacing alone let a 72 KB state grow past Redis's bound of 100 KB
/// (its suite's "EVAL does not leak in the Lua stack"). Collecting by how
/// much garbage there is costs a short script about a quarter of Redis's
/// rule (0.97k instructions against 3.6k) and keeps the state within a
/// quarter of what it needs.
const GC_SLACK_BYTES: usize = 16 * 1024;

/// The error a script reports when SCRIPT KILL stopped it.
pub const KILLED: &str = "ERR Script killed by user with SCRIPT KILL...";

impl Engine {
    pub fn new(mode: Mode) -> mlua::Result<Engine> {
        // The debug library is opened for the prelude's error handler,
        // which keeps a private reference; scripts never see it.
        let libs = StdLib::TABLE | StdLib::STRING | StdLib::MATH | StdLib::DEBUG;
        // SAFETY: `debug` is removed from the globals by the prelude before
        // any script runs; only the prelude's error handler keeps it.
        let lua = unsafe { Lua::unsafe_new_with(libs, LuaOptions::new()) };
        lua.set_memory_limit(MEMORY_LIMIT)?;
        crate::libs::install(&lua)?;
        install_math(&lua, &Arc::new(Mutex::new(Lrand48::new(seed_from_clock()))))?;
        let prelude: Table = lua
            .load(include_str!("prelude.lua"))
            .set_name("=prelude")
            .eval()?;
        let parts = Parts {
            // SAFETY: `invoke_raw` is called only by `invoke_inner`, with
            // the stack it expects.
            invoke: unsafe { lua.create_c_function(invoke_raw)? },
            handler: prelude.get("handler")?,
            reset: prelude.get("reset")?,
            raise: prelude.get("raise")?,
            impl_: prelude.get("impl")?,
            env: prelude.get("env")?,
            run: prelude.get("run")?,
            set_source: prelude.get("set_source")?,
            library_api: prelude.get("library_api")?,
        };
        lua.set_named_registry_value(RAISE_KEY, parts.raise.clone())?;
        let current = Arc::new(Mutex::new(Current::default()));
        install_api(&lua, &parts, &current)?;
        let kill_hook = Arc::new(AtomicBool::new(false));
        install_watch_hook(&lua, &current, &kill_hook)?;
        let wrap: Function = prelude.get("wrap")?;
        let math: Table = lua.globals().raw_get("math")?;
        for name in ["random", "randomseed"] {
            let f: Function = math.raw_get(name)?;
            math.raw_set(name, wrap.call::<Function>(f)?)?;
        }
        let redis: Table = prelude.get("redis")?;
        install_call_functions(&lua, &redis, &current)?;
        for t in [&redis, &parts.library_api] {
            t.set("REDIS_VERSION", REDIS_VERSION)?;
            t.set("REDIS_VERSION_NUM", REDIS_VERSION_NUM)?;
        }
        redis.set(
            "sha1hex",
            lua.create_function(|lua, args: MultiValue| {
                if args.len() != 1 {
                    return raise_error(lua, "wrong number of arguments");
                }
                let text = match &args[0] {
                    Value::String(s) => s.as_bytes().to_vec(),
                    Value::Number(n) => format_lua_number(*n).into_bytes(),
                    Value::Integer(n) => n.to_string().into_bytes(),
                    _ => Vec::new(),
                };
                Ok(MultiValue::from_iter([Value::String(
                    lua.create_string(sha1hex(&text))?,
                )]))
            })?,
        )?;
        // sha1hex speaks the raise protocol, which `wrap` understands.
        let sha: Function = redis.get("sha1hex")?;
        redis.set("sha1hex", wrap.call::<Function>(sha)?)?;
        let readonly: Function = prelude.get("readonly")?;
        let globals = lua.globals();
        // The libraries raise their errors as their C originals do.
        for name in [
            "cjson",
            "cmsgpack",
            "bit",
            "struct",
            "redis",
            "string",
            "math",
            "table",
            "coroutine",
        ] {
            if let Value::Table(t) = globals.raw_get::<Value>(name)? {
                globals.raw_set(name, readonly.call::<Table>(t)?)?;
            }
        }
        // SAFETY: two new tables, each kept by a registry reference.
        let argument_tables = unsafe {
            let mut slots = (0, 0);
            lua.exec_raw::<()>((), |state| {
                // Clearing walks every slot the table has: they start with
                // none and grow as scripts need.
                mlua::ffi::lua_createtable(state, 0, 0);
                slots.0 = mlua::ffi::luaL_ref(state, mlua::ffi::LUA_REGISTRYINDEX);
                mlua::ffi::lua_createtable(state, 0, 0);
                slots.1 = mlua::ffi::luaL_ref(state, mlua::ffi::LUA_REGISTRYINDEX);
            })?;
            slots
        };
        lua.gc_collect()?;
        let gc_floor = lua.used_memory().into();
        Ok(Engine {
            gc_floor,
            argument_tables,
            globals_reused: AtomicBool::new(false),
            lua,
            parts,
            mode,
            current,
            kill_hook,
            memory_limit: MEMORY_LIMIT,
        })
    }

    /// Changes the state's memory limit ([`MEMORY_LIMIT`] by default); the
    /// fuzz target runs with a small one.
    pub fn set_memory_limit(&mut self, bytes: usize) -> mlua::Result<()> {
        self.lua.set_memory_limit(bytes)?;
        self.memory_limit = bytes;
        Ok(())
    }

    /// Memory the interpreter holds (INFO's `used_memory_lua`).
    pub fn used_memory(&self) -> usize {
        self.lua.used_memory()
    }

    /// Compiles a script body into a function that runs in the sandbox;
    /// the error is the compiler's message (`user_script:1: ...`).
    pub fn compile(&self, chunk_name: &str, body: &[u8]) -> Result<Function, String> {
        if body.first() == Some(&27) {
            return Err("attempt to load a binary chunk".into());
        }
        let f = self
            .lua
            .load(body)
            .set_name(format!("@{chunk_name}"))
            .set_environment(self.parts.env.clone())
            .into_function()
            .map_err(|e| compile_message(&e))?;
        Ok(f)
    }

    /// Runs `f` with `keys` and `args` and converts what it returns (or the
    /// error it raised) into a reply. `name` is what error replies say ran
    /// (`f_<sha>` for EVAL, the function's name for FCALL).
    pub fn invoke(
        &self,
        f: &Function,
        keys: &[Bytes],
        args: &[Bytes],
        name: &str,
        host: &mut dyn Host,
        watch: &Arc<Watch>,
    ) -> Frame {
        let outcome = self.invoke_inner(f, keys, args, name, host, watch);
        let panic = self
            .current
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .panic
            .take();
        if let Some(panic) = panic {
            std::panic::resume_unwind(panic);
        }
        // Lua 5.1 collects no garbage when an allocation fails, so a script
        // that ran into the memory limit would leave every later allocation
        // failing, compiling the next script included: past half the limit
        // the state is collected whatever the slack.
        let used = self.lua.used_memory();
        let floor = self.gc_floor.load(Ordering::Relaxed);
        if used > floor + GC_SLACK_BYTES.max(floor / 4) || used > self.memory_limit / 2 {
            let _ = self.lua.gc_collect();
            self.gc_floor
                .store(self.lua.used_memory(), Ordering::Relaxed);
        }
        match outcome {
            // Once killed, even the error handler is stopped: whatever
            // came back, the reply says the script was killed.
            _ if watch.killed() => Frame::error(KILLED),
            Ok(frame) => frame,
            Err(e) => Frame::error(format!("ERR Error running script {name}, {e}")),
        }
    }

    fn invoke_inner(
        &self,
        f: &Function,
        keys: &[Bytes],
        args: &[Bytes],
        name: &str,
        host: &mut dyn Host,
        watch: &Arc<Watch>,
    ) -> mlua::Result<Frame> {
        let _current = Invocation::begin(&self.current, host, watch);
        let eval_mode = self.mode == Mode::Eval;
        let result = (|| {
            let reuse = eval_mode && keys.len().max(args.len()) <= REUSED_TABLE_MAX;
            // Scripts cannot replace the globals, so once KEYS and ARGV
            // hold the reused tables they keep holding them.
            let globals_held = self.globals_reused.swap(reuse, Ordering::Relaxed);
            let call = InvocationArgs {
                keys,
                args,
                tables: self.argument_tables,
                set_globals: eval_mode && !(reuse && globals_held),
                reuse,
                nargs: if eval_mode { 0 } else { 2 },
            };
            let call_ptr = LightUserData(&call as *const InvocationArgs as *mut std::ffi::c_void);
            let (ok, value): (bool, Value) =
                self.parts.invoke.call((call_ptr, &self.parts.handler, f))?;
            if !ok {
                // A script stopped by an error, a kill above all, may have
                // left the prelude's count of nested pcalls raised.
                self.parts.reset.call::<()>(())?;
            }
            let resp3 = self.current.lock().unwrap_or_else(|p| p.into_inner()).resp3;
            if ok {
                Ok(convert::lua_to_frame(&value, resp3))
            } else {
                Ok(convert::script_error(&value, name))
            }
        })();
        if self.kill_hook.swap(false, Ordering::Relaxed) {
            install_watch_hook(&self.lua, &self.current, &self.kill_hook)?;
        }
        result
    }

    /// Runs a function library's code (without its metadata line) so that
    /// it registers its functions; the error is the reply's text.
    pub fn load_library(&self, code: &[u8]) -> Result<Vec<Registered>, String> {
        let f = self
            .compile("user_function", code)
            .map_err(|e| format!("ERR Error compiling function: {e}"))?;
        let lua = &self.lua;
        let registered = Mutex::new(Vec::<Registered>::new());
        let started = Instant::now();
        lua.set_global_hook(
            HookTriggers::new().every_nth_instruction(HOOK_EVERY_INSTRUCTIONS),
            move |_, _| {
                if started.elapsed() > LOAD_TIMEOUT {
                    Err(mlua::Error::RuntimeError("FUNCTION LOAD timeout".into()))
                } else {
                    Ok(VmState::Continue)
                }
            },
        )
        .map_err(|e| e.to_string())?;
        let outcome = lua.scope(|scope| {
            let raise = self.parts.raise.clone();
            let registered = &registered;
            self.parts.impl_.raw_set(
                "register_function",
                scope.create_function(move |lua, args: MultiValue| match registration(&args) {
                    Ok(r) => {
                        let mut all = registered.lock().unwrap_or_else(|p| p.into_inner());
                        if all.iter().any(|x| x.name == r.name) {
                            return raise_text(
                                lua,
                                &raise,
                                "Function already exists in the library",
                            );
                        }
                        all.push(r);
                        Ok(MultiValue::new())
                    }
                    Err(text) => raise_text(lua, &raise, &text),
                })?,
            )?;
            self.parts.impl_.raw_set(
                "load_log",
                scope.create_function(|lua, args: MultiValue| {
                    let raise: Table = lua.named_registry_value(RAISE_KEY)?;
                    log_call(lua, &raise, &args, |level, text| {
                        let text = String::from_utf8_lossy(text);
                        match level {
                            0 | 1 => tracing::debug!(target: "meridian::script", "{text}"),
                            2 => tracing::info!(target: "meridian::script", "{text}"),
                            _ => tracing::warn!(target: "meridian::script", "{text}"),
                        }
                    })
                })?,
            )?;
            self.parts.set_source.call::<()>(true)?;
            let out: MultiValue = self.parts.run.call(f)?;
            let mut values = out.into_iter();
            let ok = matches!(values.next(), Some(Value::Boolean(true)));
            let value = values.next().unwrap_or(Value::Nil);
            Ok((ok, value))
        });
        lua.remove_global_hook();
        let _ = install_watch_hook(lua, &self.current, &self.kill_hook);
        let _ = self.parts.set_source.call::<()>(false);
        for key in ["register_function", "load_log"] {
            let _ = self.parts.impl_.raw_set(key, Value::Nil);
        }
        // Eval mode set KEYS and ARGV to nil on the real globals; nothing
        // reads them in a function state.
        let (ok, value) = outcome.map_err(|e| format!("ERR Error registering functions: {e}"))?;
        if !ok {
            let msg = match &value {
                Value::Table(t) => t
                    .raw_get::<Option<mlua::String>>("err")
                    .ok()
                    .flatten()
                    .map(|s| String::from_utf8_lossy(&s.as_bytes()).into_owned())
                    .unwrap_or_else(|| "ERR unknown error".into()),
                other => format!("{other:?}"),
            };
            return Err(format!("ERR Error registering functions: {msg}"));
        }
        let registered = registered.into_inner().unwrap_or_else(|p| p.into_inner());
        if registered.is_empty() {
            return Err("ERR No functions registered".into());
        }
        Ok(registered)
    }
}

/// The host of the invocation running now. The API functions are made
/// once per state and find their host here: making them per invocation
/// (scoped closures borrowing the host) cost more than a small script.
#[derive(Default)]
pub(crate) struct Current {
    pub(crate) host: Option<HostPtr>,
    /// The running invocation's watch, checked by the hook.
    watch: Option<Arc<Watch>>,
    /// `redis.setresp(3)` was called in this invocation.
    pub(crate) resp3: bool,
    /// A command run by `redis.call` panicked: the panic goes on once the
    /// script has returned to Rust (it cannot unwind through Lua's C).
    pub(crate) panic: Option<Box<dyn std::any::Any + Send>>,
}

/// The running invocation's host, by address. It is set by
/// [`Invocation::begin`] from the `&mut dyn Host` that `invoke` holds for
/// the whole invocation, and cleared when the invocation ends (the guard's
/// drop), so it is only dereferenced while that borrow is alive; the
/// interpreter runs one call at a time, so no two references to it exist
/// at once.
pub(crate) struct HostPtr(pub(crate) *mut (dyn Host + 'static));

// SAFETY: the pointer is only dereferenced on the thread running the
// invocation, while `invoke` holds the `&mut dyn Host` it came from (and
// `Host: Send`).
unsafe impl Send for HostPtr {}

/// Sets the running invocation's host and clears it when dropped.
struct Invocation<'a> {
    current: &'a Mutex<Current>,
}

impl<'a> Invocation<'a> {
    fn begin(
        current: &'a Mutex<Current>,
        host: &mut dyn Host,
        watch: &Arc<Watch>,
    ) -> Invocation<'a> {
        let ptr: *mut (dyn Host + '_) = host;
        // SAFETY: only the lifetime is erased; the guard clears the pointer
        // before `host`'s borrow ends (see `HostPtr`).
        let ptr: *mut (dyn Host + 'static) = unsafe { std::mem::transmute(ptr) };
        let mut c = current.lock().unwrap_or_else(|p| p.into_inner());
        c.host = Some(HostPtr(ptr));
        c.watch = Some(watch.clone());
        c.resp3 = false;
        Invocation { current }
    }
}

impl Drop for Invocation<'_> {
    fn drop(&mut self) {
        let mut c = self.current.lock().unwrap_or_else(|p| p.into_inner());
        c.host = None;
        c.watch = None;
    }
}

/// Runs `f` with the running invocation's host; `None` outside one.
fn with_host<R>(current: &Mutex<Current>, f: impl FnOnce(&mut dyn Host) -> R) -> Option<R> {
    let ptr = current
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .host
        .as_ref()
        .map(|h| h.0)?;
    // SAFETY: see `HostPtr`: set only while `invoke` holds the host, and
    // the lock is released before the host runs a command.
    Some(f(unsafe { &mut *ptr }))
}

/// The hook that watches a running invocation (its [`Watch`]: busy, kill),
/// installed once per state and again after a kill or a library load. It
/// is global, so coroutines a script creates are watched too: mlua's
/// per-thread hook switches itself off in any other thread, and a loop in
/// a coroutine could never be killed.
fn install_watch_hook(
    lua: &Lua,
    current: &Arc<Mutex<Current>>,
    kill_hook: &Arc<AtomicBool>,
) -> mlua::Result<()> {
    let current = current.clone();
    let kill_hook = kill_hook.clone();
    lua.set_global_hook(
        HookTriggers::new().every_nth_instruction(HOOK_EVERY_INSTRUCTIONS),
        move |lua, _| {
            let watch = current
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .watch
                .clone();
            if watch.is_none_or(|w| w.check()) {
                return Ok(VmState::Continue);
            }
            // From now on every instruction raises, so a script that
            // catches the error (pcall, xpcall, coroutine.resume) in a loop
            // is stopped again at the catcher's next instruction, until
            // nothing is left to catch it.
            kill_hook.store(true, Ordering::Relaxed);
            let every = HookTriggers::new().every_nth_instruction(1);
            let _ = lua.set_global_hook(every, |_, _| {
                Err(mlua::Error::RuntimeError(
                    KILLED["ERR ".len()..].to_string(),
                ))
            });
            Err(mlua::Error::RuntimeError(
                KILLED["ERR ".len()..].to_string(),
            ))
        },
    )
}

/// Makes `redis.call` and `redis.pcall` the C functions of
/// [`crate::call`], which find the running invocation in `current`.
/// C functions also keep Redis's error positions: Lua 5.1 runs a tail call
/// to a Lua function in the caller's frame, so a script's `return
/// redis.call(...)` into a Lua wrapper left no frame of its own for the
/// error handler to name, and the error lost Redis's `script: <sha>, on
/// @user_script:<line>.`; a tail call to a C function keeps the caller's
/// frame, as with Redis's own C `redis.call`. Reading the arguments off the
/// stack also takes Redis's limit of arguments: a C function holds at most
/// 8,000 stack slots.
fn install_call_functions(
    lua: &Lua,
    redis: &Table,
    current: &Arc<Mutex<Current>>,
) -> mlua::Result<()> {
    let current = Arc::as_ptr(current);
    // SAFETY: one slot is reserved in the registry for the functions'
    // replies, and each function is made with its two upvalues; `current`
    // is the engine's, which outlives its state.
    let (call, pcall): (Function, Function) = unsafe {
        lua.exec_raw((), |state| {
            mlua::ffi::lua_pushboolean(state, 0);
            let slot = mlua::ffi::luaL_ref(state, mlua::ffi::LUA_REGISTRYINDEX);
            crate::call::push_call_function(state, current, slot, false);
            crate::call::push_call_function(state, current, slot, true);
        })?
    };
    redis.raw_set("call", call)?;
    redis.raw_set("pcall", pcall)?;
    Ok(())
}

/// The `redis` API functions that act for the running invocation
/// (`setresp`, `set_repl`, `acl_check_cmd`, `log`; `call` and `pcall` are
/// [`install_call_functions`]'), made once per state.
fn install_api(lua: &Lua, parts: &Parts, current: &Arc<Mutex<Current>>) -> mlua::Result<()> {
    let outside = |lua: &Lua, raise: &Table, what: &str| {
        raise_text(
            lua,
            raise,
            &format!("{what} can only be called inside a script invocation"),
        )
    };
    let raise = parts.raise.clone();
    let cur = current.clone();
    parts.impl_.raw_set(
        "setresp",
        lua.create_function(move |lua, args: MultiValue| {
            if cur.lock().unwrap_or_else(|p| p.into_inner()).host.is_none() {
                return outside(lua, &raise, "redis.setresp");
            }
            if args.len() != 1 {
                return raise_text(lua, &raise, "redis.setresp() requires one argument.");
            }
            let resp3 = match lua_number(&args[0]).map(|n| n as i64) {
                Some(2) => false,
                Some(3) => true,
                _ => {
                    return raise_text(lua, &raise, "RESP version must be 2 or 3.");
                }
            };
            cur.lock().unwrap_or_else(|p| p.into_inner()).resp3 = resp3;
            Ok(MultiValue::new())
        })?,
    )?;
    let raise = parts.raise.clone();
    let cur = current.clone();
    parts.impl_.raw_set(
        "set_repl",
        lua.create_function(move |lua, args: MultiValue| {
            if cur.lock().unwrap_or_else(|p| p.into_inner()).host.is_none() {
                return outside(lua, &raise, "redis.set_repl");
            }
            if args.len() != 1 {
                return raise_text(lua, &raise, "redis.set_repl() requires two arguments.");
            }
            // Replication is always by the script's effects, as one op;
            // the flags are checked as Redis checks them.
            let flags = lua_number(&args[0]).unwrap_or(0.0) as i64;
            if flags & !3 != 0 {
                return raise_text(
                    lua,
                    &raise,
                    "Invalid replication flags. Use REPL_AOF, REPL_REPLICA, REPL_ALL or REPL_NONE.",
                );
            }
            Ok(MultiValue::new())
        })?,
    )?;
    let raise = parts.raise.clone();
    let cur = current.clone();
    parts.impl_.raw_set(
        "acl_check_cmd",
        lua.create_function(move |lua, (packed, n): (Table, usize)| {
            let argv = match packed_args(&packed, n) {
                Ok(argv) => argv,
                Err(text) => {
                    return raise_text(lua, &raise, text);
                }
            };
            match with_host(&cur, |host| host.acl_check(&argv)) {
                None => outside(lua, &raise, "redis.acl_check_cmd"),
                Some(Some(ok)) => Ok(MultiValue::from_iter([Value::Boolean(ok)])),
                Some(None) => raise_text(
                    lua,
                    &raise,
                    "Invalid command passed to redis.acl_check_cmd()",
                ),
            }
        })?,
    )?;
    let raise = parts.raise.clone();
    let cur = current.clone();
    parts.impl_.raw_set(
        "log",
        lua.create_function(move |lua, args: MultiValue| {
            let mut logged = None;
            let out = log_call(lua, &raise, &args, |level, text| {
                logged = Some((level, text.to_vec()));
            })?;
            if let Some((level, text)) = logged {
                if with_host(&cur, |host| host.log(level, &text)).is_none() {
                    return outside(lua, &raise, "redis.log");
                }
            }
            Ok(out)
        })?,
    )?;
    Ok(())
}

/// What one `redis.register_function` call registers, or why it cannot.
fn registration(args: &MultiValue) -> Result<Registered, String> {
    match args.len() {
        1 => {
            let Value::Table(named) = &args[0] else {
                return Err("calling redis.register_function with a single argument is only applicable to Lua table (representing named arguments).".into());
            };
            let mut name = None;
            let mut callback = None;
            let mut description = None;
            let mut flags = Vec::new();
            for pair in named.pairs::<Value, Value>() {
                let (k, v) = pair.map_err(|e| e.to_string())?;
                let key =
                    match &k {
                        Value::String(s) => s.to_string_lossy(),
                        _ => return Err(
                            "named argument key given to redis.register_function is not a string"
                                .into(),
                        ),
                    };
                match key.as_str() {
                    "function_name" => match v {
                        Value::String(s) => name = Some(s.as_bytes().to_vec()),
                        _ => return Err("function_name argument given to redis.register_function must be a string".into()),
                    },
                    "description" => match v {
                        Value::String(s) => description = Some(s.to_string_lossy()),
                        _ => return Err("description argument given to redis.register_function must be a string".into()),
                    },
                    "callback" => match v {
                        Value::Function(f) => callback = Some(f),
                        _ => return Err("callback argument given to redis.register_function must be a function".into()),
                    },
                    "flags" => flags = function_flags(&v)?,
                    _ => return Err("unknown argument given to redis.register_function".into()),
                }
            }
            let name = name.ok_or("redis.register_function must get a function name argument")?;
            let callback =
                callback.ok_or("redis.register_function must get a callback argument")?;
            finish_registration(name, callback, description, flags)
        }
        2 => {
            let Value::String(name) = &args[0] else {
                return Err("first argument to redis.register_function must be a string".into());
            };
            let Value::Function(callback) = &args[1] else {
                return Err("second argument to redis.register_function must be a function".into());
            };
            finish_registration(name.as_bytes().to_vec(), callback.clone(), None, Vec::new())
        }
        _ => Err("wrong number of arguments to redis.register_function".into()),
    }
}

fn finish_registration(
    name: Vec<u8>,
    callback: Function,
    description: Option<String>,
    flags: Vec<String>,
) -> Result<Registered, String> {
    if !valid_name(&name) {
        return Err(BAD_NAME.into());
    }
    Ok(Registered {
        name: String::from_utf8_lossy(&name).into_owned(),
        callback,
        description,
        flags,
    })
}

fn function_flags(v: &Value) -> Result<Vec<String>, String> {
    let Value::Table(t) = v else {
        return Err(
            "flags argument to redis.register_function must be a table representing function flags"
                .into(),
        );
    };
    let mut flags = Vec::new();
    for i in 1.. {
        match t.raw_get::<Value>(i).map_err(|e| e.to_string())? {
            Value::Nil => break,
            Value::String(s) => {
                let flag = s.to_string_lossy();
                if !FUNCTION_FLAGS.contains(&flag.as_str()) {
                    return Err("unknown flag given".into());
                }
                flags.push(flag);
            }
            _ => return Err("unknown flag given".into()),
        }
    }
    Ok(flags)
}

/// The arguments of `redis.call`, handed over in a table with their count.
fn packed_args(packed: &Table, n: usize) -> Result<Vec<Bytes>, &'static str> {
    if n == 0 {
        return Err("Please specify at least one argument for this redis lib call");
    }
    (1..=n)
        .map(|i| match packed.raw_get::<Value>(i) {
            Ok(v) => command_arg(&v),
            Err(_) => Err(NOT_A_STRING),
        })
        .collect()
}

const NOT_A_STRING: &str = "Lua redis lib command arguments must be strings or integers";

/// One argument of a command run from a script: a string, or a number
/// written as Redis writes it (`%.17g`).
fn command_arg(v: &Value) -> Result<Bytes, &'static str> {
    match v {
        Value::String(s) => Ok(Bytes::copy_from_slice(&s.as_bytes())),
        Value::Number(n) => Ok(Bytes::from(format_g17(*n))),
        Value::Integer(n) => Ok(Bytes::from(n.to_string())),
        _ => Err(NOT_A_STRING),
    }
}

fn lua_number(v: &Value) -> Option<f64> {
    match v {
        Value::Number(n) => Some(*n),
        Value::Integer(n) => Some(*n as f64),
        Value::String(s) => s.to_str().ok()?.trim().parse().ok(),
        _ => None,
    }
}

fn log_call(
    lua: &Lua,
    raise: &Table,
    args: &MultiValue,
    mut log: impl FnMut(u8, &[u8]),
) -> mlua::Result<MultiValue> {
    if args.len() < 2 {
        return raise_text(lua, raise, "redis.log() requires two arguments or more.");
    }
    let Some(level) = lua_number(&args[0]) else {
        return raise_text(lua, raise, "First argument must be a number (log level).");
    };
    let level = level as i64;
    if !(0..=3).contains(&level) {
        return raise_text(lua, raise, "Invalid debug level.");
    }
    let mut text = Vec::new();
    for (i, v) in args.iter().skip(1).enumerate() {
        let piece = match v {
            Value::String(s) => s.as_bytes().to_vec(),
            Value::Number(n) => format_lua_number(*n).into_bytes(),
            Value::Integer(n) => n.to_string().into_bytes(),
            _ => continue,
        };
        if i > 0 {
            text.push(b' ');
        }
        text.extend_from_slice(&piece);
    }
    log(level as u8, &text);
    Ok(MultiValue::new())
}

/// Hands `value` back to the Lua side to be raised as the error
/// (`raise`), or returned as a value.
fn raise_or_return(
    _lua: &Lua,
    raise_marker: &Table,
    value: impl mlua::IntoLua,
    raise: bool,
) -> mlua::Result<MultiValue> {
    let value = value.into_lua(_lua)?;
    if raise {
        Ok(MultiValue::from_iter([
            Value::Table(raise_marker.clone()),
            value,
        ]))
    } else {
        Ok(MultiValue::from_iter([value]))
    }
}

/// Raises Redis's error table for `text` (see [`convert::error_table`]).
fn raise_text(lua: &Lua, raise: &Table, text: &str) -> mlua::Result<MultiValue> {
    let t = convert::error_table(lua, text)?;
    raise_or_return(lua, raise, Value::Table(t), true)
}

/// [`raise_text`] with the marker taken from the registry.
fn raise_error(lua: &Lua, text: &str) -> mlua::Result<MultiValue> {
    let raise: Table = lua.named_registry_value(RAISE_KEY)?;
    raise_text(lua, &raise, text)
}

/// The compiler's message without mlua's decoration.
fn compile_message(e: &mlua::Error) -> String {
    match e {
        mlua::Error::SyntaxError { message, .. } => message.clone(),
        other => other.to_string(),
    }
}

/// SHA-1 of `data` in lower-case hex: a script's name in the cache.
pub fn sha1hex(data: &[u8]) -> String {
    use sha1::{Digest, Sha1};
    let digest = Sha1::digest(data);
    let mut out = String::with_capacity(40);
    for b in digest {
        out.push_str(&format!("{b:02x}"));
    }
    out
}

/// A number as C's `%.17g` writes it (the text Redis gives commands).
pub fn format_g17(n: f64) -> String {
    convert::format_g(n, 17)
}

/// A number as Lua 5.1's `tostring` writes it (`%.14g`).
pub fn format_lua_number(n: f64) -> String {
    convert::format_g(n, 14)
}

fn seed_from_clock() -> i32 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    (nanos as u32 ^ std::process::id()) as i32
}

/// POSIX `lrand48`, which Redis uses for `math.random` so that a seed gives
/// the same sequence on every platform.
#[derive(Debug, Clone)]
pub struct Lrand48 {
    x: u64,
}

impl Lrand48 {
    const A: u64 = 0x5_DEEC_E66D;
    const C: u64 = 0xB;
    const MASK: u64 = (1 << 48) - 1;
    /// Redis's `REDIS_LRAND48_MAX`.
    pub const MAX: u32 = i32::MAX as u32;

    pub fn new(seed: i32) -> Lrand48 {
        let mut r = Lrand48 { x: 0 };
        r.seed(seed);
        r
    }

    pub fn seed(&mut self, seed: i32) {
        self.x = (((seed as u32 as u64) << 16) | 0x330E) & Self::MASK;
    }

    pub fn draw(&mut self) -> u32 {
        self.x = (Self::A.wrapping_mul(self.x).wrapping_add(Self::C)) & Self::MASK;
        (self.x >> 17) as u32
    }
}

/// `math.random` and `math.randomseed` on [`Lrand48`], as Redis replaces them.
fn install_math(lua: &Lua, rng: &Arc<Mutex<Lrand48>>) -> mlua::Result<()> {
    let math: Table = lua.globals().get("math")?;
    let r = rng.clone();
    math.set(
        "random",
        lua.create_function(move |_, args: MultiValue| {
            let draw = r.lock().unwrap_or_else(|p| p.into_inner()).draw();
            let x = (draw % Lrand48::MAX) as f64 / Lrand48::MAX as f64;
            let int = |v: &Value| lua_number(v).map(|n| n as i32);
            match args.len() {
                0 => Ok(x),
                1 => {
                    let u = int(&args[0]).ok_or_else(|| bad_arg(1, "number expected"))?;
                    if u < 1 {
                        return Err(bad_arg(1, "interval is empty"));
                    }
                    Ok((x * u as f64).floor() + 1.0)
                }
                2 => {
                    let l = int(&args[0]).ok_or_else(|| bad_arg(1, "number expected"))?;
                    let u = int(&args[1]).ok_or_else(|| bad_arg(2, "number expected"))?;
                    if l > u {
                        return Err(bad_arg(2, "interval is empty"));
                    }
                    Ok((x * (u as f64 - l as f64 + 1.0)).floor() + l as f64)
                }
                _ => Err(mlua::Error::RuntimeError(
                    "wrong number of arguments".into(),
                )),
            }
        })?,
    )?;
    let r = rng.clone();
    math.set(
        "randomseed",
        lua.create_function(move |_, seed: Value| {
            let seed = lua_number(&seed).ok_or_else(|| bad_arg(1, "number expected"))?;
            r.lock()
                .unwrap_or_else(|p| p.into_inner())
                .seed(seed as i32);
            Ok(())
        })?,
    )?;
    Ok(())
}

fn bad_arg(n: usize, what: &str) -> mlua::Error {
    mlua::Error::RuntimeError(format!("bad argument #{n} to 'random' ({what})"))
}
