//! Log group and log stream names from templates such as `/warden/{service.name}` and
//! `{host.name}-{date}`.
//!
//! A template is literal text with `{placeholder}`s; `{{` and `}}` stand for literal
//! braces. Placeholders:
//!
//! - built-ins: `date` (the event's UTC day, `YYYY-MM-DD`) and `hostname` (the host the
//!   agent runs on, read once at start-up);
//! - a well-known OpenTelemetry resource attribute ([`KNOWN_RESOURCE_KEYS`]:
//!   `service.name`, `host.name`, `k8s.pod.name`, ...), taken from the record's resource;
//! - `resource.<key>` for any other resource attribute.
//!
//! Anything else is a configuration error naming the placeholder, so a typo
//! (`{servce.name}`) is caught at start-up instead of producing a group named
//! `unknown`. A resource attribute that is missing, empty or not a string renders as
//! `unknown`.
//!
//! Substituted values are sanitised to CloudWatch's rules: in a group name every
//! character outside `a-z A-Z 0-9 _ - / . #` becomes `_`; in a stream name `:`, `*` and
//! control characters become `_`. The rendered name is cut to 512 characters, and a
//! group name that would start with the reserved `aws/` gets a leading `_`. The literal
//! parts of a template are checked at validation instead (an invalid character there is
//! an error).

use crate::signal::Resource;
use std::fmt::Write as _;

/// The longest group or stream name CloudWatch accepts, in characters.
pub const MAX_NAME_CHARS: usize = 512;

/// Resource attribute keys usable as `{key}` without the `resource.` prefix: the
/// OpenTelemetry semantic-convention keys a log group or stream is usually named after.
pub const KNOWN_RESOURCE_KEYS: &[&str] = &[
    "service.name",
    "service.namespace",
    "service.instance.id",
    "service.version",
    "host.name",
    "host.id",
    "host.arch",
    "os.type",
    "deployment.environment",
    "deployment.environment.name",
    "cloud.provider",
    "cloud.platform",
    "cloud.region",
    "cloud.account.id",
    "cloud.availability_zone",
    "k8s.cluster.name",
    "k8s.namespace.name",
    "k8s.node.name",
    "k8s.pod.name",
    "k8s.pod.uid",
    "k8s.deployment.name",
    "k8s.statefulset.name",
    "k8s.daemonset.name",
    "k8s.job.name",
    "k8s.cronjob.name",
    "k8s.container.name",
    "container.name",
    "container.id",
    "process.executable.name",
];

/// What a template names; the two have different character rules.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NameKind {
    /// A log group name.
    Group,
    /// A log stream name.
    Stream,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Part {
    Literal(String),
    Resource(String),
    Date,
    Hostname,
}

/// A parsed group or stream name template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Template {
    parts: Vec<Part>,
    kind: NameKind,
}

/// Whether `c` may appear in a log group name.
fn group_char_ok(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '/' | '.' | '#')
}

/// Whether `c` may appear in a log stream name.
fn stream_char_ok(c: char) -> bool {
    !(c == ':' || c == '*' || c.is_control())
}

impl Template {
    /// Parses `text`; errors start with `field` and name the offending placeholder or
    /// character.
    pub fn parse(field: &str, text: &str, kind: NameKind) -> Result<Template, String> {
        if text.is_empty() {
            return Err(format!("{field}: must not be empty"));
        }
        let mut parts = Vec::new();
        let mut lit = String::new();
        let mut chars = text.chars().peekable();
        while let Some(c) = chars.next() {
            match c {
                '{' if chars.peek() == Some(&'{') => {
                    chars.next();
                    lit.push('{');
                }
                '}' if chars.peek() == Some(&'}') => {
                    chars.next();
                    lit.push('}');
                }
                '}' => return Err(format!("{field}: unmatched '}}' (write '}}}}' for a literal brace)")),
                '{' => {
                    let mut name = String::new();
                    let mut closed = false;
                    for c in chars.by_ref() {
                        if c == '}' {
                            closed = true;
                            break;
                        }
                        name.push(c);
                    }
                    if !closed {
                        return Err(format!("{field}: unclosed '{{' (write '{{{{' for a literal brace)"));
                    }
                    let part = match name.as_str() {
                        "date" => Part::Date,
                        "hostname" => Part::Hostname,
                        n if KNOWN_RESOURCE_KEYS.contains(&n) => Part::Resource(n.to_owned()),
                        n if n.strip_prefix("resource.").is_some_and(|k| !k.is_empty()) => {
                            Part::Resource(n["resource.".len()..].to_owned())
                        }
                        n => {
                            return Err(format!(
                                "{field}: unknown placeholder {{{n}}} (use date, hostname, a resource attribute such \
                                 as service.name or host.name, or resource.<key>)"
                            ));
                        }
                    };
                    if !lit.is_empty() {
                        parts.push(Part::Literal(std::mem::take(&mut lit)));
                    }
                    parts.push(part);
                }
                c => lit.push(c),
            }
        }
        if !lit.is_empty() {
            parts.push(Part::Literal(lit));
        }
        let literal: String =
            parts.iter().filter_map(|p| if let Part::Literal(l) = p { Some(l.as_str()) } else { None }).collect();
        let ok = match kind {
            NameKind::Group => group_char_ok,
            NameKind::Stream => stream_char_ok,
        };
        if let Some(bad) = literal.chars().find(|c| !ok(*c)) {
            let allowed = match kind {
                NameKind::Group => "a-z, A-Z, 0-9, '_', '-', '/', '.', '#'",
                NameKind::Stream => "anything but ':', '*' and control characters",
            };
            return Err(format!("{field}: character {bad:?} is not allowed ({allowed})"));
        }
        if literal.chars().count() > MAX_NAME_CHARS {
            return Err(format!("{field}: longer than {MAX_NAME_CHARS} characters"));
        }
        if kind == NameKind::Group
            && let Some(Part::Literal(first)) = parts.first()
            && first.starts_with("aws/")
        {
            return Err(format!("{field}: log group names must not start with \"aws/\""));
        }
        Ok(Template { parts, kind })
    }

    /// Whether the template uses `{date}` (names then depend on the event's day).
    pub fn uses_date(&self) -> bool {
        self.parts.contains(&Part::Date)
    }

    /// The name for a record of `resource` at `timestamp_ms`, sanitised (see the module
    /// docs). `hostname` is the value of `{hostname}`.
    pub fn render(&self, resource: &Resource, timestamp_ms: i64, hostname: &str) -> String {
        let mut out = String::new();
        for part in &self.parts {
            match part {
                Part::Literal(l) => out.push_str(l),
                Part::Date => {
                    let (y, m, d) = civil_from_days(timestamp_ms.div_euclid(86_400_000));
                    let _ = write!(out, "{y:04}-{m:02}-{d:02}");
                }
                Part::Hostname => self.push_value(&mut out, hostname),
                Part::Resource(key) => self.push_value(&mut out, resource.get_str(key).unwrap_or("")),
            }
        }
        if self.kind == NameKind::Group && out.starts_with("aws/") {
            out.insert(0, '_');
        }
        if let Some((cut, _)) = out.char_indices().nth(MAX_NAME_CHARS) {
            out.truncate(cut);
        }
        out
    }

    fn push_value(&self, out: &mut String, value: &str) {
        if value.is_empty() {
            out.push_str("unknown");
            return;
        }
        let ok = match self.kind {
            NameKind::Group => group_char_ok,
            NameKind::Stream => stream_char_ok,
        };
        out.extend(value.chars().map(|c| if ok(c) { c } else { '_' }));
    }
}

/// The proleptic Gregorian (year, month, day) of `days` since 1970-01-01 (Howard
/// Hinnant's `civil_from_days`).
pub(crate) fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::signal::KeyValue;

    fn res(kvs: &[(&str, &str)]) -> Resource {
        Resource { attributes: kvs.iter().map(|(k, v)| KeyValue::string(*k, *v)).collect(), schema_url: String::new() }
    }

    fn check(kind: NameKind, template: &str, resource: &[(&str, &str)], expect: &str) {
        let t = Template::parse("f", template, kind).unwrap();
        // 2024-05-01T10:00:00Z
        assert_eq!(t.render(&res(resource), 1_714_557_600_000, "node-7"), expect, "{template}");
    }

    #[test]
    fn renders_placeholders_and_sanitises_values() {
        use NameKind::*;
        check(Group, "/warden/{service.name}", &[("service.name", "platform-api")], "/warden/platform-api");
        check(Stream, "{host.name}-{date}", &[("host.name", "ip-10-0-0-1")], "ip-10-0-0-1-2024-05-01");
        check(Stream, "{hostname}/{resource.team}", &[("team", "sre")], "node-7/sre");
        check(Group, "/w/{service.name}", &[], "/w/unknown");
        check(Group, "/w/{service.name}", &[("service.name", "")], "/w/unknown");
        check(Group, "/w/{service.name}", &[("service.name", "a b:c*ü")], "/w/a_b_c__");
        check(Stream, "{service.name}", &[("service.name", "a b:c*ü\n")], "a b_c_ü_");
        check(Group, "{service.name}", &[("service.name", "aws/x")], "_aws/x");
        check(Stream, "{{x}}-{date}", &[], "{x}-2024-05-01");
        let long = "x".repeat(600);
        let t = Template::parse("f", "{service.name}", NameKind::Stream).unwrap();
        assert_eq!(t.render(&res(&[("service.name", &long)]), 0, "h").len(), 512);
        let t = Template::parse("f", "é{service.name}", NameKind::Stream).unwrap();
        assert_eq!(t.render(&res(&[("service.name", &long)]), 0, "h").chars().count(), 512);
    }

    #[test]
    fn rejects_bad_templates_naming_the_problem() {
        let err = |kind, t: &str| Template::parse("log_group", t, kind).unwrap_err();
        let e = err(NameKind::Group, "/w/{servce.name}");
        assert!(e.starts_with("log_group: unknown placeholder {servce.name}"), "{e}");
        assert!(err(NameKind::Group, "/w/{date").contains("unclosed"));
        assert!(err(NameKind::Group, "/w/date}").contains("unmatched"));
        assert!(err(NameKind::Group, "/w/a b").contains("' '"));
        assert!(err(NameKind::Group, "aws/x").contains("aws/"));
        assert!(err(NameKind::Stream, "a:b").contains("':'"));
        assert!(err(NameKind::Stream, "").contains("empty"));
        assert!(err(NameKind::Stream, "{resource.}").contains("unknown placeholder"));
        assert!(err(NameKind::Stream, &"x".repeat(513)).contains("512"));
        assert!(Template::parse("f", "{date}", NameKind::Group).unwrap().uses_date());
        assert!(!Template::parse("f", "{hostname}", NameKind::Group).unwrap().uses_date());
    }

    #[test]
    fn civil_dates() {
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(civil_from_days(-1), (1969, 12, 31));
        assert_eq!(civil_from_days(19_782), (2024, 2, 29));
        assert_eq!(civil_from_days(19_844), (2024, 5, 1));
        assert_eq!(civil_from_days(11_016), (2000, 2, 29));
    }
}
