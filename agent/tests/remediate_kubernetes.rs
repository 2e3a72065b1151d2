//! The kubernetes actuator and Lease election against recorded Kubernetes API pairs
//! (`tests/fixtures/kubernetes/`, see its README for the documentation each comes from):
//! a local server asserts every request's method, path, content type, JSON body and bearer
//! token exactly and answers with the recorded response. No Kubernetes API server runs
//! here, so this is the closest to the real peer we can get.

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::response::Response;
use serde::Deserialize;
use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use warden::remediate::ManualClock;
use warden::remediate::actuator::Actuator;
use warden::remediate::actuator::kubernetes::{DeploymentActuator, KubeClient, KubeLease};
use warden::remediate::config::LeaseConfig;
use warden::remediate::leader::LeaderElection;

/// 2024-05-01T12:00:00Z.
const NOON: i64 = 1_714_564_800_000;
const TOKEN: &str = "fixture-token-7f3a";

#[derive(Debug, Deserialize)]
struct Fixture {
    source: String,
    exchanges: Vec<Exchange>,
}

#[derive(Debug, Clone, Deserialize)]
struct Exchange {
    request: Req,
    response: Resp,
}

#[derive(Debug, Clone, Deserialize)]
struct Req {
    method: String,
    path: String,
    content_type: Option<String>,
    body: Option<serde_json::Value>,
}

#[derive(Debug, Clone, Deserialize)]
struct Resp {
    status: u16,
    body: serde_json::Value,
}

struct Replay {
    expected: Mutex<VecDeque<(String, usize, Exchange)>>,
    errors: Mutex<Vec<String>>,
}

fn fixture_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/kubernetes")
}

async fn handle(State(r): State<Arc<Replay>>, req: Request) -> Response {
    let (parts, body) = req.into_parts();
    let method = parts.method.to_string();
    let path = parts.uri.path().to_string();
    let query = parts.uri.query().map(str::to_string);
    let header = |name: &str| parts.headers.get(name).and_then(|v| v.to_str().ok()).map(str::to_string);
    let content_type = header("content-type");
    let auth = header("authorization");
    let body = axum::body::to_bytes(body, 1 << 20).await.unwrap_or_default();
    let next = r.expected.lock().unwrap().pop_front();
    let mut problems = Vec::new();
    let Some((file, i, ex)) = next else {
        r.errors.lock().unwrap().push(format!("unexpected request {method} {path}: no exchange left"));
        return Response::builder().status(500).body(Body::from("no exchange left")).unwrap();
    };
    let at = format!("{file} exchange {i}");
    if method != ex.request.method || path != ex.request.path {
        problems.push(format!("{at}: got {method} {path}, want {} {}", ex.request.method, ex.request.path));
    }
    if query.is_some() {
        problems.push(format!("{at}: unexpected query {query:?}"));
    }
    if content_type != ex.request.content_type {
        problems.push(format!("{at}: content type {content_type:?}, want {:?}", ex.request.content_type));
    }
    if auth.as_deref() != Some(&format!("Bearer {TOKEN}")) {
        problems.push(format!("{at}: authorization header {auth:?}"));
    }
    match &ex.request.body {
        None if !body.is_empty() => problems.push(format!("{at}: unexpected body {}", String::from_utf8_lossy(&body))),
        None => {}
        Some(want) => match serde_json::from_slice::<serde_json::Value>(&body) {
            Ok(got) if &got == want => {}
            Ok(got) => problems.push(format!("{at}: body {got}, want {want}")),
            Err(e) => problems.push(format!("{at}: body is not JSON ({e}): {}", String::from_utf8_lossy(&body))),
        },
    }
    if !problems.is_empty() {
        r.errors.lock().unwrap().extend(problems);
        return Response::builder().status(500).body(Body::from("request did not match the fixture")).unwrap();
    }
    Response::builder()
        .status(StatusCode::from_u16(ex.response.status).unwrap())
        .header("content-type", "application/json")
        .body(Body::from(ex.response.body.to_string()))
        .unwrap()
}

struct Server {
    replay: Arc<Replay>,
    client: KubeClient,
    _dir: warden_testkit::TempDir,
    task: tokio::task::JoinHandle<()>,
}

impl Server {
    /// A replay server for `files` (in order) and a client configured through a kubeconfig
    /// pointing at it with a bearer token.
    async fn start(files: &[&str]) -> Server {
        let mut expected = VecDeque::new();
        for f in files {
            let text = std::fs::read_to_string(fixture_dir().join(f)).unwrap();
            let fx: Fixture = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{f}: {e}"));
            assert!(
                fx.source.starts_with("https://kubernetes.io/docs/reference/"),
                "{f}: source must be the API reference"
            );
            for (i, ex) in fx.exchanges.into_iter().enumerate() {
                expected.push_back((f.to_string(), i, ex));
            }
        }
        let replay = Arc::new(Replay { expected: Mutex::new(expected), errors: Mutex::new(Vec::new()) });
        let app = axum::Router::new().fallback(handle).with_state(Arc::clone(&replay));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let task = tokio::spawn(async move {
            axum::serve(listener, app).await.unwrap();
        });
        let dir = warden_testkit::TempDir::new("kubeconfig");
        let kc = dir.path().join("config");
        std::fs::write(
            &kc,
            format!(
                "apiVersion: v1\nkind: Config\ncurrent-context: test\nclusters:\n- name: local\n  cluster:\n    server: http://127.0.0.1:{port}\nusers:\n- name: warden\n  user:\n    token: {TOKEN}\ncontexts:\n- name: test\n  context:\n    cluster: local\n    user: warden\n    namespace: default\n"
            ),
        )
        .unwrap();
        let client = KubeClient::from_kubeconfig(&kc, None, None, Duration::from_secs(5)).unwrap();
        assert_eq!(client.namespace(), "default");
        Server { replay, client, _dir: dir, task }
    }

    /// Every exchange was used and every request matched.
    fn finish(self) {
        let errors = self.replay.errors.lock().unwrap().clone();
        assert!(errors.is_empty(), "requests did not match the fixtures:\n{}", errors.join("\n"));
        let left: Vec<String> = self
            .replay
            .expected
            .lock()
            .unwrap()
            .iter()
            .map(|(f, i, e)| format!("{f} #{i} {} {}", e.request.method, e.request.path))
            .collect();
        assert!(left.is_empty(), "exchanges never requested: {left:?}");
        self.task.abort();
    }
}

fn deployment(s: &Server) -> DeploymentActuator {
    DeploymentActuator::new(s.client.clone(), "default", "web", Arc::new(ManualClock::new(NOON)))
}

#[tokio::test]
async fn scale_reads_and_patches_the_scale_subresource() {
    let s = Server::start(&["scale.json"]).await;
    let d = deployment(&s);
    assert_eq!(d.current_replicas().await.unwrap(), 2);
    let out = d.scale_to(3).await.unwrap();
    assert_eq!(out.detail.as_deref(), Some("deployment web spec.replicas 3 (status.replicas 2)"));
    s.finish();
}

#[tokio::test]
async fn api_errors_name_the_request_and_reason() {
    let s = Server::start(&["scale_forbidden.json"]).await;
    let e = deployment(&s).current_replicas().await.unwrap_err();
    assert!(
        e.message.starts_with("GET /apis/apps/v1/namespaces/default/deployments/web/scale: 403 Forbidden: deployments.apps \"web\" is forbidden"),
        "{e}"
    );
    assert!(!e.message.contains(TOKEN));
    s.finish();
}

#[tokio::test]
async fn rollout_restart_patches_the_restarted_at_annotation() {
    let s = Server::start(&["restart.json"]).await;
    let out = deployment(&s).restart(None).await.unwrap();
    assert_eq!(out.detail.as_deref(), Some("rollout restart of deployment web at 2024-05-01T12:00:00Z"));
    s.finish();
}

#[tokio::test]
async fn pod_delete_checks_ownership_and_uid() {
    let s = Server::start(&["pod_delete.json", "pod_delete_foreign.json"]).await;
    let d = deployment(&s);
    let out = d.restart(Some("web-7d4b9c6f5d-x2x9q".into())).await.unwrap();
    assert_eq!(out.detail.as_deref(), Some("deleted pod web-7d4b9c6f5d-x2x9q of deployment web"));
    let e = d.restart(Some("db-0".into())).await.unwrap_err();
    assert_eq!(e.message, "pod db-0 does not belong to deployment web");
    // A name that is not a pod name never reaches the API.
    let e = d.restart(Some("../../secrets".into())).await.unwrap_err();
    assert_eq!(e.message, "instance is not a valid pod name");
    s.finish();
}

fn lease(s: &Server, identity: &str, clock: &Arc<ManualClock>) -> Arc<KubeLease> {
    KubeLease::new(s.client.clone(), "default", "warden-remediate-web", identity, LeaseConfig::default(), clock.clone())
}

#[tokio::test]
async fn lease_acquire_renew_and_lose_on_conflict() {
    let s = Server::start(&["lease_acquire_renew.json", "lease_lose_conflict.json"]).await;
    let clock = Arc::new(ManualClock::new(NOON));
    let a = lease(&s, "warden-a", &clock);
    assert!(!a.is_leader("web"));
    assert!(a.try_acquire_or_renew().await, "acquired by creating the lease");
    assert!(a.is_leader("web"));
    clock.set(NOON + 5_000);
    assert!(a.try_acquire_or_renew().await, "renewed");
    assert_eq!(a.observed_renew_ms(), Some(NOON + 5_000));
    clock.set(NOON + 10_000);
    assert!(!a.try_acquire_or_renew().await, "409 Conflict on the update");
    assert!(!a.is_leader("web"), "a conflict steps down at once, before the lease would expire");
    s.finish();
}

#[tokio::test]
async fn lease_expiry_lets_another_agent_take_over() {
    let s = Server::start(&["lease_acquire_renew.json", "lease_takeover.json"]).await;
    let clock = Arc::new(ManualClock::new(NOON));
    let a = lease(&s, "warden-a", &clock);
    let b = lease(&s, "warden-b", &clock);
    assert!(a.try_acquire_or_renew().await);
    clock.set(NOON + 5_000);
    assert!(a.try_acquire_or_renew().await);
    // warden-a stops renewing (it died). warden-b sees a fresh lease and waits.
    clock.set(NOON + 10_000);
    assert!(!b.try_acquire_or_renew().await);
    assert!(!b.is_leader("web"));
    // 16 s after b first saw that record unchanged, the 15 s lease has expired.
    clock.set(NOON + 26_000);
    assert!(b.try_acquire_or_renew().await, "took over");
    assert!(b.is_leader("web"));
    // warden-a comes back: the lease names warden-b, so it does not lead.
    assert!(!a.try_acquire_or_renew().await);
    assert!(!a.is_leader("web"));
    s.finish();
}

#[tokio::test]
async fn lease_leadership_lapses_without_renewal() {
    let s = Server::start(&["lease_acquire_renew.json"]).await;
    let clock = Arc::new(ManualClock::new(NOON));
    let a = lease(&s, "warden-a", &clock);
    assert!(a.try_acquire_or_renew().await);
    clock.set(NOON + 5_000);
    assert!(a.try_acquire_or_renew().await);
    // No renewal for the lease duration: no longer leader, whatever the task does.
    clock.set(NOON + 5_000 + 15_000);
    assert!(!a.is_leader("web"));
    s.finish();
}

#[test]
fn in_cluster_service_account() {
    let dir = warden_testkit::TempDir::new("serviceaccount");
    let cert = rcgen::generate_simple_self_signed(vec!["kubernetes.default.svc".to_string()]).unwrap();
    std::fs::write(dir.path().join("ca.crt"), cert.cert.pem()).unwrap();
    std::fs::write(dir.path().join("token"), "sa-token\n").unwrap();
    std::fs::write(dir.path().join("namespace"), "payments\n").unwrap();
    let env: std::collections::HashMap<String, String> =
        [("KUBERNETES_SERVICE_HOST", "10.96.0.1"), ("KUBERNETES_SERVICE_PORT", "443")]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
    let c = KubeClient::in_cluster(dir.path(), &env, None, Duration::from_secs(1)).unwrap();
    assert_eq!(c.server(), "https://10.96.0.1:443");
    assert_eq!(c.namespace(), "payments");
    let c = KubeClient::in_cluster(dir.path(), &env, Some("other".into()), Duration::from_secs(1)).unwrap();
    assert_eq!(c.namespace(), "other", "a configured namespace wins");
    std::fs::write(dir.path().join("ca.crt"), "not a certificate").unwrap();
    let e = KubeClient::in_cluster(dir.path(), &env, None, Duration::from_secs(1)).unwrap_err();
    assert!(e.to_string().contains("certificate authority"), "{e}");
}
