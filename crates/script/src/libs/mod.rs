//! The libraries Redis loads into every scripting state.
//!
//! Redis 7.0 links four C libraries into its Lua 5.1 interpreter: lua-cjson
//! 2.1.0 (`cjson`), lua-cmsgpack 0.4.0 (`cmsgpack`), LuaBitOp 1.0.2 (`bit`)
//! and Roberto Ierusalimschy's struct library (`struct`). Scripts written for
//! Redis depend on their exact output and often on their error messages, so
//! Meridian reimplements each of them in Rust with the same behaviour,
//! including the corner cases the C code gets from its types.
//!
//! Errors are raised as plain Lua strings, worded and positioned the way the
//! C functions word and position them, so that `pcall` hands a script the
//! same message it would get from Redis. See [`Raise`].

mod bit;
mod cjson;
mod cmsgpack;
mod structlib;

use std::ffi::c_int;

use mlua::{ffi, FromLua, Function, IntoLua, Lua, MultiValue, Table, Value};

/// Installs `cjson`, `cmsgpack`, `bit` and `struct` as globals.
pub fn install(lua: &Lua) -> mlua::Result<()> {
    let globals = lua.globals();
    globals.set("cjson", cjson::module(lua)?)?;
    globals.set("cmsgpack", cmsgpack::module(lua)?)?;
    globals.set("bit", bit::module(lua)?)?;
    globals.set("struct", structlib::module(lua)?)?;
    Ok(())
}

/// `LUAI_MAXCSTACK` of Lua 5.1: the most stack slots a C function may hold.
///
/// The C libraries check their stack use against it (`lua_checkstack`), which
/// limits how deeply cjson nests, how many values cmsgpack and struct return
/// at once, and so on. Meridian's code keeps its values in Rust, so it counts
/// the slots the C code would hold to fail at the same points.
pub(crate) const LUA_MAX_C_STACK: usize = 8000;

/// How a library function fails.
///
/// The C libraries raise errors in three ways, and a script sees the
/// difference in the message: `luaL_error` puts the position of the calling
/// script line first (`user_script:1: Missing bytes in input.`),
/// `luaL_argerror` names the argument and the function as Lua finds it at the
/// call site (`bad argument #1 to 'decode' (expected 1 argument)`), and
/// errors Lua itself raises inside a C function have no position
/// (`table index is nil`). Messages are bytes because some quote the script's
/// own bytes.
#[derive(Debug)]
pub(crate) enum Raise {
    /// As `luaL_error`: the caller's position, then the message.
    Error(Vec<u8>),
    /// As `lua_error` on a string: the message alone.
    Bare(Vec<u8>),
    /// As `luaL_argerror` on argument `n`.
    Arg(i32, Vec<u8>),
    /// An error from the Lua runtime itself, passed on as mlua raised it.
    Lua(mlua::Error),
}

impl Raise {
    pub(crate) fn error(message: impl Into<Vec<u8>>) -> Raise {
        Raise::Error(message.into())
    }

    pub(crate) fn bare(message: impl Into<Vec<u8>>) -> Raise {
        Raise::Bare(message.into())
    }

    pub(crate) fn arg(n: i32, message: impl Into<Vec<u8>>) -> Raise {
        Raise::Arg(n, message.into())
    }

    /// `luaL_checkstack` failing: Lua 5.1 words it "stack overflow (...)".
    pub(crate) fn stack_overflow(what: &str) -> Raise {
        Raise::error(format!("stack overflow ({what})"))
    }
}

impl From<mlua::Error> for Raise {
    fn from(error: mlua::Error) -> Raise {
        match error {
            // A string raised by Lua code (a metamethod, say) keeps its text.
            mlua::Error::RuntimeError(message) => Raise::Bare(message.into_bytes()),
            mlua::Error::MemoryError(_) => Raise::Bare(b"not enough memory".to_vec()),
            other => Raise::Lua(other),
        }
    }
}

/// The result of a library function: its return values or how it fails.
pub(crate) type Outcome<T> = Result<T, Raise>;

/// The arguments of a call, numbered from 1 as the C API numbers them, with
/// the C API's checks.
pub(crate) struct Args(Vec<Value>);

impl Args {
    /// How many arguments were passed (`lua_gettop`).
    pub(crate) fn len(&self) -> usize {
        self.0.len()
    }

    /// Argument `n`, or `None` when fewer were passed (Lua's "no value").
    pub(crate) fn get(&self, n: usize) -> Option<&Value> {
        n.checked_sub(1).and_then(|i| self.0.get(i))
    }

    /// `lua_isnoneornil`.
    pub(crate) fn is_none_or_nil(&self, n: usize) -> bool {
        matches!(self.get(n), None | Some(Value::Nil))
    }

    /// `luaL_checklstring`: a string, or a number turned into one.
    pub(crate) fn check_string(&self, lua: &Lua, n: usize) -> Outcome<mlua::String> {
        let found = self.get(n);
        match found {
            Some(Value::String(s)) => Ok(s.clone()),
            Some(v @ (Value::Integer(_) | Value::Number(_))) => lua
                .coerce_string(v.clone())?
                .ok_or_else(|| type_error(n, "string", found)),
            _ => Err(type_error(n, "string", found)),
        }
    }

    /// `lua_tonumber` with `lua_isnumber`: the number, converting numeric
    /// strings, or `None`.
    pub(crate) fn to_number(&self, lua: &Lua, n: usize) -> Outcome<Option<f64>> {
        Ok(match self.get(n) {
            Some(v @ Value::String(_)) => lua.coerce_number(v.clone())?,
            Some(v) => number_of(v),
            None => None,
        })
    }

    /// `luaL_checknumber`.
    pub(crate) fn check_number(&self, lua: &Lua, n: usize) -> Outcome<f64> {
        self.to_number(lua, n)?
            .ok_or_else(|| type_error(n, "number", self.get(n)))
    }

    /// `luaL_checkinteger`: the number truncated as Lua 5.1 does on x86-64.
    pub(crate) fn check_integer(&self, lua: &Lua, n: usize) -> Outcome<i64> {
        self.check_number(lua, n).map(c_double_to_i64)
    }

    /// `luaL_optinteger`: `default` when the argument is absent or nil.
    pub(crate) fn opt_integer(&self, lua: &Lua, n: usize, default: i64) -> Outcome<i64> {
        if self.is_none_or_nil(n) {
            Ok(default)
        } else {
            self.check_integer(lua, n)
        }
    }
}

/// `luaL_typerror`: "number expected, got nil".
pub(crate) fn type_error(n: usize, expected: &str, found: Option<&Value>) -> Raise {
    let n = i32::try_from(n).unwrap_or(i32::MAX);
    Raise::arg(n, format!("{expected} expected, got {}", type_name(found)))
}

/// The name Lua 5.1's `lua_typename` gives a value; "no value" for a missing
/// argument. Light userdata such as `cjson.null` is plain "userdata" there.
pub(crate) fn type_name(value: Option<&Value>) -> &'static str {
    match value {
        None => "no value",
        Some(Value::Nil) => "nil",
        Some(Value::Boolean(_)) => "boolean",
        Some(Value::Integer(_) | Value::Number(_)) => "number",
        Some(Value::String(_)) => "string",
        Some(Value::Table(_)) => "table",
        Some(Value::Function(_)) => "function",
        Some(Value::Thread(_)) => "thread",
        Some(_) => "userdata",
    }
}

/// The number a value holds, if it is a Lua number. mlua hands integral
/// numbers over as `Integer`, but in Lua 5.1 every number is a double.
pub(crate) fn number_of(value: &Value) -> Option<f64> {
    match *value {
        // Values that came from a double convert back exactly.
        #[allow(clippy::cast_precision_loss)]
        Value::Integer(i) => Some(i as f64),
        Value::Number(n) => Some(n),
        _ => None,
    }
}

/// C's `(int64_t)d` as x86-64 computes it: truncation toward zero, and the
/// "integer indefinite" value `INT64_MIN` for NaN and anything out of range.
pub(crate) fn c_double_to_i64(d: f64) -> i64 {
    // 2^63 is exact in a double; the range is [-2^63, 2^63).
    const LIMIT: f64 = 9_223_372_036_854_775_808.0;
    if !(-LIMIT..LIMIT).contains(&d) {
        i64::MIN
    } else {
        #[allow(clippy::cast_possible_truncation)]
        let truncated = d as i64;
        truncated
    }
}

/// C's `(uint64_t)d` as compiled for x86-64: values below 2^63 (and NaN) go
/// through the signed conversion, larger ones are offset by 2^63 first, so a
/// negative value wraps and anything from 2^64 up gives 0.
pub(crate) fn c_double_to_u64(d: f64) -> u64 {
    const TWO_63: f64 = 9_223_372_036_854_775_808.0;
    let as_u64 = |i: i64| u64::from_ne_bytes(i.to_ne_bytes());
    if d >= TWO_63 {
        as_u64(c_double_to_i64(d - TWO_63)) ^ (1 << 63)
    } else {
        as_u64(c_double_to_i64(d))
    }
}

/// C's `(int)d` as x86-64 computes it: truncation toward zero, and `INT_MIN`
/// for NaN and anything out of range.
pub(crate) fn c_double_to_i32(d: f64) -> i32 {
    if d.is_nan() || d <= f64::from(i32::MIN) - 1.0 || d >= f64::from(i32::MAX) + 1.0 {
        i32::MIN
    } else {
        #[allow(clippy::cast_possible_truncation)]
        let truncated = d as i32;
        truncated
    }
}

/// What a library function returns.
pub(crate) enum Reply {
    /// A handful of values.
    Values(MultiValue),
    /// `count` values stored at 1..=count in a table, for functions that
    /// can return thousands (`cmsgpack.unpack`, `struct.unpack`): holding
    /// that many strings or tables in Rust would exhaust mlua's reference
    /// slots (see [`Parking`]), and mlua also wants room for all results at
    /// once on top of the arguments, which fails sooner than Lua's own limit.
    Spread(Table, usize),
}

impl From<MultiValue> for Reply {
    fn from(values: MultiValue) -> Reply {
        Reply::Values(values)
    }
}

impl From<Value> for Reply {
    fn from(value: Value) -> Reply {
        Reply::Values(MultiValue::from_vec(vec![value]))
    }
}

// What the Rust half of a library function tells the C half (`c_shim`) as its
// first result.
const TAG_VALUES: i64 = 0;
const TAG_VALUES_IN_TABLE: i64 = 1;
const TAG_ERROR: i64 = 2;
const TAG_BARE: i64 = 3;
const TAG_ARG: i64 = 4;

/// The most arguments a library function takes (the prelude's `ARGS_MAX`).
const ARGS_MAX: c_int = 7000;

/// Adds the library function `f` to `table` under `name`.
///
/// The function Lua sees is a C closure (`c_shim`) around the Rust function,
/// because only code running as the C function itself can raise errors the
/// way the C libraries do: a plain string, with the script position that
/// `luaL_where` finds one level up and the function name that
/// `luaL_argerror` finds at the call site. An error returned from an mlua
/// callback would instead reach the script as an mlua error object with a
/// Rust traceback.
pub(crate) fn add_function<F, R>(lua: &Lua, table: &Table, name: &str, f: F) -> mlua::Result<()>
where
    F: Fn(&Lua, Args) -> Outcome<R> + Send + 'static,
    R: Into<Reply>,
{
    let inner = lua.create_function(move |lua, args: MultiValue| {
        let outcome = f(lua, Args(args.into_vec())).map(Into::into);
        tag_outcome(lua, outcome)
    })?;
    // SAFETY: the closure runs in protected mode with the one argument pushed
    // (the Rust function), which `lua_pushcclosure` takes as the upvalue and
    // replaces with the closure, the one result.
    let function: Function = unsafe {
        lua.exec_raw(inner, |state| {
            ffi::lua_pushcclosure(state, c_shim, 1);
        })?
    };
    table.raw_set(name, function)
}

/// Encodes an outcome for `c_shim`: a tag, then the values or the error.
fn tag_outcome(lua: &Lua, outcome: Outcome<Reply>) -> mlua::Result<MultiValue> {
    let mut out = MultiValue::with_capacity(3);
    let count_value = |count: usize| Value::Integer(i64::try_from(count).unwrap_or(i64::MAX));
    match outcome {
        Ok(Reply::Values(values)) => {
            out.push_back(Value::Integer(TAG_VALUES));
            out.extend(values);
        }
        Ok(Reply::Spread(table, count)) => {
            out.push_back(Value::Integer(TAG_VALUES_IN_TABLE));
            out.push_back(Value::Table(table));
            out.push_back(count_value(count));
        }
        Err(Raise::Error(message)) => {
            out.push_back(Value::Integer(TAG_ERROR));
            out.push_back(Value::String(lua.create_string(message)?));
        }
        Err(Raise::Bare(message)) => {
            out.push_back(Value::Integer(TAG_BARE));
            out.push_back(Value::String(lua.create_string(message)?));
        }
        Err(Raise::Arg(n, message)) => {
            out.push_back(Value::Integer(TAG_ARG));
            out.push_back(Value::Integer(i64::from(n)));
            out.push_back(Value::String(lua.create_string(message)?));
        }
        Err(Raise::Lua(error)) => return Err(error),
    }
    Ok(out)
}

/// The C half of every library function: calls the Rust half (upvalue 1)
/// with the arguments and returns its values or raises its error as the C
/// library would.
///
/// Lua errors unwind with `longjmp` in the bundled Lua 5.1, so this frame
/// holds nothing that needs dropping at any point where one may occur.
unsafe extern "C-unwind" fn c_shim(state: *mut ffi::lua_State) -> c_int {
    // SAFETY (whole body): only the Lua C API on the running state, with
    // indexes inside the stack that the call below leaves.
    unsafe {
        let nargs = ffi::lua_gettop(state);
        // Each argument takes one of mlua's reference slots (see
        // `Parking`); with too many, mlua would panic converting them.
        if nargs > ARGS_MAX {
            ffi::luaL_where(state, 1);
            ffi::lua_pushstring(state, c"too many arguments".as_ptr());
            ffi::lua_concat(state, 2);
            ffi::lua_error(state);
        }
        ffi::lua_pushvalue(state, ffi::lua_upvalueindex(1));
        ffi::lua_insert(state, 1);
        ffi::lua_call(state, nargs, ffi::LUA_MULTRET);
        // Tags are small integers, exact in a double.
        #[allow(clippy::cast_possible_truncation)]
        let tag = ffi::lua_tonumber(state, 1) as i64;
        match tag {
            TAG_VALUES => {
                ffi::lua_remove(state, 1);
                ffi::lua_gettop(state)
            }
            TAG_VALUES_IN_TABLE => {
                #[allow(clippy::cast_possible_truncation)]
                let count = ffi::lua_tonumber(state, 3) as c_int;
                ffi::lua_settop(state, 2);
                ffi::lua_remove(state, 1);
                // Lua's own check, as the C libraries make it (mlua's
                // `luaL_checkstack` asks for 20 slots more).
                if ffi::lua_checkstack(state, count) == 0 {
                    ffi::luaL_where(state, 1);
                    ffi::lua_pushstring(state, c"stack overflow (too many results)".as_ptr());
                    ffi::lua_concat(state, 2);
                    ffi::lua_error(state);
                }
                for i in 1..=count {
                    ffi::lua_rawgeti(state, 1, ffi::lua_Integer::from(i));
                }
                ffi::lua_remove(state, 1);
                count
            }
            TAG_ARG => {
                #[allow(clippy::cast_possible_truncation)]
                let n = ffi::lua_tonumber(state, 2) as c_int;
                let message = ffi::lua_tolstring(state, 3, std::ptr::null_mut());
                ffi::luaL_argerror(state, n, message)
            }
            TAG_ERROR => {
                ffi::luaL_where(state, 1);
                ffi::lua_pushvalue(state, 2);
                ffi::lua_concat(state, 2);
                ffi::lua_error(state)
            }
            _ => {
                ffi::lua_pushvalue(state, 2);
                ffi::lua_error(state)
            }
        }
    }
}

/// Lua values that Rust code keeps across many steps, parked in a Lua table
/// under numbered slots.
///
/// mlua keeps every Lua value Rust holds (a string, a table...) in a slot of
/// an auxiliary Lua thread, and in Lua 5.1 that thread has at most 8000
/// slots for the whole state; past them mlua panics. A deeply nested
/// document, or thousands of results, held in Rust would get there, so the
/// libraries park such values in a table and hold only the table.
pub(crate) struct Parking(Table);

impl Parking {
    pub(crate) fn new(lua: &Lua) -> mlua::Result<Parking> {
        lua.create_table().map(Parking)
    }

    pub(crate) fn put(&self, slot: usize, value: impl IntoLua) -> mlua::Result<()> {
        self.0.raw_set(slot, value)
    }

    pub(crate) fn get<V: FromLua>(&self, slot: usize) -> mlua::Result<V> {
        self.0.raw_get(slot)
    }

    /// Empties a slot so that its value can be collected.
    pub(crate) fn clear(&self, slot: usize) -> mlua::Result<()> {
        self.0.raw_set(slot, Value::Nil)
    }

    /// The table, to return values parked at 1..=n as a [`Reply::Spread`].
    pub(crate) fn into_table(self) -> Table {
        self.0
    }
}

/// Lua's `next` without metamethods: the pair after `key` in `table` (the
/// first for nil), or `None` past the last. Unlike an iterator it holds
/// nothing between calls, so the caller can park the key (see [`Parking`]).
pub(crate) fn next_pair(
    lua: &Lua,
    table: &Table,
    key: Value,
) -> mlua::Result<Option<(Value, Value)>> {
    // SAFETY: the closure runs protected with the table and the key as its
    // arguments 1 and 2; `lua_next` pops the key and pushes the next pair or
    // nothing, and removing the table leaves just the pair to return.
    let mut pair: MultiValue = unsafe {
        lua.exec_raw((table, key), |state| {
            ffi::lua_next(state, 1);
            ffi::lua_remove(state, 1);
        })?
    };
    Ok(match (pair.pop_front(), pair.pop_front()) {
        (Some(key), Some(value)) => Some((key, value)),
        _ => None,
    })
}

/// Sets the string fields a library table carries (`_NAME`, `_VERSION`...).
pub(crate) fn set_fields(table: &Table, fields: &[(&str, &str)]) -> mlua::Result<()> {
    for (key, value) in fields {
        table.raw_set(*key, *value)?;
    }
    Ok(())
}

/// Runs Lua snippets against a state with the libraries installed.
#[cfg(test)]
pub(crate) mod testing {
    use mlua::{FromLuaMulti, Lua};

    /// A fresh state with the four libraries, as every test starts from.
    pub(crate) fn lua() -> Lua {
        let lua = Lua::new();
        super::install(&lua).expect("libraries install");
        lua
    }

    /// Evaluates `code`, named `user_script` as Redis names scripts, in a
    /// fresh state.
    pub(crate) fn eval<R: FromLuaMulti>(code: &str) -> R {
        eval_in(&lua(), code)
    }

    /// Evaluates `code` in `lua`.
    pub(crate) fn eval_in<R: FromLuaMulti>(lua: &Lua, code: &str) -> R {
        lua.load(code)
            .set_name("=user_script")
            .eval()
            .unwrap_or_else(|e| panic!("{code}: {e}"))
    }

    /// The message `code` fails with, caught by `pcall` on line 1 as a
    /// script would catch it. Panics when it does not fail or when the error
    /// is not a string.
    pub(crate) fn error_of(code: &str) -> String {
        let wrapped = format!(
            "local ok, err = pcall(function() {code} end)\n\
             assert(not ok, 'expected an error')\n\
             assert(type(err) == 'string', 'error is a ' .. type(err))\n\
             return err"
        );
        eval(&wrapped)
    }
}

#[cfg(test)]
mod tests {
    use super::testing::{error_of, eval};
    use super::*;

    #[test]
    fn installs_the_four_libraries_as_globals() {
        let kinds: Vec<String> = eval(
            "return {type(cjson), type(cmsgpack), type(bit), type(struct), \
             type(cjson.encode), type(struct.size), type(bit.tohex), type(cmsgpack.unpack_limit)}",
        );
        assert_eq!(
            kinds,
            ["table", "table", "table", "table", "function", "function", "function", "function"]
        );
    }

    #[test]
    fn errors_are_strings_with_the_caller_position() {
        assert_eq!(
            error_of("cjson.decode('x')"),
            "user_script:1: Expected value but found invalid token at character 1"
        );
        // A script that does not catch the error fails with the same text.
        let lua = testing::lua();
        let err = lua
            .load("\n\ncmsgpack.unpack('\\145')")
            .set_name("=user_script")
            .exec()
            .expect_err("fails");
        assert!(
            err.to_string()
                .contains("user_script:3: Missing bytes in input."),
            "{err}"
        );
    }

    #[test]
    fn argument_errors_name_the_function_as_lua_finds_it() {
        assert_eq!(
            error_of("bit.band(1, {})"),
            "user_script:1: bad argument #2 to 'band' (number expected, got table)"
        );
        assert_eq!(
            error_of("local f = bit.tobit; f()"),
            "user_script:1: bad argument #1 to 'f' (number expected, got no value)"
        );
        // Through pcall there is no call site to name the function from.
        let message: String = eval("local ok, err = pcall(cjson.encode) return err");
        assert_eq!(message, "bad argument #1 to '?' (expected 1 argument)");
        // A method call does not count the table as an argument.
        assert_eq!(
            error_of("cjson:encode_max_depth(0)"),
            "user_script:1: bad argument #1 to 'encode_max_depth' (found too many arguments)"
        );
    }

    #[test]
    fn lua_errors_inside_a_library_keep_lua_wording() {
        assert_eq!(
            error_of("cmsgpack.unpack('\\129\\192\\1')"),
            "table index is nil"
        );
    }

    #[test]
    fn thousands_of_results_come_back_in_order() {
        let (count, first, last): (i64, i64, i64) = eval(
            "local s = cmsgpack.pack(unpack((function() local t = {} \
             for i = 1, 3000 do t[i] = i end return t end)())) \
             local r = {cmsgpack.unpack(s)} return #r, r[1], r[#r]",
        );
        assert_eq!((count, first, last), (3000, 1, 3000));
    }

    #[test]
    fn c_conversions_match_x86_64() {
        assert_eq!(c_double_to_i64(-2.9), -2);
        assert_eq!(c_double_to_i64(f64::NAN), i64::MIN);
        assert_eq!(c_double_to_i64(1e19), i64::MIN);
        assert_eq!(c_double_to_i32(3e9), i32::MIN);
        assert_eq!(c_double_to_i32(-2_147_483_648.5), i32::MIN);
        assert_eq!(c_double_to_u64(1e19), 10_000_000_000_000_000_000);
        assert_eq!(c_double_to_u64(2e19), 0);
        assert_eq!(c_double_to_u64(-1.0), u64::MAX);
        assert_eq!(c_double_to_u64(f64::NAN), 1 << 63);
    }
}
