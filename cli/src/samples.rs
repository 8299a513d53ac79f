//! Generated sample records for the quickstart: realistic shapes, valid check digits, and the
//! same records on every run (a fixed linear congruential sequence, no randomness crate needed).

use exchange_core::formats::{id_number_check_char, uscc_check_char};
use serde_json::{json, Value};

/// A small deterministic sequence (Knuth's MMIX constants).
struct Seq(u64);

impl Seq {
    fn next(&mut self, below: u64) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (self.0 >> 33) % below.max(1)
    }

    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.next(items.len() as u64) as usize]
    }
}

const SURNAMES: &[&str] = &[
    "王", "李", "张", "刘", "陈", "杨", "黄", "赵", "吴", "周", "徐", "孙", "马", "朱", "胡",
];
const GIVEN: &[&str] = &[
    "伟", "芳", "娜", "敏", "静", "磊", "洋", "勇", "艳", "杰", "军", "婷", "强", "霞", "平", "刚", "桂英", "建华",
    "秀兰", "志强",
];
/// Nanjing (3201xx) and Suzhou (3205xx) districts.
const DISTRICTS: &[(&str, &str)] = &[
    ("320102", "南京市玄武区"),
    ("320104", "南京市秦淮区"),
    ("320106", "南京市鼓楼区"),
    ("320505", "苏州市虎丘区"),
    ("320506", "苏州市吴中区"),
];
const STREETS: &[&str] = &["中山路", "北京东路", "汉中路", "干将路", "人民路", "长江路"];

fn id_number(region: &str, year: u64, month: u64, day: u64, seq: u64) -> String {
    let first17 = format!("{region}{year:04}{month:02}{day:02}{seq:03}");
    let check = id_number_check_char(&first17).unwrap_or('0');
    format!("{first17}{check}")
}

fn name(s: &mut Seq) -> String {
    format!("{}{}", s.pick(SURNAMES), s.pick(GIVEN))
}

/// `count` residents for `js.gongan/population`, each with its own identity number (unique for
/// up to 92 million): the position picks gender, district, birth date and sequence number.
pub(crate) fn people(count: usize) -> impl Iterator<Item = Value> {
    let mut s = Seq(2026);
    (0..count as u64).map(move |i| {
        let male = i % 2 == 0;
        let (region, area) = DISTRICTS[((i / 2) % DISTRICTS.len() as u64) as usize];
        let k = i / 5000;
        let (year, month, day) = (1950 + (k / 336) % 55, 1 + (k / 28) % 12, 1 + k % 28);
        // The 17th digit is odd for men and even for women (GB 11643).
        let seq = ((i / 10) % 500) * 2 + u64::from(male);
        json!({
            "id_number": id_number(region, year, month, day, seq),
            "name": name(&mut s),
            "gender": if male { "male" } else { "female" },
            "ethnicity": "汉族",
            "birth_date": format!("{year:04}-{month:02}-{day:02}"),
            "household_register_region": region,
            "address": format!("{area}{}{}号", s.pick(STREETS), 1 + s.next(300)),
            "phone": format!("1{}{:09}", 3 + s.next(7), s.next(1_000_000_000)),
            "marital_status": *s.pick(&["unmarried", "married", "divorced", "widowed"]),
            "updated_at": "2026-11-01T08:00:00+08:00"
        })
    })
}

const USCC_CHARS: &[u8] = b"0123456789ABCDEFGHJKLMNPQRTUWXY";

/// The `i`th company's code: its 9-character organisation code is `i` (shifted) times a number
/// prime to 31, modulo 31^9, in base 31, so codes look scattered and never repeat (for 26 trillion).
fn uscc(region: &str, i: u64) -> String {
    const SPACE: u64 = 31u64.pow(9);
    let mut n = ((u128::from(i % SPACE) + 1_000_003) * 7_777_777_777 % u128::from(SPACE)) as u64;
    let mut org = [b'0'; 9];
    for slot in org.iter_mut().rev() {
        *slot = USCC_CHARS[(n % 31) as usize];
        n /= 31;
    }
    let org = String::from_utf8_lossy(&org);
    let first17 = format!("91{region}{org}");
    let check = uscc_check_char(&first17).unwrap_or('0');
    format!("{first17}{check}")
}

/// `count` companies for `js.scjg/legal-persons`.
pub(crate) fn companies(count: usize) -> impl Iterator<Item = Value> {
    let mut s = Seq(32);
    let trades = ["科技", "贸易", "餐饮", "建筑", "物流", "文化传媒"];
    (0..count as u64)
        .map(move |i| {
            let (region, area) = *s.pick(DISTRICTS);
            let city = &area[..9];
            let (year, month, day) = (1995 + s.next(30), 1 + s.next(12), 1 + s.next(28));
            json!({
                "uscc": uscc(region, i),
                "name": format!("{city}{}{}有限公司", name(&mut s), s.pick(&trades)),
                "legal_representative": name(&mut s),
                "legal_rep_id_number": id_number(region, 1960 + s.next(40), 1 + s.next(12), 1 + s.next(28), s.next(1000)),
                "entity_type": *s.pick(&["limited_liability_company", "joint_stock_company", "sole_proprietorship", "partnership"]),
                "registered_capital_cny": (1 + s.next(500)) * 10_000,
                "established_date": format!("{year:04}-{month:02}-{day:02}"),
                "registration_region": region,
                "address": format!("{area}{}{}号", s.pick(STREETS), 1 + s.next(300)),
                "business_scope": "技术开发、技术咨询；货物进出口",
                "status": *s.pick(&["active", "active", "active", "suspended", "cancelled"])
            })
        })
}

/// `count` places for `js.zrzy/places`.
pub(crate) fn places(count: usize) -> impl Iterator<Item = Value> {
    let mut s = Seq(7);
    (0..count).map(move |i| {
        let (region, area) = *s.pick(DISTRICTS);
        let (lon, lat) = if region.starts_with("3201") {
            (118.78, 32.04)
        } else {
            (120.58, 31.30)
        };
        json!({
            "place_id": format!("{region}-{:06}", i + 1),
            "name": format!("{area}{}地块{}", s.pick(STREETS), i + 1),
            "category": *s.pick(&["land_parcel", "building", "park", "public_facility"]),
            "region_code": region,
            "longitude": lon + (s.next(1000) as f64) / 10_000.0,
            "latitude": lat + (s.next(1000) as f64) / 10_000.0,
            "area_sq_m": 500 + s.next(20_000),
            "land_use": *s.pick(&["commercial", "residential", "public_service", "industrial"]),
            "updated_at": "2026-10-15T10:00:00+08:00"
        })
    })
}

/// The datasets samples can be made for.
pub(crate) const DATASETS: [&str; 3] = ["js.gongan/population", "js.scjg/legal-persons", "js.zrzy/places"];

/// `count` sample records of `dataset`: one of [`DATASETS`], or its name without the department
/// (`population`).
pub(crate) fn records(dataset: &str, count: usize) -> Option<Box<dyn Iterator<Item = Value>>> {
    let name = dataset.rsplit('/').next().unwrap_or(dataset);
    if dataset.contains('/') && !DATASETS.contains(&dataset) {
        return None;
    }
    Some(match name {
        "population" => Box::new(people(count)),
        "legal-persons" => Box::new(companies(count)),
        "places" => Box::new(places(count)),
        _ => return None,
    })
}

/// Writes `count` sample records of `dataset` as NDJSON, or as CSV (a header row of the fields,
/// in the order of the first record).
pub(crate) fn write(dataset: &str, count: usize, csv: bool, out: impl std::io::Write) -> anyhow::Result<()> {
    use std::io::Write as _;
    let records = records(dataset, count).ok_or_else(|| {
        anyhow::anyhow!(
            "no generator for {dataset}; there are: population, legal-persons and places ({})",
            DATASETS.join(", ")
        )
    })?;
    let mut out = std::io::BufWriter::with_capacity(1 << 16, out);
    if !csv {
        for record in records {
            serde_json::to_writer(&mut out, &record)?;
            out.write_all(b"\n")?;
        }
        out.flush()?;
        return Ok(());
    }
    let mut writer = csv::Writer::from_writer(out);
    let mut header: Option<Vec<String>> = None;
    for record in records {
        let Value::Object(fields) = record else { continue };
        let header = header.get_or_insert_with(|| {
            let names: Vec<String> = fields.keys().cloned().collect();
            let _ = writer.write_record(&names);
            names
        });
        writer.write_record(header.iter().map(|name| match fields.get(name) {
            Some(Value::String(text)) => text.clone(),
            Some(Value::Null) | None => String::new(),
            Some(other) => other.to_string(),
        }))?;
    }
    writer.flush()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_sample_record_is_valid_under_its_schema() {
        for (schema, key, records) in [
            (
                include_str!("../../schemas/population.json"),
                "id_number",
                people(20_000).collect::<Vec<_>>(),
            ),
            (
                include_str!("../../schemas/legal-persons.json"),
                "uscc",
                companies(20_000).collect(),
            ),
            (
                include_str!("../../schemas/places.json"),
                "place_id",
                places(30).collect(),
            ),
        ] {
            let parsed = exchange_core::schema::parse_dataset_schema(schema, key).unwrap();
            let validator = exchange_core::schema::compile(&parsed.schema).unwrap();
            for record in &records {
                let errors: Vec<String> = validator.iter_errors(record).map(|e| e.to_string()).collect();
                assert!(errors.is_empty(), "{record}: {errors:?}");
            }
            let mut keys: Vec<&str> = records.iter().map(|r| r[key].as_str().unwrap()).collect();
            assert!(keys
                .iter()
                .all(|k| k.chars().last().is_some_and(|c| c.is_ascii_alphanumeric())));
            keys.sort();
            keys.dedup();
            assert_eq!(keys.len(), records.len(), "keys are unique");
        }
    }

    #[test]
    fn company_codes_never_repeat_and_their_check_characters_hold() {
        let mut codes: Vec<String> = (0..200_000).map(|i| uscc("320102", i)).collect();
        for code in &codes[..1000] {
            let check = uscc_check_char(&code[..17]).unwrap();
            assert_eq!(code.chars().last(), Some(check), "{code}");
        }
        codes.sort();
        codes.dedup();
        assert_eq!(codes.len(), 200_000);
    }

    #[test]
    fn generated_csv_has_a_header_and_a_row_a_record() {
        let mut out = Vec::new();
        write("population", 3, true, &mut out).unwrap();
        let text = String::from_utf8(out).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 4, "{text}");
        assert!(lines[0].split(',').any(|c| c == "id_number"), "{}", lines[0]);
        assert!(write("nothing", 1, false, Vec::new()).is_err());
        assert!(write("js.other/population", 1, false, Vec::new()).is_err());
    }
}
