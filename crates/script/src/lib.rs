//! Lua 5.1 scripting as Redis embeds it: a sandboxed interpreter with the
//! libraries scripts expect (`cjson`, `cmsgpack`, `bit`, `struct`), the
//! `redis` API over a [`Host`] that runs commands, and Redis's conversions
//! between replies and Lua values.

mod call;
pub mod convert;
pub mod engine;
mod invoke;
pub mod libs;

pub use engine::{sha1hex, Engine, Host, Mode, Watch, KILLED, REDIS_VERSION};
pub use mlua::Function;
