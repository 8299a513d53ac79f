//! Masking of sensitive fields, by their schema's `x-sensitivity` annotation. A consumer sees a
//! masked value unless its grant lists the field in clear; the owner reads its own data in clear.
//!
//! Masks keep what a reader needs to match a record by eye and no more:
//!
//! | sensitivity | example | masked |
//! |---|---|---|
//! | `id_number` | `320102198801010012` | `3201**********0012` |
//! | `phone` | `13812345678` | `138****5678` |
//! | `name` | `张三丰` | `张**` |
//! | `address` | `南京市玄武区中山路1号` | `南京市玄武区****` (first six characters) |
//! | `email` | `li.si@example.cn` | `l***@example.cn` |
//! | `bank_account` | `6222020200112233445` | `***************3445` |
//! | `other` | anything | `****` |

use serde_json::Value;

use crate::closed_set::closed_set;

closed_set! {
    /// What kind of personal data a field holds, from its schema's `x-sensitivity` annotation:
    /// it decides how the field is masked.
    pub enum Sensitivity ("x-sensitivity", "sensitivity") {
        /// A resident identity number (or another identity document number).
        IdNumber = "id_number",
        /// A person's name.
        Name = "name",
        /// A phone number.
        Phone = "phone",
        /// A postal address.
        Address = "address",
        /// An e-mail address.
        Email = "email",
        /// A bank account or card number.
        BankAccount = "bank_account",
        /// Anything else that must not be shown; also what a name this build does not know reads
        /// as (written by a newer version), so such a field is masked whole, never shown.
        #[serde(other)]
        Other = "other",
    }
}

/// Masks a string by `sensitivity`. Short values are masked whole, so a mask never reveals most
/// of a short secret.
pub fn mask_str(sensitivity: Sensitivity, value: &str) -> String {
    let chars: Vec<char> = value.chars().collect();
    let n = chars.len();
    let keep = |head: usize, tail: usize| -> String {
        if n <= head + tail {
            return "*".repeat(n.max(1));
        }
        let mut out: String = chars[..head].iter().collect();
        out.push_str(&"*".repeat(n - head - tail));
        out.extend(&chars[n - tail..]);
        out
    };
    match sensitivity {
        Sensitivity::IdNumber => keep(4, 4),
        Sensitivity::Phone => keep(3, 4),
        Sensitivity::Name => {
            if n <= 1 {
                "*".to_string()
            } else {
                keep(1, 0)
            }
        }
        Sensitivity::Address => {
            if n <= 6 {
                "*".repeat(n.max(1))
            } else {
                let mut out: String = chars[..6].iter().collect();
                out.push_str("****");
                out
            }
        }
        Sensitivity::Email => match value.split_once('@') {
            Some((local, domain)) if !local.is_empty() => {
                let first: String = local.chars().take(1).collect();
                format!("{first}***@{domain}")
            }
            _ => "****".to_string(),
        },
        Sensitivity::BankAccount => keep(0, 4),
        Sensitivity::Other => "****".to_string(),
    }
}

/// Masks a JSON value: strings by [`mask_str`], numbers and other non-null values wholly
/// (`"****"`), `null` left as is (absence is not a secret).
pub fn mask_value(sensitivity: Sensitivity, value: &Value) -> Value {
    match value {
        Value::Null => Value::Null,
        Value::String(s) => Value::String(mask_str(sensitivity, s)),
        _ => Value::String("****".to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(sensitivity: &str, input: &str, expected: &str) {
        let sensitivity: Sensitivity = sensitivity.parse().unwrap();
        assert_eq!(mask_str(sensitivity, input), expected, "{sensitivity} {input}");
    }

    #[test]
    fn masks_by_sensitivity() {
        check("id_number", "320102198801010012", "3201**********0012");
        check("phone", "13812345678", "138****5678");
        check("name", "张三丰", "张**");
        check("name", "张三", "张*");
        check("name", "张", "*");
        check("address", "南京市玄武区中山路1号", "南京市玄武区****");
        check("email", "li.si@example.cn", "l***@example.cn");
        check("bank_account", "6222020200112233445", "***************3445");
        check("other", "secret", "****");
    }

    #[test]
    fn short_values_are_masked_whole() {
        check("id_number", "1234567", "*******");
        check("phone", "1234", "****");
        check("address", "南京", "**");
        check("email", "nobody", "****");
        check("id_number", "", "*");
    }

    #[test]
    fn non_strings() {
        assert_eq!(
            mask_value(Sensitivity::Other, &serde_json::json!(42)),
            serde_json::json!("****")
        );
        assert_eq!(mask_value(Sensitivity::Phone, &Value::Null), Value::Null);
    }
}
