//! Request extractors whose rejections are [`ApiError`]s.
//!
//! axum's own extractors answer with plain-text bodies, and serde's messages quote the value
//! that failed to parse ("invalid type: string \"Jane Doe\"..."), which may be PHI. These
//! wrappers answer in the API's JSON error shape and name only the path of the field at
//! fault and what was expected.

use crate::error::ApiError;
use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::header::CONTENT_TYPE;
use axum::http::request::Parts;
use axum::http::{HeaderMap, StatusCode};
use serde::de::DeserializeOwned;

/// A JSON request body (`Content-Type: application/json`).
pub struct ApiJson<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for ApiJson<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        if !content_type_is(req.headers(), "application/json") {
            return Err(ApiError::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported_media_type",
                "expected content-type application/json",
            ));
        }
        let bytes = read_body(req, state).await?;
        if bytes.len() > crate::app::MAX_JSON_BYTES {
            return Err(ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large", "request body too large"));
        }
        parse_json(&bytes).map(ApiJson)
    }
}

/// A plain-text request body (`Content-Type: text/plain`), valid UTF-8.
pub struct TextBody(pub String);

impl<S: Send + Sync> FromRequest<S> for TextBody {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        if !content_type_is(req.headers(), "text/plain") {
            return Err(ApiError::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported_media_type",
                "expected content-type text/plain",
            ));
        }
        let bytes = read_body(req, state).await?;
        String::from_utf8(bytes.to_vec())
            .map(TextBody)
            .map_err(|_| ApiError::bad_request("invalid_utf8", "request body is not valid UTF-8"))
    }
}

async fn read_body<S: Send + Sync>(req: Request, state: &S) -> Result<Bytes, ApiError> {
    Bytes::from_request(req, state).await.map_err(|rejection| {
        if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large", "request body too large")
        } else {
            ApiError::bad_request("unreadable_body", "request body could not be read")
        }
    })
}

fn content_type_is(headers: &HeaderMap, expected: &str) -> bool {
    headers
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|mime| mime.trim().eq_ignore_ascii_case(expected))
}

/// Parses JSON into `T`, turning serde's errors into value-free API errors.
pub fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let value = serde_path_to_error::deserialize(&mut de).map_err(|e| {
        let path = e.path().clone();
        let inner = e.into_inner();
        match inner.classify() {
            serde_json::error::Category::Data => {
                let msg = inner.to_string();
                // serde_json appends the position; the path already says where.
                let msg = msg.rfind(" at line ").map_or(msg.as_str(), |i| &msg[..i]);
                ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid_body", describe_data_error(&path, msg))
            }
            _ => ApiError::bad_request(
                "malformed_json",
                format!("request body is not valid JSON (line {}, column {})", inner.line(), inner.column()),
            ),
        }
    })?;
    de.end().map_err(|_| {
        ApiError::bad_request("malformed_json", "request body has trailing characters after the JSON value")
    })?;
    Ok(value)
}

/// Query-string parameters.
pub struct ApiQuery<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequestParts<S> for ApiQuery<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        let query = parts.uri.query().unwrap_or_default();
        let de = serde_urlencoded::Deserializer::new(form_urlencoded::parse(query.as_bytes()));
        serde_path_to_error::deserialize(de).map(ApiQuery).map_err(|e| {
            let path = e.path().clone();
            ApiError::bad_request("invalid_query", describe_data_error(&path, &e.into_inner().to_string()))
        })
    }
}

/// Turns a serde data error into a message that names the field and the expectation but
/// not the value. serde's messages put the value before `, expected ...`, and the
/// expectation comes from our own types, so only that tail is kept.
fn describe_data_error(path_segments: &serde_path_to_error::Path, msg: &str) -> String {
    let path = path_segments.to_string();
    let at = if path.is_empty() || path == "." { String::new() } else { format!(" at `{path}`") };
    // The unknown key is the client's text (it could be anything, PHI included): name only
    // the object that held it.
    let segments: Vec<String> = path_segments.iter().map(ToString::to_string).collect();
    let parent = match segments.split_last() {
        Some((_, parent)) if !parent.is_empty() => format!(" in `{}`", parent.join(".")),
        _ => String::new(),
    };
    let expected = msg.rfind(", expected ").map(|i| &msg[i + 2..]);
    if let Some(field) = msg.strip_prefix("missing field ") {
        format!("missing field {}{at}", field.split_whitespace().next().unwrap_or(field))
    } else if msg.starts_with("unknown field") {
        format!("unknown field{parent}; {}", expected.unwrap_or("no such field"))
    } else if msg.starts_with("unknown variant") {
        format!("unknown value{at}; {}", expected.unwrap_or("not one of the allowed values"))
    } else if msg.starts_with("invalid type") {
        format!("wrong type{at}; {}", expected.unwrap_or("of another type"))
    } else if msg.starts_with("invalid length") {
        format!("wrong length{at}; {}", expected.unwrap_or("of another length"))
    } else {
        format!("invalid value{at}")
    }
}

/// A UUID in the path (`/{id}`), rejected with 400 `invalid_id` otherwise.
pub struct IdPath(pub uuid::Uuid);

impl<S: Send + Sync> FromRequestParts<S> for IdPath {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let axum::extract::Path(raw) = axum::extract::Path::<String>::from_request_parts(parts, state)
            .await
            .map_err(|_| ApiError::bad_request("invalid_id", "path id is missing or unreadable"))?;
        uuid::Uuid::parse_str(&raw)
            .map(IdPath)
            .map_err(|_| ApiError::bad_request("invalid_id", "path id must be a UUID"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Probe {
        name: String,
        value: f64,
        #[serde(default)]
        kind: Option<Kind>,
    }

    #[derive(Debug, serde::Deserialize)]
    #[serde(rename_all = "snake_case")]
    enum Kind {
        Vital,
    }

    fn check(body: &str, status: u16, code: &str, message: &str) {
        let err = parse_json::<Probe>(body.as_bytes()).unwrap_err();
        assert_eq!((err.status().as_u16(), err.code(), err.message()), (status, code, message), "{body}");
    }

    #[test]
    fn errors_name_the_field_but_never_the_value() {
        check(r#"{"name": "x", "value": "Jane Doe"}"#, 422, "invalid_body", "wrong type at `value`; expected f64");
        check(r#"{"name": "x"}"#, 422, "invalid_body", "missing field `value`");
        check(
            r#"{"name": "x", "value": 1, "ssn": "123-45-6789"}"#,
            422,
            "invalid_body",
            "unknown field; expected one of `name`, `value`, `kind`",
        );
        check(
            r#"{"name": "x", "value": 1, "Jane Q. Doe": 1}"#,
            422,
            "invalid_body",
            "unknown field; expected one of `name`, `value`, `kind`",
        );
        check(
            r#"{"name": "x", "value": 1, "kind": "Jane Doe"}"#,
            422,
            "invalid_body",
            "unknown value at `kind`; expected `vital`",
        );
        check(r#"["Jane Doe"]"#, 422, "invalid_body", "wrong length; expected struct Probe with 3 elements");
        check(r#""Jane Doe""#, 422, "invalid_body", "wrong type; expected struct Probe");
        check(r#"{"name": "Jane"#, 400, "malformed_json", "request body is not valid JSON (line 1, column 14)");
        check(
            r#"{"name": "x", "value": 1} trailing"#,
            400,
            "malformed_json",
            "request body has trailing characters after the JSON value",
        );
        check("", 400, "malformed_json", "request body is not valid JSON (line 1, column 0)");
    }
}
