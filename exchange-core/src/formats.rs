//! Domain string formats, registered with jsonschema by `schema::compile` so that every
//! validator in the project checks them (draft 2020-12 does not assert `format` by default).
//!
//! - `id-number-cn`: the 18-character resident identity number of GB 11643-1999.
//! - `uscc`: the 18-character unified social credit code of GB 32100-2015.
//! - `region-code`: a six-digit administrative division code of GB/T 2260.
//!
//! Region codes are checked by structure (a real province-level prefix, digit pairs in range),
//! not against the national table, which changes every year; see [`is_region_code`].

/// A format check, as jsonschema takes it.
pub type FormatCheck = fn(&str) -> bool;

/// Every domain format, by the name schemas use in `"format"`.
pub const FORMATS: &[(&str, FormatCheck)] = &[
    ("id-number-cn", is_id_number_cn),
    ("uscc", is_uscc),
    ("region-code", is_region_code),
];

/// Province-level division codes (the first two digits of a region code): the 31 provinces,
/// autonomous regions and municipalities, plus Taiwan (71), Hong Kong (81) and Macao (82).
const PROVINCES: &[u8] = &[
    11, 12, 13, 14, 15, 21, 22, 23, 31, 32, 33, 34, 35, 36, 37, 41, 42, 43, 44, 45, 46, 50, 51, 52, 53, 54, 61, 62, 63,
    64, 65, 71, 81, 82,
];

/// The level a region code names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RegionLevel {
    /// `xx0000`: a province-level division.
    Province,
    /// `xxyy00`: a prefecture-level city (or the districts of a municipality).
    City,
    /// `xxyyzz`: a county-level division (district, county, county-level city).
    County,
}

fn two_digits(s: &[u8]) -> u8 {
    (s[0] - b'0') * 10 + (s[1] - b'0')
}

/// Whether `s` is a plausible GB/T 2260 code: six ASCII digits, a real province-level prefix,
/// and no county part under a `00` city part (`320012` names no division). Whether the division
/// exists today is not checked.
pub fn is_region_code(s: &str) -> bool {
    let b = s.as_bytes();
    if b.len() != 6 || !b.iter().all(u8::is_ascii_digit) {
        return false;
    }
    let (province, city, county) = (two_digits(&b[0..2]), two_digits(&b[2..4]), two_digits(&b[4..6]));
    PROVINCES.contains(&province) && !(city == 0 && county != 0)
}

/// The level of a valid region code, or `None` if it is not one.
pub fn region_level(code: &str) -> Option<RegionLevel> {
    if !is_region_code(code) {
        return None;
    }
    Some(if code.ends_with("0000") {
        RegionLevel::Province
    } else if code.ends_with("00") {
        RegionLevel::City
    } else {
        RegionLevel::County
    })
}

const ID_WEIGHTS: [u32; 17] = [7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2];
const ID_CHECK: &[u8; 11] = b"10X98765432";

/// The ISO 7064 MOD 11-2 check character of the first 17 digits of an identity number.
pub fn id_number_check_char(first17: &str) -> Option<char> {
    let b = first17.as_bytes();
    if b.len() != 17 || !b.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let sum: u32 = b.iter().zip(ID_WEIGHTS).map(|(d, w)| u32::from(d - b'0') * w).sum();
    Some(ID_CHECK[(sum % 11) as usize] as char)
}

fn is_leap(year: u32) -> bool {
    (year.is_multiple_of(4) && !year.is_multiple_of(100)) || year.is_multiple_of(400)
}

/// Whether `yyyymmdd` is a real calendar date between 1900-01-01 and 2100-12-31 (an upper bound
/// instead of "today" keeps the check free of a clock, so a record valid once stays valid).
fn is_birth_date(yyyymmdd: &[u8]) -> bool {
    let number = |r: std::ops::Range<usize>| yyyymmdd[r].iter().fold(0u32, |n, d| n * 10 + u32::from(d - b'0'));
    let (year, month, day) = (number(0..4), number(4..6), number(6..8));
    let days_in_month = match month {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        2 if is_leap(year) => 29,
        2 => 28,
        _ => return false,
    };
    (1900..=2100).contains(&year) && (1..=days_in_month).contains(&day)
}

/// Whether `s` is an 18-character resident identity number: a region code, a real birth date,
/// a three-digit sequence and the right check character (`X` upper case only).
pub fn is_id_number_cn(s: &str) -> bool {
    let b = s.as_bytes();
    if b.len() != 18 || !b[..17].iter().all(u8::is_ascii_digit) {
        return false;
    }
    let Ok(region) = std::str::from_utf8(&b[..6]) else {
        return false;
    };
    is_region_code(region) && is_birth_date(&b[6..14]) && id_number_check_char(&s[..17]) == Some(b[17] as char)
}

/// The 31 characters of a unified social credit code (no I, O, S, V, Z), in value order.
const USCC_CHARS: &[u8; 31] = b"0123456789ABCDEFGHJKLMNPQRTUWXY";
const USCC_WEIGHTS: [u32; 17] = [1, 3, 9, 27, 19, 26, 16, 17, 20, 29, 25, 13, 8, 24, 10, 30, 28];

fn uscc_value(c: u8) -> Option<u32> {
    USCC_CHARS.iter().position(|&x| x == c).map(|p| p as u32)
}

/// The GB 32100 check character of the first 17 characters of a unified social credit code.
pub fn uscc_check_char(first17: &str) -> Option<char> {
    let b = first17.as_bytes();
    if b.len() != 17 {
        return None;
    }
    let mut sum = 0;
    for (&c, w) in b.iter().zip(USCC_WEIGHTS) {
        sum += uscc_value(c)? * w;
    }
    Some(USCC_CHARS[((31 - sum % 31) % 31) as usize] as char)
}

/// Whether `s` is a unified social credit code: 18 characters of the code's alphabet, a
/// registration authority and type (characters 1–2), a region code (3–8), an organisation code
/// (9–17) and the right check character. Upper case only, as issued.
pub fn is_uscc(s: &str) -> bool {
    let b = s.as_bytes();
    if b.len() != 18 || !b.iter().all(|&c| uscc_value(c).is_some()) {
        return false;
    }
    let Ok(region) = std::str::from_utf8(&b[2..8]) else {
        return false;
    };
    is_region_code(region) && uscc_check_char(&s[..17]) == Some(b[17] as char)
}

#[cfg(test)]
mod tests;
