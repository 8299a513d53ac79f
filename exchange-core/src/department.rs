//! Departments: the members of the exchange, at five administrative levels.

use serde::{Deserialize, Serialize};

use crate::closed_set::closed_set;
use crate::error::ValidationError;
use crate::formats::{is_region_code, region_level, RegionLevel};
use crate::UnixSeconds;

closed_set! {
    /// Administrative level, from the province down to the community (declared highest first).
    #[derive(PartialOrd, Ord)]
    pub enum Level ("level", "level") {
        /// 省 province (or municipality directly under the central government).
        Province = "province",
        /// 市 city (prefecture level).
        City = "city",
        /// 区/县 district or county.
        District = "district",
        /// 街道/乡镇 street or township.
        Street = "street",
        /// 社区/村 community or village.
        Community = "community",
    }
}

/// A member organisation of the exchange.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Department {
    /// Region prefix plus department, e.g. `js.gongan` or `js.nj.gongan`.
    pub id: String,
    /// Its official name, e.g. `江苏省公安厅`.
    pub name: String,
    /// Its administrative level.
    pub level: Level,
    /// Six-digit GB/T 2260 code of the area it serves.
    pub region_code: String,
    /// The department above it, if any.
    pub parent_id: Option<String>,
    /// Where its exchange node listens, e.g. `https://node.gongan.example:7443`.
    pub node_endpoint: Option<String>,
    /// When it was registered.
    pub created_at: UnixSeconds,
    /// When it last changed.
    pub updated_at: UnixSeconds,
    /// The registry revision of its last change.
    pub revision: u64,
}

/// Checks a department id: 3–64 characters, two or more dot-separated segments of lowercase
/// ASCII letters, digits and `-`, each starting with a letter or digit. The first segment is the
/// region prefix (e.g. `js` for Jiangsu).
pub fn check_department_id(id: &str) -> Result<(), ValidationError> {
    let bad = |why: &str| {
        Err(ValidationError::new(
            "department id",
            format!("\"{id}\" {why}; use dot-separated lowercase segments like \"js.gongan\""),
        ))
    };
    if id.len() < 3 || id.len() > 64 {
        return bad("must be 3 to 64 characters");
    }
    let segments: Vec<&str> = id.split('.').collect();
    if segments.len() < 2 {
        return bad("needs a region prefix and a department name");
    }
    for segment in segments {
        let mut chars = segment.chars();
        match chars.next() {
            Some(c) if c.is_ascii_lowercase() || c.is_ascii_digit() => {}
            _ => return bad("has an empty segment or one not starting with a letter or digit"),
        }
        if !chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-') {
            return bad("may hold only lowercase letters, digits, '-' and '.'");
        }
    }
    Ok(())
}

/// Checks the fields of a department being registered or updated, against its parent when it
/// has one. A parent sits at a higher level, and a province- or city-level department's region
/// code has the shape of its level (`320000` for a province, `320100` for a city).
pub fn validate(dept: &Department, parent: Option<&Department>) -> Result<(), ValidationError> {
    check_department_id(&dept.id)?;
    if dept.name.trim().is_empty() {
        return Err(ValidationError::new("name", "must not be empty"));
    }
    if dept.name.chars().count() > 200 {
        return Err(ValidationError::new("name", "must be at most 200 characters"));
    }
    if !is_region_code(&dept.region_code) {
        return Err(ValidationError::new(
            "region_code",
            format!(
                "\"{}\" is not a GB/T 2260 region code (six digits, a real province prefix, e.g. \"320000\")",
                dept.region_code
            ),
        ));
    }
    let code_level = region_level(&dept.region_code);
    let expected = match dept.level {
        Level::Province => Some(RegionLevel::Province),
        Level::City => Some(RegionLevel::City),
        _ => None,
    };
    if let Some(expected) = expected {
        if code_level != Some(expected) {
            return Err(ValidationError::new(
                "region_code",
                format!(
                    "\"{}\" is not a {}-level code; a province's ends in 0000, a city's in 00",
                    dept.region_code, dept.level
                ),
            ));
        }
    }
    match (&dept.parent_id, parent) {
        (Some(parent_id), Some(parent)) => {
            if parent_id == &dept.id {
                return Err(ValidationError::new(
                    "parent_id",
                    "a department cannot be its own parent",
                ));
            }
            if parent.level >= dept.level {
                return Err(ValidationError::new(
                    "parent_id",
                    format!(
                        "parent \"{}\" is at {} level, not above this {}-level department",
                        parent.id, parent.level, dept.level
                    ),
                ));
            }
            if parent.region_code.get(..2) != dept.region_code.get(..2) {
                return Err(ValidationError::new(
                    "region_code",
                    format!(
                        "\"{}\" is in another province than parent \"{}\" ({})",
                        dept.region_code, parent.id, parent.region_code
                    ),
                ));
            }
            // Below a city, a department's region lies in that city (the first four digits);
            // below a district, in that district (streets and communities share its code).
            let within = match parent.level {
                Level::City => Some((4, "city")),
                Level::District | Level::Street | Level::Community => Some((6, "district")),
                Level::Province => None,
            };
            if let Some((digits, what)) = within {
                if parent.region_code.get(..digits) != dept.region_code.get(..digits) {
                    return Err(ValidationError::new(
                        "region_code",
                        format!(
                            "\"{}\" is outside the {what} of parent \"{}\" ({}): a department lies within its parent's region",
                            dept.region_code, parent.id, parent.region_code
                        ),
                    ));
                }
            }
        }
        (Some(parent_id), None) => {
            return Err(ValidationError::new(
                "parent_id",
                format!("department \"{parent_id}\" is not registered; register the parent first"),
            ));
        }
        (None, _) => {}
    }
    if let Some(endpoint) = &dept.node_endpoint {
        check_endpoint(endpoint)?;
    }
    Ok(())
}

/// A node endpoint is an https:// URL: nodes serve mutual TLS only.
pub fn check_endpoint(endpoint: &str) -> Result<(), ValidationError> {
    if endpoint.starts_with("https://") && endpoint.len() > "https://".len() {
        return Ok(());
    }
    Err(ValidationError::new(
        "node_endpoint",
        format!("\"{endpoint}\" must be an https:// URL (nodes serve mutual TLS only)"),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dept(id: &str, level: Level, region: &str, parent: Option<&str>) -> Department {
        Department {
            id: id.into(),
            name: "测试部门".into(),
            level,
            region_code: region.into(),
            parent_id: parent.map(Into::into),
            node_endpoint: None,
            created_at: 0,
            updated_at: 0,
            revision: 0,
        }
    }

    #[test]
    fn department_ids() {
        for ok in ["js.gongan", "js.nj.gongan", "js.nj-xw.rsj", "32.a1"] {
            assert!(check_department_id(ok).is_ok(), "{ok}");
        }
        for bad in [
            "gongan",
            "js..gongan",
            "JS.gongan",
            "js.公安",
            "js.-a",
            "j",
            ".js.a",
            "js.a/b",
        ] {
            assert!(check_department_id(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn region_code_must_fit_the_level() {
        let province = dept("js.gongan", Level::Province, "320000", None);
        assert!(validate(&province, None).is_ok());
        let wrong = dept("js.gongan", Level::Province, "320100", None);
        assert!(validate(&wrong, None).unwrap_err().message.contains("province-level"));
        let city = dept("js.nj.gongan", Level::City, "320100", Some("js.gongan"));
        assert!(validate(&city, Some(&province)).is_ok());
        let bad = dept("js.nj.gongan", Level::City, "990100", Some("js.gongan"));
        assert_eq!(validate(&bad, Some(&province)).unwrap_err().field, "region_code");
    }

    #[test]
    fn parent_must_exist_and_be_higher() {
        let city = dept("js.nj.gongan", Level::City, "320100", Some("js.gongan"));
        let err = validate(&city, None).unwrap_err();
        assert!(err.message.contains("not registered"), "{err}");
        let district = dept("js.nj.xw.gongan", Level::District, "320102", None);
        let upside_down = dept("js.nj.gongan", Level::City, "320100", Some("js.nj.xw.gongan"));
        let err = validate(&upside_down, Some(&district)).unwrap_err();
        assert!(err.message.contains("not above"), "{err}");
        let other_province = dept("zj.hz.gongan", Level::City, "330100", Some("js.gongan"));
        let province = dept("js.gongan", Level::Province, "320000", None);
        assert!(validate(&other_province, Some(&province)).is_err());
    }

    #[test]
    fn a_department_lies_within_its_parents_region() {
        let suzhou = dept("js.sz.gongan", Level::City, "320500", None);
        let lianyungang_district = dept("js.lyg.hz.gongan", Level::District, "320706", Some("js.sz.gongan"));
        let err = validate(&lianyungang_district, Some(&suzhou)).unwrap_err();
        assert!(
            err.message.contains("outside the city of parent \"js.sz.gongan\""),
            "{err}"
        );
        let gusu = dept("js.sz.gs.gongan", Level::District, "320508", Some("js.sz.gongan"));
        assert!(validate(&gusu, Some(&suzhou)).is_ok());
        // Streets share their district's code.
        let street = dept("js.sz.gs.pj.gongan", Level::Street, "320508", Some("js.sz.gs.gongan"));
        assert!(validate(&street, Some(&gusu)).is_ok());
        let elsewhere = dept("js.sz.wz.pj.gongan", Level::Street, "320506", Some("js.sz.gs.gongan"));
        let err = validate(&elsewhere, Some(&gusu)).unwrap_err();
        assert!(err.message.contains("outside the district"), "{err}");
    }

    #[test]
    fn endpoint_must_be_https() {
        let mut d = dept("js.gongan", Level::Province, "320000", None);
        d.node_endpoint = Some("http://10.0.0.1:7443".into());
        assert_eq!(validate(&d, None).unwrap_err().field, "node_endpoint");
        d.node_endpoint = Some("https://node.gongan.example:7443".into());
        assert!(validate(&d, None).is_ok());
    }
}
