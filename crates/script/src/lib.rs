//! Lua 5.1 scripting as Redis embeds it: the libraries scripts expect
//! (`cjson`, `cmsgpack`, `bit`, `struct`).

pub mod libs;
