//! What the HTTP receivers share: the client (no redirects), one bounded POST with a
//! timeout, and the mapping of outcomes to [`ReceiverError`]s that name a status only.

use super::{ReceiverError, Who};
use reqwest::StatusCode;
use reqwest::header::{HeaderMap, RETRY_AFTER};
use std::time::{Duration, SystemTime};

/// Bytes of a response body read at most (the rest is ignored).
const MAX_RESPONSE_BYTES: usize = 64 * 1024;

/// The `User-Agent` of every request.
pub(crate) const USER_AGENT: &str = concat!("Warden/", env!("CARGO_PKG_VERSION"));

/// The HTTP client of the receivers: rustls with the system roots, no redirects (a
/// redirect would send a secret URL's payload elsewhere), a connect timeout; the total
/// timeout is set per request.
pub(crate) fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .connect_timeout(Duration::from_secs(5))
        .user_agent(USER_AGENT)
        .build()
        // Building fails only if the TLS backend cannot initialise; fall back to the
        // default client rather than have no receivers at all.
        .unwrap_or_default()
}

/// A response: status and headers. The body (at most [`MAX_RESPONSE_BYTES`]) is read and
/// dropped so the connection can be reused; what it says is never logged (it may echo
/// the request).
pub(crate) struct Response {
    pub(crate) status: StatusCode,
    pub(crate) headers: HeaderMap,
}

/// POSTs `body` as JSON to `url` within `timeout`. Transport failures are retryable and
/// described by kind only (reqwest's own messages carry the URL, which may be a secret).
pub(crate) async fn post_json(
    client: &reqwest::Client,
    who: &Who,
    url: &str,
    body: Vec<u8>,
    timeout: Duration,
) -> Result<Response, ReceiverError> {
    let send = async {
        let mut resp = client
            .post(url)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(body)
            .send()
            .await
            .map_err(|e| transport_error(who, &e))?;
        let status = resp.status();
        let headers = std::mem::take(resp.headers_mut());
        let mut read = 0;
        while read < MAX_RESPONSE_BYTES {
            match resp.chunk().await {
                Ok(Some(c)) => read += c.len(),
                // The status is what matters; a body cut short is not a failure.
                Ok(None) | Err(_) => break,
            }
        }
        Ok(Response { status, headers })
    };
    match tokio::time::timeout(timeout, send).await {
        Ok(r) => r,
        Err(_) => Err(who.retryable("timed out")),
    }
}

/// Describes a transport error by kind, never by its text.
fn transport_error(who: &Who, e: &reqwest::Error) -> ReceiverError {
    let kind = if e.is_timeout() {
        "timed out"
    } else if e.is_connect() {
        "connection failed"
    } else if e.is_builder() {
        return who.permanent("invalid request URL");
    } else {
        "request failed"
    };
    who.retryable(kind)
}

/// The usual mapping of a status: 2xx delivered; 429 and 5xx retryable (with the peer's
/// `Retry-After`, if any); 408 retryable; any other status permanent.
pub(crate) fn check_status(who: &Who, r: &Response) -> Result<(), ReceiverError> {
    let s = r.status;
    if s.is_success() {
        return Ok(());
    }
    let status = format!("HTTP {}", s.as_u16());
    if s == StatusCode::TOO_MANY_REQUESTS || s.is_server_error() || s == StatusCode::REQUEST_TIMEOUT {
        return Err(match retry_after(&r.headers, SystemTime::now()) {
            Some(after) => ReceiverError::Throttled { message: format!("{who}: {status}"), retry_after: after },
            None => who.retryable(status),
        });
    }
    Err(who.permanent(status))
}

/// `Retry-After` as delay-seconds or an HTTP date (RFC 9110 §10.2.3).
pub(crate) fn retry_after(headers: &HeaderMap, now: SystemTime) -> Option<Duration> {
    let v = headers.get(RETRY_AFTER)?.to_str().ok()?.trim();
    if let Ok(secs) = v.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let at = httpdate::parse_http_date(v).ok()?;
    Some(at.duration_since(now).unwrap_or(Duration::ZERO))
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::header::HeaderValue;

    #[test]
    fn retry_after_forms() {
        let mut h = HeaderMap::new();
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        assert_eq!(retry_after(&h, now), None);
        h.insert(RETRY_AFTER, HeaderValue::from_static("7"));
        assert_eq!(retry_after(&h, now), Some(Duration::from_secs(7)));
        h.insert(RETRY_AFTER, HeaderValue::from_str(&httpdate::fmt_http_date(now + Duration::from_secs(30))).unwrap());
        assert_eq!(retry_after(&h, now), Some(Duration::from_secs(30)));
        h.insert(RETRY_AFTER, HeaderValue::from_str(&httpdate::fmt_http_date(now - Duration::from_secs(30))).unwrap());
        assert_eq!(retry_after(&h, now), Some(Duration::ZERO));
        h.insert(RETRY_AFTER, HeaderValue::from_static("soon"));
        assert_eq!(retry_after(&h, now), None);
    }

    #[test]
    fn statuses() {
        let who = Who::new("team", "webhook");
        let r = |code: u16| Response { status: StatusCode::from_u16(code).unwrap(), headers: HeaderMap::new() };
        assert!(check_status(&who, &r(200)).is_ok());
        assert!(check_status(&who, &r(202)).is_ok());
        assert_eq!(
            check_status(&who, &r(400)),
            Err(ReceiverError::Permanent("webhook receiver \"team\": HTTP 400".into()))
        );
        assert!(check_status(&who, &r(429)).unwrap_err().is_retryable());
        assert!(check_status(&who, &r(503)).unwrap_err().is_retryable());
        assert!(!check_status(&who, &r(404)).unwrap_err().is_retryable());
    }
}
