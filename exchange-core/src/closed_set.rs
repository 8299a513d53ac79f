//! Closed sets of named values: classifications, grant states, levels, roles, sensitivities.
//!
//! [`closed_set!`] declares the enum with one name per value, written once, and derives from it
//! everything that must agree: the serde form (stored and sent), [`std::fmt::Display`],
//! [`std::str::FromStr`] (refusing other names with the list of accepted ones), `ALL` (every
//! value, for help texts and listings) and `as_str`. Code that acts on a value matches on the
//! enum, so a value added without its behaviour does not compile.

/// What every closed set offers generic code (the command line's flag parsers, say).
pub trait ClosedSet: Copy + Send + Sync + 'static {
    /// Every value, in declaration order.
    fn all() -> &'static [Self];
    /// The value's name, as stored, sent and typed.
    fn name(self) -> &'static str;
}

/// Declares a closed set (see the module documentation):
///
/// ```text
/// closed_set! {
///     /// What it is.
///     pub enum Level ("level", "level") {
///         /// 省
///         Province = "province",
///     }
/// }
/// ```
///
/// The two strings are the request field a refused name is reported on and the noun for the
/// message (`"x" is not a level; use one of province, ...`).
macro_rules! closed_set {
    (
        $(#[$meta:meta])*
        $vis:vis enum $name:ident ($field:literal, $noun:literal) {
            $(
                $(#[$vmeta:meta])*
                $variant:ident = $text:literal
            ),+ $(,)?
        }
    ) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
        $vis enum $name {
            $(
                $(#[$vmeta])*
                #[serde(rename = $text)]
                $variant,
            )+
        }

        impl $name {
            /// Every value, in declaration order.
            pub const ALL: [$name; [$($text),+].len()] = [$($name::$variant),+];

            /// The value's name, as stored, sent and typed.
            pub fn as_str(self) -> &'static str {
                match self {
                    $($name::$variant => $text,)+
                }
            }

            /// Every value's name, comma-separated, for help texts and messages.
            pub fn names() -> String {
                Self::ALL.map(Self::as_str).join(", ")
            }
        }

        impl $crate::ClosedSet for $name {
            fn all() -> &'static [Self] {
                &Self::ALL
            }

            fn name(self) -> &'static str {
                self.as_str()
            }
        }

        impl ::std::fmt::Display for $name {
            fn fmt(&self, f: &mut ::std::fmt::Formatter<'_>) -> ::std::fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl ::std::str::FromStr for $name {
            type Err = $crate::ValidationError;

            fn from_str(s: &str) -> Result<Self, Self::Err> {
                Self::ALL.into_iter().find(|v| v.as_str() == s).ok_or_else(|| {
                    $crate::ValidationError::new(
                        $field,
                        format!("\"{s}\" is not a {}; use one of {}", $noun, Self::names()),
                    )
                })
            }
        }
    };
}

pub(crate) use closed_set;

#[cfg(test)]
mod tests {
    use crate::catalog::Classification;
    use crate::compat::CompatMode;
    use crate::department::Level;
    use crate::grant::GrantState;
    use crate::identity::Role;
    use crate::ledger::Decision;
    use crate::mask::Sensitivity;

    /// Each value's name is its serde form, parses back to it, and nothing else parses.
    fn check<T>(all: &[T], noun: &str)
    where
        T: Copy + PartialEq + std::fmt::Debug + std::fmt::Display + std::str::FromStr<Err = crate::ValidationError>,
        T: serde::Serialize + serde::de::DeserializeOwned,
    {
        for &value in all {
            let name = value.to_string();
            assert_eq!(name.parse::<T>().unwrap(), value);
            assert_eq!(serde_json::to_string(&value).unwrap(), format!("\"{name}\""));
            assert_eq!(serde_json::from_str::<T>(&format!("\"{name}\"")).unwrap(), value);
        }
        let err = "no-such-value".parse::<T>().unwrap_err();
        let listed: Vec<String> = all.iter().map(ToString::to_string).collect();
        assert_eq!(
            err.message,
            format!("\"no-such-value\" is not a {noun}; use one of {}", listed.join(", "))
        );
    }

    #[test]
    fn every_closed_set_agrees_on_its_names() {
        check(&Classification::ALL, "classification");
        check(&CompatMode::ALL, "compatibility mode");
        check(&Level::ALL, "level");
        check(&GrantState::ALL, "grant state");
        check(&Role::ALL, "role");
        check(&Decision::ALL, "decision");
        check(&Sensitivity::ALL, "sensitivity");
        // The names people read: not the Rust names.
        assert_eq!(Classification::NotShared.to_string(), "not_shared");
        assert_eq!(CompatMode::BackwardTransitive.to_string(), "BACKWARD_TRANSITIVE");
        assert_eq!(Sensitivity::BankAccount.to_string(), "bank_account");
    }
}
