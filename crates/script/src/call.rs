//! `redis.call` and `redis.pcall` as C functions over Lua's own API.
//!
//! They are the hot path of every script: Redis's one-`INCR` script is a
//! call into Lua, one `redis.call` and a return. Going through mlua's
//! values cost more than the command itself (a registry reference per
//! argument and per reply, a protected call per string made), so these
//! read their arguments straight off the Lua stack, run the command on the
//! invocation's [`Host`](crate::Host), and push the reply with Redis's
//! conversion rules.
//!
//! Lua raises errors by `longjmp`, which skips Rust frames without running
//! their destructors. So nothing Rust owns is alive where Lua may raise:
//! the arguments are read without allocating in Lua, the reply is pushed
//! inside `lua_cpcall` by frames that only borrow it, and it is dropped
//! before the error the script does not catch is raised.

use std::ffi::{c_int, c_void};
use std::fmt::Write as _;
use std::sync::Mutex;

use bytes::Bytes;
use meridian_resp::Frame;
use mlua::ffi::{self, lua_State};

use crate::convert::format_g;
use crate::engine::Current;

/// Nesting of a reply deeper than this is cut off by an error, as Lua's
/// stack would stop Redis's conversion.
const REPLY_DEPTH_MAX: usize = 1000;

const NO_ARGUMENTS: &str = "Please specify at least one argument for this redis lib call";
const NOT_A_STRING: &str = "Lua redis lib command arguments must be strings or integers";
const PANICKED: &str = "the command panicked";
const OUTSIDE: &str = "redis.call/pcall can only be called inside a script invocation";

/// Makes `redis.call` (`protected` false) or `redis.pcall` and leaves it
/// on the stack. `current` must outlive the state; `slot` is a registry
/// index the function may overwrite.
///
/// # Safety
/// `state` is a valid Lua state with room for two more values.
pub unsafe fn push_call_function(
    state: *mut lua_State,
    current: *const Mutex<Current>,
    slot: c_int,
    protected: bool,
) {
    // SAFETY: the caller's promise; the closure's upvalues are a light
    // userdata and an integer.
    unsafe {
        ffi::lua_pushlightuserdata(state, current as *mut c_void);
        ffi::lua_pushinteger(state, slot as ffi::lua_Integer);
        let f: ffi::lua_CFunction = if protected { pcall_entry } else { call_entry };
        ffi::lua_pushcclosure(state, f, 2);
    }
}

unsafe extern "C-unwind" fn call_entry(state: *mut lua_State) -> c_int {
    // SAFETY: Lua calls it with a valid state and the closure's upvalues.
    unsafe { redis_call(state, false) }
}

unsafe extern "C-unwind" fn pcall_entry(state: *mut lua_State) -> c_int {
    // SAFETY: as `call_entry`.
    unsafe { redis_call(state, true) }
}

/// What a call came to, before anything goes back to Lua.
enum Outcome {
    /// The command's reply, converted for the protocol the script chose.
    Reply { frame: Frame, resp3: bool },
    /// Refused before any command ran; `always_raise` even under pcall.
    Refused {
        text: &'static str,
        always_raise: bool,
    },
}

impl Outcome {
    fn raises(&self, protected: bool) -> bool {
        match self {
            Outcome::Reply { frame, .. } => frame.is_error() && !protected,
            Outcome::Refused { always_raise, .. } => *always_raise || !protected,
        }
    }
}

/// What the protected pusher reads: the outcome and where to leave the
/// value it made.
struct Push<'a> {
    outcome: &'a Outcome,
    slot: c_int,
}

/// # Safety
/// Called by Lua as a C closure made by [`push_call_function`].
unsafe fn redis_call(state: *mut lua_State, protected: bool) -> c_int {
    // SAFETY: the upvalues are what `push_call_function` set: the engine's
    // `Current`, which outlives the state, and the slot.
    let (current, slot) = unsafe {
        (
            &*(ffi::lua_touserdata(state, ffi::lua_upvalueindex(1)) as *const Mutex<Current>),
            ffi::lua_tointeger(state, ffi::lua_upvalueindex(2)) as c_int,
        )
    };
    // SAFETY: reading the arguments only looks at the stack.
    let outcome = match unsafe { read_args(state) } {
        Err(text) => Outcome::Refused {
            text,
            always_raise: false,
        },
        Ok(args) => run(current, args),
    };
    // SAFETY: the arguments are no longer needed.
    unsafe { ffi::lua_settop(state, 0) };
    if let Outcome::Reply { frame, resp3 } = &outcome {
        // SAFETY: the stack is empty, and a scalar takes one slot without
        // allocating, so nothing can raise.
        if unsafe { push_scalar(state, frame, *resp3) } {
            return 1;
        }
    }
    let raises = outcome.raises(protected);
    let push = Push {
        outcome: &outcome,
        slot,
    };
    // SAFETY: the arguments are no longer needed; `push_reply` runs
    // protected, so an allocation failing while it pushes comes back as a
    // status here instead of skipping this frame.
    let status = unsafe { ffi::lua_cpcall(state, push_reply, &push as *const Push as *mut c_void) };
    drop(outcome);
    // SAFETY: nothing of Rust's that needs dropping is left in this frame,
    // so raising may skip it.
    unsafe {
        if status != 0 {
            // The allocation's error is on the stack.
            ffi::lua_error(state);
        }
        ffi::lua_rawgeti(state, ffi::LUA_REGISTRYINDEX, slot as _);
        ffi::lua_pushnil(state);
        ffi::lua_rawseti(state, ffi::LUA_REGISTRYINDEX, slot as _);
        if raises {
            ffi::lua_error(state);
        }
    }
    1
}

/// Pushes a reply that Lua holds without allocating (the commonest: an
/// integer); false for any other, which [`push_frame`] pushes.
///
/// # Safety
/// `state` has a free slot.
unsafe fn push_scalar(state: *mut lua_State, frame: &Frame, resp3: bool) -> bool {
    // SAFETY: the caller's promise; none of these allocates.
    unsafe {
        match frame {
            Frame::Integer(n) => ffi::lua_pushnumber(state, *n as ffi::lua_Number),
            Frame::Null | Frame::NullArray if resp3 => ffi::lua_pushnil(state),
            Frame::Null | Frame::NullArray => ffi::lua_pushboolean(state, 0),
            Frame::Boolean(b) if resp3 => ffi::lua_pushboolean(state, *b as c_int),
            Frame::Boolean(b) => ffi::lua_pushnumber(state, *b as u8 as ffi::lua_Number),
            _ => return false,
        }
    }
    true
}

/// The command's arguments: strings as they are, numbers as Redis writes
/// them (`%.17g`).
///
/// # Safety
/// `state` is valid; nothing here allocates in Lua or raises.
unsafe fn read_args(state: *mut lua_State) -> Result<Vec<Bytes>, &'static str> {
    // SAFETY: indexes 1..=top are the call's arguments.
    unsafe {
        let n = ffi::lua_gettop(state);
        if n == 0 {
            return Err(NO_ARGUMENTS);
        }
        let mut args = Vec::with_capacity(n as usize);
        for i in 1..=n {
            match ffi::lua_type(state, i) {
                ffi::LUA_TSTRING => {
                    let mut len = 0usize;
                    let p = ffi::lua_tolstring(state, i, &mut len);
                    args.push(Bytes::copy_from_slice(std::slice::from_raw_parts(
                        p as *const u8,
                        len,
                    )));
                }
                ffi::LUA_TNUMBER => {
                    args.push(Bytes::from(format_g(ffi::lua_tonumber(state, i), 17)));
                }
                _ => return Err(NOT_A_STRING),
            }
        }
        Ok(args)
    }
}

/// Runs the command on the running invocation's host.
fn run(current: &Mutex<Current>, args: Vec<Bytes>) -> Outcome {
    let (host, resp3) = {
        let c = current.lock().unwrap_or_else(|p| p.into_inner());
        (c.host.as_ref().map(|h| h.0), c.resp3)
    };
    let Some(host) = host else {
        return Outcome::Refused {
            text: OUTSIDE,
            always_raise: true,
        };
    };
    // SAFETY: see `HostPtr`: set only while `invoke` holds the host, and
    // the lock is released before the host runs a command.
    let ran = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| unsafe {
        (*host).call(args, resp3)
    }));
    match ran {
        Ok(frame) => Outcome::Reply { frame, resp3 },
        Err(panic) => {
            current.lock().unwrap_or_else(|p| p.into_inner()).panic = Some(panic);
            Outcome::Refused {
                text: PANICKED,
                always_raise: true,
            }
        }
    }
}

/// Pushes the outcome's value and leaves it in the registry slot. Runs
/// under `lua_cpcall`: only borrows and stack buffers live in its frames.
unsafe extern "C-unwind" fn push_reply(state: *mut lua_State) -> c_int {
    // SAFETY: `lua_cpcall` passes the `Push` that `redis_call` holds.
    unsafe {
        let push = &*(ffi::lua_touserdata(state, 1) as *const Push);
        ffi::lua_settop(state, 0);
        match push.outcome {
            Outcome::Reply { frame, resp3 } => push_frame(state, frame, *resp3, 0),
            Outcome::Refused { text, .. } => push_error_table(state, text.as_bytes(), false),
        }
        ffi::lua_rawseti(state, ffi::LUA_REGISTRYINDEX, push.slot as _);
    }
    0
}

/// Pushes `frame` as Redis converts a reply for `redis.call`.
///
/// # Safety
/// Runs inside [`push_reply`]: Lua may raise from any push.
unsafe fn push_frame(state: *mut lua_State, frame: &Frame, resp3: bool, depth: usize) {
    // SAFETY: every push below has its slot: `lua_checkstack` makes room
    // for the few values each level holds at once.
    unsafe {
        if depth > REPLY_DEPTH_MAX || ffi::lua_checkstack(state, 4) == 0 {
            push_bytes(state, b"reply nested too deeply");
            ffi::lua_error(state);
        }
        match frame {
            Frame::Simple(s) => {
                ffi::lua_createtable(state, 0, 1);
                push_bytes(state, s.as_bytes());
                ffi::lua_setfield(state, -2, c"ok".as_ptr());
            }
            Frame::Error(text) => push_error_table(state, text.as_bytes(), true),
            Frame::Integer(n) => ffi::lua_pushnumber(state, *n as ffi::lua_Number),
            Frame::Bulk(b) => push_bytes(state, b),
            Frame::Null | Frame::NullArray if resp3 => ffi::lua_pushnil(state),
            Frame::Null | Frame::NullArray => ffi::lua_pushboolean(state, 0),
            Frame::Array(items) | Frame::Push(items) => push_array(state, items, resp3, depth),
            Frame::Set(items) if resp3 => {
                ffi::lua_createtable(state, 0, 1);
                ffi::lua_createtable(state, 0, items.len() as c_int);
                for item in items {
                    push_frame(state, item, resp3, depth + 1);
                    ffi::lua_pushboolean(state, 1);
                    ffi::lua_rawset(state, -3);
                }
                ffi::lua_setfield(state, -2, c"set".as_ptr());
            }
            Frame::Set(items) => push_array(state, items, resp3, depth),
            Frame::Map(pairs) if resp3 => {
                ffi::lua_createtable(state, 0, 1);
                ffi::lua_createtable(state, 0, pairs.len() as c_int);
                for (k, v) in pairs {
                    push_frame(state, k, resp3, depth + 1);
                    push_frame(state, v, resp3, depth + 1);
                    ffi::lua_rawset(state, -3);
                }
                ffi::lua_setfield(state, -2, c"map".as_ptr());
            }
            Frame::Map(pairs) => {
                ffi::lua_createtable(state, (pairs.len() * 2) as c_int, 0);
                for (i, (k, v)) in pairs.iter().enumerate() {
                    push_frame(state, k, resp3, depth + 1);
                    ffi::lua_rawseti(state, -2, (2 * i + 1) as _);
                    push_frame(state, v, resp3, depth + 1);
                    ffi::lua_rawseti(state, -2, (2 * i + 2) as _);
                }
            }
            Frame::Double(d) if resp3 => push_double_table(state, *d),
            Frame::Double(d) => push_formatted(state, format_args!("{}", G17(*d))),
            // Redis hands Lua the number its reply text reads back as,
            // which for a coordinate below 1 has fewer digits than the
            // double had.
            Frame::HumanDouble(d) if resp3 => {
                let mut text = StackText::new();
                let _ = write!(text, "{}", LongDouble(*d));
                let n = text.as_str().parse().unwrap_or(*d);
                push_double_table(state, n);
            }
            Frame::HumanDouble(d) => push_formatted(state, format_args!("{}", LongDouble(*d))),
            Frame::Boolean(b) if resp3 => ffi::lua_pushboolean(state, *b as c_int),
            Frame::Boolean(b) => ffi::lua_pushnumber(state, *b as u8 as ffi::lua_Number),
            Frame::BigNumber(s) if resp3 => {
                ffi::lua_createtable(state, 0, 1);
                push_bytes(state, s.as_bytes());
                ffi::lua_setfield(state, -2, c"big_number".as_ptr());
            }
            Frame::BigNumber(s) => push_bytes(state, s.as_bytes()),
            Frame::Verbatim { format, text } if resp3 => {
                ffi::lua_createtable(state, 0, 1);
                ffi::lua_createtable(state, 0, 2);
                push_bytes(state, format);
                ffi::lua_setfield(state, -2, c"format".as_ptr());
                push_bytes(state, text);
                ffi::lua_setfield(state, -2, c"string".as_ptr());
                ffi::lua_setfield(state, -2, c"verbatim_string".as_ptr());
            }
            Frame::Verbatim { text, .. } => push_bytes(state, text),
        }
    }
}

/// # Safety
/// As [`push_frame`].
unsafe fn push_array(state: *mut lua_State, items: &[Frame], resp3: bool, depth: usize) {
    // SAFETY: as `push_frame`.
    unsafe {
        ffi::lua_createtable(state, items.len() as c_int, 0);
        for (i, item) in items.iter().enumerate() {
            push_frame(state, item, resp3, depth + 1);
            ffi::lua_rawseti(state, -2, (i + 1) as _);
        }
    }
}

/// Redis's error table for an error reply's text: `CODE message` keeps
/// its code, a bare message gets `ERR`; trailing line breaks go. A reply
/// of a command that ran says its error was already counted.
///
/// # Safety
/// As [`push_frame`].
unsafe fn push_error_table(state: *mut lua_State, text: &[u8], from_command: bool) {
    let text = text.strip_prefix(b"-").unwrap_or(text);
    let trimmed = text.len()
        - text
            .iter()
            .rev()
            .take_while(|&&b| b == b'\r' || b == b'\n')
            .count();
    let text = &text[..trimmed];
    // SAFETY: as `push_frame`.
    unsafe {
        ffi::lua_createtable(state, 0, 2);
        // A reply's text starts with its code; a bare message gets ERR.
        match from_command && text.contains(&b' ') {
            true => push_bytes(state, text),
            false => {
                push_bytes(state, b"ERR ");
                push_bytes(state, text);
                ffi::lua_concat(state, 2);
            }
        }
        ffi::lua_setfield(state, -2, c"err".as_ptr());
        if from_command {
            ffi::lua_pushboolean(state, 1);
            ffi::lua_setfield(state, -2, c"ignore_error_stats_update".as_ptr());
        }
    }
}

/// # Safety
/// As [`push_frame`].
unsafe fn push_double_table(state: *mut lua_State, d: f64) {
    // SAFETY: as `push_frame`.
    unsafe {
        ffi::lua_createtable(state, 0, 1);
        ffi::lua_pushnumber(state, d);
        ffi::lua_setfield(state, -2, c"double".as_ptr());
    }
}

/// # Safety
/// As [`push_frame`].
unsafe fn push_bytes(state: *mut lua_State, bytes: &[u8]) {
    // SAFETY: Lua copies the bytes.
    unsafe {
        ffi::lua_pushlstring(state, bytes.as_ptr() as *const _, bytes.len());
    }
}

/// Pushes formatted text, written into a buffer on this frame's stack.
///
/// # Safety
/// As [`push_frame`].
unsafe fn push_formatted(state: *mut lua_State, args: std::fmt::Arguments<'_>) {
    let mut text = StackText::new();
    let _ = text.write_fmt(args);
    // SAFETY: as `push_frame`.
    unsafe { push_bytes(state, text.as_str().as_bytes()) }
}

/// Short text on the stack, so that nothing needs dropping if Lua raises
/// while it is pushed. Numbers are all it holds; longer text is cut.
struct StackText {
    buf: [u8; 64],
    len: usize,
}

impl StackText {
    fn new() -> StackText {
        StackText {
            buf: [0; 64],
            len: 0,
        }
    }

    fn as_str(&self) -> &str {
        std::str::from_utf8(&self.buf[..self.len]).unwrap_or("")
    }
}

impl std::fmt::Write for StackText {
    fn write_str(&mut self, s: &str) -> std::fmt::Result {
        let room = self.buf.len() - self.len;
        let n = s.len().min(room);
        self.buf[self.len..self.len + n].copy_from_slice(&s.as_bytes()[..n]);
        self.len += n;
        if n < s.len() {
            return Err(std::fmt::Error);
        }
        Ok(())
    }
}

/// A double as `%.17g` writes it.
struct G17(f64);

impl std::fmt::Display for G17 {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&format_g(self.0, 17))
    }
}

/// A double as Redis's `%.17Lg` reply text writes it.
struct LongDouble(f64);

impl std::fmt::Display for LongDouble {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&meridian_resp::format_long_double(self.0))
    }
}
