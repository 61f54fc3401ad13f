//! How the engine calls a script: one C function, made once, that builds
//! KEYS and ARGV from Rust's bytes and runs the script in `lua_pcall` with
//! the prelude's error handler.

use bytes::Bytes;

/// EVAL's KEYS and ARGV tables are refilled for each script rather than
/// made anew, up to this many items: a script cannot keep a reference to
/// them past its run (globals, the libraries and every table it could
/// store one in are read-only), so the only garbage a short script left
/// was these two tables, and collecting it cost it more than the script.
/// Functions get new tables, since a library may keep what it is given.
pub(crate) const REUSED_TABLE_MAX: usize = 64;

/// What [`invoke_raw`] needs from Rust: the invocation's arguments and
/// where EVAL's reused tables are.
pub(crate) struct InvocationArgs<'a> {
    pub(crate) keys: &'a [Bytes],
    pub(crate) args: &'a [Bytes],
    pub(crate) tables: (std::ffi::c_int, std::ffi::c_int),
    /// Make the tables the globals KEYS and ARGV (EVAL, when they do not
    /// hold them already).
    pub(crate) set_globals: bool,
    pub(crate) reuse: bool,
    /// The script's function takes KEYS and ARGV as arguments (FCALL: 2)
    /// or reads the globals (EVAL: 0).
    pub(crate) nargs: std::ffi::c_int,
}

/// Runs the script's function in a protected call with the prelude's
/// error handler, as Redis does, with KEYS and ARGV made from Rust's
/// bytes, and returns whether it succeeded and its first result (or the
/// handler's error). Called as a function made once (`Parts::invoke`)
/// through mlua's `Function::call`, which protects it without allocating
/// anything, so a short script leaves no garbage of the engine's making.
/// Its stack: the `InvocationArgs` (a light userdata), the handler and the
/// script's function.
pub(crate) unsafe extern "C-unwind" fn invoke_raw(state: *mut mlua::lua_State) -> std::ffi::c_int {
    use mlua::ffi;
    // SAFETY: the light userdata points at the `InvocationArgs` that
    // `invoke_inner` holds across the call; a C function has 20 free
    // slots, of which this uses at most five. Lua may raise while the
    // tables are filled: this frame borrows only, and mlua's protected
    // call catches the error.
    unsafe {
        let call = &*(ffi::lua_touserdata(state, 1) as *const InvocationArgs);
        ffi::lua_remove(state, 1);
        let tables = [
            (call.keys, call.tables.0, c"KEYS"),
            (call.args, call.tables.1, c"ARGV"),
        ];
        for (items, slot, global) in tables {
            if call.reuse {
                refill_strings(state, slot, items);
            } else {
                push_strings(state, items);
            }
            if call.set_globals {
                ffi::lua_setfield(state, ffi::LUA_GLOBALSINDEX, global.as_ptr());
            } else if call.nargs == 0 {
                ffi::lua_pop(state, 1);
            }
        }
        // One result: a reply is the script's first.
        let status = ffi::lua_pcall(state, call.nargs, 1, 1);
        ffi::lua_pushboolean(state, (status == 0) as std::ffi::c_int);
        ffi::lua_insert(state, -2);
    }
    2
}

/// Pushes the table kept at registry `slot`, emptied of whatever the last
/// script left in it (entries and metatable), holding `items` as Lua
/// strings.
///
/// # Safety
/// `state` is valid with four free slots; Lua may raise (out of memory).
unsafe fn refill_strings(state: *mut mlua::lua_State, slot: std::ffi::c_int, items: &[Bytes]) {
    use mlua::ffi;
    // SAFETY: the caller's promise; the table stays at the top while it is
    // cleared (setting a present key to nil during `lua_next` is allowed)
    // and filled.
    unsafe {
        ffi::lua_rawgeti(state, ffi::LUA_REGISTRYINDEX, slot as _);
        ffi::lua_pushnil(state);
        ffi::lua_setmetatable(state, -2);
        ffi::lua_pushnil(state);
        while ffi::lua_next(state, -2) != 0 {
            ffi::lua_pop(state, 1);
            ffi::lua_pushvalue(state, -1);
            ffi::lua_pushnil(state);
            ffi::lua_rawset(state, -4);
        }
        for (i, item) in items.iter().enumerate() {
            ffi::lua_pushlstring(state, item.as_ptr() as *const _, item.len());
            ffi::lua_rawseti(state, -2, (i + 1) as _);
        }
    }
}

/// Pushes a table of `items` as Lua strings (KEYS, ARGV).
///
/// # Safety
/// `state` is valid with two free slots; Lua may raise (out of memory).
unsafe fn push_strings(state: *mut mlua::lua_State, items: &[Bytes]) {
    // SAFETY: the caller's promise; each string is set as soon as it is
    // pushed.
    unsafe {
        mlua::ffi::lua_createtable(state, items.len() as std::ffi::c_int, 0);
        for (i, item) in items.iter().enumerate() {
            mlua::ffi::lua_pushlstring(state, item.as_ptr() as *const _, item.len());
            mlua::ffi::lua_rawseti(state, -2, (i + 1) as _);
        }
    }
}
