//! OTLP/HTTP transport with binary protobuf bodies (reqwest, rustls): one `POST` per
//! signal to `<endpoint><path>` with `Content-Type: application/x-protobuf`, gzip as
//! `Content-Encoding: gzip`. Responses follow the OTLP "Failures" rules: 429, 502, 503
//! and 504 are retryable and honour `Retry-After` (seconds or an HTTP date); every other
//! non-2xx status is permanent; a 2xx body is an `Export*ServiceResponse` whose
//! `partial_success` gives the rejected count.

use super::config::{OtlpSinkConfig, Resolved};
use super::{Exported, error_chain};
use crate::otlp::{Signal, encode_request};
use crate::signal::Batch;
use crate::sinks::DeliveryError;
use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceResponse;
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceResponse;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceResponse;
use reqwest::header::{CONTENT_ENCODING, CONTENT_TYPE, HeaderMap, HeaderName, HeaderValue, RETRY_AFTER};
use std::time::{Duration, SystemTime};

/// Largest response body read; the rest is ignored (responses are tiny).
const MAX_RESPONSE_BYTES: usize = 1024 * 1024;

/// The HTTP side of an [`super::OtlpSink`].
pub(super) struct HttpExporter {
    client: reqwest::Client,
    /// Full URLs for traces, logs and metrics.
    urls: [reqwest::Url; 3],
    headers: HeaderMap,
    gzip: bool,
    timeout: Duration,
}

impl HttpExporter {
    /// Builds the client (and its TLS configuration); nothing is connected yet.
    pub(super) fn new(
        cfg: &OtlpSinkConfig,
        resolved: &Resolved,
        base: &reqwest::Url,
    ) -> Result<HttpExporter, Vec<String>> {
        let mut errors = Vec::new();
        let root = base.as_str().trim_end_matches('/');
        let url = |field: &str, path: &Option<String>, default: &str| -> Result<reqwest::Url, String> {
            let path = path.as_deref().unwrap_or(default);
            reqwest::Url::parse(&format!("{root}{path}")).map_err(|e| format!("paths.{field}: not a valid path ({e})"))
        };
        let urls = [
            url("traces", &cfg.paths.traces, "/v1/traces"),
            url("logs", &cfg.paths.logs, "/v1/logs"),
            url("metrics", &cfg.paths.metrics, "/v1/metrics"),
        ];
        let mut builder = reqwest::Client::builder()
            .use_rustls_tls()
            .timeout(cfg.timeout)
            .connect_timeout(cfg.timeout)
            .tcp_nodelay(true)
            .user_agent(concat!("warden/", env!("CARGO_PKG_VERSION")));
        if let Some(ca) = &resolved.tls.ca {
            match reqwest::Certificate::from_pem_bundle(ca) {
                Ok(certs) if !certs.is_empty() => {
                    builder = builder.tls_built_in_root_certs(false);
                    for c in certs {
                        builder = builder.add_root_certificate(c);
                    }
                }
                Ok(_) => errors.push("tls.ca_file: holds no certificate".to_owned()),
                Err(e) => errors.push(format!("tls.ca_file: {}", error_chain(&e))),
            }
        }
        if let (Some(cert), Some(key)) = (&resolved.tls.cert, &resolved.tls.key) {
            let mut pem = cert.clone();
            pem.push(b'\n');
            pem.extend_from_slice(key);
            match reqwest::Identity::from_pem(&pem) {
                Ok(id) => builder = builder.identity(id),
                Err(e) => errors.push(format!("tls.cert_file, tls.key_file: {}", error_chain(&e))),
            }
        }
        let mut headers = HeaderMap::new();
        for (name, value) in &resolved.headers {
            match (HeaderName::from_bytes(name.as_bytes()), HeaderValue::from_str(value)) {
                (Ok(k), Ok(mut v)) => {
                    v.set_sensitive(true);
                    headers.insert(k, v);
                }
                _ => errors.push(format!("headers: {name} cannot be sent as an HTTP header")),
            }
        }
        let client = builder.build().map_err(|e| format!("tls: cannot build the HTTP client: {}", error_chain(&e)));
        let mut ok_urls = Vec::new();
        for u in urls {
            match u {
                Ok(u) => ok_urls.push(u),
                Err(e) => errors.push(e),
            }
        }
        let client = match client {
            Ok(c) => Some(c),
            Err(e) => {
                errors.push(e);
                None
            }
        };
        match (client, <[reqwest::Url; 3]>::try_from(ok_urls)) {
            (Some(client), Ok(urls)) if errors.is_empty() => Ok(HttpExporter {
                client,
                urls,
                headers,
                gzip: cfg.compression == super::Compression::Gzip,
                timeout: cfg.timeout,
            }),
            _ => Err(errors),
        }
    }

    fn url(&self, signal: Signal) -> &reqwest::Url {
        match signal {
            Signal::Traces => &self.urls[0],
            Signal::Logs => &self.urls[1],
            Signal::Metrics => &self.urls[2],
        }
    }

    /// The URL a signal is sent to, for messages (no credentials: validation refused them).
    pub(super) fn target(&self, signal: Signal) -> String {
        self.url(signal).to_string()
    }

    /// Sends the `signal` part of `batch` as one `POST`.
    pub(super) async fn export(&mut self, signal: Signal, batch: &Batch) -> Result<Exported, DeliveryError> {
        let target = self.target(signal);
        let what = format!("otlp {} export to {target}", signal.as_str());
        let mut body = encode_request(signal, batch);
        if self.gzip {
            body = gzip(&body);
        }
        let mut req = self
            .client
            .post(self.url(signal).clone())
            .headers(self.headers.clone())
            .header(CONTENT_TYPE, "application/x-protobuf")
            .body(body);
        if self.gzip {
            req = req.header(CONTENT_ENCODING, "gzip");
        }
        let mut resp = match req.send().await {
            Ok(r) => r,
            Err(e) if e.is_timeout() => {
                return Err(DeliveryError::retryable(format!("{what}: timed out after {:?}", self.timeout)));
            }
            Err(e) => return Err(DeliveryError::retryable(format!("{what}: {}", error_chain(&e.without_url())))),
        };
        let status = resp.status();
        if !status.is_success() {
            let code = status.as_u16();
            let reason = format!("{what}: HTTP {status}");
            return Err(if matches!(code, 429 | 502 | 503 | 504) {
                let retry_after = resp.headers().get(RETRY_AFTER).and_then(|v| parse_retry_after(v, SystemTime::now()));
                DeliveryError::Retryable { reason, retry_after }
            } else {
                DeliveryError::Permanent { reason }
            });
        }
        // The export was accepted; a body that cannot be read or decoded only loses the
        // partial-success count.
        let mut buf = Vec::new();
        loop {
            match resp.chunk().await {
                Ok(Some(chunk)) if buf.len() + chunk.len() <= MAX_RESPONSE_BYTES => buf.extend_from_slice(&chunk),
                Ok(Some(_)) => {
                    tracing::debug!(signal = signal.as_str(), endpoint = %target, "OTLP/HTTP response too large; partial success ignored");
                    return Ok(Exported { rejected: 0 });
                }
                Ok(None) => break,
                Err(e) => {
                    tracing::debug!(signal = signal.as_str(), endpoint = %target, error = %error_chain(&e.without_url()), "reading the OTLP/HTTP response failed");
                    return Ok(Exported { rejected: 0 });
                }
            }
        }
        Ok(Exported { rejected: decode_rejected(signal, &buf, &target) })
    }
}

/// The `partial_success` rejected count of an `Export*ServiceResponse` body (0 when the
/// body is empty or not protobuf).
fn decode_rejected(signal: Signal, body: &[u8], target: &str) -> u64 {
    use prost::Message as _;
    if body.is_empty() {
        return 0;
    }
    let rejected = match signal {
        Signal::Traces => {
            ExportTraceServiceResponse::decode(body).map(|r| r.partial_success.map_or(0, |p| p.rejected_spans))
        }
        Signal::Logs => {
            ExportLogsServiceResponse::decode(body).map(|r| r.partial_success.map_or(0, |p| p.rejected_log_records))
        }
        Signal::Metrics => {
            ExportMetricsServiceResponse::decode(body).map(|r| r.partial_success.map_or(0, |p| p.rejected_data_points))
        }
    };
    match rejected {
        Ok(n) => u64::try_from(n).unwrap_or(0),
        Err(e) => {
            tracing::debug!(signal = signal.as_str(), endpoint = %target, error = %e, "OTLP/HTTP response is not an export response; partial success ignored");
            0
        }
    }
}

/// `Retry-After`: delay-seconds or an HTTP date (a date in the past means now).
pub(super) fn parse_retry_after(value: &HeaderValue, now: SystemTime) -> Option<Duration> {
    let s = value.to_str().ok()?.trim();
    if let Ok(secs) = s.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let at = httpdate::parse_http_date(s).ok()?;
    Some(at.duration_since(now).unwrap_or(Duration::ZERO))
}

fn gzip(data: &[u8]) -> Vec<u8> {
    use std::io::Write as _;
    let mut enc =
        flate2::write::GzEncoder::new(Vec::with_capacity(data.len() / 4 + 64), flate2::Compression::default());
    // Writing into a Vec cannot fail.
    let _ = enc.write_all(data);
    enc.finish().unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_takes_seconds_and_http_dates() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        let v = |s: &'static str| HeaderValue::from_static(s);
        assert_eq!(parse_retry_after(&v("7"), now), Some(Duration::from_secs(7)));
        assert_eq!(parse_retry_after(&v(" 0 "), now), Some(Duration::ZERO));
        let later = httpdate::fmt_http_date(now + Duration::from_secs(90));
        assert_eq!(parse_retry_after(&HeaderValue::from_str(&later).unwrap(), now), Some(Duration::from_secs(90)));
        let earlier = httpdate::fmt_http_date(now - Duration::from_secs(90));
        assert_eq!(parse_retry_after(&HeaderValue::from_str(&earlier).unwrap(), now), Some(Duration::ZERO));
        assert_eq!(parse_retry_after(&v("soon"), now), None);
        assert_eq!(parse_retry_after(&v("-3"), now), None);
    }

    #[test]
    fn rejected_counts_come_from_partial_success() {
        use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsPartialSuccess;
        use prost::Message as _;
        let body = ExportLogsServiceResponse {
            partial_success: Some(ExportLogsPartialSuccess { rejected_log_records: 3, error_message: "x".into() }),
        }
        .encode_to_vec();
        assert_eq!(decode_rejected(Signal::Logs, &body, "t"), 3);
        assert_eq!(decode_rejected(Signal::Logs, &[], "t"), 0);
        assert_eq!(decode_rejected(Signal::Logs, b"{\"partialSuccess\":{}}", "t"), 0);
    }
}
