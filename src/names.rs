//! The spellings of rowflow's value enums: one per variant, used by configs, the command line
//! and JSON alike.

/// Declares an enum whose variants are named in configs, on the command line and in JSON, with
/// the derives that give those names under one case rule (`"lowercase"`, `"kebab-case"`): serde
/// for configs and JSON, strum for parsing (`FromStr`), listing (`VARIANTS`, which the CLI's
/// `--help` shows) and printing (`Display`, [`name`]). Declared once, the spellings cannot
/// drift apart. A variant may override its spelling with both `#[serde(rename = "…")]` and
/// `#[strum(serialize = "…")]`.
///
/// [`name`]: crate::embedding::Policy::name
macro_rules! named_enum {
    (
        $(#[$meta:meta])*
        $vis:vis enum $name:ident as $case:literal { $($body:tt)* }
    ) => {
        $(#[$meta])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
        #[derive(serde::Serialize, serde::Deserialize)]
        #[derive(strum::Display, strum::EnumString, strum::VariantNames, strum::IntoStaticStr)]
        #[serde(rename_all = $case)]
        #[strum(serialize_all = $case)]
        $vis enum $name { $($body)* }

        impl $name {
            /// The spelling in configs, on the command line and in JSON.
            pub fn name(self) -> &'static str {
                self.into()
            }
        }
    };
}
