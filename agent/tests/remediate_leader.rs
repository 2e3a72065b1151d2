//! Two agents on one PostgreSQL: only the holder of the target's advisory lock acts; when
//! its connection dies (the backend is terminated, as when the agent's host dies), it stops
//! acting at once and the other agent takes over.
//!
//! Needs `WARDEN_POSTGRES_URL` (CI: `postgres://postgres@127.0.0.1:5432/test`).

use sqlx::postgres::PgPoolOptions;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;
use warden::remediate::actuator::{ActionOutcome, Actuator, ActuatorError};
use warden::remediate::leader::{LeaderElection, PgAdvisoryLeader, lock_key};
use warden::remediate::{
    AlertInput, BoxFuture, ManualClock, MemoryAuditLog, RecordingSink, RemediationConfig, Remediator, RemediatorDeps,
};

const T0: i64 = 1_700_000_000_000;

/// The one service both agents would act on.
#[derive(Default)]
struct Service {
    replicas: Mutex<i64>,
    actions: Mutex<Vec<String>>,
}

struct Agent(&'static str, Arc<Service>);

impl Actuator for Agent {
    fn kind(&self) -> &'static str {
        "test"
    }
    fn current_replicas(&self) -> BoxFuture<'_, Result<i64, ActuatorError>> {
        Box::pin(async move { Ok(*self.1.replicas.lock().unwrap()) })
    }
    fn scale_to(&self, n: i64) -> BoxFuture<'_, Result<ActionOutcome, ActuatorError>> {
        Box::pin(async move {
            *self.1.replicas.lock().unwrap() = n;
            self.1.actions.lock().unwrap().push(format!("{} scale {n}", self.0));
            Ok(ActionOutcome::default())
        })
    }
    fn restart(&self, _: Option<String>) -> BoxFuture<'_, Result<ActionOutcome, ActuatorError>> {
        Box::pin(async { Ok(ActionOutcome::default()) })
    }
}

fn postgres_url() -> Option<String> {
    warden_testkit::require(
        "leader election on PostgreSQL",
        std::env::var("WARDEN_POSTGRES_URL").ok().filter(|s| !s.is_empty()),
        "WARDEN_POSTGRES_URL is not set",
    )
}

fn agent(
    name: &'static str,
    target: &str,
    service: &Arc<Service>,
    leader: Arc<PgAdvisoryLeader>,
    clock: &Arc<ManualClock>,
) -> (Remediator, Arc<MemoryAuditLog>) {
    let yaml = format!(
        "targets:\n  {target}:\n    actuator: {{exec: {{scale: {{argv: [/bin/true]}}, replicas: {{argv: [/bin/true]}}}}}}\n    max_replicas: 10\n    cooldown: 1m\npolicies:\n  - {{name: up, matchers: ['alertname=\"HighLatency\"'], action: scale_up, target: {target}}}\n"
    );
    let config: RemediationConfig = serde_saphyr::from_str(&yaml).unwrap();
    let audit = Arc::new(MemoryAuditLog::new(1000));
    let act: Arc<dyn Actuator> = Arc::new(Agent(name, Arc::clone(service)));
    let deps = RemediatorDeps {
        actuators: HashMap::from([(target.to_string(), act)]),
        audit: audit.clone(),
        sink: Arc::new(RecordingSink::new(100)),
        leader,
        clock: clock.clone(),
    };
    (Remediator::new(&config, deps).unwrap(), audit)
}

fn high() -> AlertInput {
    AlertInput::firing(&[("alertname", "HighLatency")], 2.0, T0)
}

fn decisions(audit: &MemoryAuditLog) -> Vec<String> {
    audit.entries().iter().map(|e| format!("{} {}", e.decision, e.reason.split(':').next().unwrap_or(""))).collect()
}

/// The backend pid holding the advisory lock of `target`.
async fn lock_holder(admin: &sqlx::PgPool, target: &str) -> Option<i32> {
    let key = lock_key(target) as u64;
    sqlx::query_scalar::<_, i32>(
        "SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND granted AND objsubid = 1 \
         AND classid = $1::bigint::oid AND objid = $2::bigint::oid",
    )
    .bind((key >> 32) as i64)
    .bind((key & 0xffff_ffff) as i64)
    .fetch_optional(admin)
    .await
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_the_lock_holder_acts_and_the_other_takes_over() {
    let Some(url) = postgres_url() else { return };
    let target = warden_testkit::unique("api");
    let pool = || PgPoolOptions::new().max_connections(2).acquire_timeout(Duration::from_secs(5)).connect(&url);
    let (pool_a, pool_b, admin) = (pool().await.unwrap(), pool().await.unwrap(), pool().await.unwrap());
    let leader_a = PgAdvisoryLeader::new(pool_a, [target.clone()], Duration::from_millis(100));
    let leader_b = PgAdvisoryLeader::new(pool_b, [target.clone()], Duration::from_millis(100));
    leader_a.step().await;
    leader_b.step().await;
    assert!(leader_a.is_leader(&target));
    assert!(!leader_b.is_leader(&target), "the lock is taken");
    let holder = lock_holder(&admin, &target).await.expect("agent a holds the lock");

    let service = Arc::new(Service { replicas: Mutex::new(1), ..Default::default() });
    let clock = Arc::new(ManualClock::new(T0));
    let (a, audit_a) = agent("a", &target, &service, Arc::clone(&leader_a), &clock);
    let (b, audit_b) = agent("b", &target, &service, Arc::clone(&leader_b), &clock);
    a.evaluate(&[high()]).await;
    b.evaluate(&[high()]).await;
    assert_eq!(*service.actions.lock().unwrap(), ["a scale 2"]);
    assert_eq!(decisions(&audit_a), ["taken taken"]);
    assert_eq!(decisions(&audit_b), ["skipped not_leader"]);
    let st = b.status().await;
    assert_eq!((st[0].leader, st[0].election), (false, "postgres"));

    // Agent a's connection dies.
    let killed: bool =
        sqlx::query_scalar("SELECT pg_terminate_backend($1)").bind(holder).fetch_one(&admin).await.unwrap();
    assert!(killed);
    // a still believes it leads (no step since), but confirms before acting and refuses.
    clock.advance(Duration::from_secs(61));
    a.evaluate(&[high()]).await;
    assert_eq!(decisions(&audit_a).last().unwrap(), "skipped not_leader");
    assert!(!leader_a.is_leader(&target));
    // b takes the released lock within a few rounds.
    let deadline = Instant::now() + Duration::from_secs(10);
    while !leader_b.is_leader(&target) {
        assert!(Instant::now() < deadline, "agent b never took over");
        leader_b.step().await;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    b.evaluate(&[high()]).await;
    assert_eq!(*service.actions.lock().unwrap(), ["a scale 2", "b scale 3"], "one action per decision, never two");
    // a reconnects but the lock is b's now.
    leader_a.step().await;
    assert!(!leader_a.is_leader(&target));
    clock.advance(Duration::from_secs(61));
    a.evaluate(&[high()]).await;
    assert_eq!(service.actions.lock().unwrap().len(), 2);

    // b shuts down cleanly: the lock is released and a can lead again.
    leader_b.release().await;
    assert!(!leader_b.is_leader(&target));
    leader_a.step().await;
    assert!(leader_a.is_leader(&target));
    leader_a.release().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn background_election_follows_a_dead_connection() {
    let Some(url) = postgres_url() else { return };
    let target = warden_testkit::unique("web");
    let pool = || PgPoolOptions::new().max_connections(2).acquire_timeout(Duration::from_secs(5)).connect(&url);
    let (pool_a, pool_b, admin) = (pool().await.unwrap(), pool().await.unwrap(), pool().await.unwrap());
    let stop = CancellationToken::new();
    let leader_a = PgAdvisoryLeader::new(pool_a, [target.clone()], Duration::from_millis(100));
    let ta = leader_a.spawn(stop.clone());
    let wait = |l: Arc<PgAdvisoryLeader>, t: String, want: bool| async move {
        let deadline = Instant::now() + Duration::from_secs(10);
        while l.is_leader(&t) != want {
            assert!(Instant::now() < deadline, "leadership never became {want}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    };
    wait(Arc::clone(&leader_a), target.clone(), true).await;
    let leader_b = PgAdvisoryLeader::new(pool_b, [target.clone()], Duration::from_millis(100));
    let tb = leader_b.spawn(stop.clone());
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert!(!leader_b.is_leader(&target));
    // Agent a dies: its task stops without releasing anything, its connection is cut.
    ta.abort();
    let _ = ta.await;
    let holder = lock_holder(&admin, &target).await.unwrap();
    sqlx::query("SELECT pg_terminate_backend($1)").bind(holder).execute(&admin).await.unwrap();
    wait(Arc::clone(&leader_b), target.clone(), true).await;
    stop.cancel();
    tb.await.unwrap();
    assert!(lock_holder(&admin, &target).await.is_none(), "released on shutdown");
}
