//! The scrape source's configuration and its validation.

use serde::{Deserialize, Deserializer};
use std::collections::BTreeMap;
use std::time::Duration;

/// Default [`TargetConfig::interval`]: 15 s.
pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(15);
/// Default [`TargetConfig::timeout`] when none is set: 10 s, or the interval if shorter.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);
/// Default [`TargetConfig::body_size_limit`]: 32 MiB.
pub const DEFAULT_BODY_SIZE_LIMIT: u64 = 32 << 20;
/// The shortest interval accepted (anything shorter is a busy loop, not a scrape).
pub const MIN_INTERVAL: Duration = Duration::from_millis(10);

/// The scrape source: the targets it scrapes, each on its own schedule.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// The targets (at least one).
    pub targets: Vec<TargetConfig>,
}

/// One scrape target.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TargetConfig {
    /// The full URL to scrape, e.g. `http://127.0.0.1:8080/metrics` (plain HTTP: this
    /// build has no TLS). Its `host:port` becomes the `instance` label.
    pub url: String,
    /// The `job` label of every series from this target (required).
    pub job: String,
    /// How often to scrape (humantime, default `15s`, at least `10ms`).
    #[serde(default = "default_interval", deserialize_with = "crate::pipeline::duration::deserialize")]
    pub interval: Duration,
    /// How long one scrape may take, connect to last body byte (humantime). Default:
    /// `10s`, or the interval if that is shorter; if set, it must not exceed the interval.
    #[serde(default, deserialize_with = "deserialize_opt_duration")]
    pub timeout: Option<Duration>,
    /// On a clash between a scraped label and a target label (`job`, `instance`, the
    /// static `labels`): `false` (default) keeps the target's and renames the scraped one
    /// `exported_<name>`; `true` keeps the scraped one.
    #[serde(default)]
    pub honor_labels: bool,
    /// Keep timestamps the target exposes (default `true`); `false` stamps every sample
    /// with the scrape time.
    #[serde(default = "yes")]
    pub honor_timestamps: bool,
    /// Static labels added to every series of this target (may override `instance`;
    /// `job` is set with the `job` field).
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// The most samples one scrape may have; more fails the scrape (`up` 0). 0 = no limit.
    #[serde(default)]
    pub sample_limit: usize,
    /// The largest (uncompressed) body accepted, in bytes: an integer, or a string with a
    /// unit (`32MiB`; `KiB`/`MiB`/`GiB` are powers of 1024, `KB`/`MB`/`GB` of 1000).
    /// Default 32 MiB.
    #[serde(default = "default_body_size_limit", deserialize_with = "deserialize_byte_size")]
    pub body_size_limit: u64,
}

fn default_interval() -> Duration {
    DEFAULT_INTERVAL
}

fn default_body_size_limit() -> u64 {
    DEFAULT_BODY_SIZE_LIMIT
}

fn yes() -> bool {
    true
}

fn deserialize_opt_duration<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
    crate::pipeline::duration::deserialize(d).map(Some)
}

#[derive(Deserialize)]
#[serde(untagged)]
enum RawByteSize {
    Bytes(u64),
    Text(String),
}

fn deserialize_byte_size<'de, D: Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
    match RawByteSize::deserialize(d)? {
        RawByteSize::Bytes(n) => Ok(n),
        RawByteSize::Text(s) => parse_byte_size(&s).ok_or_else(|| {
            serde::de::Error::custom(format!(
                "invalid byte size {s:?} (use bytes, or a number with B, KB, KiB, MB, MiB, GB, GiB)"
            ))
        }),
    }
}

/// `"32MiB"` → 33554432; `None` for anything else than a number and a known unit.
pub fn parse_byte_size(s: &str) -> Option<u64> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let n: u64 = num.parse().ok()?;
    let mult: u64 = match unit.trim() {
        "" | "B" => 1,
        "KB" => 1_000,
        "MB" => 1_000_000,
        "GB" => 1_000_000_000,
        "KiB" => 1 << 10,
        "MiB" => 1 << 20,
        "GiB" => 1 << 30,
        _ => return None,
    };
    n.checked_mul(mult)
}

impl TargetConfig {
    /// A target with every default: scrape `url` as job `job`.
    pub fn new(url: impl Into<String>, job: impl Into<String>) -> TargetConfig {
        TargetConfig {
            url: url.into(),
            job: job.into(),
            interval: DEFAULT_INTERVAL,
            timeout: None,
            honor_labels: false,
            honor_timestamps: true,
            labels: BTreeMap::new(),
            sample_limit: 0,
            body_size_limit: DEFAULT_BODY_SIZE_LIMIT,
        }
    }

    /// The timeout in force: the configured one, else 10 s capped at the interval.
    pub fn effective_timeout(&self) -> Duration {
        self.timeout.unwrap_or(DEFAULT_TIMEOUT.min(self.interval))
    }

    /// Every problem with this target, each prefixed with `prefix` (its field path).
    fn validate_into(&self, prefix: &str, errors: &mut Vec<String>) {
        match reqwest::Url::parse(&self.url) {
            Err(e) => errors.push(format!("{prefix}.url: invalid URL: {e}")),
            Ok(url) => {
                if url.scheme() == "https" {
                    errors.push(format!("{prefix}.url: https is not supported (this build has no TLS); use http"));
                } else if url.scheme() != "http" {
                    errors.push(format!("{prefix}.url: scheme must be http"));
                }
                if url.host_str().is_none_or(str::is_empty) {
                    errors.push(format!("{prefix}.url: must name a host"));
                }
            }
        }
        if self.job.trim().is_empty() {
            errors.push(format!("{prefix}.job: must not be empty"));
        }
        if self.interval < MIN_INTERVAL {
            errors.push(format!("{prefix}.interval: must be at least {}", humantime::format_duration(MIN_INTERVAL)));
        }
        if let Some(timeout) = self.timeout {
            if timeout.is_zero() {
                errors.push(format!("{prefix}.timeout: must be greater than 0"));
            } else if timeout > self.interval {
                errors.push(format!(
                    "{prefix}.timeout: must not exceed the interval ({} > {})",
                    humantime::format_duration(timeout),
                    humantime::format_duration(self.interval)
                ));
            }
        }
        for name in self.labels.keys() {
            if !is_label_name(name) {
                errors.push(format!("{prefix}.labels.{name}: invalid label name (must match [a-zA-Z_][a-zA-Z0-9_]*)"));
            } else if name.starts_with("__") {
                errors.push(format!("{prefix}.labels.{name}: names starting with __ are reserved"));
            } else if name == "job" {
                errors.push(format!("{prefix}.labels.job: set the job with {prefix}.job"));
            }
        }
        if self.body_size_limit == 0 {
            errors.push(format!("{prefix}.body_size_limit: must be greater than 0"));
        }
    }
}

/// Whether `s` is a valid Prometheus label name.
pub(crate) fn is_label_name(s: &str) -> bool {
    let mut bytes = s.bytes();
    matches!(bytes.next(), Some(b) if b.is_ascii_alphabetic() || b == b'_')
        && bytes.all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

impl Config {
    /// Every configuration error, each naming its field path
    /// (`targets[2].timeout: must not exceed the interval (20s > 15s)`).
    pub fn validate(&self) -> Result<(), Vec<String>> {
        let mut errors = Vec::new();
        if self.targets.is_empty() {
            errors.push("targets: at least one target is required".to_owned());
        }
        for (i, t) in self.targets.iter().enumerate() {
            t.validate_into(&format!("targets[{i}]"), &mut errors);
            if let Some(first) =
                self.targets[..i].iter().position(|o| o.url == t.url && o.job == t.job && o.labels == t.labels)
            {
                errors.push(format!("targets[{i}]: same url, job and labels as targets[{first}]"));
            }
        }
        if errors.is_empty() { Ok(()) } else { Err(errors) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn from_json(v: serde_json::Value) -> Result<Config, String> {
        serde_json::from_value(v).map_err(|e| e.to_string())
    }

    #[test]
    fn defaults() {
        let c = from_json(serde_json::json!({"targets": [{"url": "http://127.0.0.1:9100/metrics", "job": "node"}]}))
            .unwrap();
        let t = &c.targets[0];
        assert_eq!(t.interval, Duration::from_secs(15));
        assert_eq!(t.effective_timeout(), Duration::from_secs(10));
        assert!(!t.honor_labels && t.honor_timestamps);
        assert_eq!((t.sample_limit, t.body_size_limit), (0, 32 << 20));
        assert_eq!(c, Config { targets: vec![TargetConfig::new("http://127.0.0.1:9100/metrics", "node")] });
        c.validate().unwrap();
        let short = TargetConfig { interval: Duration::from_secs(5), ..t.clone() };
        assert_eq!(short.effective_timeout(), Duration::from_secs(5), "default timeout is capped at the interval");
    }

    #[test]
    fn every_field_parses() {
        let c = from_json(serde_json::json!({"targets": [{
            "url": "http://h:1/m", "job": "j", "interval": "1m30s", "timeout": "250ms", "honor_labels": true,
            "honor_timestamps": false, "labels": {"env": "prod"}, "sample_limit": 5, "body_size_limit": "2MiB"
        }]}))
        .unwrap();
        let t = &c.targets[0];
        assert_eq!((t.interval, t.timeout), (Duration::from_secs(90), Some(Duration::from_millis(250))));
        assert!(t.honor_labels && !t.honor_timestamps);
        assert_eq!(t.labels.get("env").map(String::as_str), Some("prod"));
        assert_eq!((t.sample_limit, t.body_size_limit), (5, 2 << 20));
        assert!(
            from_json(serde_json::json!({"targets": [{"url": "http://h/", "job": "j", "intervl": "1s"}]}))
                .unwrap_err()
                .contains("unknown field `intervl`")
        );
        assert!(
            from_json(serde_json::json!({"targets": [{"url": "http://h/", "job": "j", "timeout": "soon"}]}))
                .unwrap_err()
                .contains("invalid duration")
        );
        assert!(
            from_json(
                serde_json::json!({"targets": [{"url": "http://h/", "job": "j", "body_size_limit": "3 parsecs"}]})
            )
            .unwrap_err()
            .contains("invalid byte size")
        );
        assert!(
            from_json(serde_json::json!({"targets": [{"url": "http://h/"}]}))
                .unwrap_err()
                .contains("missing field `job`")
        );
    }

    #[test]
    fn byte_sizes() {
        for (s, n) in
            [("10", Some(10)), ("10B", Some(10)), ("1KB", Some(1000)), ("1 KiB", Some(1024)), ("32MiB", Some(32 << 20))]
        {
            assert_eq!(parse_byte_size(s), n, "{s}");
        }
        for s in ["", "MiB", "1.5MiB", "1TiB", "-1", "99999999999999999999GiB"] {
            assert_eq!(parse_byte_size(s), None, "{s}");
        }
    }

    #[test]
    fn validation_reports_every_error_with_its_path() {
        let bad = TargetConfig {
            timeout: Some(Duration::from_secs(20)),
            labels: [("bad-name", "x"), ("__meta", "x"), ("job", "x"), ("instance", "ok")]
                .into_iter()
                .map(|(k, v)| (k.to_owned(), v.to_owned()))
                .collect(),
            body_size_limit: 0,
            ..TargetConfig::new("https://h/metrics", " ")
        };
        let c = Config {
            targets: vec![
                TargetConfig::new("http://h:1/m", "a"),
                bad,
                TargetConfig {
                    interval: Duration::from_millis(1),
                    timeout: Some(Duration::ZERO),
                    ..TargetConfig::new("not a url", "b")
                },
                TargetConfig::new("ftp://h/x", "c"),
                TargetConfig::new("http://h:1/m", "a"),
            ],
        };
        let errors = c.validate().unwrap_err();
        assert_eq!(
            errors,
            vec![
                "targets[1].url: https is not supported (this build has no TLS); use http",
                "targets[1].job: must not be empty",
                "targets[1].timeout: must not exceed the interval (20s > 15s)",
                "targets[1].labels.__meta: names starting with __ are reserved",
                "targets[1].labels.bad-name: invalid label name (must match [a-zA-Z_][a-zA-Z0-9_]*)",
                "targets[1].labels.job: set the job with targets[1].job",
                "targets[1].body_size_limit: must be greater than 0",
                "targets[2].url: invalid URL: relative URL without a base",
                "targets[2].interval: must be at least 10ms",
                "targets[2].timeout: must be greater than 0",
                "targets[3].url: scheme must be http",
                "targets[4]: same url, job and labels as targets[0]",
            ]
        );
        assert_eq!(
            Config { targets: vec![] }.validate().unwrap_err(),
            vec!["targets: at least one target is required"]
        );
    }
}
