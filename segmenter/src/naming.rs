//! Automatic segment names from the most over-indexed features ("Coffee-led ·
//! Tea-heavy"). A segment keeps the previous run's name while it keeps its character:
//! the name changes only when fewer than half of the features it was made from are
//! still among the segment's top over-indexed features.

use spectra_core::tables::profile::{FeatureShare, OTHER};

/// A feature names a segment only if it carries at least this share of its spend…
const MIN_SHARE: f64 = 0.02;
/// …and is over-indexed at least this much (100 = average).
const MIN_INDEX: f64 = 115.0;
/// Over-indexed features considered "top" when checking a kept name.
const TOP: usize = 3;

/// The segment's top over-indexed features, most over-indexed first.
pub fn top_features(spectrum: &[FeatureShare]) -> Vec<String> {
    let mut v: Vec<&FeatureShare> = spectrum
        .iter()
        .filter(|f| f.share >= MIN_SHARE && f.index >= MIN_INDEX && f.feature != OTHER)
        .collect();
    v.sort_by(|a, b| b.index.total_cmp(&a.index).then(a.feature.cmp(&b.feature)));
    v.into_iter().take(TOP).map(|f| f.feature.clone()).collect()
}

/// "Coffee-led · Tea-heavy" from the first two features; "Broad mix" without any.
pub fn name_from(features: &[String]) -> String {
    let pretty = |f: &str| {
        let f = f.replace('_', " ");
        let mut c = f.chars();
        c.next()
            .map(|h| h.to_uppercase().chain(c).collect::<String>())
            .unwrap_or_default()
    };
    match features {
        [] => "Broad mix".into(),
        [a] => format!("{}-led", pretty(a)),
        [a, b, ..] => format!("{}-led · {}-heavy", pretty(a), pretty(b)),
    }
}

/// The name of a segment whose top over-indexed features are `top`, given its name
/// and name features in the previous run: `(name, name_features)`.
pub fn stable_name(top: &[String], previous: Option<(&str, &[String])>) -> (String, Vec<String>) {
    if let Some((name, was)) = previous {
        let kept = was.iter().filter(|f| top.contains(f)).count();
        let same = if was.is_empty() {
            top.is_empty()
        } else {
            2 * kept >= was.len()
        };
        if same {
            return (name.to_owned(), was.to_vec());
        }
    }
    let features: Vec<String> = top.iter().take(2).cloned().collect();
    (name_from(&features), features)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fp(feature: &str, share: f64, index: f64) -> FeatureShare {
        FeatureShare {
            feature: feature.into(),
            share,
            average: share * 100.0 / index,
            index,
        }
    }

    #[test]
    fn names_from_over_indexed_features() {
        let s = [
            fp("coffee", 0.5, 180.0),
            fp("tea", 0.2, 150.0),
            fp("snacks", 0.01, 400.0),
            fp("milk", 0.29, 60.0),
        ];
        let top = top_features(&s);
        assert_eq!(top, vec!["coffee", "tea"]);
        assert_eq!(name_from(&top), "Coffee-led · Tea-heavy");
        assert_eq!(name_from(&[]), "Broad mix");
        assert_eq!(name_from(&["soft_drinks".into()]), "Soft drinks-led");
    }

    #[test]
    fn a_name_stays_while_the_character_holds() {
        let was = vec!["coffee".to_string(), "tea".to_string()];
        let prev = Some(("Coffee-led · Tea-heavy", was.as_slice()));
        // Order changed and a third feature rose: still the same character.
        let top = vec!["tea".to_string(), "juice".into(), "coffee".into()];
        assert_eq!(stable_name(&top, prev).0, "Coffee-led · Tea-heavy");
        // One of two kept is half: kept.
        let top = vec!["juice".to_string(), "tea".into()];
        assert_eq!(stable_name(&top, prev).0, "Coffee-led · Tea-heavy");
        // None kept: renamed.
        let top = vec!["juice".to_string(), "snacks".into()];
        let (name, features) = stable_name(&top, prev);
        assert_eq!(name, "Juice-led · Snacks-heavy");
        assert_eq!(features, vec!["juice", "snacks"]);
        assert_eq!(stable_name(&[], None).0, "Broad mix");
    }
}
