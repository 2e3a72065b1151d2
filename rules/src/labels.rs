//! Label sets: the identity of a series.
//!
//! A [`Labels`] is a set of name/value pairs kept sorted by name with unique names, as
//! Prometheus keeps them, so two equal sets compare, hash and print identically. The set
//! is shared behind an `Arc`: cloning one (which the store and the evaluator do for every
//! series they hand out) is a reference-count bump, never a copy of the strings.

use std::fmt;
use std::sync::Arc;

/// The label holding the metric name.
pub const METRIC_NAME: &str = "__name__";

/// One name/value pair.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Label {
    /// Label name.
    pub name: String,
    /// Label value (never empty in a stored set: an empty value means "absent").
    pub value: String,
}

/// A sorted set of labels with unique names. Cheap to clone.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct Labels(Arc<[Label]>);

impl Labels {
    /// Builds a set from pairs in any order. Later pairs win over earlier ones with the
    /// same name; pairs with an empty value are dropped (Prometheus semantics).
    pub fn new(mut labels: Vec<Label>) -> Self {
        // Stable sort keeps insertion order among equal names, so the last one can win.
        labels.sort_by(|a, b| a.name.cmp(&b.name));
        let mut out: Vec<Label> = Vec::with_capacity(labels.len());
        for l in labels {
            match out.last_mut() {
                Some(last) if last.name == l.name => *last = l,
                _ => out.push(l),
            }
        }
        out.retain(|l| !l.value.is_empty());
        Labels(out.into())
    }

    /// Builds a set from `(name, value)` string pairs.
    pub fn from_pairs<N: AsRef<str>, V: AsRef<str>>(pairs: &[(N, V)]) -> Self {
        Self::new(
            pairs.iter().map(|(n, v)| Label { name: n.as_ref().to_owned(), value: v.as_ref().to_owned() }).collect(),
        )
    }

    /// The empty set.
    pub fn empty() -> Self {
        Self::default()
    }

    /// The value of `name`, if present.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0.binary_search_by(|l| l.name.as_str().cmp(name)).ok().map(|i| self.0[i].value.as_str())
    }

    /// The metric name (`__name__`), if present.
    pub fn metric_name(&self) -> Option<&str> {
        self.get(METRIC_NAME)
    }

    /// The labels, sorted by name.
    pub fn iter(&self) -> std::slice::Iter<'_, Label> {
        self.0.iter()
    }

    /// The labels as a slice, sorted by name.
    pub fn as_slice(&self) -> &[Label] {
        &self.0
    }

    /// Number of labels.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// True if the set holds no label.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// A copy with `name` set to `value` (removed if `value` is empty).
    pub fn with(&self, name: &str, value: &str) -> Labels {
        let mut v: Vec<Label> = self.0.iter().filter(|l| l.name != name).cloned().collect();
        if !value.is_empty() {
            v.push(Label { name: name.to_owned(), value: value.to_owned() });
        }
        Labels::new(v)
    }

    /// A copy without the labels named in `names`.
    pub fn without(&self, names: &[&str]) -> Labels {
        Labels(self.0.iter().filter(|l| !names.contains(&l.name.as_str())).cloned().collect())
    }

    /// A copy keeping only the labels named in `names`.
    pub fn keep(&self, names: &[&str]) -> Labels {
        Labels(self.0.iter().filter(|l| names.contains(&l.name.as_str())).cloned().collect())
    }

    /// A copy without `__name__`.
    pub fn without_metric_name(&self) -> Labels {
        if self.metric_name().is_none() { self.clone() } else { self.without(&[METRIC_NAME]) }
    }
}

impl FromIterator<Label> for Labels {
    fn from_iter<I: IntoIterator<Item = Label>>(iter: I) -> Self {
        Labels::new(iter.into_iter().collect())
    }
}

/// Prints as Prometheus does: `name{a="1", b="2"}`, or `{a="1"}` without a name.
/// Values are escaped like Go's `%q` for `\`, `"` and newlines.
impl fmt::Display for Labels {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(name) = self.metric_name() {
            f.write_str(name)?;
        }
        let rest: Vec<&Label> = self.0.iter().filter(|l| l.name != METRIC_NAME).collect();
        if rest.is_empty() && self.metric_name().is_some() {
            return Ok(());
        }
        f.write_str("{")?;
        for (i, l) in rest.iter().enumerate() {
            if i > 0 {
                f.write_str(", ")?;
            }
            write!(f, "{}=\"", l.name)?;
            for c in l.value.chars() {
                match c {
                    '\\' => f.write_str("\\\\")?,
                    '"' => f.write_str("\\\"")?,
                    '\n' => f.write_str("\\n")?,
                    c => write!(f, "{c}")?,
                }
            }
            f.write_str("\"")?;
        }
        f.write_str("}")
    }
}

impl fmt::Debug for Labels {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sorted_unique_and_empty_values_dropped() {
        let l = Labels::from_pairs(&[("b", "2"), ("a", "1"), ("b", "3"), ("c", "")]);
        assert_eq!(l.len(), 2);
        assert_eq!(l.get("a"), Some("1"));
        assert_eq!(l.get("b"), Some("3"));
        assert_eq!(l.get("c"), None);
    }

    #[test]
    fn prints_like_prometheus() {
        let l = Labels::from_pairs(&[("__name__", "up"), ("job", "a\"b"), ("i", "x")]);
        assert_eq!(l.to_string(), "up{i=\"x\", job=\"a\\\"b\"}");
        assert_eq!(Labels::from_pairs(&[("__name__", "up")]).to_string(), "up");
        assert_eq!(Labels::empty().to_string(), "{}");
        assert_eq!(l.without_metric_name().to_string(), "{i=\"x\", job=\"a\\\"b\"}");
    }

    #[test]
    fn with_and_without() {
        let l = Labels::from_pairs(&[("a", "1"), ("b", "2")]);
        assert_eq!(l.with("c", "3").get("c"), Some("3"));
        assert_eq!(l.with("a", "").get("a"), None);
        assert_eq!(l.without(&["a"]).len(), 1);
        assert_eq!(l.keep(&["a"]).get("b"), None);
    }
}
