//! Prometheus rule files: loading and validation, with Prometheus 3.x semantics.
//!
//! A rule file is YAML: `groups[]` of `{name, interval, query_offset, limit, labels,
//! rules[]}`, each rule `{record | alert, expr, for, keep_firing_for, labels,
//! annotations}`. [`parse_str`] checks what Prometheus' `rulefmt` checks, and reports every
//! problem it finds (not only the first) as a [`RuleFileError`] naming the file, the line
//! (and column where known), the group and the rule:
//!
//! - unknown fields are rejected (YAML is read strictly), unless
//!   [`ParseOptions::ignore_unknown_fields`] is set (promtool's `--ignore-unknown-fields`);
//!   duplicate mapping keys are rejected;
//! - a group needs a name, unique in the file;
//! - a rule needs exactly one of `record` and `alert`, and an `expr` that parses as PromQL;
//! - a recording rule has a valid metric name without braces, and no `for`,
//!   `keep_firing_for` or `annotations`;
//! - label names (of rules and groups) are valid and not `__name__`; annotation names are
//!   valid. Prometheus 3 accepts any non-empty UTF-8 name by default
//!   ([`NameValidation::Utf8`]); [`NameValidation::Legacy`] restores `[a-zA-Z_][a-zA-Z0-9_]*`;
//! - durations use Prometheus' format ([`parse_duration`]);
//! - the label and annotation templates of alerting rules parse (see [`crate::template`]),
//!   with `$labels`, `$externalLabels`, `$externalURL` and `$value` defined.
//!
//! An empty file (or one holding only comments) has zero groups, and only the first YAML
//! document of a file is read, as in Prometheus.
//! Files over [`MAX_FILE_BYTES`] are refused, and the YAML reader runs under a budget
//! (nesting depth, node and alias counts), so hostile input gives an error, never a panic
//! or an unbounded allocation.
//!
//! # The YAML crate
//!
//! The workspace reads YAML with `serde-saphyr` (2.x): an actively maintained serde
//! deserializer over a pure-Rust YAML 1.2 parser. It
//! was chosen over `serde_yaml` (deprecated, unmaintained), `serde_yaml_ng` (its fork:
//! one error location per failure, no spans on values) and `saphyr`'s bare marked tree
//! (positions, but hand-written decoding of every field). It gives [`Spanned`] values with
//! the line and column of each group, rule and field; errors with line and column;
//! duplicate-key rejection like Go's yaml.v3; anchors, aliases and merge keys (`<<`); and
//! a parse budget (depth, nodes, alias replay) against billion-laughs and deep nesting.
//!
//! A file is read in two passes over the same text: a shape pass that walks the mappings
//! and collects every unknown field with its position (Go reports them all), then a typed
//! pass into `Spanned` structs, then the checks above.
//!
//! Invariants: output is deterministic (labels and annotations keep file order; errors
//! come in file order); every [`Rule`] in a returned [`RuleFile`] has passed every check.

use std::collections::{BTreeMap, HashSet};
use std::fmt;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use serde::de::{self, Deserializer, MapAccess, Visitor};
use serde_saphyr::{Location, Spanned};

use crate::template::Template;

/// The largest rule file accepted, in bytes.
pub const MAX_FILE_BYTES: usize = 16 * 1024 * 1024;

/// The deepest YAML nesting accepted (a rule file needs 7 levels).
const MAX_YAML_DEPTH: usize = 24;

/// A loaded and validated rule file.
#[derive(Clone, Debug)]
pub struct RuleFile {
    /// The file it was read from (used in messages).
    pub path: PathBuf,
    /// Its groups, in file order.
    pub groups: Vec<RuleGroup>,
}

/// One rule group.
#[derive(Clone, Debug)]
pub struct RuleGroup {
    /// Group name, unique in its file.
    pub name: String,
    /// Evaluation interval in ms, if set (else the global one applies).
    pub interval_ms: Option<i64>,
    /// Query offset in ms, if set (else the global one applies).
    pub query_offset_ms: Option<i64>,
    /// Maximum number of alerts or series a rule may produce; 0 = no limit.
    pub limit: usize,
    /// Labels added to every rule of the group, in file order.
    pub labels: Vec<(String, String)>,
    /// The rules, in file order.
    pub rules: Vec<Rule>,
    /// 1-based line of the group in the file.
    pub line: usize,
}

/// Whether a rule is an alerting or a recording rule.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RuleKind {
    /// An alerting rule (`alert:`).
    Alert,
    /// A recording rule (`record:`).
    Record,
}

/// One rule.
#[derive(Clone, Debug)]
pub struct Rule {
    /// Alerting or recording.
    pub kind: RuleKind,
    /// The alert name or the recorded metric name.
    pub name: String,
    /// The PromQL text as written.
    pub expr_text: String,
    /// The parsed expression.
    pub expr: promql_parser::parser::Expr,
    /// `for` in ms (0 if unset).
    pub for_ms: i64,
    /// `keep_firing_for` in ms (0 if unset).
    pub keep_firing_for_ms: i64,
    /// Rule labels, in file order.
    pub labels: Vec<(String, String)>,
    /// Annotations (alerting rules only), in file order.
    pub annotations: Vec<(String, String)>,
    /// 1-based line of the rule in the file.
    pub line: usize,
}

/// One error found in a rule file, with its position.
///
/// Displays as `FILE:LINE:COL: group "g", rule N ("name"): message`; the line, column, group
/// and rule parts appear only when known.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RuleFileError {
    /// The file.
    pub path: PathBuf,
    /// 1-based line (0 if unknown, e.g. the file cannot be read).
    pub line: usize,
    /// 1-based column (0 if unknown).
    pub column: usize,
    /// The group name, for group- and rule-level errors.
    pub group: Option<String>,
    /// 1-based rule index in the group and the rule's name, for rule-level errors.
    pub rule: Option<(usize, String)>,
    /// What is wrong.
    pub message: String,
}

impl fmt::Display for RuleFileError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.path.display())?;
        if self.line > 0 {
            write!(f, ":{}", self.line)?;
            if self.column > 0 {
                write!(f, ":{}", self.column)?;
            }
        }
        f.write_str(": ")?;
        match (&self.group, &self.rule) {
            (Some(g), Some((n, name))) => write!(f, "group {g:?}, rule {n} ({name:?}): ")?,
            (Some(g), None) => write!(f, "group {g:?}: ")?,
            (None, Some((n, name))) => write!(f, "rule {n} ({name:?}): ")?,
            (None, None) => {}
        }
        f.write_str(&self.message)
    }
}

impl std::error::Error for RuleFileError {}

/// Which label and metric names are valid.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum NameValidation {
    /// Prometheus 3's default: any non-empty UTF-8 string.
    #[default]
    Utf8,
    /// The classic rule: `[a-zA-Z_][a-zA-Z0-9_]*` for label names, plus `:` for metric names.
    Legacy,
}

impl NameValidation {
    /// True if `name` is a valid label name under this scheme.
    pub fn is_valid_label_name(self, name: &str) -> bool {
        match self {
            NameValidation::Utf8 => !name.is_empty(),
            NameValidation::Legacy => is_legacy_name(name, false),
        }
    }

    /// True if `name` is a valid metric name under this scheme.
    pub fn is_valid_metric_name(self, name: &str) -> bool {
        match self {
            NameValidation::Utf8 => !name.is_empty(),
            NameValidation::Legacy => is_legacy_name(name, true),
        }
    }
}

fn is_legacy_name(name: &str, allow_colon: bool) -> bool {
    let mut chars = name.chars();
    let ok_first = |c: char| c.is_ascii_alphabetic() || c == '_' || (allow_colon && c == ':');
    match chars.next() {
        Some(c) if ok_first(c) => chars.all(|c| ok_first(c) || c.is_ascii_digit()),
        _ => false,
    }
}

/// How strictly to read a rule file.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ParseOptions {
    /// The name validation scheme (Prometheus 3 default: UTF-8).
    pub name_validation: NameValidation,
    /// Accept (and ignore) unknown fields, like promtool's `--ignore-unknown-fields`.
    pub ignore_unknown_fields: bool,
}

/// Reads and validates the rule file at `path` with the default [`ParseOptions`].
pub fn load_file(path: &Path) -> Result<RuleFile, Vec<RuleFileError>> {
    load_file_with(path, &ParseOptions::default())
}

/// Reads and validates the rule file at `path`.
pub fn load_file_with(path: &Path, opts: &ParseOptions) -> Result<RuleFile, Vec<RuleFileError>> {
    let too_big = || vec![file_error(path, &format!("file is larger than {MAX_FILE_BYTES} bytes"))];
    match std::fs::metadata(path) {
        Ok(m) if m.len() > MAX_FILE_BYTES as u64 => return Err(too_big()),
        Ok(_) => {}
        Err(e) => return Err(vec![file_error(path, &format!("cannot read file: {e}"))]),
    }
    // Read with a bound even if the file grew after the metadata call.
    let mut bytes = Vec::new();
    let read = std::fs::File::open(path).and_then(|f| {
        use std::io::Read;
        f.take(MAX_FILE_BYTES as u64 + 1).read_to_end(&mut bytes)
    });
    if let Err(e) = read {
        return Err(vec![file_error(path, &format!("cannot read file: {e}"))]);
    }
    if bytes.len() > MAX_FILE_BYTES {
        return Err(too_big());
    }
    match String::from_utf8(bytes) {
        Ok(text) => parse_str_with(path, &text, opts),
        Err(e) => {
            let at = e.utf8_error().valid_up_to();
            let line = e.as_bytes()[..at].iter().filter(|&&b| b == b'\n').count() + 1;
            let mut err = file_error(path, "file is not valid UTF-8");
            err.line = line;
            Err(vec![err])
        }
    }
}

fn file_error(path: &Path, message: &str) -> RuleFileError {
    RuleFileError { path: path.to_owned(), line: 0, column: 0, group: None, rule: None, message: message.to_owned() }
}

/// Parses and validates rule-file `text` with the default [`ParseOptions`]; `path` is used
/// only in messages.
pub fn parse_str(path: &Path, text: &str) -> Result<RuleFile, Vec<RuleFileError>> {
    parse_str_with(path, text, &ParseOptions::default())
}

/// Parses and validates rule-file `text`; `path` is used only in messages.
pub fn parse_str_with(path: &Path, text: &str, opts: &ParseOptions) -> Result<RuleFile, Vec<RuleFileError>> {
    if text.len() > MAX_FILE_BYTES {
        return Err(vec![file_error(path, &format!("file is larger than {MAX_FILE_BYTES} bytes"))]);
    }
    let yaml_err = |e: serde_saphyr::Error| {
        let plain = e.without_snippet().to_string();
        let (line, column) = e.location().map(|l| (l.line() as usize, l.column() as usize)).unwrap_or((0, 0));
        // The crate appends " at line L, column C"; we print the position in front instead.
        let suffix = format!(" at line {line}, column {column}");
        let mut message = plain.strip_suffix(&suffix).map(str::to_owned).unwrap_or(plain);
        if message.starts_with("budget breached: Depth") {
            message = format!("nesting deeper than {MAX_YAML_DEPTH} levels");
        }
        vec![RuleFileError {
            path: path.to_owned(),
            line,
            column,
            group: None,
            rule: None,
            message: format!("yaml: {message}"),
        }]
    };
    // Prometheus reads the first YAML document only; later ones are ignored.
    let text = first_document(text);
    if !opts.ignore_unknown_fields {
        let mut unknown = Vec::new();
        let seed = shape::Node { level: shape::Level::File, out: &mut unknown };
        serde_saphyr::with_deserializer_from_str_with_options(text, yaml_options(), |de| {
            serde::de::DeserializeSeed::deserialize(seed, de)
        })
        .map_err(yaml_err)?;
        if !unknown.is_empty() {
            return Err(unknown
                .into_iter()
                .map(|(field, line, column, level)| RuleFileError {
                    path: path.to_owned(),
                    line,
                    column,
                    group: None,
                    rule: None,
                    message: format!(
                        "yaml: unknown field `{field}` in {}, expected one of {}",
                        level.what(),
                        level.fields().join(", ")
                    ),
                })
                .collect());
        }
    }
    let raw: Option<RawFile> = serde_saphyr::from_str_with_options(text, yaml_options()).map_err(yaml_err)?;
    let raw_groups = raw.and_then(|f| f.groups).unwrap_or_default();
    let mut v = Validator { path, opts, errors: Vec::new() };
    let mut groups = Vec::with_capacity(raw_groups.len());
    let mut seen: HashSet<String> = HashSet::new();
    for g in raw_groups {
        if let Some(group) = v.group(g, &mut seen) {
            groups.push(group);
        }
    }
    if v.errors.is_empty() { Ok(RuleFile { path: path.to_owned(), groups }) } else { Err(v.errors) }
}

/// The first YAML document of `text`: everything up to a `...` line or a `---` line that
/// follows content (or another `---`). Such marker lines at column 0 always end a document
/// in a file whose top level is a mapping.
fn first_document(text: &str) -> &str {
    let is_marker = |line: &str, m: &str| {
        line.strip_prefix(m).is_some_and(|rest| rest.is_empty() || rest.starts_with([' ', '\t', '\r', '\n']))
    };
    let mut started = false;
    let mut offset = 0;
    for line in text.split_inclusive('\n') {
        if is_marker(line, "...") || (started && is_marker(line, "---")) {
            return &text[..offset];
        }
        let t = line.trim();
        if is_marker(line, "---") || !(t.is_empty() || t.starts_with('#') || t.starts_with('%')) {
            started = true;
        }
        offset += line.len();
    }
    text
}

fn yaml_options() -> serde_saphyr::Options {
    let mut o = serde_saphyr::Options::default();
    o.with_snippet = false;
    // The default budget (depth 64, 250k nodes) suits configs; a large rule file may hold
    // more nodes, and MAX_FILE_BYTES already bounds the input.
    let mut budget = serde_saphyr::Budget::default();
    budget.max_nodes = 4_000_000;
    budget.max_events = 8_000_000;
    // Anchors and aliases are rare in rule files; a tight replay bound makes alias bombs
    // fail fast.
    budget.max_recorded_anchor_events = 100_000;
    // A rule file nests 7 levels (file, groups, group, rules, rule, labels, value); a low
    // bound keeps deserialization's recursion well within a 1 MiB thread stack.
    budget.max_depth = MAX_YAML_DEPTH;
    o.budget = Some(budget);
    o.alias_limits.max_total_replayed_events = 100_000;
    o
}

/// The strict pass: walks the document's mappings and collects every unknown field with
/// its position (Go's strict decoder reports them all, not only the first). Values are
/// not checked here; the typed pass below does that.
mod shape {
    use std::fmt;

    use serde::de::{self, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
    use serde_saphyr::Spanned;

    /// An unknown field: its name, 1-based line and column, and where it was found.
    pub(super) type Unknown = (String, usize, usize, Level);

    /// Which mapping of a rule file is being read.
    #[derive(Clone, Copy, Debug, PartialEq, Eq)]
    pub(super) enum Level {
        File,
        Group,
        Rule,
    }

    impl Level {
        pub(super) fn fields(self) -> &'static [&'static str] {
            match self {
                Level::File => &["groups"],
                Level::Group => &["name", "interval", "query_offset", "limit", "labels", "rules"],
                Level::Rule => &["record", "alert", "expr", "for", "keep_firing_for", "labels", "annotations"],
            }
        }

        pub(super) fn what(self) -> &'static str {
            match self {
                Level::File => "rule file",
                Level::Group => "rule group",
                Level::Rule => "rule",
            }
        }

        fn child(self, key: &str) -> Option<Level> {
            match (self, key) {
                (Level::File, "groups") => Some(Level::Group),
                (Level::Group, "rules") => Some(Level::Rule),
                _ => None,
            }
        }
    }

    /// Reads one node at `level` (a mapping, or anything else, which is ignored here).
    pub(super) struct Node<'a> {
        pub(super) level: Level,
        pub(super) out: &'a mut Vec<Unknown>,
    }

    /// Reads a sequence whose items are nodes at `level`.
    struct List<'a> {
        level: Level,
        out: &'a mut Vec<Unknown>,
    }

    impl<'de> DeserializeSeed<'de> for Node<'_> {
        type Value = ();
        fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
            d.deserialize_any(NodeVisitor { level: self.level, out: self.out, list: false })
        }
    }

    impl<'de> DeserializeSeed<'de> for List<'_> {
        type Value = ();
        fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
            d.deserialize_any(NodeVisitor { level: self.level, out: self.out, list: true })
        }
    }

    struct NodeVisitor<'a> {
        level: Level,
        out: &'a mut Vec<Unknown>,
        /// True if this node should be a sequence of `level` mappings.
        list: bool,
    }

    impl<'de> Visitor<'de> for NodeVisitor<'_> {
        type Value = ();
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("any YAML value")
        }
        fn visit_bool<E: de::Error>(self, _: bool) -> Result<(), E> {
            Ok(())
        }
        fn visit_i64<E: de::Error>(self, _: i64) -> Result<(), E> {
            Ok(())
        }
        fn visit_u64<E: de::Error>(self, _: u64) -> Result<(), E> {
            Ok(())
        }
        fn visit_i128<E: de::Error>(self, _: i128) -> Result<(), E> {
            Ok(())
        }
        fn visit_u128<E: de::Error>(self, _: u128) -> Result<(), E> {
            Ok(())
        }
        fn visit_f64<E: de::Error>(self, _: f64) -> Result<(), E> {
            Ok(())
        }
        fn visit_str<E: de::Error>(self, _: &str) -> Result<(), E> {
            Ok(())
        }
        fn visit_bytes<E: de::Error>(self, _: &[u8]) -> Result<(), E> {
            Ok(())
        }
        fn visit_unit<E: de::Error>(self) -> Result<(), E> {
            Ok(())
        }
        fn visit_none<E: de::Error>(self) -> Result<(), E> {
            Ok(())
        }
        fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
            d.deserialize_any(self)
        }
        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
            if self.list {
                while seq.next_element_seed(Node { level: self.level, out: &mut *self.out })?.is_some() {}
            } else {
                while seq.next_element::<IgnoredAny>()?.is_some() {}
            }
            Ok(())
        }
        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
            if self.list {
                while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
                return Ok(());
            }
            while let Some(key) = map.next_key::<Spanned<String>>()? {
                if let Some(child) = self.level.child(&key.value) {
                    map.next_value_seed(List { level: child, out: &mut *self.out })?;
                } else {
                    if !self.level.fields().contains(&key.value.as_str()) {
                        let (l, c) = (key.referenced.line() as usize, key.referenced.column() as usize);
                        self.out.push((key.value, l, c, self.level));
                    }
                    map.next_value::<IgnoredAny>()?;
                }
            }
            Ok(())
        }
    }
}

#[derive(Deserialize)]
struct RawFile {
    #[serde(default)]
    groups: Option<Vec<Spanned<RawGroup>>>,
}

#[derive(Deserialize)]
struct RawGroup {
    #[serde(default)]
    name: Option<Spanned<String>>,
    #[serde(default)]
    interval: Option<Spanned<String>>,
    #[serde(default)]
    query_offset: Option<Spanned<String>>,
    #[serde(default)]
    limit: Option<Spanned<i64>>,
    #[serde(default)]
    labels: Option<Spanned<OrderedMap>>,
    #[serde(default)]
    rules: Option<Vec<Spanned<RawRule>>>,
}

#[derive(Deserialize)]
struct RawRule {
    #[serde(default)]
    record: Option<Spanned<String>>,
    #[serde(default)]
    alert: Option<Spanned<String>>,
    #[serde(default)]
    expr: Option<Spanned<String>>,
    #[serde(default, rename = "for")]
    for_: Option<Spanned<String>>,
    #[serde(default)]
    keep_firing_for: Option<Spanned<String>>,
    #[serde(default)]
    labels: Option<Spanned<OrderedMap>>,
    #[serde(default)]
    annotations: Option<Spanned<OrderedMap>>,
}

/// A string-to-string mapping in file order. A null value reads as the empty string, as
/// Go's YAML decoder does for `map[string]string`.
struct OrderedMap(Vec<(String, String)>);

impl<'de> Deserialize<'de> for OrderedMap {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = OrderedMap;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a mapping of strings to strings")
            }
            fn visit_unit<E: de::Error>(self) -> Result<OrderedMap, E> {
                Ok(OrderedMap(Vec::new()))
            }
            fn visit_map<A: MapAccess<'de>>(self, mut m: A) -> Result<OrderedMap, A::Error> {
                let mut out = Vec::new();
                while let Some((k, v)) = m.next_entry::<String, Option<String>>()? {
                    out.push((k, v.unwrap_or_default()));
                }
                Ok(OrderedMap(out))
            }
        }
        d.deserialize_any(V)
    }
}

struct Validator<'a> {
    path: &'a Path,
    opts: &'a ParseOptions,
    errors: Vec<RuleFileError>,
}

fn line_col(l: &Location) -> (usize, usize) {
    (l.line() as usize, l.column() as usize)
}

impl Validator<'_> {
    fn push(&mut self, at: (usize, usize), group: Option<&str>, rule: Option<(usize, &str)>, message: String) {
        self.errors.push(RuleFileError {
            path: self.path.to_owned(),
            line: at.0,
            column: at.1,
            group: group.map(str::to_owned),
            rule: rule.map(|(n, s)| (n, s.to_owned())),
            message,
        });
    }

    fn group(&mut self, g: Spanned<RawGroup>, seen: &mut HashSet<String>) -> Option<RuleGroup> {
        let at = line_col(&g.referenced);
        let raw = g.value;
        let before = self.errors.len();
        let (name, name_at) = match &raw.name {
            Some(n) => (n.value.clone(), line_col(&n.referenced)),
            None => (String::new(), at),
        };
        let gname = if name.is_empty() { None } else { Some(name.as_str()) };
        if name.is_empty() {
            self.push(name_at, None, None, "group name must not be empty".to_owned());
        } else if !seen.insert(name.clone()) {
            self.push(name_at, None, None, format!("groupname: {name:?} is repeated in the same file"));
        }
        let duration = |this: &mut Self, d: &Option<Spanned<String>>, what: &str| -> Option<i64> {
            let d = d.as_ref()?;
            match parse_duration(&d.value) {
                Ok(ms) => Some(ms),
                Err(e) => {
                    this.push(line_col(&d.referenced), gname, None, format!("invalid {what}: {e}"));
                    None
                }
            }
        };
        // Prometheus reads `interval: 0s` as "not set": the global interval applies.
        let interval_ms = duration(self, &raw.interval, "interval").filter(|&ms| ms != 0);
        let query_offset_ms = duration(self, &raw.query_offset, "query_offset");
        let labels = raw.labels.map(|l| (line_col(&l.referenced), l.value.0));
        if let Some((lat, ls)) = &labels {
            for (k, _) in ls {
                if !self.opts.name_validation.is_valid_label_name(k) || k == crate::labels::METRIC_NAME {
                    self.push(*lat, gname, None, format!("invalid label name: {k}"));
                }
            }
        }
        let mut rules = Vec::new();
        for (i, r) in raw.rules.unwrap_or_default().into_iter().enumerate() {
            if let Some(rule) = self.rule(r, gname.unwrap_or(""), i + 1) {
                rules.push(rule);
            }
        }
        if self.errors.len() != before {
            return None;
        }
        Some(RuleGroup {
            name,
            interval_ms,
            query_offset_ms,
            limit: raw.limit.map(|l| usize::try_from(l.value).unwrap_or(0)).unwrap_or(0),
            labels: labels.map(|(_, l)| l).unwrap_or_default(),
            rules,
            line: at.0,
        })
    }

    fn rule(&mut self, r: Spanned<RawRule>, group: &str, index: usize) -> Option<Rule> {
        let at = line_col(&r.referenced);
        let raw = r.value;
        let before = self.errors.len();
        let nonempty = |s: &Option<Spanned<String>>| {
            s.as_ref().filter(|s| !s.value.is_empty()).map(|s| (s.value.clone(), line_col(&s.referenced)))
        };
        let record = nonempty(&raw.record);
        let alert = nonempty(&raw.alert);
        let name = alert.as_ref().or(record.as_ref()).map(|(n, _)| n.clone()).unwrap_or_default();
        let err = |this: &mut Self, pos: (usize, usize), msg: String| {
            this.push(pos, Some(group), Some((index, name.as_str())), msg);
        };
        let kind = match (&record, &alert) {
            (Some(_), Some((_, a_at))) => {
                err(self, *a_at, "only one of 'record' and 'alert' must be set".to_owned());
                None
            }
            (None, None) => {
                err(self, at, "one of 'record' or 'alert' must be set".to_owned());
                None
            }
            (Some(_), None) => Some(RuleKind::Record),
            (None, Some(_)) => Some(RuleKind::Alert),
        };
        let expr_text = raw.expr.as_ref().map(|e| e.value.clone()).unwrap_or_default();
        let mut expr = None;
        match raw.expr.as_ref().filter(|e| !e.value.is_empty()) {
            None => err(self, at, "field 'expr' must be set in rule".to_owned()),
            Some(e) => match crate::promql::parse(&e.value) {
                Ok(x) => expr = Some(x),
                Err(crate::promql::EvalError::Parse(pe)) => {
                    err(self, line_col(&e.referenced), format!("could not parse expression: {pe}"))
                }
                Err(other) => err(self, line_col(&e.referenced), format!("could not parse expression: {other}")),
            },
        }
        let duration = |this: &mut Self, d: &Option<Spanned<String>>, what: &str| -> i64 {
            let Some(d) = d.as_ref() else { return 0 };
            match parse_duration(&d.value) {
                Ok(ms) => ms,
                Err(e) => {
                    this.push(
                        line_col(&d.referenced),
                        Some(group),
                        Some((index, name.as_str())),
                        format!("invalid '{what}': {e}"),
                    );
                    0
                }
            }
        };
        let for_ms = duration(self, &raw.for_, "for");
        let keep_firing_for_ms = duration(self, &raw.keep_firing_for, "keep_firing_for");
        let labels = raw.labels.map(|l| (line_col(&l.referenced), l.value.0));
        let annotations = raw.annotations.map(|l| (line_col(&l.referenced), l.value.0));
        if let Some((rname, rat)) = &record {
            if annotations.as_ref().is_some_and(|(_, a)| !a.is_empty()) {
                err(self, *rat, "invalid field 'annotations' in recording rule".to_owned());
            }
            if for_ms != 0 {
                err(self, *rat, "invalid field 'for' in recording rule".to_owned());
            }
            if keep_firing_for_ms != 0 {
                err(self, *rat, "invalid field 'keep_firing_for' in recording rule".to_owned());
            }
            if rname.contains('{') || rname.contains('}') {
                err(self, *rat, format!("braces present in the recording rule name; should it be in expr?: {rname}"));
            } else if !self.opts.name_validation.is_valid_metric_name(rname) {
                err(self, *rat, format!("invalid recording rule name: {rname}"));
            }
        }
        if let Some((lat, ls)) = &labels {
            for (k, _) in ls {
                if !self.opts.name_validation.is_valid_label_name(k) || k == crate::labels::METRIC_NAME {
                    err(self, *lat, format!("invalid label name: {k}"));
                }
            }
        }
        if let Some((aat, ls)) = &annotations {
            for (k, _) in ls {
                if !self.opts.name_validation.is_valid_label_name(k) {
                    err(self, *aat, format!("invalid annotation name: {k}"));
                }
            }
        }
        // Prometheus checks templates of alerting rules only.
        if let Some((alert_name, _)) = &alert {
            let tmpl_name = format!("__alert_{alert_name}");
            for (what, list) in [("label", &labels), ("annotation", &annotations)] {
                if let Some((pos, ls)) = list {
                    for (k, v) in ls {
                        if let Err(e) = Template::parse_named(&tmpl_name, v) {
                            err(self, *pos, format!("{what} {k:?}: {e}"));
                        }
                    }
                }
            }
        }
        if self.errors.len() != before {
            return None;
        }
        Some(Rule {
            kind: kind?,
            name,
            expr_text,
            expr: expr?,
            for_ms,
            keep_firing_for_ms,
            labels: labels.map(|(_, l)| l).unwrap_or_default(),
            annotations: annotations.map(|(_, l)| l).unwrap_or_default(),
            line: at.0,
        })
    }
}

/// Rules of one file that share a name and labels (group labels merged with rule labels,
/// the rule's winning), found across all groups as promtool's `duplicate-rules` lint does.
/// Each entry is `(name, sorted labels)`, sorted, each duplicated identity once.
pub fn duplicate_rules(file: &RuleFile) -> Vec<(String, Vec<(String, String)>)> {
    let mut all: Vec<(String, Vec<(String, String)>)> = Vec::new();
    for g in &file.groups {
        for r in &g.rules {
            let mut m: BTreeMap<&str, &str> = BTreeMap::new();
            for (k, v) in g.labels.iter().chain(r.labels.iter()) {
                m.insert(k, v);
            }
            let labels = m.into_iter().map(|(k, v)| (k.to_owned(), v.to_owned())).collect();
            all.push((r.name.clone(), labels));
        }
    }
    all.sort();
    let mut dups: Vec<(String, Vec<(String, String)>)> = Vec::new();
    for w in all.windows(2) {
        if w[0] == w[1] && dups.last() != Some(&w[1]) {
            dups.push(w[1].clone());
        }
    }
    dups
}

/// Lint warnings for `check rules`: one line per duplicated rule identity, e.g.
/// `duplicate rule: metric "job:up" with labels {severity="page"} (might cause inconsistency while recording expressions)`.
/// Duplicates are a warning, not an error: Prometheus loads such files.
pub fn lint_duplicates(file: &RuleFile) -> Vec<String> {
    duplicate_rules(file)
        .into_iter()
        .map(|(name, labels)| {
            let ls: Vec<String> = labels.iter().map(|(k, v)| format!("{k}={v:?}")).collect();
            format!(
                "{}: duplicate rule: metric {name:?} with labels {{{}}} (might cause inconsistency while recording expressions)",
                file.path.display(),
                ls.join(", ")
            )
        })
        .collect()
}

/// Parses a Prometheus duration into milliseconds: units `y` (365d), `w`, `d`, `h`, `m`,
/// `s`, `ms`, each at most once and in that order (`1h30m`, `5m`, `0s`, `250ms`), or `0`.
/// Negative, fractional and unit-less values other than `0` are errors, as in Prometheus.
pub fn parse_duration(s: &str) -> Result<i64, String> {
    const UNITS: [(&str, i64); 7] = [
        ("y", 365 * 24 * 3_600_000),
        ("w", 7 * 24 * 3_600_000),
        ("d", 24 * 3_600_000),
        ("h", 3_600_000),
        ("m", 60_000),
        ("s", 1_000),
        ("ms", 1),
    ];
    if s.is_empty() {
        return Err("empty duration string".to_owned());
    }
    if s == "0" {
        return Ok(0);
    }
    let invalid = || format!("not a valid duration string: {s:?}");
    let bytes = s.as_bytes();
    let mut pos = 0;
    let mut next_unit = 0; // index into UNITS: units must come in order, each once
    let mut total: i64 = 0;
    while pos < bytes.len() {
        let start = pos;
        while pos < bytes.len() && bytes[pos].is_ascii_digit() {
            pos += 1;
        }
        if pos == start {
            return Err(invalid());
        }
        let digits = &s[start..pos];
        let ustart = pos;
        while pos < bytes.len() && bytes[pos].is_ascii_alphabetic() {
            pos += 1;
        }
        let unit = &s[ustart..pos];
        let idx = UNITS.iter().position(|(u, _)| *u == unit).ok_or_else(invalid)?;
        if idx < next_unit {
            return Err(invalid());
        }
        next_unit = idx + 1;
        let n: i64 = digits.parse().map_err(|_| "duration out of range".to_owned())?;
        total = n
            .checked_mul(UNITS[idx].1)
            .and_then(|v| total.checked_add(v))
            .ok_or_else(|| "duration out of range".to_owned())?;
    }
    Ok(total)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<RuleFile, Vec<RuleFileError>> {
        parse_str(Path::new("t.yml"), text)
    }

    fn errs(text: &str) -> Vec<String> {
        match parse(text) {
            Ok(_) => panic!("expected errors for:\n{text}"),
            Err(e) => e.iter().map(ToString::to_string).collect(),
        }
    }

    fn one_err(text: &str, want: &str) {
        let e = errs(text);
        assert!(e.iter().any(|m| m.contains(want)), "want {want:?} in {e:#?}");
    }

    #[test]
    fn zero_interval_means_the_global_one() {
        let f = parse("groups:\n- name: g\n  interval: 0s\n  rules:\n  - record: r\n    expr: up\n").unwrap();
        assert_eq!(f.groups[0].interval_ms, None);
        let f = parse("groups:\n- name: g\n  interval: 30s\n  rules:\n  - record: r\n    expr: up\n").unwrap();
        assert_eq!(f.groups[0].interval_ms, Some(30_000));
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("0"), Ok(0));
        assert_eq!(parse_duration("0s"), Ok(0));
        assert_eq!(parse_duration("5m"), Ok(300_000));
        assert_eq!(parse_duration("1h30m"), Ok(5_400_000));
        assert_eq!(parse_duration("1d"), Ok(86_400_000));
        assert_eq!(parse_duration("1w"), Ok(604_800_000));
        assert_eq!(parse_duration("1y"), Ok(31_536_000_000));
        assert_eq!(parse_duration("250ms"), Ok(250));
        assert_eq!(parse_duration("1m30s500ms"), Ok(90_500));
        for bad in ["", "5", "1.5h", "-1m", "1m1h", "1h1h", "5x", "m", "1 m", "99999999999999999999y", "9999999999y"] {
            assert!(parse_duration(bad).is_err(), "{bad:?} should be rejected");
        }
    }

    #[test]
    fn full_file_is_read_in_order() {
        let f = parse(
            "groups:\n- name: g\n  interval: 30s\n  query_offset: 1m\n  limit: 10\n  labels:\n    team: a\n  rules:\n  - alert: A\n    expr: up == 0\n    for: 5m\n    keep_firing_for: 1m\n    labels:\n      z: '1'\n      a: '2'\n    annotations:\n      summary: '{{ $labels.instance }} down'\n  - record: job:up:sum\n    expr: sum by (job) (up)\n",
        )
        .unwrap();
        assert_eq!(f.groups.len(), 1);
        let g = &f.groups[0];
        assert_eq!(
            (g.name.as_str(), g.interval_ms, g.query_offset_ms, g.limit, g.line),
            ("g", Some(30_000), Some(60_000), 10, 2)
        );
        assert_eq!(g.labels, vec![("team".to_owned(), "a".to_owned())]);
        assert_eq!(g.rules.len(), 2);
        let a = &g.rules[0];
        assert_eq!(
            (a.kind, a.name.as_str(), a.for_ms, a.keep_firing_for_ms, a.line),
            (RuleKind::Alert, "A", 300_000, 60_000, 9)
        );
        assert_eq!(a.labels, vec![("z".to_owned(), "1".to_owned()), ("a".to_owned(), "2".to_owned())]);
        assert_eq!(a.annotations[0].0, "summary");
        let r = &g.rules[1];
        assert_eq!(
            (r.kind, r.name.as_str(), r.line, r.expr_text.as_str()),
            (RuleKind::Record, "job:up:sum", 18, "sum by (job) (up)")
        );
    }

    #[test]
    fn only_the_first_document_is_read() {
        let f = parse("# c\n---\ngroups:\n- name: a\n---\ngroups: [{name: b}, {name: b}]\n").unwrap();
        assert_eq!(f.groups.len(), 1);
        assert_eq!(f.groups[0].name, "a");
        assert_eq!(parse("groups:\n- name: a\n...\nnot: yaml: [\n").unwrap().groups.len(), 1);
        // A `---` inside a scalar is not a marker.
        let f = parse("groups:\n- name: a\n  rules:\n  - alert: x\n    expr: up\n    annotations:\n      d: |\n        ---\n        text\n").unwrap();
        assert_eq!(f.groups[0].rules[0].annotations[0].1, "---\ntext\n");
    }

    #[test]
    fn empty_and_comment_files_have_no_groups() {
        assert!(parse("").unwrap().groups.is_empty());
        assert!(parse("# nothing\n").unwrap().groups.is_empty());
        assert!(parse("groups: []\n").unwrap().groups.is_empty());
        assert!(parse("groups:\n").unwrap().groups.is_empty());
    }

    #[test]
    fn unknown_fields_are_rejected_with_line() {
        let e = errs("groups:\n- name: g\n  rules:\n  - alert: A\n    expr: up\n    annotation:\n      x: y\n");
        assert_eq!(e.len(), 1);
        assert!(e[0].starts_with("t.yml:6:5: "), "{}", e[0]);
        assert!(e[0].contains("annotation"), "{}", e[0]);
        one_err("groups:\n- name: g\n  namespace: x\n", "t.yml:3:");
        one_err("foo: 1\n", "t.yml:1:");
        // Every unknown field is reported, at every level, as Go's strict decoder does.
        let e = errs(
            "extra: 1\ngroups:\n- name: g\n  owner: x\n  rules:\n  - record: a\n    expr: '1'\n    annotation: y\n  - alert: b\n    expr: '1'\n    label: z\n",
        );
        assert_eq!(
            e,
            vec![
                "t.yml:1:1: yaml: unknown field `extra` in rule file, expected one of groups",
                "t.yml:4:3: yaml: unknown field `owner` in rule group, expected one of name, interval, query_offset, limit, labels, rules",
                "t.yml:8:5: yaml: unknown field `annotation` in rule, expected one of record, alert, expr, for, keep_firing_for, labels, annotations",
                "t.yml:11:5: yaml: unknown field `label` in rule, expected one of record, alert, expr, for, keep_firing_for, labels, annotations",
            ]
        );
        // Keys merged in with `<<` are checked too.
        one_err("base: &b {record: a, expr: '1', bogus: 1}\n", "unknown field `base`");
        one_err(
            "groups:\n- name: g\n  rules:\n  - <<: {record: a, expr: '1', bogus: 1}\n",
            "unknown field `bogus` in rule",
        );
    }

    #[test]
    fn unknown_fields_can_be_ignored() {
        let opts = ParseOptions { ignore_unknown_fields: true, ..Default::default() };
        let f = parse_str_with(
            Path::new("t.yml"),
            "groups:\n- name: g\n  namespace: x\n  rules:\n  - record: a\n    expr: '1'\n",
            &opts,
        )
        .unwrap();
        assert_eq!(f.groups[0].rules.len(), 1);
    }

    #[test]
    fn yaml_syntax_error_names_line_and_column() {
        let e = errs("groups:\n  - name: a\n    rules:\n    - alert: x\n      expr: up\n     bad: [\n");
        assert!(e[0].starts_with("t.yml:6:"), "{}", e[0]);
        let e = errs("groups:\n- name: a\n  rules:\n  - alert: x\n    alert: y\n    expr: '1'\n");
        assert!(e[0].starts_with("t.yml:5:") && e[0].contains("duplicate"), "{}", e[0]);
    }

    #[test]
    fn group_checks() {
        one_err("groups:\n- name: g\n- name: g\n", "t.yml:3:9: groupname: \"g\" is repeated in the same file");
        one_err("groups:\n- rules: []\n", "group name must not be empty");
        one_err("groups:\n- name: g\n  interval: 5\n", "invalid interval");
        one_err("groups:\n- name: g\n  labels:\n    __name__: x\n", "invalid label name: __name__");
    }

    #[test]
    fn rule_checks() {
        let g = |body: &str| format!("groups:\n- name: g\n  rules:\n  - {body}\n");
        one_err(&g("expr: '1'"), "t.yml:4:5: group \"g\", rule 1 (\"\"): one of 'record' or 'alert' must be set");
        one_err(
            &g("record: a\n    alert: b\n    expr: '1'"),
            "rule 1 (\"b\"): only one of 'record' and 'alert' must be set",
        );
        one_err(&g("record: a"), "t.yml:4:5: group \"g\", rule 1 (\"a\"): field 'expr' must be set in rule");
        one_err(
            &g("record: a\n    expr: rate(x)"),
            "t.yml:5:11: group \"g\", rule 1 (\"a\"): could not parse expression",
        );
        one_err(&g("record: a\n    expr: '1'\n    for: 1m"), "invalid field 'for' in recording rule");
        one_err(
            &g("record: a\n    expr: '1'\n    keep_firing_for: 1m"),
            "invalid field 'keep_firing_for' in recording rule",
        );
        one_err(
            &g("record: a\n    expr: '1'\n    annotations:\n      x: y"),
            "invalid field 'annotations' in recording rule",
        );
        one_err(&g("record: 'a{b=\"c\"}'\n    expr: '1'"), "braces present in the recording rule name");
        one_err(&g("record: a\n    expr: '1'\n    labels:\n      __name__: x"), "invalid label name: __name__");
        one_err(&g("alert: a\n    expr: '1'\n    for: 5"), "invalid 'for': not a valid duration string");
        one_err(&g("alert: a\n    expr: '1'\n    annotations:\n      s: '{{ $label.x }}'"), "annotation \"s\": ");
        one_err(&g("alert: a\n    expr: '1'\n    labels:\n      s: '{{ $labels.x * 100 }}'"), "label \"s\": ");
        // `for: 0s` on a recording rule is zero, so allowed.
        assert!(parse(&g("record: a\n    expr: '1'\n    for: 0s")).is_ok());
        // Templates of recording rules are not checked (Prometheus checks alerting rules only).
        assert!(parse(&g("record: a\n    expr: '1'\n    labels:\n      s: '{{ $nope }}'")).is_ok());
    }

    #[test]
    fn scalar_values_read_as_strings() {
        // Go's YAML decoder turns any scalar into a string field; null becomes "".
        let f = parse(
            "groups:\n- name: 1\n  limit: -5\n  rules:\n  - record: r\n    expr: 42\n    labels:\n      a: 1\n      b: true\n      c:\n      d: 1.50\n",
        )
        .unwrap();
        let g = &f.groups[0];
        assert_eq!((g.name.as_str(), g.limit), ("1", 0));
        let r = &g.rules[0];
        assert_eq!(r.expr_text, "42");
        let want: Vec<(String, String)> = [("a", "1"), ("b", "true"), ("c", ""), ("d", "1.50")]
            .iter()
            .map(|(k, v)| ((*k).into(), (*v).into()))
            .collect();
        assert_eq!(r.labels, want);
        one_err("groups:\n- name: g\n  rules:\n  - record: r\n    expr: x\n    labels:\n      a: [1]\n", "t.yml:7:");
        one_err("groups:\n- name: g\n  limit: many\n", "t.yml:3:");
        one_err("groups: 5\n", "t.yml:1:");
    }

    #[test]
    fn several_errors_are_all_reported() {
        let e = errs("groups:\n- name: g\n  rules:\n  - expr: '1'\n  - record: b\n- name: g\n");
        assert_eq!(e.len(), 3, "{e:#?}");
    }

    #[test]
    fn name_validation_schemes() {
        let text = "groups:\n- name: g\n  rules:\n  - alert: a\n    expr: '1'\n    labels:\n      ins-tance: x\n";
        assert!(parse(text).is_ok());
        let legacy = ParseOptions { name_validation: NameValidation::Legacy, ..Default::default() };
        let e = parse_str_with(Path::new("t.yml"), text, &legacy).unwrap_err();
        assert!(e[0].to_string().contains("invalid label name: ins-tance"), "{}", e[0]);
        assert!(NameValidation::Legacy.is_valid_metric_name("job:up:sum"));
        assert!(!NameValidation::Legacy.is_valid_label_name("job:up"));
        assert!(!NameValidation::Legacy.is_valid_label_name("1a"));
        assert!(!NameValidation::Utf8.is_valid_label_name(""));
    }

    #[test]
    fn hostile_input_gives_errors() {
        let deep = "[".repeat(100_000);
        assert!(parse(&deep).is_err());
        // Deep nesting fails on the depth budget, within a 1 MiB thread stack.
        let deep_map = "a:\n".to_owned() + &(1..2000).map(|i| format!("{}b:\n", " ".repeat(i))).collect::<String>();
        let flow = format!("groups:\n- name: g\n  x: {}1{}\n", "{a: ".repeat(62), "}".repeat(62));
        for text in [deep_map, flow] {
            let e =
                std::thread::Builder::new().stack_size(1024 * 1024).spawn(move || errs(&text)).unwrap().join().unwrap();
            assert!(e[0].contains("nesting deeper than 24 levels"), "{}", e[0]);
        }
        let bomb = "a: &a [x,x,x,x,x,x,x,x,x,x]\nb: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a,*a]\nc: &c [*b,*b,*b,*b,*b,*b,*b,*b,*b,*b]\nd: &d [*c,*c,*c,*c,*c,*c,*c,*c,*c,*c]\ne: &e [*d,*d,*d,*d,*d,*d,*d,*d,*d,*d]\nf: &f [*e,*e,*e,*e,*e,*e,*e,*e,*e,*e]\ng: [*f,*f,*f,*f,*f,*f,*f,*f,*f,*f]\n";
        assert!(parse(bomb).is_err());
        assert!(parse("\u{0}\u{1}\u{7f}garbage: [").is_err());
        let huge = "#".repeat(MAX_FILE_BYTES + 1);
        assert!(errs(&huge)[0].contains("larger than"));
    }

    #[test]
    fn random_input_never_panics() {
        let alphabet: Vec<char> =
            "groups:- name rules record alert expr for 5m labels annotations {{ $x }} &a *a <<: [] {} \"'\n  #|>"
                .chars()
                .collect();
        let mut state: u64 = 0x2545_F491_4F6C_DD1D;
        for _ in 0..5_000 {
            state = state.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
            let len = (state >> 56) as usize;
            let mut t = String::from("groups:\n- name: g\n  rules:\n  - ");
            for _ in 0..len {
                state = state.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
                t.push(alphabet[(state >> 33) as usize % alphabet.len()]);
            }
            let _ = parse(&t);
        }
    }

    #[test]
    fn duplicates_lint() {
        let f = parse("groups:\n- name: a\n  rules:\n  - record: x\n    expr: '1'\n  - record: x\n    expr: '2'\n  - record: y\n    expr: '1'\n- name: b\n  rules:\n  - record: x\n    expr: '1'\n  - record: y\n    expr: '1'\n    labels:\n      l: v\n").unwrap();
        assert_eq!(duplicate_rules(&f), vec![("x".to_owned(), vec![])]);
        let lint = lint_duplicates(&f);
        assert_eq!(lint.len(), 1);
        assert!(lint[0].contains("\"x\""), "{}", lint[0]);
    }
}
