//! The Kubernetes API, as much of it as remediation needs, over reqwest + rustls (no
//! kube-rs: it would bring far more than three endpoints' worth of code).
//!
//! - [`KubeClient`]: the API server, its CA, and credentials, from the in-cluster service
//!   account (`KUBERNETES_SERVICE_HOST`/`_PORT`, the token file re-read when it changes
//!   and at least every minute, as client-go does for rotated projected tokens, the CA
//!   and namespace files), a kubeconfig (current or named context: `server`,
//!   `certificate-authority[-data]`, `insecure-skip-tls-verify`, `token`, `tokenFile`,
//!   `client-certificate[-data]` + `client-key[-data]`; `exec` and `auth-provider`
//!   plugins are refused), or a plain URL without credentials (`kubectl proxy`).
//! - [`DeploymentActuator`]: scale subresource GET / merge-patch, rollout restart by the
//!   `kubectl.kubernetes.io/restartedAt` annotation (strategic merge patch, as kubectl),
//!   pod delete with a check that the pod belongs to the Deployment.
//! - [`KubeLease`]: leader election through a `coordination.k8s.io/v1` Lease.
//!
//! Errors name the request (method and path) and the API's status and reason, never a
//! token or a response body beyond the API's own `Status.message`.

mod deployment;
mod lease;

pub use deployment::DeploymentActuator;
pub use lease::{KubeLease, LeaseRecord};

use crate::remediate::config::KubernetesConfig;
use base64::Engine as _;
use serde::Deserialize;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

/// The service account directory mounted into pods.
pub const IN_CLUSTER_DIR: &str = "/var/run/secrets/kubernetes.io/serviceaccount";
/// Token files are re-read at least this often, whatever their mtime says.
const TOKEN_REFRESH: Duration = Duration::from_secs(60);
/// Largest response body read.
const MAX_BODY: usize = 4 << 20;

/// Environment variables, through a trait so tests pass a map.
pub trait Env {
    /// The variable's value, if set.
    fn var(&self, name: &str) -> Option<String>;
}

/// The process environment.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemEnv;

impl Env for SystemEnv {
    fn var(&self, name: &str) -> Option<String> {
        std::env::var(name).ok()
    }
}

impl Env for std::collections::HashMap<String, String> {
    fn var(&self, name: &str) -> Option<String> {
        self.get(name).cloned()
    }
}

/// Why a Kubernetes request or client setup failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KubeError {
    /// The client could not be configured (names the file or field at fault).
    #[error("kubernetes config: {0}")]
    Config(String),
    /// The request did not complete (connect, TLS, timeout).
    #[error("{method} {path}: {error}")]
    Transport {
        /// HTTP method.
        method: String,
        /// Request path.
        path: String,
        /// The cause.
        error: String,
    },
    /// The API answered with an error status.
    #[error("{method} {path}: {status} {reason}{}", if message.is_empty() { String::new() } else { format!(": {message}") })]
    Status {
        /// HTTP method.
        method: String,
        /// Request path.
        path: String,
        /// HTTP status.
        status: u16,
        /// `Status.reason` (`NotFound`, `Conflict`, ...), or the HTTP reason phrase.
        reason: String,
        /// `Status.message`.
        message: String,
    },
    /// The answer was not what the API documents.
    #[error("{method} {path}: unexpected response: {what}")]
    Response {
        /// HTTP method.
        method: String,
        /// Request path.
        path: String,
        /// What was wrong.
        what: String,
    },
}

impl KubeError {
    /// The HTTP status of a `Status` error.
    pub fn status(&self) -> Option<u16> {
        match self {
            KubeError::Status { status, .. } => Some(*status),
            _ => None,
        }
    }
}

#[derive(Debug)]
enum Token {
    Static(String),
    File { path: PathBuf, cache: Mutex<Option<(Option<SystemTime>, Instant, String)>> },
}

impl Token {
    fn get(&self) -> Result<String, KubeError> {
        match self {
            Token::Static(t) => Ok(t.clone()),
            Token::File { path, cache } => {
                let mtime = std::fs::metadata(path).and_then(|m| m.modified()).ok();
                let mut c = cache.lock().unwrap_or_else(|p| p.into_inner());
                if let Some((m, at, tok)) = &*c
                    && *m == mtime
                    && at.elapsed() < TOKEN_REFRESH
                {
                    return Ok(tok.clone());
                }
                let tok = read_token(path)?;
                *c = Some((mtime, Instant::now(), tok.clone()));
                Ok(tok)
            }
        }
    }
}

fn read_token(path: &Path) -> Result<String, KubeError> {
    let t = std::fs::read_to_string(path)
        .map_err(|e| KubeError::Config(format!("cannot read token file {}: {e}", path.display())))?;
    let t = t.trim().to_string();
    if t.is_empty() || t.contains(['\n', '\r']) {
        return Err(KubeError::Config(format!("token file {} holds no single-line token", path.display())));
    }
    Ok(t)
}

/// A configured Kubernetes API client (cheap to clone).
#[derive(Clone, Debug)]
pub struct KubeClient {
    http: reqwest::Client,
    server: String,
    token: Option<Arc<Token>>,
    namespace: String,
}

/// Where the client's settings come from, before a reqwest client is built.
struct Settings {
    server: String,
    ca_pem: Option<Vec<u8>>,
    insecure: bool,
    identity_pem: Option<Vec<u8>>,
    token: Option<Token>,
    namespace: Option<String>,
}

impl KubeClient {
    /// A client for a kubernetes target's config: `api_server` if set, else `kubeconfig`,
    /// else the in-cluster service account.
    pub fn from_config(c: &KubernetesConfig, env: &dyn Env) -> Result<KubeClient, KubeError> {
        let settings = if let Some(url) = &c.api_server {
            Settings {
                server: url.clone(),
                ca_pem: None,
                insecure: false,
                identity_pem: None,
                token: None,
                namespace: None,
            }
        } else if let Some(path) = &c.kubeconfig {
            kubeconfig_settings(path, c.context.as_deref())?
        } else {
            in_cluster_settings(Path::new(IN_CLUSTER_DIR), env)?
        };
        Self::build(settings, c.namespace.clone(), c.request_timeout)
    }

    /// A client from a kubeconfig file (tests and `from_config`).
    pub fn from_kubeconfig(
        path: &Path,
        context: Option<&str>,
        namespace: Option<String>,
        timeout: Duration,
    ) -> Result<KubeClient, KubeError> {
        Self::build(kubeconfig_settings(path, context)?, namespace, timeout)
    }

    /// A client from a service account directory (`token`, `ca.crt`, `namespace`) and
    /// `KUBERNETES_SERVICE_HOST`/`_PORT` in `env`.
    pub fn in_cluster(
        dir: &Path,
        env: &dyn Env,
        namespace: Option<String>,
        timeout: Duration,
    ) -> Result<KubeClient, KubeError> {
        Self::build(in_cluster_settings(dir, env)?, namespace, timeout)
    }

    fn build(s: Settings, namespace: Option<String>, timeout: Duration) -> Result<KubeClient, KubeError> {
        let server = s.server.trim_end_matches('/').to_string();
        if !(server.starts_with("https://") || server.starts_with("http://")) {
            return Err(KubeError::Config("server must be an http:// or https:// URL".to_string()));
        }
        let mut b = reqwest::Client::builder()
            .use_rustls_tls()
            .timeout(timeout)
            .connect_timeout(timeout.min(Duration::from_secs(10)))
            .redirect(reqwest::redirect::Policy::none());
        if let Some(ca) = &s.ca_pem {
            let certs = reqwest::Certificate::from_pem_bundle(ca)
                .map_err(|e| KubeError::Config(format!("certificate authority is not valid PEM: {e}")))?;
            if certs.is_empty() {
                return Err(KubeError::Config("certificate authority holds no certificate".to_string()));
            }
            b = b.tls_built_in_root_certs(false);
            for c in certs {
                b = b.add_root_certificate(c);
            }
        }
        if s.insecure {
            b = b.danger_accept_invalid_certs(true);
        }
        if let Some(id) = &s.identity_pem {
            let id = reqwest::Identity::from_pem(id)
                .map_err(|e| KubeError::Config(format!("client certificate/key are not valid PEM: {e}")))?;
            b = b.identity(id);
        }
        let http = b.build().map_err(|e| KubeError::Config(format!("cannot build HTTP client: {e}")))?;
        let namespace = namespace.or(s.namespace).unwrap_or_else(|| "default".to_string());
        Ok(KubeClient { http, server, token: s.token.map(Arc::new), namespace })
    }

    /// The namespace in effect (configured, from the context or service account, or
    /// `default`).
    pub fn namespace(&self) -> &str {
        &self.namespace
    }

    /// The API server's base URL.
    pub fn server(&self) -> &str {
        &self.server
    }

    /// Sends one request; a 2xx answer's body is returned, anything else is an error.
    pub async fn request(
        &self,
        method: reqwest::Method,
        path: &str,
        content_type: Option<&str>,
        body: Option<Vec<u8>>,
    ) -> Result<Vec<u8>, KubeError> {
        let transport =
            |error: String| KubeError::Transport { method: method.to_string(), path: path.to_string(), error };
        let mut req =
            self.http.request(method.clone(), format!("{}{path}", self.server)).header("Accept", "application/json");
        if let Some(t) = &self.token {
            req = req.bearer_auth(t.get()?);
        }
        if let Some(ct) = content_type {
            req = req.header("Content-Type", ct);
        }
        if let Some(b) = body {
            req = req.body(b);
        }
        let mut resp = req.send().await.map_err(|e| transport(error_chain(&e)))?;
        let status = resp.status();
        let mut body = Vec::new();
        while let Some(chunk) = resp.chunk().await.map_err(|e| transport(error_chain(&e)))? {
            if body.len() + chunk.len() > MAX_BODY {
                return Err(KubeError::Response {
                    method: method.to_string(),
                    path: path.to_string(),
                    what: format!("body larger than {MAX_BODY} bytes"),
                });
            }
            body.extend_from_slice(&chunk);
        }
        if status.is_success() {
            return Ok(body);
        }
        #[derive(Deserialize)]
        struct Status {
            #[serde(default)]
            reason: String,
            #[serde(default)]
            message: String,
        }
        let st: Option<Status> = serde_json::from_slice(&body).ok();
        let (reason, message) = match st {
            Some(s) if !s.reason.is_empty() => (s.reason, truncate(&s.message, 300)),
            Some(s) => (status.canonical_reason().unwrap_or("error").to_string(), truncate(&s.message, 300)),
            None => (status.canonical_reason().unwrap_or("error").to_string(), String::new()),
        };
        Err(KubeError::Status {
            method: method.to_string(),
            path: path.to_string(),
            status: status.as_u16(),
            reason,
            message,
        })
    }

    /// Sends a request and parses a JSON answer.
    pub async fn request_json<T: serde::de::DeserializeOwned>(
        &self,
        method: reqwest::Method,
        path: &str,
        content_type: Option<&str>,
        body: Option<Vec<u8>>,
    ) -> Result<T, KubeError> {
        let b = self.request(method.clone(), path, content_type, body).await?;
        serde_json::from_slice(&b).map_err(|e| KubeError::Response {
            method: method.to_string(),
            path: path.to_string(),
            what: format!("invalid JSON at line {} column {}", e.line(), e.column()),
        })
    }
}

fn truncate(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_string();
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}...", &s[..end])
}

/// reqwest's error with its sources (the useful part, e.g. "connection refused", is in a
/// source). URLs hold only the server and path, never credentials.
fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    let mut depth = 0;
    while let Some(c) = cur {
        let t = c.to_string();
        if !s.contains(&t) {
            s.push_str(": ");
            s.push_str(&t);
        }
        cur = c.source();
        depth += 1;
        if depth > 8 {
            break;
        }
    }
    s
}

fn in_cluster_settings(dir: &Path, env: &dyn Env) -> Result<Settings, KubeError> {
    let (Some(host), Some(port)) = (env.var("KUBERNETES_SERVICE_HOST"), env.var("KUBERNETES_SERVICE_PORT")) else {
        return Err(KubeError::Config(
            "not running in a cluster (KUBERNETES_SERVICE_HOST/KUBERNETES_SERVICE_PORT unset) and no kubeconfig given"
                .to_string(),
        ));
    };
    if port.parse::<u16>().is_err() {
        return Err(KubeError::Config("KUBERNETES_SERVICE_PORT is not a port number".to_string()));
    }
    let host = if host.contains(':') { format!("[{host}]") } else { host };
    let token_path = dir.join("token");
    // Read once now so a missing token fails at start, not at the first action.
    read_token(&token_path)?;
    let ca_path = dir.join("ca.crt");
    let ca =
        std::fs::read(&ca_path).map_err(|e| KubeError::Config(format!("cannot read {}: {e}", ca_path.display())))?;
    let namespace =
        std::fs::read_to_string(dir.join("namespace")).ok().map(|s| s.trim().to_string()).filter(|s| !s.is_empty());
    Ok(Settings {
        server: format!("https://{host}:{port}"),
        ca_pem: Some(ca),
        insecure: false,
        identity_pem: None,
        token: Some(Token::File { path: token_path, cache: Mutex::new(None) }),
        namespace,
    })
}

#[derive(Debug, Deserialize)]
struct KubeConfigFile {
    #[serde(default)]
    clusters: Vec<Named<ClusterEntry>>,
    #[serde(default)]
    users: Vec<NamedUser>,
    #[serde(default)]
    contexts: Vec<Named<ContextEntry>>,
    #[serde(default, rename = "current-context")]
    current_context: Option<String>,
}

#[derive(Debug, Deserialize)]
struct Named<T> {
    name: String,
    #[serde(alias = "cluster", alias = "context")]
    value: T,
}

#[derive(Debug, Deserialize)]
struct NamedUser {
    name: String,
    user: UserEntry,
}

#[derive(Debug, Deserialize)]
struct ClusterEntry {
    server: String,
    #[serde(default, rename = "certificate-authority")]
    certificate_authority: Option<PathBuf>,
    #[serde(default, rename = "certificate-authority-data")]
    certificate_authority_data: Option<String>,
    #[serde(default, rename = "insecure-skip-tls-verify")]
    insecure_skip_tls_verify: bool,
}

#[derive(Debug, Default, Deserialize)]
struct UserEntry {
    #[serde(default)]
    token: Option<String>,
    #[serde(default, rename = "tokenFile")]
    token_file: Option<PathBuf>,
    #[serde(default, rename = "client-certificate")]
    client_certificate: Option<PathBuf>,
    #[serde(default, rename = "client-certificate-data")]
    client_certificate_data: Option<String>,
    #[serde(default, rename = "client-key")]
    client_key: Option<PathBuf>,
    #[serde(default, rename = "client-key-data")]
    client_key_data: Option<String>,
    #[serde(default)]
    exec: Option<serde::de::IgnoredAny>,
    #[serde(default, rename = "auth-provider")]
    auth_provider: Option<serde::de::IgnoredAny>,
}

#[derive(Debug, Deserialize)]
struct ContextEntry {
    cluster: String,
    #[serde(default)]
    user: Option<String>,
    #[serde(default)]
    namespace: Option<String>,
}

fn kubeconfig_settings(path: &Path, context: Option<&str>) -> Result<Settings, KubeError> {
    let shown = path.display();
    let text = std::fs::read_to_string(path).map_err(|e| KubeError::Config(format!("cannot read {shown}: {e}")))?;
    let kc: KubeConfigFile = serde_saphyr::from_str(&text)
        .map_err(|e| KubeError::Config(format!("{shown}: {}", first_line(&e.to_string()))))?;
    let base = path.parent().unwrap_or(Path::new("."));
    let rel = |p: &Path| if p.is_absolute() { p.to_path_buf() } else { base.join(p) };
    let ctx_name = context
        .map(str::to_string)
        .or(kc.current_context.clone())
        .filter(|s| !s.is_empty())
        .ok_or_else(|| KubeError::Config(format!("{shown}: no current-context and no context configured")))?;
    let ctx = &kc
        .contexts
        .iter()
        .find(|c| c.name == ctx_name)
        .ok_or_else(|| KubeError::Config(format!("{shown}: no context named {ctx_name:?}")))?
        .value;
    let cluster = &kc
        .clusters
        .iter()
        .find(|c| c.name == ctx.cluster)
        .ok_or_else(|| {
            KubeError::Config(format!("{shown}: context {ctx_name:?} names unknown cluster {:?}", ctx.cluster))
        })?
        .value;
    let default_user = UserEntry::default();
    let user = match &ctx.user {
        Some(u) => {
            &kc.users
                .iter()
                .find(|x| &x.name == u)
                .ok_or_else(|| KubeError::Config(format!("{shown}: context {ctx_name:?} names unknown user {u:?}")))?
                .user
        }
        None => &default_user,
    };
    if user.exec.is_some() || user.auth_provider.is_some() {
        return Err(KubeError::Config(format!(
            "{shown}: user of context {ctx_name:?} uses an exec or auth-provider plugin, which Warden does not run; \
             use a token, tokenFile or client certificate"
        )));
    }
    let b64 = |field: &str, s: &str| {
        base64::engine::general_purpose::STANDARD
            .decode(s.trim())
            .map_err(|_| KubeError::Config(format!("{shown}: {field} is not valid base64")))
    };
    let read = |field: &str, p: &Path| {
        let p = rel(p);
        std::fs::read(&p).map_err(|e| KubeError::Config(format!("{shown}: {field} {}: {e}", p.display())))
    };
    let ca_pem = match (&cluster.certificate_authority_data, &cluster.certificate_authority) {
        (Some(d), _) => Some(b64("certificate-authority-data", d)?),
        (None, Some(p)) => Some(read("certificate-authority", p)?),
        _ => None,
    };
    let cert = match (&user.client_certificate_data, &user.client_certificate) {
        (Some(d), _) => Some(b64("client-certificate-data", d)?),
        (None, Some(p)) => Some(read("client-certificate", p)?),
        _ => None,
    };
    let key = match (&user.client_key_data, &user.client_key) {
        (Some(d), _) => Some(b64("client-key-data", d)?),
        (None, Some(p)) => Some(read("client-key", p)?),
        _ => None,
    };
    let identity_pem = match (cert, key) {
        (Some(mut c), Some(k)) => {
            c.push(b'\n');
            c.extend_from_slice(&k);
            Some(c)
        }
        (None, None) => None,
        _ => {
            return Err(KubeError::Config(format!(
                "{shown}: a client certificate needs its key and the key its certificate"
            )));
        }
    };
    let token = match (&user.token, &user.token_file) {
        (Some(t), _) => Some(Token::Static(t.trim().to_string())),
        (None, Some(p)) => {
            let p = rel(p);
            read_token(&p)?;
            Some(Token::File { path: p, cache: Mutex::new(None) })
        }
        _ => None,
    };
    Ok(Settings {
        server: cluster.server.clone(),
        ca_pem,
        insecure: cluster.insecure_skip_tls_verify,
        identity_pem,
        token,
        namespace: ctx.namespace.clone().filter(|s| !s.is_empty()),
    })
}

fn first_line(s: &str) -> String {
    s.lines().next().unwrap_or("").to_string()
}

/// `ms` as RFC 3339 in UTC with whole seconds (`2024-05-01T12:00:00Z`), as kubectl writes
/// `restartedAt`.
pub fn rfc3339_seconds(ms: i64) -> String {
    let t = time::OffsetDateTime::from_unix_timestamp(ms.div_euclid(1000)).unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
    t.format(time::macros::format_description!("[year]-[month]-[day]T[hour]:[minute]:[second]Z")).unwrap_or_default()
}

/// `ms` as a Kubernetes `MicroTime` (`2024-05-01T12:00:00.000000Z`).
pub fn micro_time(ms: i64) -> String {
    let t = time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
        .unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
    t.format(time::macros::format_description!("[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:6]Z"))
        .unwrap_or_default()
}

/// Parses an RFC 3339 time (Time or MicroTime) to ms since the epoch.
pub fn parse_time_ms(s: &str) -> Option<i64> {
    let t = time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339).ok()?;
    i64::try_from(t.unix_timestamp_nanos() / 1_000_000).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    #[test]
    fn times() {
        assert_eq!(rfc3339_seconds(1_714_564_800_123), "2024-05-01T12:00:00Z");
        assert_eq!(micro_time(1_714_564_800_123), "2024-05-01T12:00:00.123000Z");
        assert_eq!(parse_time_ms("2024-05-01T12:00:00.123000Z"), Some(1_714_564_800_123));
        assert_eq!(parse_time_ms("2024-05-01T14:00:00+02:00"), Some(1_714_564_800_000));
        assert_eq!(parse_time_ms("yesterday"), None);
    }

    fn tmp(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("warden-kube-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    #[test]
    fn kubeconfig_contexts_and_errors() {
        let d = tmp("kc");
        let kc = d.join("config");
        std::fs::write(
            &kc,
            r#"
apiVersion: v1
kind: Config
current-context: dev
clusters:
  - name: c1
    cluster: {server: "http://127.0.0.1:1", insecure-skip-tls-verify: true}
users:
  - name: u1
    user: {tokenFile: tok}
  - name: plug
    user: {exec: {command: aws, apiVersion: client.authentication.k8s.io/v1}}
contexts:
  - name: dev
    context: {cluster: c1, user: u1, namespace: team-a}
  - name: plugin
    context: {cluster: c1, user: plug}
  - name: broken
    context: {cluster: nope, user: u1}
preferences: {}
"#,
        )
        .unwrap();
        std::fs::write(d.join("tok"), "abc\n").unwrap();
        let c = KubeClient::from_kubeconfig(&kc, None, None, Duration::from_secs(1)).unwrap();
        assert_eq!(c.namespace(), "team-a");
        assert_eq!(c.server(), "http://127.0.0.1:1");
        assert_eq!(c.token.as_ref().unwrap().get().unwrap(), "abc");
        // The token file is re-read when it changes (mtime), as a rotated token is.
        std::thread::sleep(Duration::from_millis(20));
        std::fs::write(d.join("tok"), "rotated-token\n").unwrap();
        let f = std::fs::File::options().write(true).open(d.join("tok")).unwrap();
        f.set_modified(SystemTime::now() + Duration::from_secs(5)).unwrap();
        assert_eq!(c.token.as_ref().unwrap().get().unwrap(), "rotated-token");
        let e = KubeClient::from_kubeconfig(&kc, Some("plugin"), None, Duration::from_secs(1)).unwrap_err();
        assert!(e.to_string().contains("exec or auth-provider plugin"), "{e}");
        let e = KubeClient::from_kubeconfig(&kc, Some("broken"), None, Duration::from_secs(1)).unwrap_err();
        assert!(e.to_string().contains("unknown cluster \"nope\""), "{e}");
        let e = KubeClient::from_kubeconfig(&kc, Some("nope"), None, Duration::from_secs(1)).unwrap_err();
        assert!(e.to_string().contains("no context named \"nope\""), "{e}");
        let _ = std::fs::remove_dir_all(&d);
    }

    #[test]
    fn in_cluster_needs_env_and_files() {
        let d = tmp("sa");
        let env: HashMap<String, String> = HashMap::new();
        let e = KubeClient::in_cluster(&d, &env, None, Duration::from_secs(1)).unwrap_err();
        assert!(e.to_string().contains("KUBERNETES_SERVICE_HOST"), "{e}");
        let env: HashMap<String, String> =
            [("KUBERNETES_SERVICE_HOST", "10.96.0.1"), ("KUBERNETES_SERVICE_PORT", "443")]
                .into_iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect();
        let e = KubeClient::in_cluster(&d, &env, None, Duration::from_secs(1)).unwrap_err();
        assert!(e.to_string().contains("token"), "{e}");
        let _ = std::fs::remove_dir_all(&d);
    }
}
