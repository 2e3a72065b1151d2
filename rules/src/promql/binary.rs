//! Binary operators: arithmetic, comparison and set operators between scalars and
//! instant vectors, with `on`/`ignoring` matching and `group_left`/`group_right`.
//!
//! Invariants: arithmetic and `bool` comparisons drop `__name__`, filtering comparisons
//! and set operators keep labels as they are; a cardinality violation is an
//! [`EvalError::Execution`] with Prometheus' message, never a silent pick.

/// Hash maps and sets with a fast hasher, seeded at random per map.
type HashMap<K, V> = std::collections::HashMap<K, V, foldhash::fast::RandomState>;
type HashSet<K> = std::collections::HashSet<K, foldhash::fast::RandomState>;

use promql_parser::parser::ast::{BinModifier, LabelModifier, VectorMatchCardinality};

use super::eval::{HIDDEN_NAME, drop_name, is_one_to_one};
use super::{EvalError, VectorSample};
use crate::labels::{Label, Labels, METRIC_NAME};

/// True for `== != > < >= <=`.
pub(crate) fn is_comparison(op: &str) -> bool {
    matches!(op, "==" | "!=" | ">" | "<" | ">=" | "<=")
}

/// Applies `op` to two floats: the arithmetic result (or the left value for comparisons)
/// and whether a comparison holds (always true for arithmetic).
pub(crate) fn scalar_op(op: &str, l: f64, r: f64) -> Result<(f64, bool), EvalError> {
    Ok(match op {
        "+" => (l + r, true),
        "-" => (l - r, true),
        "*" => (l * r, true),
        "/" => (l / r, true),
        "%" => (l % r, true),
        "^" => (l.powf(r), true),
        "atan2" => (l.atan2(r), true),
        "==" => (l, l == r),
        "!=" => (l, l != r),
        ">" => (l, l > r),
        "<" => (l, l < r),
        ">=" => (l, l >= r),
        "<=" => (l, l <= r),
        other => return Err(EvalError::Execution(format!("operator {other:?} not allowed for scalar operations"))),
    })
}

/// Formats every label (the name included) inside braces, as Prometheus' error messages do.
pub(crate) fn fmt_all(l: &Labels) -> String {
    let parts: Vec<String> = l.iter().map(|x| format!("{}={:?}", x.name, x.value)).collect();
    format!("{{{}}}", parts.join(", "))
}

/// Vector `op` scalar (or scalar `op` vector when `swapped`).
pub(crate) fn vector_scalar(
    op: &str,
    vec: Vec<VectorSample>,
    scalar: f64,
    swapped: bool,
    return_bool: bool,
    t: i64,
    delayed: bool,
) -> Result<Vec<VectorSample>, EvalError> {
    if matches!(op, "and" | "or" | "unless") {
        return Err(EvalError::Execution(format!("set operator {op} not allowed in binary scalar expression")));
    }
    let cmp = is_comparison(op);
    let mut out = Vec::with_capacity(vec.len());
    for s in vec {
        let (l, r) = if swapped { (scalar, s.v) } else { (s.v, scalar) };
        let (mut v, keep) = scalar_op(op, l, r)?;
        if cmp {
            if return_bool {
                v = if keep { 1.0 } else { 0.0 };
            } else if !keep {
                continue;
            } else {
                // The vector's own value is kept, whichever side it is on.
                v = s.v;
            }
        }
        let labels = if !cmp || return_bool { drop_name(&s.labels, delayed) } else { s.labels };
        out.push(VectorSample { labels, t, v });
    }
    Ok(out)
}

fn matching_names(m: Option<&LabelModifier>) -> Vec<&str> {
    m.map(|m| m.labels().labels.iter().map(String::as_str).collect()).unwrap_or_default()
}

/// The matching signature of a series.
fn signature(labels: &Labels, m: Option<&LabelModifier>) -> Labels {
    match m {
        Some(LabelModifier::Include(ls)) => {
            let names: Vec<&str> = ls.labels.iter().map(String::as_str).collect();
            labels.keep(&names)
        }
        Some(LabelModifier::Exclude(ls)) => {
            let mut names: Vec<&str> = ls.labels.iter().map(String::as_str).collect();
            names.push(METRIC_NAME);
            names.push(HIDDEN_NAME);
            labels.without(&names)
        }
        None => labels.without(&[METRIC_NAME, HIDDEN_NAME]),
    }
}

/// Vector `op` vector.
pub(crate) fn vector_vector(
    op: &str,
    lhs: Vec<VectorSample>,
    rhs: Vec<VectorSample>,
    m: &BinModifier,
    t: i64,
    delayed: bool,
) -> Result<Vec<VectorSample>, EvalError> {
    let matching = m.matching.as_ref();
    match op {
        "and" => {
            let rs: HashSet<Labels> = rhs.iter().map(|s| signature(&s.labels, matching)).collect();
            return Ok(lhs
                .into_iter()
                .filter(|s| rs.contains(&signature(&s.labels, matching)))
                .map(|s| at(s, t))
                .collect());
        }
        "unless" => {
            let rs: HashSet<Labels> = rhs.iter().map(|s| signature(&s.labels, matching)).collect();
            return Ok(lhs
                .into_iter()
                .filter(|s| !rs.contains(&signature(&s.labels, matching)))
                .map(|s| at(s, t))
                .collect());
        }
        "or" => {
            let ls: HashSet<Labels> = lhs.iter().map(|s| signature(&s.labels, matching)).collect();
            let mut out: Vec<VectorSample> = lhs.into_iter().map(|s| at(s, t)).collect();
            out.extend(rhs.into_iter().filter(|s| !ls.contains(&signature(&s.labels, matching))).map(|s| at(s, t)));
            return Ok(out);
        }
        _ => {}
    }
    let cmp = is_comparison(op);
    let drop = !cmp || m.return_bool;
    // `group_right` swaps the roles: the right side is the "many" side.
    let one_to_many = matches!(m.card, VectorMatchCardinality::OneToMany(_));
    let (many, one) = if one_to_many { (rhs, lhs) } else { (lhs, rhs) };
    let include: Vec<&str> = match &m.card {
        VectorMatchCardinality::ManyToOne(ls) | VectorMatchCardinality::OneToMany(ls) => {
            ls.labels.iter().map(String::as_str).collect()
        }
        _ => Vec::new(),
    };
    // Index the "one" side by signature; duplicates there are an error.
    let mut one_idx: HashMap<Labels, usize> = HashMap::with_capacity_and_hasher(one.len(), Default::default());
    for (i, s) in one.iter().enumerate() {
        let sig = signature(&s.labels, matching);
        if let Some(&prev) = one_idx.get(&sig) {
            let side = if one_to_many { "left" } else { "right" };
            return Err(EvalError::Execution(format!(
                "found duplicate series for the match group {} on the {side} hand-side of the operation: [{}, {}];\
                 many-to-many matching not allowed: matching labels must be unique on one side",
                fmt_all(&sig),
                fmt_all(&one[prev].labels),
                fmt_all(&s.labels)
            )));
        }
        one_idx.insert(sig, i);
    }
    let one_to_one = is_one_to_one(&m.card);
    let on = matches!(matching, Some(LabelModifier::Include(_)));
    let match_names = matching_names(matching);
    let mut matched: HashSet<Labels> = HashSet::default();
    let mut inserted: HashSet<Labels> = HashSet::default();
    let mut out = Vec::new();
    for s in many {
        let sig = signature(&s.labels, matching);
        let Some(&oi) = one_idx.get(&sig) else { continue };
        let o = &one[oi];
        // A one-to-one match must be unique even if the comparison filters it away.
        if one_to_one && !matched.insert(sig) {
            return Err(EvalError::Execution(
                "multiple matches for labels: many-to-one matching must be explicit (group_left/group_right)".into(),
            ));
        }
        let (l, r) = if one_to_many { (o.v, s.v) } else { (s.v, o.v) };
        let (mut v, keep) = scalar_op(op, l, r)?;
        if cmp {
            if m.return_bool {
                v = if keep { 1.0 } else { 0.0 };
            } else if !keep {
                continue;
            }
        }
        // The result's labels.
        let mut labels = if drop { drop_name(&s.labels, delayed) } else { s.labels.clone() };
        if one_to_one {
            labels = if on { labels.keep(&match_names) } else { labels.without(&match_names) };
        }
        if !include.is_empty() {
            let mut v: Vec<Label> = labels.iter().filter(|l| !include.contains(&l.name.as_str())).cloned().collect();
            for name in &include {
                if let Some(val) = o.labels.get(name) {
                    v.push(Label { name: (*name).to_owned(), value: val.to_owned() });
                }
            }
            labels = Labels::new(v);
        }
        if !one_to_one && !inserted.insert(labels.clone()) {
            return Err(EvalError::Execution(
                "multiple matches for labels: grouping labels must ensure unique matches".into(),
            ));
        }
        out.push(VectorSample { labels, t, v });
    }
    Ok(out)
}

fn at(mut s: VectorSample, t: i64) -> VectorSample {
    s.t = t;
    s
}
