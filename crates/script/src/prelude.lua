-- Meridian's scripting sandbox, run once in every new scripting state with
-- the full standard library still reachable. It keeps private references to
-- what the sandbox needs, removes what scripts may not touch, and returns the
-- pieces the engine drives from Rust.
local real = _G
local dbg = debug
local rawget, rawset, type, tostring, error = rawget, rawset, type, tostring, error
local raw_setmetatable, raw_pcall, xpcall = setmetatable, pcall, xpcall
local raw_loadstring, raw_load = loadstring, load
local raw_getfenv = getfenv

-- A value returned first by a Rust function to say: raise the second value
-- as the Lua error (a Redis error table or message), unchanged.
local RAISE = {}

-- Tables scripts may read but not change, by their visible proxy.
local protected = raw_setmetatable({}, { __mode = 'k' })

local function refuse()
    error('Attempt to modify a readonly table', 2)
end

local function readonly(t)
    local proxy = {}
    local shown = {}
    local mt = { __index = t, __newindex = refuse, __metatable = shown }
    raw_setmetatable(shown, { __index = mt, __newindex = refuse, __metatable = false })
    protected[proxy] = true
    protected[shown] = true
    return raw_setmetatable(proxy, mt)
end

-- Errors raised by library functions written in Rust arrive as userdata
-- carrying a message with a prefix and a traceback; scripts see the bare
-- message, as with Redis's C libraries.
local function clean(e)
    if type(e) == 'userdata' then
        local s = tostring(e)
        s = s:gsub('^runtime error: ', '', 1)
        local cut = s:find('\nstack traceback:', 1, true)
        if cut then s = s:sub(1, cut - 1) end
        return s
    end
    return e
end

-- Every argument of a call into Rust takes one of mlua's reference slots,
-- at most 8000 for the whole state, and mlua panics when they run out; so a
-- call with more arguments than this is refused first. (Redis takes up to
-- Lua's own limit of just under 8000.)
local ARGS_MAX = 7000
local function too_many(...)
    return select('#', ...) > ARGS_MAX
end

local function finish(ok, ...)
    if ok then
        if (...) == RAISE then
            error(select(2, ...), 0)
        end
        return ...
    end
    error(clean((...)), 0)
end

-- Wraps a Rust function so that its errors read like Redis's.
local function wrap(f)
    return function(...)
        if too_many(...) then error('too many arguments', 0) end
        return finish(raw_pcall(f, ...))
    end
end

-- What a script sees as its globals: reading a missing name is an error,
-- and nothing may be added or replaced.
local env = {}
local function missing(_, k)
    error("Script attempted to access nonexistent global variable '" .. tostring(k) .. "'", 0)
end
-- Names are looked up in the real globals (or, while a function library
-- loads, only the library API: see `set_source`) by a table __index, so a
-- name that exists costs no call; only a missing one reaches `missing`.
raw_setmetatable(real, { __index = missing, __metatable = false })
local env_mt = {
    __index = real,
    __newindex = refuse,
}
env_mt.__metatable = readonly(env_mt)
raw_setmetatable(env, env_mt)
protected[env] = true

-- Redis's pcall hands a script the message of an error table, as versions
-- before 7 did.
-- SCRIPT KILL's error passes through every pcall, or a script that loops
-- around a pcall could never be stopped.
local KILLED = 'Script killed by user with SCRIPT KILL...'

local function pcall_result(ok, ...)
    if ok then return ok, ... end
    local e = clean((...))
    if e == KILLED then error(KILLED, 0) end
    if type(e) == 'table' and type(rawget(e, 'err')) == 'string' then
        e = rawget(e, 'err')
    end
    return false, e
end

-- Protected calls nest in C, which Lua 5.1 limits to 200 levels; a
-- script's nested pcalls stop before that with an error of their own.
local protected_depth = 0
local PROTECTED_DEPTH_MAX = 150

local function leave_protected(...)
    protected_depth = protected_depth - 1
    return ...
end

-- Lua 5.1's pcall pushes its status after however many values the call
-- returned, past the room its C frame has once they are about twenty
-- (memory corruption; an assertion in a debug build). The call's results
-- travel in one table instead, unpacked by `unpack`, which checks the room.
local function packed(...)
    return { n = select('#', ...), ... }
end

local function call_packed(f, ...)
    return packed(f(...))
end

local function unpacked(ok, r)
    if ok then return true, unpack(r, 1, r.n) end
    return false, r
end

local function protected_call(f, ...)
    if protected_depth >= PROTECTED_DEPTH_MAX then
        return false, 'stack overflow (too many nested pcall)'
    end
    protected_depth = protected_depth + 1
    return leave_protected(unpacked(raw_pcall(call_packed, f, ...)))
end

local function sandboxed_pcall(f, ...)
    return pcall_result(protected_call(f, ...))
end

-- xpcall as pcall, then the handler: scripts have no debug library, so a
-- handler learns nothing more at the error's point than after it. Lua
-- 5.1's own xpcall, nested in its handler until the C stack overflows,
-- writes past the stack (an assertion in a debug build).
local function xpcall_result(handler, ok, ...)
    if ok then return ok, ... end
    if clean((...)) == KILLED then error(KILLED, 0) end
    local hok, e = protected_call(handler, clean((...)))
    if not hok then return false, 'error in error handling' end
    return false, e
end

local function sandboxed_xpcall(f, handler)
    return xpcall_result(handler, protected_call(f))
end

local function sandboxed_setmetatable(t, mt)
    if protected[t] then error('Attempt to modify a readonly table', 2) end
    return raw_setmetatable(t, mt)
end

local function sandboxed_rawset(t, k, v)
    if protected[t] then error('Attempt to modify a readonly table', 2) end
    return rawset(t, k, v)
end

-- Precompiled chunks are refused: their bytecode is not verified.
local function text_only(chunk)
    return type(chunk) ~= 'string' or chunk:byte(1) ~= 27
end

local function sandboxed_loadstring(s, name)
    if not text_only(s) then return nil, 'binary chunks are not allowed' end
    return raw_loadstring(s, name)
end

local function sandboxed_load(f, name)
    local parts = {}
    while true do
        local piece = f()
        if piece == nil or piece == '' then break end
        parts[#parts + 1] = piece
    end
    return sandboxed_loadstring(table.concat(parts), name)
end

-- The thread's environment is the real globals table; scripts get the
-- guarded view of it instead.
local function sandboxed_getfenv(f)
    local e = raw_getfenv(f == nil and 1 or (type(f) == 'number' and f > 0 and f + 1 or f))
    if e == real then return env end
    return e
end

-- Adds where the error happened, as Redis's error handler does.
-- Frames of C functions and of this prelude are skipped: the place
-- reported is the script's line that called them.
local function handler(err)
    local level, i = 2, nil
    while true do
        local f = dbg.getinfo(level, 'nSl')
        if f == nil then break end
        if f.what ~= 'C' and f.what ~= 'tail' and f.source ~= '=prelude' then
            i = f
            break
        end
        level = level + 1
    end
    err = clean(err)
    if type(err) ~= 'table' then
        err = { err = 'ERR ' .. tostring(err) }
    end
    if i then
        err['source'] = i.source
        err['line'] = i.currentline
    end
    return err
end

-- Runs a function library's code as it loads, with the error handler (the
-- engine runs scripts itself, with `handler`). Only its first result
-- crosses the xpcall (see `packed` for what many would do); Lua 5.1's
-- xpcall passes no arguments, hence `loading`.
local loading
local function run_loading() return (loading()) end

local function run(f)
    protected_depth = 0
    loading = f
    local ok, result = xpcall(run_loading, handler)
    loading = nil
    return ok, result
end

-- Raises what a Rust function asked to raise (see RAISE).
local function raise_if(first, ...)
    if first == RAISE then
        error((select(1, ...)), 0)
    end
    return first, ...
end

-- The functions that act on the running script's region; the engine sets
-- `impl` for the length of each invocation only.
local impl = {}
local function bound(name, what)
    return function(...)
        local f = impl[name]
        if f == nil then
            error({ err = 'ERR ' .. what .. ' can only be called inside a script invocation' }, 0)
        end
        if too_many(...) then
            local e = { err = 'ERR too many arguments to ' .. what }
            if name == 'pcall' then return e end
            error(e, 0)
        end
        return raise_if(f(...))
    end
end

-- Redis's error table for a message: `-CODE text` keeps its code, a bare
-- text gets ERR.
local function error_table(text)
    local code, msg
    if text:sub(1, 1) == '-' then
        local space = text:find(' ', 1, true)
        if space then
            code, msg = text:sub(2, space - 1), text:sub(space + 1)
        else
            code, msg = 'ERR', text:sub(2)
        end
    else
        code, msg = 'ERR', text
    end
    msg = msg:gsub('[\r\n]+$', '')
    return { err = code .. ' ' .. msg }
end

-- redis.call and redis.pcall hand their arguments over in one table: a
-- command may have thousands of them (`unpack` of a big table), more than
-- a call into Rust may take one by one.
local function bound_packed(name, what)
    return function(...)
        local f = impl[name]
        if f == nil then
            error({ err = 'ERR ' .. what .. ' can only be called inside a script invocation' }, 0)
        end
        return raise_if(f({ ... }, select('#', ...)))
    end
end

local redis = {
    -- call and pcall are C functions the engine adds
    -- (`install_call_functions`).
    setresp = bound('setresp', 'redis.setresp'),
    set_repl = bound('set_repl', 'redis.set_repl'),
    acl_check_cmd = bound_packed('acl_check_cmd', 'redis.acl_check_cmd'),
    log = bound('log', 'redis.log'),
    LOG_DEBUG = 0,
    LOG_VERBOSE = 1,
    LOG_NOTICE = 2,
    LOG_WARNING = 3,
    REPL_NONE = 0,
    REPL_AOF = 1,
    REPL_SLAVE = 2,
    REPL_REPLICA = 2,
    REPL_ALL = 3,
}

function redis.error_reply(...)
    local text = ...
    if select('#', ...) ~= 1 or type(text) ~= 'string' then
        return error_table('wrong number or type of arguments')
    end
    if text:sub(1, 1) ~= '-' then text = '-' .. text end
    return error_table(text)
end

function redis.status_reply(...)
    local text = ...
    if select('#', ...) ~= 1 or type(text) ~= 'string' then
        return error_table('wrong number or type of arguments')
    end
    return { ok = text }
end

rawset(real, 'redis', redis)

-- What a function library sees while it loads: `redis` with only the
-- library API, every other name missing.
local library_api = {
    register_function = function(...)
        local f = impl.register_function
        if f == nil then
            error({ err = 'ERR redis.register_function can only be called on FUNCTION LOAD command' }, 0)
        end
        if too_many(...) then error({ err = 'ERR too many arguments to redis.register_function' }, 0) end
        return raise_if(f(...))
    end,
    log = function(...)
        local f = impl.load_log
        if too_many(...) then error({ err = 'ERR too many arguments to redis.log' }, 0) end
        if f ~= nil then return raise_if(f(...)) end
    end,
    LOG_DEBUG = 0,
    LOG_VERBOSE = 1,
    LOG_NOTICE = 2,
    LOG_WARNING = 3,
}
local library_api_view = raw_setmetatable({}, { __index = function(t, k)
    local v = rawget(library_api, k)
    if v == nil then missing(t, k) end
    return v
end, __newindex = refuse, __metatable = false })
protected[library_api_view] = true
local load_globals = raw_setmetatable({ redis = library_api_view }, { __index = missing })

local function set_source(loading)
    if loading then env_mt.__index = load_globals else env_mt.__index = real end
end

-- `newproxy` is gone too: its userdata take a `__gc` written in Lua, which
-- Lua 5.1 runs with hooks off, so a loop there could never be killed.
-- Strings share one metatable: a script that changed it would change
-- every later script's string methods. Scripts see a read-only view of it.
do
    local string_mt = getmetatable('')
    string_mt.__index = readonly(string_mt.__index)
    string_mt.__metatable = readonly(string_mt)
end

for _, name in ipairs({ 'os', 'io', 'package', 'require', 'module', 'loadfile', 'dofile', 'print', 'debug', 'newproxy' }) do
    rawset(real, name, nil)
end
rawset(real, 'pcall', sandboxed_pcall)
rawset(real, 'xpcall', sandboxed_xpcall)
rawset(real, 'setmetatable', sandboxed_setmetatable)
rawset(real, 'rawset', sandboxed_rawset)
rawset(real, 'loadstring', sandboxed_loadstring)
rawset(real, 'load', sandboxed_load)
rawset(real, 'getfenv', sandboxed_getfenv)
rawset(real, '_G', env)

return {
    raise = RAISE,
    impl = impl,
    redis = redis,
    library_api = library_api,
    set_source = set_source,
    env = env,
    run = run,
    handler = handler,
    reset = function() protected_depth = 0 end,
    readonly = readonly,
    wrap = wrap,
}
