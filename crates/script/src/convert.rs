//! Redis's conversions between replies and Lua values: what a script
//! returns as the reply its caller gets (a command's reply as `redis.call`
//! hands it to the script is pushed by `crate::call`).

use bytes::Bytes;
use meridian_resp::Frame;
use mlua::{Lua, Table, Value};

/// Nesting beyond this in a script's result is answered with an error, as
/// Redis answers when its Lua stack runs out.
const REPLY_DEPTH_MAX: usize = 200;

/// Redis's error table for `text`: `-CODE message` keeps its code, a bare
/// message gets `ERR`; trailing line breaks are dropped.
pub fn error_table(lua: &Lua, text: &str) -> mlua::Result<Table> {
    let t = lua.create_table()?;
    t.raw_set("err", error_text(text))?;
    Ok(t)
}

fn error_text(text: &str) -> String {
    let (code, msg) = match text.strip_prefix('-') {
        Some(rest) => match rest.split_once(' ') {
            Some((code, msg)) => (code, msg),
            None => ("ERR", rest),
        },
        None => ("ERR", text),
    };
    format!("{code} {}", msg.trim_end_matches(['\r', '\n']))
}

/// What a script returned as the reply its caller gets. `script_resp3`:
/// the protocol the script chose (booleans are RESP3 booleans only then).
pub fn lua_to_frame(value: &Value, script_resp3: bool) -> Frame {
    to_frame(value, script_resp3, 0)
}

fn to_frame(value: &Value, resp3: bool, depth: usize) -> Frame {
    if depth > REPLY_DEPTH_MAX {
        return Frame::error("ERR reached lua stack limit");
    }
    match value {
        Value::String(s) => Frame::Bulk(Bytes::copy_from_slice(&s.as_bytes())),
        Value::Boolean(b) if resp3 => Frame::Boolean(*b),
        Value::Boolean(true) => Frame::Integer(1),
        Value::Boolean(false) => Frame::Null,
        Value::Number(n) => Frame::Integer(*n as i64),
        Value::Integer(n) => Frame::Integer(*n),
        Value::Table(t) => table_to_frame(t, resp3, depth),
        _ => Frame::Null,
    }
}

fn string_field(t: &Table, name: &str) -> Option<Bytes> {
    match t.raw_get::<Value>(name).ok()? {
        Value::String(s) => Some(Bytes::copy_from_slice(&s.as_bytes())),
        _ => None,
    }
}

fn table_to_frame(t: &Table, resp3: bool, depth: usize) -> Frame {
    if let Some(err) = string_field(t, "err") {
        return Frame::Error(String::from_utf8_lossy(&err).into_owned());
    }
    if let Some(ok) = string_field(t, "ok") {
        return Frame::Simple(String::from_utf8_lossy(&ok).into_owned());
    }
    if let Ok(Value::Number(d)) = t.raw_get::<Value>("double") {
        return Frame::Double(d);
    }
    if let Some(big) = string_field(t, "big_number") {
        let text = String::from_utf8_lossy(&big).replace(['\r', '\n'], " ");
        return Frame::BigNumber(text);
    }
    if let Ok(Value::Table(v)) = t.raw_get::<Value>("verbatim_string") {
        if let (Some(format), Some(text)) = (string_field(&v, "format"), string_field(&v, "string"))
        {
            let mut f = [b' '; 3];
            for (d, s) in f.iter_mut().zip(format.iter()) {
                *d = *s;
            }
            return Frame::Verbatim { format: f, text };
        }
    }
    if let Ok(Value::Table(map)) = t.raw_get::<Value>("map") {
        let pairs = map
            .pairs::<Value, Value>()
            .filter_map(Result::ok)
            .map(|(k, v)| {
                (
                    to_frame(&k, resp3, depth + 1),
                    to_frame(&v, resp3, depth + 1),
                )
            })
            .collect();
        return Frame::Map(pairs);
    }
    if let Ok(Value::Table(set)) = t.raw_get::<Value>("set") {
        let members = set
            .pairs::<Value, Value>()
            .filter_map(Result::ok)
            .map(|(k, _)| to_frame(&k, resp3, depth + 1))
            .collect();
        return Frame::Set(members);
    }
    let mut items = Vec::new();
    for i in 1.. {
        match t.raw_get::<Value>(i) {
            Ok(Value::Nil) | Err(_) => break,
            Ok(v) => items.push(to_frame(&v, resp3, depth + 1)),
        }
    }
    Frame::Array(items)
}

/// The reply for a script that raised `value` (a table the error handler
/// filled with `err`, `source` and `line`), as Redis words it.
pub fn script_error(value: &Value, name: &str) -> Frame {
    let Value::Table(t) = value else {
        let msg = match value {
            Value::String(s) => String::from_utf8_lossy(&s.as_bytes()).into_owned(),
            _ => "execution failure".to_string(),
        };
        return Frame::error(format!("ERR Error running script {name}, {msg:.100}"));
    };
    let msg = string_field(t, "err")
        .map(|e| String::from_utf8_lossy(&e).into_owned())
        .unwrap_or_else(|| "ERR unknown error".to_string());
    let source = string_field(t, "source").map(|s| String::from_utf8_lossy(&s).into_owned());
    let line = match t.raw_get::<Value>("line") {
        Ok(Value::Number(n)) => Some(format_g(n, 14)),
        Ok(Value::Integer(n)) => Some(n.to_string()),
        Ok(Value::String(s)) => Some(String::from_utf8_lossy(&s.as_bytes()).into_owned()),
        _ => None,
    };
    match (source, line) {
        (Some(source), Some(line)) => {
            Frame::Error(format!("{msg} script: {name}, on {source}:{line}."))
        }
        _ => Frame::Error(msg),
    }
}

/// `n` as C's `printf("%.<precision>g")` writes it.
pub fn format_g(n: f64, precision: usize) -> String {
    if n.is_nan() {
        return if n.is_sign_negative() { "-nan" } else { "nan" }.to_string();
    }
    if n.is_infinite() {
        return if n < 0.0 { "-inf" } else { "inf" }.to_string();
    }
    if n == 0.0 {
        return if n.is_sign_negative() { "-0" } else { "0" }.to_string();
    }
    let precision = precision.max(1);
    let sci = format!("{:.*e}", precision - 1, n);
    let (mantissa, exp) = sci.split_once('e').unwrap_or((&sci, "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    if exp < -4 || exp >= precision as i32 {
        let mantissa = strip_zeros(mantissa);
        let sign = if exp < 0 { '-' } else { '+' };
        format!("{mantissa}e{sign}{:02}", exp.abs())
    } else {
        let decimals = (precision as i32 - 1 - exp).max(0) as usize;
        strip_zeros(&format!("{n:.decimals$}")).to_string()
    }
}

fn strip_zeros(s: &str) -> &str {
    if s.contains('.') {
        s.trim_end_matches('0').trim_end_matches('.')
    } else {
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_like_printf_g() {
        assert_eq!(format_g(100.5, 17), "100.5");
        assert_eq!(format_g(0.1, 17), "0.10000000000000001");
        assert_eq!(format_g(1e20, 17), "1e+20");
        assert_eq!(format_g(123456789012345678.0, 17), "1.2345678901234568e+17");
        assert_eq!(format_g(0.0001, 14), "0.0001");
        assert_eq!(format_g(0.00001, 14), "1e-05");
        assert_eq!(format_g(3.0, 14), "3");
        assert_eq!(format_g(-2.5, 14), "-2.5");
    }

    #[test]
    fn error_texts_keep_or_get_a_code() {
        assert_eq!(error_text("-WRONGTYPE bad"), "WRONGTYPE bad");
        assert_eq!(error_text("plain words"), "ERR plain words");
        assert_eq!(error_text("-nospace"), "ERR nospace");
        assert_eq!(error_text("-ERR x\r\n"), "ERR x");
    }
}
