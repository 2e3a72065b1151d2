//! The OTLP sink's configuration: serde types (`deny_unknown_fields`), a pure
//! [`OtlpSinkConfig::validate`] that reports every problem with its field, and
//! [`OtlpSinkConfig::resolve`], the I/O half (environment variables, header and
//! certificate files) that [`super::OtlpSink::new`] runs.
//!
//! Header values are secrets (API keys): they never appear in an error message, in
//! `Debug` output or in a log line; errors name the header and the field it came from.

use serde::Deserialize;
use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Default per-request timeout.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);

/// Largest header or key file read (a header value is a short token; a bigger file is
/// almost certainly the wrong file).
const MAX_HEADER_FILE_BYTES: u64 = 64 * 1024;
/// Largest certificate or key file read.
const MAX_PEM_FILE_BYTES: u64 = 1024 * 1024;

/// Headers that the exporter sets itself or that would break the protocol.
const RESERVED_HEADERS: &[&str] = &[
    "content-type",
    "content-encoding",
    "content-length",
    "transfer-encoding",
    "connection",
    "host",
    "te",
    "upgrade",
    "user-agent",
    "accept-encoding",
];

fn default_timeout() -> Duration {
    DEFAULT_TIMEOUT
}

/// The wire protocol.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Protocol {
    /// OTLP/gRPC (`endpoint` like `http://collector:4317`). The default.
    #[default]
    Grpc,
    /// OTLP/HTTP with binary protobuf bodies (`endpoint` like `http://collector:4318`;
    /// requests go to `<endpoint>/v1/traces`, `/v1/logs`, `/v1/metrics`).
    HttpProtobuf,
}

impl Protocol {
    /// `grpc` or `http_protobuf`.
    pub fn as_str(self) -> &'static str {
        match self {
            Protocol::Grpc => "grpc",
            Protocol::HttpProtobuf => "http_protobuf",
        }
    }
}

/// Request body compression.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Compression {
    /// gzip (gRPC `grpc-encoding: gzip`, HTTP `Content-Encoding: gzip`). The default.
    #[default]
    Gzip,
    /// Uncompressed.
    None,
}

/// Per-signal URL paths for OTLP/HTTP, appended to `endpoint`. Each defaults to the
/// OTLP path (`/v1/traces`, `/v1/logs`, `/v1/metrics`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpPaths {
    /// Path for traces (default `/v1/traces`).
    pub traces: Option<String>,
    /// Path for logs (default `/v1/logs`).
    pub logs: Option<String>,
    /// Path for metrics (default `/v1/metrics`).
    pub metrics: Option<String>,
}

/// TLS settings for an `https://` endpoint. Without `ca_file` the system's root
/// certificates are trusted.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    /// PEM file with the CA certificate(s) to trust instead of the system roots.
    pub ca_file: Option<PathBuf>,
    /// PEM client certificate (chain) for mutual TLS; needs `key_file`.
    pub cert_file: Option<PathBuf>,
    /// PEM private key of `cert_file`.
    pub key_file: Option<PathBuf>,
}

/// Configuration of one OTLP exporter sink.
///
/// ```yaml
/// endpoint: https://otlp.example.com:4317
/// protocol: grpc            # or http_protobuf
/// compression: gzip         # or none
/// headers: { x-tenant: platform }
/// headers_from_env: { x-api-key: OTLP_API_KEY }
/// headers_from_file: { authorization: /run/secrets/otlp-authorization }
/// timeout: 10s
/// tls: { ca_file: /etc/warden/ca.pem }
/// ```
#[derive(Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OtlpSinkConfig {
    /// `http://` or `https://` URL of the receiver: for gRPC scheme, host and port
    /// (`http://127.0.0.1:4317`); for HTTP the base URL, optionally with a path prefix,
    /// to which the per-signal paths are appended (`http://127.0.0.1:4318`).
    pub endpoint: String,
    /// `grpc` (default) or `http_protobuf`.
    #[serde(default)]
    pub protocol: Protocol,
    /// `gzip` (default) or `none`.
    #[serde(default)]
    pub compression: Compression,
    /// Per-signal paths for `http_protobuf`.
    #[serde(default)]
    pub paths: HttpPaths,
    /// Headers (gRPC metadata) sent with every request, by name.
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// Headers whose value is read from an environment variable when the sink is built:
    /// header name → variable name.
    #[serde(default)]
    pub headers_from_env: BTreeMap<String, String>,
    /// Headers whose value is read from a file (trimmed) when the sink is built: header
    /// name → path.
    #[serde(default)]
    pub headers_from_file: BTreeMap<String, PathBuf>,
    /// Limit for one export request, connecting included (default `10s`).
    #[serde(default = "default_timeout", deserialize_with = "crate::pipeline::duration::deserialize")]
    pub timeout: Duration,
    /// TLS settings; only with an `https://` endpoint.
    #[serde(default)]
    pub tls: Option<TlsConfig>,
}

impl fmt::Debug for OtlpSinkConfig {
    /// Header values are secrets: only their names are shown.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OtlpSinkConfig")
            .field("endpoint", &safe_endpoint(&self.endpoint))
            .field("protocol", &self.protocol)
            .field("compression", &self.compression)
            .field("paths", &self.paths)
            .field("headers", &self.headers.keys().collect::<Vec<_>>())
            .field("headers_from_env", &self.headers_from_env)
            .field("headers_from_file", &self.headers_from_file)
            .field("timeout", &self.timeout)
            .field("tls", &self.tls)
            .finish()
    }
}

impl OtlpSinkConfig {
    /// A configuration with defaults for everything but the endpoint.
    pub fn new(endpoint: impl Into<String>, protocol: Protocol) -> OtlpSinkConfig {
        OtlpSinkConfig {
            endpoint: endpoint.into(),
            protocol,
            compression: Compression::default(),
            paths: HttpPaths::default(),
            headers: BTreeMap::new(),
            headers_from_env: BTreeMap::new(),
            headers_from_file: BTreeMap::new(),
            timeout: DEFAULT_TIMEOUT,
            tls: None,
        }
    }

    /// Every problem with the configuration, each naming its field. Does no I/O.
    pub fn validate(&self) -> Result<(), Vec<String>> {
        let mut errors = Vec::new();
        match parse_endpoint(&self.endpoint) {
            Err(e) => errors.push(format!("endpoint: {e}")),
            Ok(url) => {
                if self.protocol == Protocol::Grpc && url.path() != "/" {
                    errors.push("endpoint: a gRPC endpoint takes no path (scheme, host and port only)".to_owned());
                }
                if url.scheme() == "http" && self.tls.is_some() {
                    errors.push("tls: set, but the endpoint is http:// (use https://)".to_owned());
                }
            }
        }
        for (field, path) in
            [("traces", &self.paths.traces), ("logs", &self.paths.logs), ("metrics", &self.paths.metrics)]
        {
            let Some(path) = path else { continue };
            if self.protocol == Protocol::Grpc {
                errors.push(format!("paths.{field}: only used with protocol http_protobuf"));
            } else if !path.starts_with('/') || path.contains(['?', '#']) || path.chars().any(char::is_whitespace) {
                errors.push(format!("paths.{field}: must start with / and hold no spaces, query or fragment"));
            }
        }
        if self.timeout.is_zero() || self.timeout > Duration::from_secs(600) {
            errors.push("timeout: must be between 1ms and 10m".to_owned());
        }
        let mut seen: BTreeMap<String, &str> = BTreeMap::new();
        for (field, names) in [
            ("headers", self.headers.keys().collect::<Vec<_>>()),
            ("headers_from_env", self.headers_from_env.keys().collect()),
            ("headers_from_file", self.headers_from_file.keys().collect()),
        ] {
            for name in names {
                if let Err(e) = check_header_name(name) {
                    errors.push(format!("{field}.{name}: {e}"));
                    continue;
                }
                let lower = name.to_ascii_lowercase();
                if let Some(first) = seen.insert(lower, field) {
                    errors.push(format!("{field}.{name}: header also set in {first}"));
                }
            }
        }
        for (name, value) in &self.headers {
            if let Err(e) = check_header_value(value) {
                errors.push(format!("headers.{name}: {e}"));
            }
        }
        for (name, var) in &self.headers_from_env {
            if var.is_empty() || var.contains(['=', '\0']) {
                errors.push(format!("headers_from_env.{name}: not a valid environment variable name"));
            }
        }
        if let Some(tls) = &self.tls
            && tls.cert_file.is_some() != tls.key_file.is_some()
        {
            errors.push("tls: cert_file and key_file must be set together".to_owned());
        }
        if errors.is_empty() { Ok(()) } else { Err(errors) }
    }

    /// Reads what the configuration refers to: header values from the environment
    /// (through `env`, so tests pass a map) and files, and the TLS files. Call after
    /// [`OtlpSinkConfig::validate`].
    pub(super) fn resolve(&self, env: &dyn Fn(&str) -> Option<String>) -> Result<Resolved, Vec<String>> {
        let mut errors = Vec::new();
        let mut headers = Vec::new();
        for (name, value) in &self.headers {
            headers.push((name.to_ascii_lowercase(), value.clone()));
        }
        for (name, var) in &self.headers_from_env {
            let field = format!("headers_from_env.{name}");
            match env(var).map(|v| v.trim().to_owned()) {
                None => errors.push(format!("{field}: environment variable {var} is not set")),
                Some(v) if v.is_empty() => errors.push(format!("{field}: environment variable {var} is empty")),
                Some(v) => match check_header_value(&v) {
                    Ok(()) => headers.push((name.to_ascii_lowercase(), v)),
                    Err(e) => errors.push(format!("{field}: the value of {var} {e}")),
                },
            }
        }
        for (name, path) in &self.headers_from_file {
            let field = format!("headers_from_file.{name}");
            match read_limited(path, MAX_HEADER_FILE_BYTES) {
                Err(e) => errors.push(format!("{field}: {e}")),
                Ok(bytes) => match String::from_utf8(bytes) {
                    Err(_) => errors.push(format!("{field}: {} is not UTF-8 text", path.display())),
                    Ok(text) => {
                        let v = text.trim();
                        if v.is_empty() {
                            errors.push(format!("{field}: {} is empty", path.display()));
                        } else if let Err(e) = check_header_value(v) {
                            errors.push(format!("{field}: the content of {} {e}", path.display()));
                        } else {
                            headers.push((name.to_ascii_lowercase(), v.to_owned()));
                        }
                    }
                },
            }
        }
        let mut tls = ResolvedTls::default();
        if let Some(t) = &self.tls {
            let mut read = |field: &str, path: &Option<PathBuf>| -> Option<Vec<u8>> {
                let path = path.as_ref()?;
                match read_limited(path, MAX_PEM_FILE_BYTES) {
                    Ok(pem) if pem_has_block(&pem) => Some(pem),
                    Ok(_) => {
                        errors.push(format!("tls.{field}: {} holds no PEM block", path.display()));
                        None
                    }
                    Err(e) => {
                        errors.push(format!("tls.{field}: {e}"));
                        None
                    }
                }
            };
            tls.ca = read("ca_file", &t.ca_file);
            tls.cert = read("cert_file", &t.cert_file);
            tls.key = read("key_file", &t.key_file);
        }
        if errors.is_empty() { Ok(Resolved { headers, tls }) } else { Err(errors) }
    }
}

/// What [`OtlpSinkConfig::resolve`] read.
pub(super) struct Resolved {
    /// Header names (lowercase) and values.
    pub headers: Vec<(String, String)>,
    /// PEM contents.
    pub tls: ResolvedTls,
}

/// PEM contents of the TLS files.
#[derive(Default)]
pub(super) struct ResolvedTls {
    pub ca: Option<Vec<u8>>,
    pub cert: Option<Vec<u8>>,
    pub key: Option<Vec<u8>>,
}

/// Parses and checks an endpoint URL; the error says what is wrong without repeating
/// the URL (it may hold credentials).
pub(super) fn parse_endpoint(endpoint: &str) -> Result<reqwest::Url, String> {
    if !(endpoint.starts_with("http://") || endpoint.starts_with("https://")) {
        return Err("must start with http:// or https://".to_owned());
    }
    let url = reqwest::Url::parse(endpoint).map_err(|e| format!("not a valid URL ({e})"))?;
    if url.host_str().is_none_or(str::is_empty) {
        return Err("has no host".to_owned());
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err("must not hold credentials (use headers_from_env or headers_from_file)".to_owned());
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err("must not have a query or fragment".to_owned());
    }
    Ok(url)
}

/// The endpoint as it may appear in messages: scheme, host, port and path only.
pub(super) fn safe_endpoint(endpoint: &str) -> String {
    match reqwest::Url::parse(endpoint) {
        Ok(u) if u.host_str().is_some() => {
            let port = u.port().map(|p| format!(":{p}")).unwrap_or_default();
            let path = if u.path() == "/" { "" } else { u.path() };
            format!("{}://{}{port}{path}", u.scheme(), u.host_str().unwrap_or_default())
        }
        _ => "<invalid endpoint>".to_owned(),
    }
}

fn check_header_name(name: &str) -> Result<(), String> {
    let lower = name.to_ascii_lowercase();
    if reqwest::header::HeaderName::from_bytes(lower.as_bytes()).is_err() {
        return Err("not a valid header name".to_owned());
    }
    if RESERVED_HEADERS.contains(&lower.as_str()) || lower.starts_with("grpc-") || lower.starts_with(':') {
        return Err("header is set by the exporter and cannot be configured".to_owned());
    }
    if lower.ends_with("-bin") {
        return Err("binary (-bin) headers are not supported".to_owned());
    }
    Ok(())
}

/// Checks a header value without ever repeating it.
fn check_header_value(value: &str) -> Result<(), String> {
    if value.bytes().all(|b| b == b'\t' || (0x20..0x7f).contains(&b)) {
        Ok(())
    } else {
        Err("is not a valid header value (only printable ASCII is allowed)".to_owned())
    }
}

fn read_limited(path: &Path, limit: u64) -> Result<Vec<u8>, String> {
    use std::io::Read as _;
    let file = std::fs::File::open(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let mut buf = Vec::new();
    file.take(limit + 1).read_to_end(&mut buf).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    if buf.len() as u64 > limit {
        return Err(format!("{} is larger than {limit} bytes", path.display()));
    }
    Ok(buf)
}

fn pem_has_block(pem: &[u8]) -> bool {
    pem.windows(11).any(|w| w == b"-----BEGIN ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(json: &str) -> OtlpSinkConfig {
        serde_json::from_str(json).unwrap()
    }

    #[test]
    fn defaults() {
        let c = parse(r#"{"endpoint":"http://127.0.0.1:4317"}"#);
        assert_eq!(c, OtlpSinkConfig::new("http://127.0.0.1:4317", Protocol::Grpc));
        assert_eq!((c.compression, c.timeout), (Compression::Gzip, Duration::from_secs(10)));
        assert!(c.validate().is_ok());
        let c =
            parse(r#"{"endpoint":"https://h/otlp","protocol":"http_protobuf","timeout":"2s","compression":"none"}"#);
        assert_eq!(
            (c.protocol, c.compression, c.timeout),
            (Protocol::HttpProtobuf, Compression::None, Duration::from_secs(2))
        );
        assert!(c.validate().is_ok());
        assert!(serde_json::from_str::<OtlpSinkConfig>(r#"{"endpoint":"http://h:1","jane":1}"#).is_err());
    }

    #[test]
    fn validation_names_every_field_and_never_a_header_value() {
        let c = parse(
            r#"{"endpoint":"http://h:1/x","headers":{"X-Key":"sécret-jane","Content-Type":"a","bad name":"v"},
                "headers_from_env":{"x-key":"K","x-b":""},"paths":{"logs":"/l"},"timeout":"0s",
                "tls":{"cert_file":"/c"}}"#,
        );
        let errors = c.validate().unwrap_err();
        let all = errors.join("\n");
        for want in [
            "endpoint: a gRPC endpoint takes no path",
            "tls: set, but the endpoint is http://",
            "paths.logs: only used with protocol http_protobuf",
            "timeout: must be between",
            "headers.Content-Type: header is set by the exporter",
            "headers.bad name: not a valid header name",
            "headers.X-Key: is not a valid header value",
            "headers_from_env.x-key: header also set in headers",
            "headers_from_env.x-b: not a valid environment variable name",
            "tls: cert_file and key_file must be set together",
        ] {
            assert!(all.contains(want), "missing {want:?} in:\n{all}");
        }
        assert!(!all.contains("jane"), "{all}");
        assert!(!format!("{c:?}").contains("jane"), "Debug shows a header value");
    }

    #[test]
    fn endpoints_are_checked_and_shown_without_credentials() {
        for (e, want) in [
            ("127.0.0.1:4318", "must start with http:// or https://"),
            ("localhost:4318", "must start with http:// or https://"),
            ("grpc://h:1", "must start with http:// or https://"),
            ("http://", "not a valid URL"),
            ("http://u:p@h:1", "must not hold credentials"),
            ("http://h:1/?k=v", "must not have a query"),
        ] {
            assert!(parse_endpoint(e).unwrap_err().contains(want), "{e}");
        }
        assert_eq!(safe_endpoint("https://user:pw@h:4318/otlp"), "https://h:4318/otlp");
        assert_eq!(safe_endpoint("http://h:4317"), "http://h:4317");
        assert_eq!(safe_endpoint("nonsense"), "<invalid endpoint>");
    }

    #[test]
    fn resolve_reads_env_and_files_and_reports_without_values() {
        let dir = std::env::temp_dir().join(format!("warden-otlp-cfg-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("key"), "  file-secret\n").unwrap();
        std::fs::write(dir.join("bad"), "jane\u{1}doe").unwrap();
        let mut c = OtlpSinkConfig::new("https://h:1", Protocol::Grpc);
        c.headers_from_env.insert("X-Env".into(), "WARDEN_TEST_KEY".into());
        c.headers_from_file.insert("x-file".into(), dir.join("key"));
        let env = |k: &str| (k == "WARDEN_TEST_KEY").then(|| "env-secret".to_owned());
        let r = c.resolve(&env).unwrap();
        assert_eq!(
            r.headers,
            vec![("x-env".to_owned(), "env-secret".to_owned()), ("x-file".into(), "file-secret".into())]
        );

        c.headers_from_env.insert("x-missing".into(), "NOPE".into());
        c.headers_from_file.insert("x-bad".into(), dir.join("bad"));
        c.headers_from_file.insert("x-gone".into(), dir.join("gone"));
        c.tls = Some(TlsConfig { ca_file: Some(dir.join("key")), ..TlsConfig::default() });
        let all = c.resolve(&env).err().unwrap().join("\n");
        for want in [
            "headers_from_env.x-missing: environment variable NOPE is not set",
            "headers_from_file.x-bad: the content of",
            "headers_from_file.x-gone: cannot read",
            "tls.ca_file:",
            "holds no PEM block",
        ] {
            assert!(all.contains(want), "missing {want:?} in:\n{all}");
        }
        assert!(!all.contains("jane") && !all.contains("secret"), "{all}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
