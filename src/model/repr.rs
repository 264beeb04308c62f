//! How each sparse feature is represented (MP-Rec, Hsia et al., ASPLOS'23): an embedding table,
//! a DHE that computes the vector from the id's hashes, or both (a hybrid, whose two vectors
//! both enter the interaction).
//!
//! The [`Layout`] fixes the interaction's vectors: feature by feature, its table's vector, then
//! its DHE's. With every feature hybrid, a batch has `2·F` embedding vectors plus the bottom
//! MLP's, `2·F + 1` for the dot interaction.

use crate::data::FeatureSplit;

named_enum! {
    /// The representation of the sparse features (`--representation`).
    #[derive(Default)]
    pub enum Representation as "kebab-case" {
        /// Every feature an embedding table.
        #[default]
        Table,
        /// Every feature a DHE: no tables.
        Dhe,
        /// Every feature (or those of `dhe_features`) both a table and a DHE.
        Hybrid,
        /// The features of `dhe_features` a DHE, the others tables.
        Select,
    }
}

/// Where each feature's vectors go.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Layout {
    /// Which features have tables and which are hashed, in feature order.
    pub split: FeatureSplit,
    /// The interaction vector of each table (`split.tables` order).
    pub table_vectors: Vec<usize>,
    /// The interaction vector of each DHE (`split.hashed` order).
    pub dhe_vectors: Vec<usize>,
    /// Embedding vectors per sample.
    pub vectors: usize,
}

impl Layout {
    /// The layout of `features` features represented as `repr` says, `dhe_features` naming the
    /// DHE features of `select` and the hybrids of `hybrid` (empty: all of them). Errors name
    /// the key and what to do.
    pub fn new(
        repr: Representation,
        dhe_features: &[usize],
        features: usize,
    ) -> Result<Layout, String> {
        if let Some(&f) = dhe_features.iter().find(|&&f| f >= features) {
            return Err(format!(
                "model.dhe_features (--dhe-features) names feature {f}; the data has {features} \
                 sparse features, numbered 0 to {}",
                features.saturating_sub(1)
            ));
        }
        let none = dhe_features.is_empty();
        match repr {
            Representation::Table | Representation::Dhe if !none => {
                return Err(format!(
                    "model.dhe_features (--dhe-features) applies to `select` and `hybrid`, not \
                     `{}`",
                    repr.name()
                ));
            }
            Representation::Select if none => {
                return Err(
                    "model.representation = select needs the DHE features: --dhe-features 2,3,11"
                        .into(),
                );
            }
            _ => {}
        }
        // Whether feature `f` has a table, and whether it has a DHE.
        let listed = |f: usize| none || dhe_features.contains(&f);
        let table = |f: usize| match repr {
            Representation::Dhe => false,
            Representation::Select => !listed(f),
            Representation::Table | Representation::Hybrid => true,
        };
        let dhe = |f: usize| match repr {
            Representation::Table => false,
            Representation::Dhe => true,
            Representation::Hybrid | Representation::Select => listed(f),
        };
        let mut layout = Layout {
            split: FeatureSplit {
                tables: Vec::new(),
                hashed: Vec::new(),
            },
            table_vectors: Vec::new(),
            dhe_vectors: Vec::new(),
            vectors: 0,
        };
        for f in 0..features {
            if table(f) {
                layout.split.tables.push(f);
                layout.table_vectors.push(layout.vectors);
                layout.vectors += 1;
            }
            if dhe(f) {
                layout.split.hashed.push(f);
                layout.dhe_vectors.push(layout.vectors);
                layout.vectors += 1;
            }
        }
        if layout.vectors == 0 {
            return Err("the data has no sparse features to represent".into());
        }
        Ok(layout)
    }

    /// Whether every feature is a table alone (batches need no split).
    pub fn tables_only(&self) -> bool {
        self.split.hashed.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use Representation::*;

    #[test]
    fn vectors_go_feature_by_feature_table_first() {
        let l = Layout::new(Hybrid, &[], 3).unwrap();
        assert_eq!(l.split.tables, vec![0, 1, 2]);
        assert_eq!(l.split.hashed, vec![0, 1, 2]);
        assert_eq!(
            (l.table_vectors, l.dhe_vectors),
            (vec![0, 2, 4], vec![1, 3, 5])
        );
        assert_eq!(l.vectors, 6);
        let l = Layout::new(Select, &[1], 3).unwrap();
        assert_eq!((l.split.tables, l.split.hashed), (vec![0, 2], vec![1]));
        assert_eq!((l.table_vectors, l.dhe_vectors), (vec![0, 2], vec![1]));
        let l = Layout::new(Hybrid, &[2], 3).unwrap();
        assert_eq!((l.split.tables.len(), l.split.hashed), (3, vec![2]));
        let l = Layout::new(Dhe, &[], 2).unwrap();
        assert!(l.split.tables.is_empty() && l.vectors == 2);
        assert!(Layout::new(Table, &[], 4).unwrap().tables_only());
    }

    #[test]
    fn bad_feature_lists_say_what_to_do() {
        for (repr, list, want) in [
            (Select, vec![], "--dhe-features 2,3,11"),
            (Select, vec![5], "numbered 0 to 3"),
            (Table, vec![1], "applies to `select` and `hybrid`"),
        ] {
            let e = Layout::new(repr, &list, 4).unwrap_err();
            assert!(e.contains(want), "{e}");
        }
    }
}
