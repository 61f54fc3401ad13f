use super::super::testing::{error_of, eval, eval_in, lua};
use super::format_g;
use proptest::prelude::*;

fn g(value: f64, precision: usize) -> String {
    let mut out = Vec::new();
    format_g(value, precision, &mut out);
    String::from_utf8(out).expect("ASCII")
}

#[test]
fn numbers_print_as_percent_14g() {
    let cases = [
        (0.0, "0"),
        (-0.0, "-0"),
        (100.0, "100"),
        (0.1, "0.1"),
        (1.0 / 3.0, "0.33333333333333"),
        (1023.2, "1023.2"),
        (0.0003, "0.0003"),
        (0.00001, "1e-05"),
        (1e20, "1e+20"),
        (123_456_789_012_345.0, "1.2345678901234e+14"),
        (99_999_999_999_999.5, "1e+14"),
        (12_345_678_901_234.0, "12345678901234"),
        (-1.5e-300, "-1.5e-300"),
        (1.797_693_134_862_315_7e308, "1.7976931348623e+308"),
        (f64::INFINITY, "inf"),
        (f64::NEG_INFINITY, "-inf"),
    ];
    for (value, expected) in cases {
        assert_eq!(g(value, 14), expected, "{value:e}");
    }
    assert_eq!(g(0.5, 1), "0.5");
    assert_eq!(g(2.5, 1), "2");
    assert_eq!(g(1.23456, 3), "1.23");
    assert_eq!(g(1234.0, 3), "1.23e+03");
}

#[test]
fn redis_json_numeric_decoding() {
    let text: String =
        eval("return table.concat(cjson.decode(\"[0.0, -5e3, -1, 0.3e-3, 1023.2, 0e10]\"), \" \")");
    assert_eq!(text, "0 -5000 -1 0.0003 1023.2 0");
}

#[test]
fn redis_json_string_decoding() {
    let pair: Vec<String> = eval(
        "local decoded = cjson.decode('{\"keya\": \"a\", \"keyb\": \"b\"}') \
         return {decoded.keya, decoded.keyb}",
    );
    assert_eq!(pair, ["a", "b"]);
}

/// Redis's "EVAL - JSON smoke test", as it stands in scripting.tcl.
#[test]
fn redis_json_smoke_test() {
    let () = eval(
        r#"
        local some_map = {
            s1="Some string",
            n1=100,
            a1={"Some","String","Array"},
            nil1=nil,
            b1=true,
            b2=false}
        local encoded = cjson.encode(some_map)
        local decoded = cjson.decode(encoded)
        assert(table.concat(some_map) == table.concat(decoded))

        cjson.encode_keep_buffer(false)
        encoded = cjson.encode(some_map)
        decoded = cjson.decode(encoded)
        assert(table.concat(some_map) == table.concat(decoded))

        -- Table with numeric keys
        local table1 = {one="one", [1]="one"}
        encoded = cjson.encode(table1)
        decoded = cjson.decode(encoded)
        assert(decoded["one"] == table1["one"])
        assert(decoded["1"] == table1[1])

        -- Array
        local array1 = {[1]="one", [2]="two"}
        encoded = cjson.encode(array1)
        decoded = cjson.decode(encoded)
        assert(table.concat(array1) == table.concat(decoded))

        -- Invalid keys
        local invalid_map = {}
        invalid_map[false] = "false"
        local ok, encoded = pcall(cjson.encode, invalid_map)
        assert(ok == false)

        -- Max depth
        cjson.encode_max_depth(1)
        ok, encoded = pcall(cjson.encode, some_map)
        assert(ok == false)

        cjson.decode_max_depth(1)
        ok, decoded = pcall(cjson.decode, '{"obj": {"array": [1,2,3,4]}}')
        assert(ok == false)

        -- Invalid numbers
        ok, encoded = pcall(cjson.encode, {num1=0/0})
        assert(ok == false)
        cjson.encode_invalid_numbers(true)
        ok, encoded = pcall(cjson.encode, {num1=0/0})
        assert(ok == true)

        -- Restore defaults
        cjson.decode_max_depth(1000)
        cjson.encode_max_depth(1000)
        cjson.encode_invalid_numbers(false)
        "#,
    );
}

#[test]
fn encodes_scalars() {
    let out: Vec<String> = eval(
        "return {cjson.encode('a'), cjson.encode(1), cjson.encode(-2.5), \
         cjson.encode(true), cjson.encode(false), cjson.encode(nil), \
         cjson.encode(cjson.null), cjson.encode(1/3)}",
    );
    assert_eq!(
        out,
        [
            "\"a\"",
            "1",
            "-2.5",
            "true",
            "false",
            "null",
            "null",
            "0.33333333333333"
        ]
    );
}

#[test]
fn escapes_as_lua_cjson() {
    let lua = lua();
    let out: mlua::String = eval_in(
        &lua,
        r#"return cjson.encode("a/b\"c\\d\b\f\n\r\t\0\1\31\127\128\255é")"#,
    );
    assert_eq!(
        &*out.as_bytes(),
        b"\"a\\/b\\\"c\\\\d\\b\\f\\n\\r\\t\\u0000\\u0001\\u001f\\u007f\x80\xff\xc3\xa9\""
    );
}

#[test]
fn tables_encode_as_arrays_or_objects() {
    let out: Vec<String> = eval(
        "return {cjson.encode({}), cjson.encode({1, 'two', true}), \
         cjson.encode({[1]=1, [2]=2, [4]=4}), cjson.encode({a={b={}}}), \
         cjson.encode({[1.5]=1}), cjson.encode({[0]=1}), cjson.encode({['1']=1}), \
         cjson.encode({[-1]=1})}",
    );
    assert_eq!(
        out,
        [
            "{}",
            "[1,\"two\",true]",
            "[1,2,null,4]",
            "{\"a\":{\"b\":{}}}",
            "{\"1.5\":1}",
            "{\"0\":1}",
            "{\"1\":1}",
            "{\"-1\":1}",
        ]
    );
}

#[test]
fn sparse_arrays_follow_the_settings() {
    assert_eq!(
        error_of("cjson.encode({[1]=1, [20]=2})"),
        "user_script:1: Cannot serialise table: excessively sparse array"
    );
    // Up to index 10 any sparseness is fine.
    let small: String = eval("return cjson.encode({[1]=1, [10]=2})");
    assert_eq!(small, "[1,null,null,null,null,null,null,null,null,2]");
    let (settings, converted): (Vec<mlua::Value>, String) = {
        let lua = lua();
        let settings = eval_in(&lua, "return {cjson.encode_sparse_array()}");
        let converted = eval_in(
            &lua,
            "cjson.encode_sparse_array(true) return cjson.encode({[20]=2})",
        );
        (settings, converted)
    };
    assert_eq!(
        format!("{settings:?}"),
        "[Boolean(false), Integer(2), Integer(10)]"
    );
    assert_eq!(converted, "{\"20\":2}");
    let allowed: String = eval("cjson.encode_sparse_array(false, 0) return cjson.encode({[3]=3})");
    assert_eq!(allowed, "[null,null,3]");
}

#[test]
fn encode_errors_read_like_lua_cjson() {
    assert_eq!(
        error_of("local t = {} t[false] = 1 cjson.encode(t)"),
        "user_script:1: Cannot serialise boolean: table key must be a number or string"
    );
    assert_eq!(
        error_of("cjson.encode({f = print})"),
        "user_script:1: Cannot serialise function: type not supported"
    );
    assert_eq!(
        error_of("cjson.encode(coroutine.create(function() end))"),
        "user_script:1: Cannot serialise thread: type not supported"
    );
    assert_eq!(
        error_of("cjson.encode({1, 0/0})"),
        "user_script:1: Cannot serialise number: must not be NaN or Inf"
    );
    assert_eq!(
        error_of("cjson.encode({[math.huge] = 1})"),
        "user_script:1: Cannot serialise number: must not be NaN or Inf"
    );
    assert_eq!(
        error_of("cjson.encode(1, 2)"),
        "user_script:1: bad argument #1 to 'encode' (expected 1 argument)"
    );
}

#[test]
fn nesting_is_limited_to_1000_levels() {
    let deep = "local t = {} local top = t for i = 1, 1000 do t[1] = {} t = t[1] end";
    assert_eq!(
        error_of(&format!("{deep} cjson.encode(top)")),
        "user_script:1: Cannot serialise, excessive nesting (1001)"
    );
    let ok: usize = eval(
        "local t = {} local top = t for i = 1, 999 do t[1] = {} t = t[1] end \
         return #cjson.encode(top)",
    );
    assert_eq!(ok, 2000);
    let circular = "local a = {} a.a = a cjson.encode(a)";
    assert_eq!(
        error_of(circular),
        "user_script:1: Cannot serialise, excessive nesting (1001)"
    );
    assert_eq!(
        error_of("cjson.decode(string.rep('[', 1001))"),
        "user_script:1: Found too many nested data structures (1001) at character 1001"
    );
    assert_eq!(
        error_of("cjson.decode_max_depth(1) cjson.decode('{\"obj\": {\"array\": [1,2,3,4]}}')"),
        "user_script:1: Found too many nested data structures (2) at character 9"
    );
}

#[test]
fn raised_limits_stop_where_lua_stack_runs_out() {
    // Objects hold two Lua stack slots a level in the C code: with the
    // limit out of the way the C stack limit of 8000 slots decides.
    assert_eq!(
        error_of("cjson.encode_max_depth(100000) local a = {} a.a = a cjson.encode(a)"),
        "user_script:1: Cannot serialise, excessive nesting (4000)"
    );
    let deepest = "cjson.encode_max_depth(100000) local t = {} local top = t \
                   for i = 1, DEPTH - 1 do t[1] = {} t = t[1] end";
    let ok: usize = eval(&format!(
        "{} return #cjson.encode(top)",
        deepest.replace("DEPTH", "7997")
    ));
    assert_eq!(ok, 2 * 7997);
    assert_eq!(
        error_of(&format!(
            "{} cjson.encode(top)",
            deepest.replace("DEPTH", "7998")
        )),
        "user_script:1: Cannot serialise, excessive nesting (7998)"
    );
    assert_eq!(
        error_of("cjson.decode_max_depth(100000) cjson.decode(string.rep('[', 9000))"),
        "user_script:1: Found too many nested data structures (7999) at character 7999"
    );
}

#[test]
fn large_documents_round_trip() {
    let () = eval(
        "local map, list = {}, {} \
         for i = 1, 20000 do map['k' .. i] = {v = 'x' .. i} list[i] = tostring(i) end \
         local back = cjson.decode(cjson.encode({map = map, list = list})) \
         assert(#back.list == 20000 and back.list[20000] == '20000') \
         local n = 0 for k, v in pairs(back.map) do assert(v.v == 'x' .. k:sub(2)) n = n + 1 end \
         assert(n == 20000)",
    );
}

#[test]
fn decodes_values() {
    let out: Vec<String> = eval(
        r#"local t = cjson.decode('{"a":[1,2,{"b":null}],"c":true,"d":"x\\u00e9\\ud83d\\ude00\\/"}')
           return {tostring(#t.a), tostring(t.a[3].b == cjson.null), tostring(t.c), t.d,
                   type(cjson.decode('null')), tostring(cjson.decode(' 12 ')),
                   tostring(cjson.decode('"\\u0000"') == '\0'), tostring(cjson.decode('-0'))}"#,
    );
    assert_eq!(
        out,
        ["3", "true", "true", "xé😀/", "userdata", "12", "true", "-0"]
    );
}

#[test]
fn decode_reads_the_text_as_a_c_string() {
    let n: i64 = eval("return cjson.decode('[1]\\0junk')[1]");
    assert_eq!(n, 1);
    assert_eq!(
        error_of("cjson.decode('\"ab\\0cd\"')"),
        "user_script:1: Expected value but found unexpected end of string at character 4"
    );
    assert_eq!(
        error_of("cjson.decode('[\\0')"),
        "user_script:1: JSON parser does not support UTF-16 or UTF-32"
    );
}

#[test]
fn decode_errors_read_like_lua_cjson() {
    let cases = [
        ("''", "Expected value but found T_END at character 1"),
        (
            "'x'",
            "Expected value but found invalid token at character 1",
        ),
        (
            "'{'",
            "Expected object key string but found T_END at character 2",
        ),
        (
            "'[1,]'",
            "Expected value but found T_ARR_END at character 4",
        ),
        (
            "'[1 2]'",
            "Expected comma or array end but found T_NUMBER at character 4",
        ),
        (
            "'{\"a\" 1}'",
            "Expected colon but found T_NUMBER at character 6",
        ),
        (
            "'{\"a\":1,}'",
            "Expected object key string but found T_OBJ_END at character 8",
        ),
        (
            "'{\"a\":1 \"b\"}'",
            "Expected comma or object end but found T_STRING at character 8",
        ),
        (
            "'{1:2}'",
            "Expected object key string but found T_NUMBER at character 2",
        ),
        (
            "'1 2'",
            "Expected the end but found T_NUMBER at character 3",
        ),
        (
            "'\"abc'",
            "Expected value but found unexpected end of string at character 5",
        ),
        (
            "'\"a\\\\qb\"'",
            "Expected value but found invalid escape code at character 3",
        ),
        (
            "'\"\\\\u12\"'",
            "Expected value but found invalid unicode escape code at character 2",
        ),
        (
            "'\"\\\\udc00\"'",
            "Expected value but found invalid unicode escape code at character 2",
        ),
        (
            "'\"\\\\ud800x\"'",
            "Expected value but found invalid unicode escape code at character 2",
        ),
        (
            "'tru'",
            "Expected value but found invalid token at character 1",
        ),
        (
            "'-'",
            "Expected value but found invalid number at character 1",
        ),
        (
            "'+'",
            "Expected value but found invalid number at character 1",
        ),
        (
            "'[nil]'",
            "Expected value but found invalid token at character 2",
        ),
    ];
    for (text, message) in cases {
        assert_eq!(
            error_of(&format!("cjson.decode({text})")),
            format!("user_script:1: {message}"),
            "{text}"
        );
    }
    assert_eq!(
        error_of("cjson.decode()"),
        "user_script:1: bad argument #1 to 'decode' (expected 1 argument)"
    );
    assert_eq!(
        error_of("cjson.decode({})"),
        "user_script:1: bad argument #1 to 'decode' (string expected, got table)"
    );
}

#[test]
fn invalid_numbers_follow_the_settings() {
    let decoded: Vec<String> = eval(
        "return {tostring(cjson.decode('0x10')), tostring(cjson.decode('+5')), \
         tostring(cjson.decode('-Infinity')), tostring(cjson.decode('007')), \
         tostring(cjson.decode('[1e400]')[1]), tostring(cjson.decode('0x1.8p1')), \
         tostring(cjson.decode('NaN') ~= cjson.decode('NaN'))}",
    );
    assert_eq!(decoded, ["16", "5", "-inf", "7", "inf", "3", "true"]);
    assert_eq!(
        error_of("cjson.decode_invalid_numbers(false) cjson.decode('0x10')"),
        "user_script:1: Expected value but found invalid number at character 1"
    );
    assert_eq!(
        error_of("cjson.decode_invalid_numbers(false) cjson.decode('Infinity')"),
        "user_script:1: Expected value but found invalid token at character 1"
    );
    let encoded: Vec<String> = eval(
        "local r = {cjson.encode_invalid_numbers(true)} \
         r[2] = cjson.encode({0/0, math.huge, -math.huge}) \
         r[3] = cjson.encode_invalid_numbers('null') \
         r[4] = cjson.encode({0/0, math.huge}) \
         return {tostring(r[1]), r[2], r[3], r[4]}",
    );
    assert_eq!(encoded, ["true", "[nan,inf,-inf]", "null", "[null,null]"]);
}

#[test]
fn configuration_functions_check_their_arguments() {
    let values: Vec<String> = eval(
        "return {tostring(cjson.encode_max_depth()), tostring(cjson.decode_max_depth(5)), \
         tostring(cjson.encode_number_precision(3)), cjson.encode(math.pi), \
         tostring(cjson.encode_keep_buffer('off')), tostring(cjson.decode_invalid_numbers('on')), \
         tostring(cjson.encode_invalid_numbers()) }",
    );
    assert_eq!(values, ["1000", "5", "3", "3.14", "false", "true", "false"]);
    let cases = [
        (
            "cjson.encode_number_precision(15)",
            "bad argument #1 to 'encode_number_precision' (expected integer between 1 and 14)",
        ),
        (
            "cjson.encode_max_depth(0)",
            "bad argument #1 to 'encode_max_depth' (expected integer between 1 and 2147483647)",
        ),
        (
            "cjson.encode_sparse_array(true, -1)",
            "bad argument #1 to 'encode_sparse_array' (expected integer between 0 and 2147483647)",
        ),
        (
            "cjson.encode_max_depth('x')",
            "bad argument #1 to 'encode_max_depth' (number expected, got string)",
        ),
        (
            "cjson.encode_invalid_numbers('maybe')",
            "bad argument #1 to 'encode_invalid_numbers' (invalid option 'maybe')",
        ),
        (
            "cjson.encode_keep_buffer({})",
            "bad argument #1 to 'encode_keep_buffer' (string expected, got table)",
        ),
        (
            "cjson.decode_max_depth(1, 2)",
            "bad argument #2 to 'decode_max_depth' (found too many arguments)",
        ),
    ];
    for (code, message) in cases {
        assert_eq!(
            error_of(code),
            format!("user_script:1: {message}"),
            "{code}"
        );
    }
}

#[test]
fn new_gives_independent_settings() {
    let out: Vec<String> = eval(
        "local other = cjson.new() other.encode_number_precision(2) \
         return {other.encode(1/3), cjson.encode(1/3), other._NAME, other._VERSION, \
         tostring(other.null == cjson.null), type(other.new)}",
    );
    assert_eq!(
        out,
        [
            "0.33",
            "0.33333333333333",
            "cjson",
            "2.1.0",
            "true",
            "function"
        ]
    );
}

/// A JSON document as the round trip test builds it.
#[derive(Clone, Debug)]
enum Json {
    Null,
    Bool(bool),
    Number(f64),
    Text(Vec<u8>),
    Array(Vec<Json>),
    Object(Vec<(Vec<u8>, Json)>),
}

/// Numbers `%.14g` writes exactly: integers below 10^14 and eighths.
fn number() -> impl Strategy<Value = f64> {
    prop_oneof![
        (-99_999_999_999_999i64..99_999_999_999_999).prop_map(|i| i as f64),
        (-1_000_000i32..1_000_000).prop_map(|i| f64::from(i) / 8.0),
    ]
}

fn json() -> impl Strategy<Value = Json> {
    let leaf = prop_oneof![
        Just(Json::Null),
        any::<bool>().prop_map(Json::Bool),
        number().prop_map(Json::Number),
        prop::collection::vec(any::<u8>(), 0..12).prop_map(Json::Text),
    ];
    leaf.prop_recursive(6, 48, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 1..6).prop_map(Json::Array),
            prop::collection::btree_map(prop::collection::vec(any::<u8>(), 0..6), inner, 0..6)
                .prop_map(|m| Json::Object(m.into_iter().collect())),
        ]
    })
}

fn to_lua(lua: &mlua::Lua, json: &Json) -> mlua::Result<mlua::Value> {
    Ok(match json {
        Json::Null => mlua::Value::NULL,
        Json::Bool(b) => mlua::Value::Boolean(*b),
        Json::Number(n) => mlua::Value::Number(*n),
        Json::Text(t) => mlua::Value::String(lua.create_string(t)?),
        Json::Array(items) => {
            let table = lua.create_table()?;
            for (i, item) in items.iter().enumerate() {
                table.raw_set(i + 1, to_lua(lua, item)?)?;
            }
            mlua::Value::Table(table)
        }
        Json::Object(fields) => {
            let table = lua.create_table()?;
            for (key, item) in fields {
                table.raw_set(lua.create_string(key)?, to_lua(lua, item)?)?;
            }
            mlua::Value::Table(table)
        }
    })
}

/// Whether a decoded Lua value is the document (an empty array comes
/// back as the empty object it is encoded as).
fn same(lua: &mlua::Lua, json: &Json, value: &mlua::Value) -> bool {
    match (json, value) {
        (Json::Null, mlua::Value::LightUserData(p)) => p.0.is_null(),
        (Json::Bool(a), mlua::Value::Boolean(b)) => a == b,
        (Json::Number(n), v) => super::number_of(v) == Some(*n),
        (Json::Text(t), mlua::Value::String(s)) => *t == *s.as_bytes(),
        (Json::Array(items), mlua::Value::Table(t)) => {
            t.raw_len() == items.len()
                && t.clone().pairs::<mlua::Value, mlua::Value>().count() == items.len()
                && items.iter().enumerate().all(|(i, item)| {
                    t.raw_get::<mlua::Value>(i + 1)
                        .is_ok_and(|v| same(lua, item, &v))
                })
        }
        (Json::Object(fields), mlua::Value::Table(t)) => {
            t.clone().pairs::<mlua::Value, mlua::Value>().count() == fields.len()
                && fields.iter().all(|(key, item)| {
                    let key = lua.create_string(key).expect("string");
                    t.raw_get::<mlua::Value>(key)
                        .is_ok_and(|v| same(lua, item, &v))
                })
        }
        _ => false,
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    #[test]
    fn round_trips_through_encode_and_decode(doc in json()) {
        let lua = lua();
        let value = to_lua(&lua, &doc).expect("builds");
        let round_trip: mlua::Function = eval_in(
            &lua,
            "return function(v) return cjson.decode(cjson.encode(v)) end",
        );
        let back: mlua::Value = round_trip.call(value).expect("round trip");
        prop_assert!(same(&lua, &doc, &back), "{doc:?} came back as {back:?}");
    }
}
