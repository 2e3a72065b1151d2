//! The redaction config: per-detector switches, actions and extra patterns, the key rules,
//! and where the hash key comes from.
//!
//! ```yaml
//! action: mask                    # default for every detector: mask | hash | drop_field | drop_record
//! hash_key_env: WARDEN_REDACT_KEY # or hash_key_file: /etc/warden/redact.key (needed for `hash`)
//! detectors:
//!   ssn:   { action: hash }
//!   mrn:   { patterns: ['\bMRN-\d{8}\b'], context_words: [chart] }
//!   ip:    { allow_cidrs: [10.0.0.0/8, 100.64.0.0/10] }
//!   zip:   { restricted_prefixes: ['036', '059'] }
//!   name:  { dictionary: true }
//!   url:   { enabled: false }
//! keys:
//!   defaults: true                # the built-in key rules (patient_name, dob, ssn, ...)
//!   extra: { name: [guardian], mrn: [chart_no] }
//!   ignore: [name]                # default keys to switch off
//! ```
//!
//! Everything has a default (all detectors on, `mask`), so an empty document is valid.
//! [`Config::validate`] is pure and reports every problem with its field path; the hash
//! key is read when the [`super::Redactor`] is built.

use super::detector::{Action, Detector};
use super::keys::normalize_key;
use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::PathBuf;

/// The redaction section of the agent config.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Action for every detector that does not set its own (default `mask`).
    pub action: Action,
    /// File holding the HMAC key for `hash` (its bytes, one trailing newline trimmed).
    pub hash_key_file: Option<PathBuf>,
    /// Environment variable holding the HMAC key for `hash`.
    pub hash_key_env: Option<String>,
    /// Per-detector settings.
    pub detectors: Detectors,
    /// Key rules: fields redacted whole because of their key.
    pub keys: KeyRules,
}

/// Settings of every detector, by name. All detectors are on by default.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
#[allow(missing_docs)]
pub struct Detectors {
    pub ssn: DetectorConfig,
    pub phone: DetectorConfig,
    pub email: DetectorConfig,
    pub date: DetectorConfig,
    pub age: DetectorConfig,
    pub mrn: DetectorConfig,
    pub health_plan: DetectorConfig,
    pub account: DetectorConfig,
    pub license: DetectorConfig,
    pub card: DetectorConfig,
    pub ip: DetectorConfig,
    pub url: DetectorConfig,
    pub zip: DetectorConfig,
    pub address: DetectorConfig,
    pub name: DetectorConfig,
}

impl Detectors {
    /// The settings of detector `d`.
    pub fn get(&self, d: Detector) -> &DetectorConfig {
        match d {
            Detector::Ssn => &self.ssn,
            Detector::Phone => &self.phone,
            Detector::Email => &self.email,
            Detector::Date => &self.date,
            Detector::Age => &self.age,
            Detector::Mrn => &self.mrn,
            Detector::HealthPlan => &self.health_plan,
            Detector::Account => &self.account,
            Detector::License => &self.license,
            Detector::Card => &self.card,
            Detector::Ip => &self.ip,
            Detector::Url => &self.url,
            Detector::Zip => &self.zip,
            Detector::Address => &self.address,
            Detector::Name => &self.name,
        }
    }

    /// Mutable settings of detector `d`.
    pub fn get_mut(&mut self, d: Detector) -> &mut DetectorConfig {
        match d {
            Detector::Ssn => &mut self.ssn,
            Detector::Phone => &mut self.phone,
            Detector::Email => &mut self.email,
            Detector::Date => &mut self.date,
            Detector::Age => &mut self.age,
            Detector::Mrn => &mut self.mrn,
            Detector::HealthPlan => &mut self.health_plan,
            Detector::Account => &mut self.account,
            Detector::License => &mut self.license,
            Detector::Card => &mut self.card,
            Detector::Ip => &mut self.ip,
            Detector::Url => &mut self.url,
            Detector::Zip => &mut self.zip,
            Detector::Address => &mut self.address,
            Detector::Name => &mut self.name,
        }
    }
}

/// Settings of one detector. The detector-specific fields are accepted only on their
/// detector (`allow_cidrs` on `ip`, `restricted_prefixes` on `zip`, `dictionary` on
/// `name`, `context_words` on `mrn`, `health_plan`, `account`, `license`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DetectorConfig {
    /// Whether the detector runs (default true).
    pub enabled: bool,
    /// Action on a match; the top-level `action` if unset.
    pub action: Option<Action>,
    /// Extra regular expressions (Rust `regex` syntax) whose matches count as this
    /// detector's. Each adds work on every string scanned: keep them anchored on literals.
    pub patterns: Vec<String>,
    /// `ip` only: CIDRs never redacted (infrastructure). Replaces the default list
    /// (loopback, unspecified, RFC 1918, link-local, IPv6 ULA) when given.
    pub allow_cidrs: Option<Vec<String>>,
    /// `zip` only: three-digit prefixes that are replaced by `000` (Safe Harbor: areas
    /// of 20,000 people or fewer). Replaces the default list from HHS when given.
    pub restricted_prefixes: Option<Vec<String>>,
    /// `name` only: use the Census first-name and surname dictionaries (default true).
    pub dictionary: Option<bool>,
    /// `mrn`, `health_plan`, `account`, `license`: extra context words (case-insensitive)
    /// after which an identifier with at least four digits is redacted.
    pub context_words: Vec<String>,
}

impl Default for DetectorConfig {
    fn default() -> DetectorConfig {
        DetectorConfig {
            enabled: true,
            action: None,
            patterns: Vec::new(),
            allow_cidrs: None,
            restricted_prefixes: None,
            dictionary: None,
            context_words: Vec::new(),
        }
    }
}

/// Key rules: a field whose key matches (case- and separator-insensitive: `patientName`,
/// `patient-name` and `PATIENT_NAME` are the same key) is redacted whole, at any depth.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct KeyRules {
    /// Use the built-in rules (default true); see [`super::keys::DEFAULT_KEY_RULES`].
    pub defaults: bool,
    /// Extra keys, by the detector whose label and action they take.
    pub extra: BTreeMap<Detector, Vec<String>>,
    /// Keys to exempt (e.g. a default rule you do not want).
    pub ignore: Vec<String>,
}

impl Default for KeyRules {
    fn default() -> KeyRules {
        KeyRules { defaults: true, extra: BTreeMap::new(), ignore: Vec::new() }
    }
}

/// Detectors that take `context_words`.
const CONTEXT_DETECTORS: [Detector; 4] = [Detector::Mrn, Detector::HealthPlan, Detector::Account, Detector::License];

impl Config {
    /// The action of detector `d` (its own, else the default).
    pub fn action_of(&self, d: Detector) -> Action {
        self.detectors.get(d).action.unwrap_or(self.action)
    }

    /// Whether any enabled detector uses `hash`.
    pub fn uses_hash(&self) -> bool {
        Detector::ALL.iter().any(|&d| self.detectors.get(d).enabled && self.action_of(d) == Action::Hash)
    }

    /// Checks the config without I/O; every problem, each naming its field path
    /// (relative to the redaction section). Values from the config (patterns, CIDRs) may
    /// be quoted; no log data ever reaches this function.
    pub fn validate(&self) -> Result<(), Vec<String>> {
        let mut errs = Vec::new();
        if self.hash_key_file.is_some() && self.hash_key_env.is_some() {
            errs.push("hash_key_file, hash_key_env: set one, not both".to_owned());
        }
        if let Some(env) = &self.hash_key_env
            && (env.is_empty() || env.contains('='))
        {
            errs.push("hash_key_env: must be a non-empty environment variable name".to_owned());
        }
        if self.uses_hash() && self.hash_key_file.is_none() && self.hash_key_env.is_none() {
            errs.push("hash_key_file: action `hash` needs a key: set hash_key_file or hash_key_env".to_owned());
        }
        for d in Detector::ALL {
            let c = self.detectors.get(d);
            let at = format!("detectors.{}", d.name());
            for (i, p) in c.patterns.iter().enumerate() {
                if p.is_empty() {
                    errs.push(format!("{at}.patterns[{i}]: empty pattern"));
                } else if let Err(e) = regex::Regex::new(p) {
                    errs.push(format!("{at}.patterns[{i}]: invalid regex: {}", one_line(&e.to_string())));
                }
            }
            match (&c.allow_cidrs, d) {
                (Some(list), Detector::Ip) => {
                    for (i, s) in list.iter().enumerate() {
                        if super::detect::Cidr::parse(s).is_none() {
                            errs.push(format!("{at}.allow_cidrs[{i}]: invalid CIDR {s:?}"));
                        }
                    }
                }
                (Some(_), _) => errs.push(format!("{at}.allow_cidrs: only valid for the ip detector")),
                (None, _) => {}
            }
            match (&c.restricted_prefixes, d) {
                (Some(list), Detector::Zip) => {
                    for (i, s) in list.iter().enumerate() {
                        if s.len() != 3 || !s.bytes().all(|b| b.is_ascii_digit()) {
                            errs.push(format!("{at}.restricted_prefixes[{i}]: must be three digits, got {s:?}"));
                        }
                    }
                }
                (Some(_), _) => errs.push(format!("{at}.restricted_prefixes: only valid for the zip detector")),
                (None, _) => {}
            }
            if c.dictionary.is_some() && d != Detector::Name {
                errs.push(format!("{at}.dictionary: only valid for the name detector"));
            }
            if !c.context_words.is_empty() {
                if !CONTEXT_DETECTORS.contains(&d) {
                    errs.push(format!("{at}.context_words: only valid for mrn, health_plan, account, license"));
                }
                for (i, w) in c.context_words.iter().enumerate() {
                    let t = w.trim();
                    if t.len() < 2 || !t.is_ascii() || t.len() > 64 {
                        errs.push(format!("{at}.context_words[{i}]: must be 2 to 64 ASCII characters"));
                    }
                }
            }
        }
        for (d, keys) in &self.keys.extra {
            for (i, k) in keys.iter().enumerate() {
                if normalize_key(k).is_empty() {
                    errs.push(format!("keys.extra.{}[{i}]: key has no letters or digits", d.name()));
                }
            }
        }
        for (i, k) in self.keys.ignore.iter().enumerate() {
            if normalize_key(k).is_empty() {
                errs.push(format!("keys.ignore[{i}]: key has no letters or digits"));
            }
        }
        if errs.is_empty() { Ok(()) } else { Err(errs) }
    }
}

fn one_line(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(json: &str) -> Config {
        serde_json::from_str(json).unwrap()
    }

    #[test]
    fn empty_config_is_valid_and_all_on() {
        let c = parse("{}");
        c.validate().unwrap();
        assert!(Detector::ALL.iter().all(|&d| c.detectors.get(d).enabled && c.action_of(d) == Action::Mask));
        assert!(c.keys.defaults);
    }

    #[test]
    fn unknown_fields_and_detectors_are_rejected() {
        assert!(serde_json::from_str::<Config>(r#"{"detectors":{"sssn":{}}}"#).is_err());
        assert!(serde_json::from_str::<Config>(r#"{"detectors":{"ssn":{"enable":true}}}"#).is_err());
        assert!(serde_json::from_str::<Config>(r#"{"keys":{"extra":{"nope":["x"]}}}"#).is_err());
        assert!(serde_json::from_str::<Config>(r#"{"action":"scramble"}"#).is_err());
    }

    #[test]
    fn validate_reports_every_error_with_its_path() {
        let c = parse(
            r#"{"action":"hash","detectors":{
                "mrn":{"patterns":["(unclosed",""],"context_words":["x"]},
                "ip":{"allow_cidrs":["10.0.0.0/8","10.0.0.0/33","nope"]},
                "zip":{"restricted_prefixes":["03","abc","036"]},
                "ssn":{"allow_cidrs":[],"dictionary":true,"context_words":["ssn"]}},
               "keys":{"extra":{"name":["--"]},"ignore":[""]}}"#,
        );
        let errs = c.validate().unwrap_err();
        let want = [
            "hash_key_file: action `hash` needs a key",
            "detectors.mrn.patterns[0]: invalid regex",
            "detectors.mrn.patterns[1]: empty pattern",
            "detectors.mrn.context_words[0]",
            "detectors.ip.allow_cidrs[1]",
            "detectors.ip.allow_cidrs[2]",
            "detectors.zip.restricted_prefixes[0]",
            "detectors.zip.restricted_prefixes[1]",
            "detectors.ssn.allow_cidrs: only valid",
            "detectors.ssn.dictionary: only valid",
            "detectors.ssn.context_words: only valid",
            "keys.extra.name[0]",
            "keys.ignore[0]",
        ];
        for w in want {
            assert!(errs.iter().any(|e| e.starts_with(w)), "missing {w:?} in {errs:#?}");
        }
        assert_eq!(errs.len(), want.len(), "{errs:#?}");
    }

    #[test]
    fn hash_with_a_key_source_is_valid_and_both_sources_are_not() {
        let ok = parse(r#"{"detectors":{"ssn":{"action":"hash"}},"hash_key_env":"K"}"#);
        ok.validate().unwrap();
        let both = parse(r#"{"hash_key_env":"K","hash_key_file":"/k"}"#);
        assert!(both.validate().unwrap_err()[0].contains("not both"));
        // A disabled detector's hash action needs no key.
        let off = parse(r#"{"detectors":{"ssn":{"action":"hash","enabled":false}}}"#);
        off.validate().unwrap();
    }
}
