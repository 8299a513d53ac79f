use super::*;

fn check(f: FormatCheck, input: &str, expected: bool) {
    assert_eq!(f(input), expected, "{input:?}");
}

/// Completes 17 digits or characters with their check character.
fn id(first17: &str) -> String {
    format!("{first17}{}", id_number_check_char(first17).unwrap())
}

fn uscc(first17: &str) -> String {
    format!("{first17}{}", uscc_check_char(first17).unwrap())
}

#[test]
fn id_number_check_characters() {
    // The standard's worked example: 11010519491231002 → X.
    assert_eq!(id_number_check_char("11010519491231002"), Some('X'));
    // the weighted digit sum is 188; 188 % 11 = 1, which maps to '0'.
    assert_eq!(id_number_check_char("44030419900101023"), Some('0'));
    assert_eq!(id_number_check_char("4403041990010102"), None);
    assert_eq!(id_number_check_char("4403041990010102a"), None);
}

#[test]
fn id_numbers() {
    check(is_id_number_cn, "11010519491231002X", true);
    check(is_id_number_cn, "440304199001010230", true);
    check(is_id_number_cn, &id("32010219880229001"), true); // a leap day
    check(is_id_number_cn, "110105194912310021", false); // wrong check digit
    check(is_id_number_cn, "11010519491231002x", false); // lower-case x
    check(is_id_number_cn, &id("32010219890229001"), false); // 1989 is not a leap year
    check(is_id_number_cn, &id("32010219901301001"), false); // month 13
    check(is_id_number_cn, &id("32010218991231001"), false); // before 1900
    check(is_id_number_cn, &id("99010219900101001"), false); // no province 99
    check(is_id_number_cn, "11010519491231002", false); // 17 characters
    check(is_id_number_cn, "1101051949123100２X", false); // a full-width digit
    check(is_id_number_cn, "", false);
}

#[test]
fn uscc_check_characters() {
    // The example code printed in GB 32100 guidance material, 91350100M000100Y43, checks out:
    // the sum of value × weight over the first 17 characters is 1640; (31 - 1640 % 31) % 31 = 3.
    assert_eq!(uscc_check_char("91350100M000100Y4"), Some('3'));
    assert!(is_uscc("91350100M000100Y43"));
    for first17 in ["91110000600037341", "12320000466009473", "52320000MJ5499838"] {
        let full = uscc(first17);
        assert!(is_uscc(&full), "{full}");
    }
    assert_eq!(uscc_check_char("9132000060003734I"), None); // I is not in the alphabet
}

#[test]
fn uscc_codes() {
    let good = uscc("91320100MA1MXXXX1");
    check(is_uscc, &good, true);
    let mut wrong = good.clone();
    wrong.replace_range(17.., if good.ends_with('0') { "1" } else { "0" });
    check(is_uscc, &wrong, false);
    check(is_uscc, &good.to_lowercase(), false);
    check(is_uscc, &uscc("91990000MA1MXXXX1"), false); // no province 99
    check(is_uscc, &good[..17], false);
    check(is_uscc, "91320100MA1MXXXXO1", false); // letter O
}

#[test]
fn region_codes() {
    check(is_region_code, "320000", true);
    check(is_region_code, "320100", true);
    check(is_region_code, "320102", true);
    check(is_region_code, "810000", true);
    check(is_region_code, "320012", false); // a county part under no city
    check(is_region_code, "990000", false);
    check(is_region_code, "32010", false);
    check(is_region_code, "32010a", false);
    assert_eq!(region_level("320000"), Some(RegionLevel::Province));
    assert_eq!(region_level("320100"), Some(RegionLevel::City));
    assert_eq!(region_level("320102"), Some(RegionLevel::County));
    assert_eq!(region_level("990000"), None);
}

#[test]
fn formats_are_asserted_once_registered_with_jsonschema() {
    let schema = serde_json::json!({"type": "string", "format": "id-number-cn"});
    let mut options = jsonschema::options().should_validate_formats(true);
    for (name, check) in FORMATS {
        options = options.with_format(*name, *check);
    }
    let validator = options.build(&schema).unwrap();
    assert!(validator.is_valid(&serde_json::json!("11010519491231002X")));
    assert!(!validator.is_valid(&serde_json::json!("110105194912310021")));
}
