//! The PHI redactor and the type boundary behind it.
//!
//! Every batch passes [`Redactor::apply`] once, at ingest, and comes out as a
//! [`Redacted<Batch>`]. `Redacted<T>` can only be built in this module, and every buffer
//! and sink takes `Redacted<_>`, so the compiler refuses code that would store or send a
//! batch the redactor has not seen.
//!
//! Invariant: no value the redactor matched is ever logged, counted by value or put into
//! an error; counters carry the detector and action only.
//!
//! What is scanned: log bodies (text, and structured bodies at any depth) and attributes,
//! log event names, span names, attributes, events (name and attributes), links'
//! attributes and status messages, resource and scope attributes, metric label values.
//! Key rules ([`keys`]) redact a field whole because of its key, at any depth. Text is
//! scanned by [`scan`]: one byte-class walk that looks context words up in a small table
//! as it meets them and tries small shape validators ([`detect`]) at token starts, so
//! clean text costs one pass and no allocation ([`Redactor::redact_str`] returns
//! `Cow::Borrowed`).
//!
//! Actions ([`Action`]): `mask` → `[REDACTED:SSN]`; `hash` → `[SSN:3f9a12c4e7b0]`
//! (HMAC-SHA256, see [`action`]); `drop_field` removes the attribute (a span name, status
//! message or text line that cannot be removed is masked or emptied); `drop_record` removes
//! the log record, span or metric point. ZIP codes keep their first three digits (Safe
//! Harbor): `[REDACTED:ZIP:021]`, or `000` for a restricted prefix.

pub mod action;
pub mod config;
pub mod detect;
pub mod detector;
mod json;
pub mod keys;
pub mod names;
pub mod scan;
mod swar;

pub use action::HashKey;
pub use config::{Config, DetectorConfig, Detectors, KeyRules};
pub use detector::{Action, Detector};
pub use scan::Finding;

use crate::ack::AckToken;
use crate::signal::{AnyValue, Batch, KeyValue, LogRecord, MetricPoint, Resource, Scope, Span};
use action::{Fate, Hasher};
use scan::{Engine, EngineSpec, KeyCtx};
use std::borrow::Cow;
use std::collections::HashMap;
use std::fmt::Write as _;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

/// A value that has been through [`Redactor::apply`]. Only this module can build one.
#[derive(Debug)]
pub struct Redacted<T>(T);

impl<T> Redacted<T> {
    /// The redacted value.
    pub fn get(&self) -> &T {
        &self.0
    }
}

impl<T> AsRef<T> for Redacted<T> {
    fn as_ref(&self) -> &T {
        &self.0
    }
}

impl<T: Clone> Clone for Redacted<T> {
    fn clone(&self) -> Redacted<T> {
        Redacted(self.0.clone())
    }
}

impl<T> Redacted<Vec<T>> {
    /// The items one by one, each still marked redacted.
    pub fn into_items(self) -> impl Iterator<Item = Redacted<T>> {
        self.0.into_iter().map(Redacted)
    }
}

/// A redacted batch taken apart: each part is still `Redacted`.
#[derive(Debug)]
pub struct RedactedParts {
    /// Metric points.
    pub metrics: Redacted<Vec<MetricPoint>>,
    /// Log records.
    pub logs: Redacted<Vec<LogRecord>>,
    /// Spans.
    pub spans: Redacted<Vec<Span>>,
    /// The batch's completion token, untouched by redaction.
    pub ack: Option<AckToken>,
}

impl Redacted<Batch> {
    /// Takes the completion token out (the data stays redacted).
    pub fn take_ack(&mut self) -> Option<AckToken> {
        self.0.ack.take()
    }

    /// Splits into redacted parts and the token.
    pub fn into_parts(self) -> RedactedParts {
        let Batch { metrics, logs, spans, ack } = self.0;
        RedactedParts { metrics: Redacted(metrics), logs: Redacted(logs), spans: Redacted(spans), ack }
    }

    /// A copy for one more consumer (fan-out): the items cloned and a clone of the token,
    /// which that consumer must resolve.
    pub fn share(&self) -> Redacted<Batch> {
        let b = &self.0;
        Redacted(Batch { metrics: b.metrics.clone(), logs: b.logs.clone(), spans: b.spans.clone(), ack: b.ack.clone() })
    }

    /// A copy holding only the signals in `signals`, with a clone of the token, or `None`
    /// when the batch holds none of them (a sink that takes only logs is never handed a
    /// share, and so never holds up the acknowledgement, of a metrics-only batch).
    pub fn select(&self, signals: crate::sinks::SignalSet) -> Option<Redacted<Batch>> {
        let b = &self.0;
        let metrics = if signals.metrics { b.metrics.clone() } else { Vec::new() };
        let logs = if signals.logs { b.logs.clone() } else { Vec::new() };
        let spans = if signals.traces { b.spans.clone() } else { Vec::new() };
        if metrics.is_empty() && logs.is_empty() && spans.is_empty() {
            return None;
        }
        Some(Redacted(Batch { metrics, logs, spans, ack: b.ack.clone() }))
    }

    /// Replaces the completion token (a buffer acknowledges its input itself and attaches
    /// its own token for the read side).
    pub fn set_ack(&mut self, ack: Option<AckToken>) {
        self.0.ack = ack;
    }

    /// Mutable access to the items for a sink that splits or trims a batch it owns
    /// (removing or truncating items keeps them redacted). Not for adding data.
    pub fn items_mut(&mut self) -> (&mut Vec<MetricPoint>, &mut Vec<LogRecord>, &mut Vec<Span>) {
        (&mut self.0.metrics, &mut self.0.logs, &mut self.0.spans)
    }
}

impl<T> Redacted<T> {
    /// Re-marks a value that was `Redacted` when it was stored and is read back unchanged
    /// from Warden's own storage (a disk buffer segment written only from `Redacted`
    /// batches). Crate-private: nothing outside the collector can mint a `Redacted`.
    pub(crate) fn from_own_storage(value: T) -> Redacted<T> {
        Redacted(value)
    }

    /// Takes the value out. The caller leaves the typed PHI boundary: use only where
    /// the value goes straight to an encoder of a sink (or the rules store).
    pub fn into_inner(self) -> T {
        self.0
    }
}

/// Why a [`Redactor`] could not be built. No message carries key material.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    /// The config failed validation; every problem with its field path.
    #[error("invalid redaction config: {}", .0.join("; "))]
    Invalid(Vec<String>),
    /// The key file could not be read.
    #[error("hash_key_file {path}: cannot read: {source}")]
    KeyFile {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The key variable is not set.
    #[error("hash_key_env {var}: environment variable is not set")]
    KeyEnvMissing {
        /// The variable name.
        var: String,
    },
    /// The key is too short.
    #[error("{from}: hash key must be at least {} bytes", HashKey::MIN_LEN)]
    KeyTooShort {
        /// `hash_key_file <path>` or `hash_key_env <var>`.
        from: String,
    },
    /// The scanner could not be compiled (an extra pattern too large, ...).
    #[error("redaction engine: {0}")]
    Engine(String),
}

/// `warden_redactions_total{detector,action}`.
#[derive(Debug, Default)]
pub struct RedactionCounters([[AtomicU64; Action::COUNT]; Detector::COUNT]);

impl RedactionCounters {
    /// Redactions so far by detector `d` with action `a`.
    pub fn get(&self, d: Detector, a: Action) -> u64 {
        self.0[d.index()][a.index()].load(Ordering::Relaxed)
    }

    fn inc(&self, d: Detector, a: Action) {
        self.0[d.index()][a.index()].fetch_add(1, Ordering::Relaxed);
    }

    /// Prometheus text: `warden_redactions_total{detector="ssn",action="mask"} 3`, one
    /// sample per (detector, action) pair that is configured or non-zero.
    pub fn encode(&self, configured: &[(Detector, Action)]) -> String {
        let mut out = String::from(
            "# HELP warden_redactions_total Values redacted, by detector and action.\n# TYPE warden_redactions_total counter\n",
        );
        for d in Detector::ALL {
            for a in Action::ALL {
                let v = self.get(d, a);
                if v > 0 || configured.contains(&(d, a)) {
                    let _ = writeln!(
                        out,
                        "warden_redactions_total{{detector=\"{}\",action=\"{}\"}} {v}",
                        d.name(),
                        a.name()
                    );
                }
            }
        }
        out
    }
}

/// The result of redacting one line of `warden redact` input.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Line<'a> {
    /// A text line (borrowed when nothing matched).
    Text(Cow<'a, str>),
    /// A JSON-object line, redacted structurally, compact.
    Json(String),
    /// The line's record was dropped (`drop_record`, or `drop_field` on a text line).
    Dropped,
}

/// The compiled redactor. Cheap to share behind an `Arc`; `apply` takes `&self`.
#[derive(Debug)]
pub struct Redactor {
    engine: Engine,
    actions: [Action; Detector::COUNT],
    configured: Vec<(Detector, Action)>,
    hasher: Option<Hasher>,
    counters: Arc<RedactionCounters>,
    /// Unique per redactor built in this process (never 0): tags what per-thread memos
    /// (see `json`) remember for it.
    id: u64,
}

/// The next [`Redactor`] id.
static NEXT_ID: AtomicU64 = AtomicU64::new(1);

impl Redactor {
    /// Builds from a config, reading the hash key (if any) from the file or the process
    /// environment. Refuses `hash` without a usable key.
    pub fn new(config: &Config) -> Result<Redactor, BuildError> {
        Redactor::with_env(config, &|k| std::env::var_os(k).map(|v| v.into_encoded_bytes()))
    }

    /// As [`Redactor::new`] with the environment read through `env` (tests pass a map).
    pub fn with_env(config: &Config, env: &dyn Fn(&str) -> Option<Vec<u8>>) -> Result<Redactor, BuildError> {
        config.validate().map_err(BuildError::Invalid)?;
        let hasher = if config.uses_hash() {
            let key = if let Some(path) = &config.hash_key_file {
                let bytes = std::fs::read(path).map_err(|source| BuildError::KeyFile { path: path.clone(), source })?;
                HashKey::new(bytes)
                    .ok_or_else(|| BuildError::KeyTooShort { from: format!("hash_key_file {}", path.display()) })?
            } else if let Some(var) = &config.hash_key_env {
                let bytes = env(var).ok_or_else(|| BuildError::KeyEnvMissing { var: var.clone() })?;
                HashKey::new(bytes).ok_or_else(|| BuildError::KeyTooShort { from: format!("hash_key_env {var}") })?
            } else {
                return Err(BuildError::Invalid(vec!["hash_key_file: action `hash` needs a key".to_owned()]));
            };
            Some(Hasher::new(&key))
        } else {
            None
        };
        let mut on = [false; Detector::COUNT];
        let mut actions = [Action::Mask; Detector::COUNT];
        let mut configured = Vec::new();
        let mut extra_patterns = Vec::new();
        let mut extra_context = Vec::new();
        for d in Detector::ALL {
            let c = config.detectors.get(d);
            on[d.index()] = c.enabled;
            actions[d.index()] = config.action_of(d);
            if c.enabled {
                configured.push((d, config.action_of(d)));
                extra_patterns.extend(c.patterns.iter().map(|p| (d, p.clone())));
                extra_context.extend(c.context_words.iter().map(|w| (d, w.clone())));
            }
        }
        let allow = match &config.detectors.ip.allow_cidrs {
            Some(list) => list.iter().filter_map(|s| detect::Cidr::parse(s)).collect(),
            None => detect::DEFAULT_ALLOW_CIDRS.iter().filter_map(|s| detect::Cidr::parse(s)).collect(),
        };
        let restricted_zip = match &config.detectors.zip.restricted_prefixes {
            Some(list) => list.clone(),
            None => detect::DEFAULT_RESTRICTED_ZIP.iter().map(|s| (*s).to_owned()).collect(),
        };
        let engine = Engine::new(EngineSpec {
            on,
            dictionary: config.detectors.name.dictionary.unwrap_or(true),
            allow,
            restricted_zip,
            extra_patterns,
            extra_context,
            keys: keys::KeyMatcher::new(&config.keys, |d| on[d.index()]),
        })
        .map_err(BuildError::Engine)?;
        Ok(Redactor {
            engine,
            actions,
            configured,
            hasher,
            counters: Arc::new(RedactionCounters::default()),
            id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
        })
    }

    /// The default redactor: every detector on, `mask`, the built-in key rules.
    pub fn default_mask() -> Redactor {
        Redactor::new(&Config::default()).expect("the default redaction config is valid")
    }

    /// The redaction counters (shared; export them with [`Redactor::encode_metrics`]).
    pub fn counters(&self) -> Arc<RedactionCounters> {
        Arc::clone(&self.counters)
    }

    /// `warden_redactions_total` in Prometheus text format.
    pub fn encode_metrics(&self) -> String {
        self.counters.encode(&self.configured)
    }

    /// Redacts a whole batch; the ack token passes through untouched.
    pub fn apply(&self, mut batch: Batch) -> Redacted<Batch> {
        let mut resources = ArcCache::default();
        let mut scopes = ArcCache::default();
        batch.logs.retain_mut(|rec| self.log(rec, &mut resources, &mut scopes));
        batch.spans.retain_mut(|span| self.span(span, &mut resources, &mut scopes));
        batch.metrics.retain_mut(|p| self.metric(p));
        Redacted(batch)
    }

    /// Redacts free text (a log line, a label value). Matches are masked or hashed; with
    /// `drop_field`/`drop_record` they are masked too (see [`Redactor::redact_line`]).
    pub fn redact_str<'a>(&self, text: &'a str) -> Cow<'a, str> {
        self.text(text, &KeyCtx::default()).0
    }

    /// Redacts one JSON-object line structurally (keys kept, values scanned, key rules
    /// applied) into compact JSON. `None` if the line is not a JSON object; an empty
    /// string if the record was dropped.
    pub fn redact_json_line(&self, line: &str) -> Option<String> {
        let mut out = String::with_capacity(line.len() + 16);
        match json::rewrite(self, line, &mut out) {
            json::Outcome::NotObject => None,
            json::Outcome::Dropped => Some(String::new()),
            json::Outcome::Kept => Some(out),
        }
    }

    /// Redacts one line as `warden redact` does: a JSON object structurally, anything
    /// else as text.
    pub fn redact_line<'a>(&self, line: &'a str) -> Line<'a> {
        if line.trim_start().starts_with('{') {
            let mut out = String::with_capacity(line.len() + 16);
            match json::rewrite(self, line, &mut out) {
                json::Outcome::Kept => return Line::Json(out),
                json::Outcome::Dropped => return Line::Dropped,
                json::Outcome::NotObject => {}
            }
        }
        match self.text(line, &KeyCtx::default()) {
            (_, Fate::DropField | Fate::DropRecord) => Line::Dropped,
            (t, Fate::Keep) => Line::Text(t),
        }
    }

    /// The PHI spans in `text` (byte ranges and detectors; never the values), after
    /// merging. For tests, tooling and explain output.
    pub fn findings(&self, text: &str) -> Vec<Finding> {
        let mut out = Vec::new();
        self.engine.scan(text, &KeyCtx::default(), true, &mut out);
        out
    }

    /// Scans and renders `text` under the contexts of its key.
    pub(crate) fn text<'a>(&self, text: &'a str, key: &KeyCtx) -> (Cow<'a, str>, Fate) {
        let mut found = Vec::new();
        self.engine.scan(text, key, true, &mut found);
        if found.is_empty() {
            return (Cow::Borrowed(text), Fate::Keep);
        }
        let mut out = String::with_capacity(text.len() + 16 * found.len());
        let mut fate = Fate::Keep;
        let mut last = 0;
        for f in &found {
            out.push_str(&text[last..f.start]);
            let action = self.actions[f.det.index()];
            self.counters.inc(f.det, action);
            fate = fate.max(Fate::of(action));
            self.render(f.det, action, &text[f.start..f.end], &mut out);
            last = f.end;
        }
        out.push_str(&text[last..]);
        (Cow::Owned(out), fate)
    }

    fn render(&self, det: Detector, action: Action, value: &str, out: &mut String) {
        match (action, &self.hasher) {
            (Action::Hash, Some(h)) => h.token(det, value, out),
            _ if det == Detector::Zip => {
                let digits = value.as_bytes();
                let prefix = digits.get(..3).filter(|p| p.iter().all(u8::is_ascii_digit));
                out.push_str("[REDACTED:ZIP");
                if let Some(p) = prefix {
                    out.push(':');
                    if self.engine.zip_restricted(p) {
                        out.push_str("000");
                    } else {
                        out.push_str(&value[..3]);
                    }
                }
                out.push(']');
            }
            _ => action::mask(det, out),
        }
    }

    /// This redactor's process-unique id.
    pub(crate) fn id(&self) -> u64 {
        self.id
    }

    /// The contexts a key gives its value.
    pub(crate) fn key_ctx(&self, key: &str) -> KeyCtx {
        self.engine.key_contexts(key)
    }

    /// The key rule matching `key`, if any.
    pub(crate) fn key_rule(&self, key: &str) -> Option<Detector> {
        self.engine.keys.lookup(key)
    }

    /// Applies key rule `det` to a value whose text form is `value`: the replacement
    /// token, or the field/record fate.
    pub(crate) fn key_rule_token(&self, det: Detector, value: &str) -> Result<String, Fate> {
        if scan::is_token(value.as_bytes()) {
            // Already redacted (a second pass, or an upstream Warden).
            return Ok(value.to_owned());
        }
        let action = self.actions[det.index()];
        self.counters.inc(det, action);
        match action {
            Action::DropField | Action::DropRecord => Err(Fate::of(action)),
            _ => {
                let mut s = String::with_capacity(24);
                if det == Detector::Zip && detect::zip_shape(value.as_bytes(), 0) != Some(value.len()) {
                    action::mask(det, &mut s);
                } else {
                    self.render(det, action, value, &mut s);
                }
                Ok(s)
            }
        }
    }

    /// Whether an integer under these contexts is worth scanning: with a key context
    /// (an age, an MRN) or long enough to be a card or phone number.
    pub(crate) fn int_worth_scanning(key: &KeyCtx, n: i64) -> bool {
        !key.is_empty() || n.unsigned_abs() >= 1_000_000_000
    }

    /// With a drop action, counts the key-rule match and returns the fate.
    pub(crate) fn key_rule_drop(&self, det: Detector) -> Option<Fate> {
        let action = self.actions[det.index()];
        let fate = Fate::of(action);
        (fate != Fate::Keep).then(|| {
            self.counters.inc(det, action);
            fate
        })
    }

    /// Replaces every scalar under a key-ruled value with the rule's token; maps and lists
    /// keep their keys and shape.
    fn forced(&self, det: Detector, v: &mut AnyValue) {
        match v {
            AnyValue::Empty => {}
            AnyValue::Array(items) => items.iter_mut().for_each(|it| self.forced(det, it)),
            AnyValue::KvList(kvs) => kvs.iter_mut().for_each(|kv| self.forced(det, &mut kv.value)),
            other => {
                let text = any_text(other);
                if let Ok(tok) = self.key_rule_token(det, &text) {
                    *other = AnyValue::Str(tok);
                }
            }
        }
    }

    fn value(&self, key: Option<&str>, v: &mut AnyValue) -> Fate {
        if let Some(k) = key
            && let Some(det) = self.key_rule(k)
        {
            if matches!(v, AnyValue::Empty) {
                return Fate::Keep;
            }
            if let Some(fate) = self.key_rule_drop(det) {
                return fate;
            }
            self.forced(det, v);
            return Fate::Keep;
        }
        let ctx = key.map(|k| self.key_ctx(k)).unwrap_or_default();
        self.value_in(&ctx, v)
    }

    fn value_in(&self, ctx: &KeyCtx, v: &mut AnyValue) -> Fate {
        match v {
            AnyValue::Str(s) => {
                let (t, fate) = self.text(s, ctx);
                if let Cow::Owned(o) = t {
                    *s = o;
                }
                fate
            }
            AnyValue::Int(n) if Redactor::int_worth_scanning(ctx, *n) => {
                let s = n.to_string();
                let (t, fate) = self.text(&s, ctx);
                if let Cow::Owned(o) = t {
                    *v = AnyValue::Str(o);
                }
                fate
            }
            AnyValue::Array(items) => {
                let mut rec = false;
                items.retain_mut(|it| match self.value_in(ctx, it) {
                    Fate::Keep => true,
                    Fate::DropField => false,
                    Fate::DropRecord => {
                        rec = true;
                        true
                    }
                });
                if rec { Fate::DropRecord } else { Fate::Keep }
            }
            AnyValue::KvList(kvs) => self.kvs(kvs),
            _ => Fate::Keep,
        }
    }

    /// Redacts an attribute list in place; `DropRecord` if the record must go.
    fn kvs(&self, kvs: &mut Vec<KeyValue>) -> Fate {
        let mut rec = false;
        kvs.retain_mut(|kv| match self.value(Some(&kv.key), &mut kv.value) {
            Fate::Keep => true,
            Fate::DropField => false,
            Fate::DropRecord => {
                rec = true;
                true
            }
        });
        if rec { Fate::DropRecord } else { Fate::Keep }
    }

    /// A string that can be masked but not removed (span name, status message).
    fn fixed_str(&self, s: &mut String) -> Fate {
        let (t, fate) = self.text(s, &KeyCtx::default());
        if let Cow::Owned(o) = t {
            *s = o;
        }
        if fate == Fate::DropRecord { Fate::DropRecord } else { Fate::Keep }
    }

    fn resource(&self, r: &mut Arc<Resource>, cache: &mut ArcCache<Resource>) -> bool {
        cache.get_or(r, |res| {
            let mut new = Arc::clone(res);
            let fate = self.kvs(&mut Arc::make_mut(&mut new).attributes);
            (fate != Fate::DropRecord).then(|| if new == *res { Arc::clone(res) } else { new })
        })
    }

    fn scope(&self, s: &mut Arc<Scope>, cache: &mut ArcCache<Scope>) -> bool {
        cache.get_or(s, |sc| {
            if sc.attributes.is_empty() {
                return Some(Arc::clone(sc));
            }
            let mut new = Arc::clone(sc);
            let fate = self.kvs(&mut Arc::make_mut(&mut new).attributes);
            (fate != Fate::DropRecord).then(|| if new == *sc { Arc::clone(sc) } else { new })
        })
    }

    fn log(&self, rec: &mut LogRecord, res: &mut ArcCache<Resource>, scopes: &mut ArcCache<Scope>) -> bool {
        if !self.resource(&mut rec.resource, res) || !self.scope(&mut rec.scope, scopes) {
            return false;
        }
        match self.value(None, &mut rec.body) {
            Fate::DropRecord => return false,
            Fate::DropField => rec.body = AnyValue::Empty,
            Fate::Keep => {}
        }
        if self.kvs(&mut rec.attributes) == Fate::DropRecord {
            return false;
        }
        if !rec.event_name.is_empty() && self.fixed_str(&mut rec.event_name) == Fate::DropRecord {
            return false;
        }
        true
    }

    fn span(&self, span: &mut Span, res: &mut ArcCache<Resource>, scopes: &mut ArcCache<Scope>) -> bool {
        if !self.resource(&mut span.resource, res) || !self.scope(&mut span.scope, scopes) {
            return false;
        }
        if self.fixed_str(&mut span.name) == Fate::DropRecord || self.kvs(&mut span.attributes) == Fate::DropRecord {
            return false;
        }
        for ev in &mut span.events {
            if self.fixed_str(&mut ev.name) == Fate::DropRecord || self.kvs(&mut ev.attributes) == Fate::DropRecord {
                return false;
            }
        }
        for link in &mut span.links {
            if self.kvs(&mut link.attributes) == Fate::DropRecord {
                return false;
            }
        }
        if !span.status.message.is_empty() {
            let (t, fate) = self.text(&span.status.message, &KeyCtx::default());
            match fate {
                Fate::DropRecord => return false,
                Fate::DropField => span.status.message.clear(),
                Fate::Keep => {
                    if let Cow::Owned(o) = t {
                        span.status.message = o;
                    }
                }
            }
        }
        true
    }

    fn metric(&self, p: &mut MetricPoint) -> bool {
        let mut rec = false;
        p.labels.retain_mut(|l| {
            if rec {
                return true;
            }
            let fate = if let Some(det) = self.key_rule(&l.name) {
                if l.value.is_empty() {
                    Fate::Keep
                } else {
                    match self.key_rule_token(det, &l.value) {
                        Ok(tok) => {
                            l.value = tok;
                            Fate::Keep
                        }
                        Err(f) => f,
                    }
                }
            } else {
                let ctx = self.key_ctx(&l.name);
                let (t, fate) = self.text(&l.value, &ctx);
                if let Cow::Owned(o) = t {
                    l.value = o;
                }
                fate
            };
            match fate {
                Fate::Keep => true,
                Fate::DropField => false,
                Fate::DropRecord => {
                    rec = true;
                    true
                }
            }
        });
        !rec
    }
}

/// The text form of a value for hashing under a key rule.
fn any_text(v: &AnyValue) -> Cow<'_, str> {
    match v {
        AnyValue::Str(s) => Cow::Borrowed(s),
        AnyValue::Int(n) => Cow::Owned(n.to_string()),
        AnyValue::Double(d) => Cow::Owned(d.to_string()),
        AnyValue::Bool(b) => Cow::Borrowed(if *b { "true" } else { "false" }),
        other => Cow::Owned(format!("{other:?}")),
    }
}

/// Per-batch cache of redacted shared resources/scopes, keyed by the original `Arc`'s
/// address (the original is held so the address stays unique). `None` = drop records.
struct ArcCache<T>(HashMap<usize, (Arc<T>, Option<Arc<T>>)>);

impl<T> Default for ArcCache<T> {
    fn default() -> Self {
        ArcCache(HashMap::new())
    }
}

impl<T> ArcCache<T> {
    /// Replaces `slot` with its cached redaction (computing it once); false = drop.
    fn get_or(&mut self, slot: &mut Arc<T>, f: impl FnOnce(&Arc<T>) -> Option<Arc<T>>) -> bool {
        let addr = Arc::as_ptr(slot) as usize;
        let entry = self.0.entry(addr).or_insert_with(|| (Arc::clone(slot), f(slot)));
        match &entry.1 {
            Some(r) => {
                if !Arc::ptr_eq(r, slot) {
                    *slot = Arc::clone(r);
                }
                true
            }
            None => false,
        }
    }
}

#[cfg(test)]
mod tests;
