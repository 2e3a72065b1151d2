//! Label sets: the identity of a series.
//!
//! A [`Labels`] is a set of name/value pairs kept sorted by name with unique names, as
//! Prometheus keeps them, so two equal sets compare, hash and print identically. The set
//! is shared behind an `Arc`: cloning one (which the store and the evaluator do for every
//! series they hand out) is a reference-count bump, never a copy of the strings.
//!
//! Each set carries the hash of its labels, computed once when it is built (with a seed
//! drawn at random once per process), so hashing a set in a map is writing one `u64`, and
//! two sets with different hashes compare unequal without reading their strings.
//! Invariant: `hash` is always that function of `labels` (every constructor goes through
//! [`Labels::from_sorted`]), so equal sets have equal hashes.

use std::fmt;
use std::hash::{BuildHasher, Hash, Hasher};
use std::sync::{Arc, LazyLock};

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

/// The hasher of label sets' contents, seeded at random once per process.
static CONTENT_HASHER: LazyLock<foldhash::fast::RandomState> = LazyLock::new(foldhash::fast::RandomState::default);

/// The content hash of a sorted label slice (0 for the empty set).
fn content_hash(labels: &[Label]) -> u64 {
    if labels.is_empty() { 0 } else { CONTENT_HASHER.hash_one(labels) }
}

/// A sorted set of labels with unique names. Cheap to clone.
#[derive(Clone)]
pub struct Labels {
    labels: Arc<[Label]>,
    /// [`content_hash`] of `labels`.
    hash: u64,
}

impl Default for Labels {
    fn default() -> Self {
        Labels { labels: Arc::from([]), hash: 0 }
    }
}

impl PartialEq for Labels {
    fn eq(&self, other: &Self) -> bool {
        self.hash == other.hash && (Arc::ptr_eq(&self.labels, &other.labels) || self.labels == other.labels)
    }
}

impl Eq for Labels {}

impl Hash for Labels {
    fn hash<H: Hasher>(&self, state: &mut H) {
        state.write_u64(self.hash);
    }
}

impl PartialOrd for Labels {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Labels {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        if Arc::ptr_eq(&self.labels, &other.labels) {
            return std::cmp::Ordering::Equal;
        }
        self.labels.cmp(&other.labels)
    }
}

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
        Labels::from_sorted(out.into())
    }

    /// Wraps labels already sorted by name, unique and with no empty value.
    fn from_sorted(labels: Arc<[Label]>) -> Self {
        let hash = content_hash(&labels);
        Labels { labels, hash }
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
        if self.labels.len() <= 16 {
            // Small sets (the usual case): a scan comparing lengths first touches the bytes
            // of only the names as long as `name`, cheaper than a binary search's compares.
            return self.labels.iter().find(|l| l.name.len() == name.len() && l.name == name).map(|l| l.value.as_str());
        }
        self.labels.binary_search_by(|l| l.name.as_str().cmp(name)).ok().map(|i| self.labels[i].value.as_str())
    }

    /// The metric name (`__name__`), if present.
    pub fn metric_name(&self) -> Option<&str> {
        self.get(METRIC_NAME)
    }

    /// The labels, sorted by name.
    pub fn iter(&self) -> std::slice::Iter<'_, Label> {
        self.labels.iter()
    }

    /// The labels as a slice, sorted by name.
    pub fn as_slice(&self) -> &[Label] {
        &self.labels
    }

    /// Number of labels.
    pub fn len(&self) -> usize {
        self.labels.len()
    }

    /// True if the set holds no label.
    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }

    /// A copy with `name` set to `value` (removed if `value` is empty).
    pub fn with(&self, name: &str, value: &str) -> Labels {
        // The set is sorted: copy it with `name` replaced, inserted in place or left out.
        let at = self.labels.partition_point(|l| l.name.as_str() < name);
        let rest = match self.labels.get(at) {
            Some(l) if l.name == name => at + 1,
            _ => at,
        };
        let mut v: Vec<Label> = Vec::with_capacity(self.labels.len() + 1);
        v.extend_from_slice(&self.labels[..at]);
        if !value.is_empty() {
            v.push(Label { name: name.to_owned(), value: value.to_owned() });
        }
        v.extend_from_slice(&self.labels[rest..]);
        Labels::from_sorted(v.into())
    }

    /// A copy without the labels named in `names`.
    pub fn without(&self, names: &[&str]) -> Labels {
        Labels::from_sorted(self.labels.iter().filter(|l| !names.contains(&l.name.as_str())).cloned().collect())
    }

    /// A copy keeping only the labels named in `names`.
    pub fn keep(&self, names: &[&str]) -> Labels {
        Labels::from_sorted(self.labels.iter().filter(|l| names.contains(&l.name.as_str())).cloned().collect())
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
        let rest: Vec<&Label> = self.labels.iter().filter(|l| l.name != METRIC_NAME).collect();
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
    fn equal_sets_hash_and_compare_equal_however_built() {
        use std::hash::BuildHasher;
        let a = Labels::from_pairs(&[("a", "1"), ("b", "2"), ("c", "3")]);
        let b = Labels::from_pairs(&[("c", "3"), ("a", "1")]).with("b", "2");
        let c = Labels::from_pairs(&[("a", "1"), ("b", "2"), ("c", "3"), ("d", "4")]).without(&["d"]);
        let d = Labels::from_pairs(&[("a", "1"), ("b", "2"), ("c", "3"), ("d", "4")]).keep(&["a", "b", "c"]);
        for x in [&b, &c, &d] {
            assert_eq!(*x, a);
            assert_eq!(x.cmp(&a), std::cmp::Ordering::Equal);
            let s = std::hash::RandomState::new();
            assert_eq!(s.hash_one(x), s.hash_one(&a));
        }
        assert_ne!(a, a.with("b", "3"));
        assert!(a < a.with("b", "3"));
        assert_eq!(Labels::empty(), Labels::from_pairs(&[("a", "")]));
        assert_eq!(Labels::empty(), a.keep(&[]));
        let s = std::hash::RandomState::new();
        assert_eq!(s.hash_one(Labels::empty()), s.hash_one(a.without(&["a", "b", "c"])));
    }

    #[test]
    fn get_finds_names_in_small_and_large_sets() {
        for n in [0usize, 1, 5, 16, 17, 40] {
            let pairs: Vec<(String, String)> = (0..n).map(|i| (format!("l{i}"), format!("v{i}"))).collect();
            let l = Labels::from_pairs(&pairs);
            for (name, value) in &pairs {
                assert_eq!(l.get(name), Some(value.as_str()));
            }
            assert_eq!(l.get("l"), None);
            assert_eq!(l.get("zz"), None);
            assert_eq!(l.get(""), None);
        }
    }

    #[test]
    fn with_and_without() {
        let l = Labels::from_pairs(&[("a", "1"), ("b", "2")]);
        assert_eq!(l.with("c", "3").get("c"), Some("3"));
        assert_eq!(l.with("a", "").get("a"), None);
        assert_eq!(l.without(&["a"]).len(), 1);
        assert_eq!(l.keep(&["a"]).get("b"), None);
        assert_eq!(l.with("0", "x").to_string(), "{0=\"x\", a=\"1\", b=\"2\"}");
        assert_eq!(l.with("b", "9").to_string(), "{a=\"1\", b=\"9\"}");
        assert_eq!(l.with("ab", "x").to_string(), "{a=\"1\", ab=\"x\", b=\"2\"}");
        assert_eq!(l.with("z", "").to_string(), "{a=\"1\", b=\"2\"}");
    }
}
