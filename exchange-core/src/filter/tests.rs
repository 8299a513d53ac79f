use serde_json::json;

use super::*;

fn parse(text: &str) -> Filter {
    text.parse().unwrap_or_else(|e| panic!("{text}: {e}"))
}

/// Asserts `text` is refused at `offset` with a message containing `fragment`.
fn check_error(text: &str, offset: usize, fragment: &str) {
    match text.parse::<Filter>() {
        Err(e) => {
            assert_eq!(e.offset, offset, "{text}: {e}");
            assert!(e.message.contains(fragment), "{text}: {e} lacks {fragment}");
        }
        Ok(f) => panic!("{text} parsed as {f:?}"),
    }
}

#[test]
fn parses_each_condition_and_prints_canonically() {
    let cases = [
        ("region_code = \"320102\"", "region_code = \"320102\""),
        (
            "status in ('active','suspended')",
            "status IN (\"active\", \"suspended\")",
        ),
        ("name starts with \"张\"", "name STARTS WITH \"张\""),
        (
            "a='1'  and b IN (\"x\") AND c Starts With 'y'",
            "a = \"1\" AND b IN (\"x\") AND c STARTS WITH \"y\"",
        ),
        ("q = 'it\\'s \"quoted\" \\\\'", "q = \"it's \\\"quoted\\\" \\\\\""),
    ];
    for (text, canonical) in cases {
        let f = parse(text);
        assert_eq!(f.to_string(), canonical, "{text}");
        assert_eq!(parse(canonical), f, "round trip of {canonical}");
    }
}

#[test]
fn errors_say_where_and_what() {
    check_error("", 0, "expected a field name");
    check_error("region_code = ", 14, "expected a quoted string after \"=\"");
    check_error("region_code == \"1\"", 13, "expected a quoted string");
    check_error("a = \"1\" OR b = \"2\"", 8, "expected AND");
    check_error("a > \"1\"", 2, "expected =, IN or STARTS WITH");
    check_error("a IN \"1\"", 5, "expected ( after IN");
    check_error("a IN (\"1\" \"2\")", 10, "expected , or )");
    check_error("a STARTS \"1\"", 9, "expected WITH");
    check_error("a = \"open", 4, "never closed");
    check_error("a = \"\\n\"", 6, "escapes");
    check_error("and = \"1\"", 0, "keyword");
}

#[test]
fn limits_are_enforced_and_named() {
    let long = format!("a = \"{}\"", "x".repeat(MAX_FILTER_BYTES));
    check_error(&long, 0, "at most 4096 bytes");
    let many = vec!["a = \"1\""; MAX_CONDITIONS + 1].join(" AND ");
    assert!(many
        .parse::<Filter>()
        .unwrap_err()
        .message
        .contains("at most 32 conditions"));
    let ok = vec!["a = \"1\""; MAX_CONDITIONS].join(" AND ");
    assert_eq!(parse(&ok).conds.len(), MAX_CONDITIONS);
    let values = vec!["\"v\""; MAX_IN_VALUES + 1].join(",");
    let err = format!("a IN ({values})").parse::<Filter>().unwrap_err();
    assert!(err.message.contains("at most 256 values"), "{err}");
}

#[test]
fn matches_records() {
    let record = json!({"name": "张三", "region_code": "320102", "status": "active", "age": 30});
    let record = record.as_object().unwrap();
    let check = |text: &str, expected: bool| assert_eq!(parse(text).matches(record), expected, "{text}");
    check("name STARTS WITH \"张\"", true);
    check("name STARTS WITH \"李\"", false);
    check(
        "region_code = \"320102\" AND status IN (\"active\", \"suspended\")",
        true,
    );
    check("region_code = \"320102\" AND status IN (\"revoked\")", false);
    check("age = \"30\"", false); // not a string
    check("missing = \"x\"", false);
    assert!(Filter::default().matches(record), "the empty filter matches everything");
}

#[test]
fn and_combines_both() {
    let grant = parse("region_code STARTS WITH \"3201\"");
    let request = parse("status = \"active\"");
    let both = grant.and(&request);
    assert_eq!(
        both.to_string(),
        "region_code STARTS WITH \"3201\" AND status = \"active\""
    );
    assert_eq!(both.fields().collect::<Vec<_>>(), ["region_code", "status"]);
    assert!(Filter::default().is_empty() && !both.is_empty());
}
