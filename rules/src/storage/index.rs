//! The inverted label index: label name → label value → sorted series ids (postings).
//!
//! [`Postings::select`] turns a list of PromQL matchers into the ids of the matching
//! series without looking at every series: equality matchers are posting-list lookups
//! intersected smallest first; regex and `!=` matchers scan the values of their one
//! label name (or, when the candidates found so far are fewer than that scan would
//! touch, test the candidates' own labels). A matcher that matches the empty string
//! also matches series lacking the label, as in Prometheus: it is applied by
//! subtracting the series whose value does not match.
//!
//! Invariants:
//! - Every posting list and `all` are sorted ascending without duplicates.
//! - A value's list is never empty (it is removed with its last id), and a name's value
//!   map is never empty; `total` is the sum of its value lists' lengths.

use std::collections::{HashMap, HashSet};

use promql_parser::label::{MatchOp, Matcher};
use regex::Regex;

use crate::labels::Labels;

/// A series' id: assigned in increasing order, never reused.
pub(crate) type SeriesId = u64;

/// The values of one label name.
#[derive(Debug, Default)]
struct NameEntry {
    values: HashMap<String, Vec<SeriesId>>,
    /// Ids over all values (each series has at most one value per name).
    total: usize,
}

/// The inverted index.
#[derive(Debug, Default)]
pub(crate) struct Postings {
    names: HashMap<String, NameEntry>,
    all: Vec<SeriesId>,
}

/// Inserts `id` keeping `list` sorted; ids normally arrive in increasing order.
fn insert_sorted(list: &mut Vec<SeriesId>, id: SeriesId) {
    match list.last() {
        Some(&last) if last >= id => {
            if let Err(pos) = list.binary_search(&id) {
                list.insert(pos, id);
            }
        }
        _ => list.push(id),
    }
}

/// The suffix of sorted `list` from its first id `>= id`: exponential search from the
/// front, then a binary search within the last step.
fn gallop(list: &[SeriesId], id: SeriesId) -> &[SeriesId] {
    let mut hi = 1;
    while hi < list.len() && list[hi - 1] < id {
        hi = hi.saturating_mul(2);
    }
    let lo = hi / 2;
    let hi = hi.min(list.len());
    let pos = lo + list[lo..hi].partition_point(|&x| x < id);
    &list[pos..]
}

/// Ids in both sorted lists.
pub(crate) fn intersect(a: &[SeriesId], b: &[SeriesId]) -> Vec<SeriesId> {
    let (small, large) = if a.len() <= b.len() { (a, b) } else { (b, a) };
    let mut out = Vec::with_capacity(small.len());
    if small.len().saturating_mul(16) < large.len() {
        // Galloping: O(small · log gap), and cheap on the cache when the matches are
        // clustered (a job's series, created together, have neighbouring ids).
        let mut rest = large;
        for &id in small {
            rest = gallop(rest, id);
            if rest.first() == Some(&id) {
                out.push(id);
            }
        }
        return out;
    }
    let (mut i, mut j) = (0, 0);
    while let (Some(&x), Some(&y)) = (small.get(i), large.get(j)) {
        match x.cmp(&y) {
            std::cmp::Ordering::Less => i += 1,
            std::cmp::Ordering::Greater => j += 1,
            std::cmp::Ordering::Equal => {
                out.push(x);
                i += 1;
                j += 1;
            }
        }
    }
    out
}

/// Ids in sorted `a` but not in sorted `b`.
pub(crate) fn difference(a: &[SeriesId], b: &[SeriesId]) -> Vec<SeriesId> {
    let mut out = Vec::with_capacity(a.len());
    if a.len().saturating_mul(16) < b.len() {
        let mut rest = b;
        for &id in a {
            rest = gallop(rest, id);
            if rest.first() != Some(&id) {
                out.push(id);
            }
        }
        return out;
    }
    let mut j = 0;
    for &id in a {
        while b.get(j).is_some_and(|&y| y < id) {
            j += 1;
        }
        if b.get(j) != Some(&id) {
            out.push(id);
        }
    }
    out
}

/// The sorted union of sorted lists.
fn union<'a>(lists: impl Iterator<Item = &'a Vec<SeriesId>>) -> Vec<SeriesId> {
    let mut out: Vec<SeriesId> = Vec::new();
    for l in lists {
        out.extend_from_slice(l);
    }
    // The lists of one label name are disjoint, so no dedup is needed in practice; it
    // is kept so the invariant holds whatever the caller passes.
    out.sort_unstable();
    out.dedup();
    out
}

/// The literal text every string matched by `re` starts with, for regexes built as
/// PromQL builds them (`^(?:PATTERN)$`); empty when unsure. Only a leading run of plain
/// characters of a pattern without alternation counts, minus its last character when a
/// quantifier follows it, so the answer is a prefix of every match.
fn literal_prefix(re: &Regex) -> &str {
    let Some(body) = re.as_str().strip_prefix("^(?:") else { return "" };
    if body.contains('|') {
        return "";
    }
    let end =
        body.find(|c: char| !(c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | ':' | '/'))).unwrap_or(body.len());
    let rest = &body[end..];
    match rest.chars().next() {
        // The run is ASCII, so dropping one byte stays on a character boundary.
        Some('*' | '?' | '{' | '+') => &body[..end.saturating_sub(1)],
        Some('.' | '\\' | '[' | '(') => &body[..end],
        Some(')') if rest == ")$" => &body[..end],
        _ => "",
    }
}

/// A matcher with a cheap pre-test for regexes that start with literal text.
struct Test<'a> {
    m: &'a Matcher,
    prefix: &'a str,
}

impl<'a> Test<'a> {
    fn new(m: &'a Matcher) -> Self {
        let prefix = match &m.op {
            MatchOp::Re(r) | MatchOp::NotRe(r) => literal_prefix(r),
            MatchOp::Equal | MatchOp::NotEqual => "",
        };
        Test { m, prefix }
    }

    /// Same answer as `Matcher::is_match`, faster on values outside the prefix.
    #[inline]
    fn is_match(&self, v: &str) -> bool {
        match &self.m.op {
            MatchOp::Re(r) => v.starts_with(self.prefix) && r.is_match(v),
            MatchOp::NotRe(r) => !(v.starts_with(self.prefix) && r.is_match(v)),
            MatchOp::Equal | MatchOp::NotEqual => self.m.is_match(v),
        }
    }
}

/// True for an equality matcher on a non-empty value: a plain posting-list lookup.
fn is_lookup(m: &Matcher) -> bool {
    matches!(m.op, MatchOp::Equal) && !m.value.is_empty()
}

impl Postings {
    /// Indexes series `id` with `labels`.
    pub(crate) fn add(&mut self, id: SeriesId, labels: &Labels) {
        for l in labels.iter() {
            let entry = self.names.entry(l.name.clone()).or_default();
            let list = entry.values.entry(l.value.clone()).or_default();
            let before = list.len();
            insert_sorted(list, id);
            entry.total += list.len() - before;
        }
        insert_sorted(&mut self.all, id);
    }

    /// Removes the given series.
    pub(crate) fn remove(&mut self, removed: &[(SeriesId, Labels)]) {
        let ids: HashSet<SeriesId> = removed.iter().map(|(id, _)| *id).collect();
        let mut touched: HashSet<(&str, &str)> = HashSet::new();
        for (_, labels) in removed {
            for l in labels.iter() {
                touched.insert((l.name.as_str(), l.value.as_str()));
            }
        }
        for (name, value) in touched {
            let Some(entry) = self.names.get_mut(name) else { continue };
            if let Some(list) = entry.values.get_mut(value) {
                let before = list.len();
                list.retain(|id| !ids.contains(id));
                entry.total -= before - list.len();
                if list.is_empty() {
                    entry.values.remove(value);
                }
            }
            if entry.values.is_empty() {
                self.names.remove(name);
            }
        }
        self.all.retain(|id| !ids.contains(id));
    }

    /// Forgets everything.
    pub(crate) fn clear(&mut self) {
        self.names.clear();
        self.all.clear();
    }

    /// Every indexed id, sorted.
    #[cfg(test)]
    pub(crate) fn all(&self) -> &[SeriesId] {
        &self.all
    }

    /// Sorted label names present in at least one series.
    pub(crate) fn label_names(&self) -> Vec<String> {
        let mut v: Vec<String> = self.names.keys().cloned().collect();
        v.sort_unstable();
        v
    }

    /// Sorted values of label `name`.
    pub(crate) fn label_values(&self, name: &str) -> Vec<String> {
        let mut v: Vec<String> = self.names.get(name).map(|e| e.values.keys().cloned().collect()).unwrap_or_default();
        v.sort_unstable();
        v
    }

    /// Ids (sorted) of the series matching every matcher. `labels_of` gives an indexed
    /// series' labels, for matchers cheaper to test on the candidates than via the index.
    pub(crate) fn select<'a>(
        &self,
        matchers: &[Matcher],
        labels_of: impl Fn(SeriesId) -> Option<&'a Labels>,
    ) -> Vec<SeriesId> {
        // Cheapest and most selective first: equality lookups (shortest list first), then
        // matchers that need the label present, then those that also match its absence.
        let mut ordered: Vec<(u8, usize, &Matcher)> = matchers
            .iter()
            .map(|m| {
                if is_lookup(m) {
                    let len = self.names.get(&m.name).and_then(|e| e.values.get(&m.value)).map_or(0, Vec::len);
                    (0, len, m)
                } else if !m.is_match("") {
                    (1, 0, m)
                } else {
                    (2, 0, m)
                }
            })
            .collect();
        ordered.sort_by_key(|&(rank, len, _)| (rank, len));

        let mut cand: Option<Vec<SeriesId>> = None;
        let mut direct: Vec<Test<'_>> = Vec::new();
        for (_, _, m) in ordered {
            let matches_empty = m.is_match("");
            let Some(entry) = self.names.get(&m.name) else {
                // No series has this label: all of them match "" and nothing else.
                if matches_empty {
                    continue;
                }
                return Vec::new();
            };
            if is_lookup(m) {
                let Some(list) = entry.values.get(&m.value) else { return Vec::new() };
                cand = Some(match cand {
                    None => list.clone(),
                    Some(c) => intersect(&c, list),
                });
            } else {
                if let Some(c) = &cand {
                    // Testing a candidate costs an id lookup, a label lookup and a match,
                    // with several cache misses (about eight matches on a value); going
                    // through the index costs a match per value plus galloping through
                    // the matched lists, which is cheap for few candidates.
                    if c.len().saturating_mul(8) < entry.values.len() {
                        direct.push(Test::new(m));
                        continue;
                    }
                }
                let test = Test::new(m);
                let lists = entry.values.iter().filter(|(v, _)| test.is_match(v) != matches_empty).map(|(_, l)| l);
                cand = Some(match (cand, matches_empty) {
                    (None, false) => union(lists),
                    (None, true) => difference(&self.all, &union(lists)),
                    // The lists of one name are disjoint: intersect the candidates with
                    // each and merge the (small) results, rather than merge the lists.
                    (Some(c), false) => {
                        let mut out: Vec<SeriesId> = Vec::new();
                        for l in lists {
                            out.extend(intersect(&c, l));
                        }
                        out.sort_unstable();
                        out
                    }
                    (Some(c), true) => {
                        let mut rest = c;
                        for l in lists {
                            rest = difference(&rest, l);
                        }
                        rest
                    }
                });
            }
            if cand.as_ref().is_some_and(Vec::is_empty) {
                return Vec::new();
            }
        }
        let mut out = cand.unwrap_or_else(|| self.all.clone());
        if !direct.is_empty() {
            out.retain(|&id| {
                labels_of(id).is_some_and(|l| direct.iter().all(|t| t.is_match(l.get(&t.m.name).unwrap_or(""))))
            });
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn set_operations() {
        let a = vec![1, 3, 5, 7, 9];
        let b = vec![2, 3, 4, 5, 10];
        assert_eq!(intersect(&a, &b), vec![3, 5]);
        assert_eq!(difference(&a, &b), vec![1, 7, 9]);
        let big: Vec<u64> = (0..1000).map(|x| x * 2).collect();
        assert_eq!(intersect(&[4, 5, 1998, 2000], &big), vec![4, 1998]);
        assert_eq!(intersect(&big, &[4, 5, 1998, 2000]), vec![4, 1998]);
        assert_eq!(difference(&[4, 5, 1998, 2000], &big), vec![5, 2000]);
        assert_eq!(union([vec![5, 9], vec![1, 7], vec![]].iter()), vec![1, 5, 7, 9]);
        // Galloping finds the first id not below the target, at any distance.
        for id in [0, 1, 2, 3, 500, 1997, 1998, 1999, 5000] {
            let want = big.partition_point(|&x| x < id);
            assert_eq!(gallop(&big, id).len(), big.len() - want, "{id}");
        }
        assert!(gallop(&[], 3).is_empty());
        let ids: Vec<u64> = (0..50).map(|x| x * 40 + x % 2).collect();
        let want: Vec<u64> = ids.iter().copied().filter(|x| x % 2 == 0).collect();
        assert_eq!(intersect(&ids, &big), want);
        assert_eq!(difference(&ids, &big), ids.iter().copied().filter(|x| x % 2 == 1).collect::<Vec<_>>());
    }

    #[test]
    fn literal_prefixes_are_safe() {
        let p = |re: &str| {
            let r = Regex::new(&format!("^(?:{re})$")).expect("valid");
            literal_prefix(&r).to_owned()
        };
        assert_eq!(p("metric_1."), "metric_1");
        assert_eq!(p("api"), "api");
        assert_eq!(p("host-1.*"), "host-1");
        assert_eq!(p("ab*c"), "a");
        assert_eq!(p("ab?"), "a");
        assert_eq!(p("ab{0,2}"), "a");
        assert_eq!(p("ab+"), "a");
        assert_eq!(p("ab\\d"), "ab");
        assert_eq!(p("ab[cd]"), "ab");
        assert_eq!(p("ab(c)?"), "ab");
        assert_eq!(p("a|b"), "");
        assert_eq!(p("(?:ab)*c"), "");
        assert_eq!(p("ab)*(?:c"), "");
        assert_eq!(p("(?i)ab"), "");
        assert_eq!(p(".*"), "");
        assert_eq!(p("é"), "");
        assert_eq!(literal_prefix(&Regex::new("abc").expect("valid")), "");
        // Every value the regex matches starts with the prefix.
        for (re, v) in [("ab*c", "ac"), ("ab?", "a"), ("ab{0,2}", "a"), ("ab(c)?", "ab"), ("x.", "xy")] {
            let r = Regex::new(&format!("^(?:{re})$")).expect("valid");
            assert!(r.is_match(v));
            assert!(v.starts_with(literal_prefix(&r)), "{re} {v}");
        }
    }

    #[test]
    fn add_remove_keep_invariants() {
        let mut p = Postings::default();
        let a = Labels::from_pairs(&[("__name__", "up"), ("job", "a")]);
        let b = Labels::from_pairs(&[("__name__", "up"), ("job", "b")]);
        p.add(2, &b);
        p.add(1, &a);
        assert_eq!(p.all(), &[1, 2]);
        assert_eq!(p.label_values("job"), vec!["a", "b"]);
        assert_eq!(p.names["__name__"].values["up"], vec![1, 2]);
        assert_eq!(p.names["__name__"].total, 2);
        p.remove(&[(1, a)]);
        assert_eq!(p.all(), &[2]);
        assert_eq!(p.label_values("job"), vec!["b"]);
        assert_eq!(p.names["__name__"].total, 1);
        p.remove(&[(2, b)]);
        assert!(p.label_names().is_empty());
        assert!(p.all().is_empty());
    }
}
