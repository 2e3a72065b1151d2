//! Authentication and authorisation: password hashing, bearer tokens, login rate limits,
//! roles and the access rule for a patient's data.
//!
//! - Passwords are hashed with Argon2id (RFC 9106 defaults of the `argon2` crate), on the
//!   blocking pool so hashing never stalls the request executor.
//! - Tokens are 256 random bits, given to the client once and stored only as SHA-256
//!   hashes, with an expiry and a revocation time.
//! - Access rule: a patient reaches only their own data; a clinician or admin reaches a
//!   patient's data only through an active grant from that patient.

use crate::db::now_ms;
use crate::error::{ApiError, ApiResult};
use crate::state::AppState;
use argon2::Argon2;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use axum::extract::FromRequestParts;
use axum::http::header::AUTHORIZATION;
use axum::http::request::Parts;
use base64::Engine as _;
use rand::RngCore as _;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::sync::{LazyLock, Mutex};
use std::time::{Duration, Instant};
use utoipa::ToSchema;

/// What a user may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Owns health records.
    Patient,
    /// Reads and writes a patient's records with that patient's grant.
    Clinician,
    /// Manages users; reads no records without a grant.
    Admin,
}

impl Role {
    /// The value stored in the database.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Patient => "patient",
            Role::Clinician => "clinician",
            Role::Admin => "admin",
        }
    }

    /// Parses the stored value.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "patient" => Some(Role::Patient),
            "clinician" => Some(Role::Clinician),
            "admin" => Some(Role::Admin),
            _ => None,
        }
    }
}

/// Argon2id uses 19 MiB and tens of milliseconds per hash: at most this many run at once,
/// so a burst of logins queues instead of exhausting memory and the blocking pool.
static HASHING: tokio::sync::Semaphore = tokio::sync::Semaphore::const_new(4);

async fn hashing_permit() -> ApiResult<tokio::sync::SemaphorePermit<'static>> {
    HASHING.acquire().await.map_err(|e| ApiError::internal("password hashing permit", &e))
}

/// Hashes a password with Argon2id and a random salt.
pub async fn hash_password(password: String) -> ApiResult<String> {
    let _permit = hashing_permit().await?;
    tokio::task::spawn_blocking(move || {
        let mut salt = [0u8; 16];
        rand::rng().fill_bytes(&mut salt);
        let salt = SaltString::encode_b64(&salt).map_err(|e| ApiError::internal("password salt", &e))?;
        Argon2::default()
            .hash_password(password.as_bytes(), &salt)
            .map(|h| h.to_string())
            .map_err(|e| ApiError::internal("password hash", &e))
    })
    .await
    .map_err(|e| ApiError::internal("password hash task", &e))?
}

/// A hash to verify against when the account does not exist, so that a login for an
/// unknown email takes as long as one with a wrong password (no account enumeration).
static DUMMY_HASH: LazyLock<String> = LazyLock::new(|| {
    let salt = SaltString::encode_b64(b"warden-dummy-salt").expect("static salt is valid");
    Argon2::default().hash_password(b"not a real password", &salt).expect("hashing a constant").to_string()
});

/// Verifies a password against a stored hash (or against a dummy when `hash` is `None`).
pub async fn verify_password(hash: Option<String>, password: String) -> ApiResult<bool> {
    let _permit = hashing_permit().await?;
    tokio::task::spawn_blocking(move || {
        let stored = hash.as_deref().unwrap_or(DUMMY_HASH.as_str());
        let Ok(parsed) = PasswordHash::new(stored) else {
            return false;
        };
        Argon2::default().verify_password(password.as_bytes(), &parsed).is_ok() && hash.is_some()
    })
    .await
    .map_err(|e| ApiError::internal("password verify task", &e))
}

/// A new bearer token: 32 random bytes, base64url without padding.
pub fn new_token() -> String {
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// The stored form of a token.
pub fn token_hash(token: &str) -> String {
    let digest = Sha256::digest(token.as_bytes());
    let mut out = String::with_capacity(64);
    for b in digest {
        use std::fmt::Write as _;
        let _ = write!(out, "{b:02x}");
    }
    out
}

/// Fixed-window counters of login attempts per account and per client address.
///
/// Memory is bounded: each map holds at most [`LoginLimiter::MAX_KEYS`] keys; when full,
/// expired windows are dropped, and if none has expired the attempt is refused (failing
/// closed under a flood of distinct keys).
pub struct LoginLimiter {
    per_account: u32,
    per_address: u32,
    window: Duration,
    accounts: Mutex<HashMap<String, (Instant, u32)>>,
    addresses: Mutex<HashMap<std::net::IpAddr, (Instant, u32)>>,
}

impl LoginLimiter {
    /// Most keys kept per map.
    pub const MAX_KEYS: usize = 100_000;

    /// Limits per minute.
    pub fn new(per_account: u32, per_address: u32) -> Self {
        Self {
            per_account,
            per_address,
            window: Duration::from_secs(60),
            accounts: Mutex::new(HashMap::new()),
            addresses: Mutex::new(HashMap::new()),
        }
    }

    /// Counts an attempt; `false` when either limit is exceeded.
    pub fn allow(&self, account: &str, address: std::net::IpAddr) -> bool {
        let now = Instant::now();
        let by_address = Self::hit(&self.addresses, address, self.per_address, self.window, now);
        let by_account = Self::hit(&self.accounts, account.to_owned(), self.per_account, self.window, now);
        by_address && by_account
    }

    fn hit<K: std::hash::Hash + Eq>(
        map: &Mutex<HashMap<K, (Instant, u32)>>,
        key: K,
        limit: u32,
        window: Duration,
        now: Instant,
    ) -> bool {
        let mut map = map.lock().unwrap_or_else(|p| p.into_inner());
        if map.len() >= Self::MAX_KEYS && !map.contains_key(&key) {
            map.retain(|_, (start, _)| now.duration_since(*start) < window);
            if map.len() >= Self::MAX_KEYS {
                return false;
            }
        }
        let entry = map.entry(key).or_insert((now, 0));
        if now.duration_since(entry.0) >= window {
            *entry = (now, 0);
        }
        entry.1 = entry.1.saturating_add(1);
        entry.1 <= limit
    }
}

/// Recently validated tokens, so most requests skip the token query.
///
/// An entry lives at most `ttl` (and never past the token's expiry). Logout and account
/// changes in this process remove entries at once; another replica sharing the database
/// sees a revocation within `ttl`. A `ttl` of zero turns the cache off. At most
/// [`TokenCache::MAX_ENTRIES`] entries: when full, expired entries are dropped, and if none
/// has expired the cache is emptied.
pub struct TokenCache {
    ttl: Duration,
    entries: Mutex<HashMap<String, (AuthUser, Instant)>>,
}

impl TokenCache {
    /// Most entries kept.
    pub const MAX_ENTRIES: usize = 10_000;

    /// A cache whose entries live at most `ttl`.
    pub fn new(ttl: Duration) -> Self {
        Self { ttl, entries: Mutex::new(HashMap::new()) }
    }

    fn get(&self, hash: &str) -> Option<AuthUser> {
        if self.ttl.is_zero() {
            return None;
        }
        let entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        entries.get(hash).filter(|(_, until)| Instant::now() < *until).map(|(u, _)| u.clone())
    }

    fn put(&self, user: &AuthUser, expires_at_ms: i64) {
        if self.ttl.is_zero() {
            return;
        }
        let left = Duration::from_millis(u64::try_from(expires_at_ms - now_ms()).unwrap_or(0));
        let until = Instant::now() + self.ttl.min(left);
        let mut entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        if entries.len() >= Self::MAX_ENTRIES {
            let now = Instant::now();
            entries.retain(|_, (_, until)| now < *until);
            if entries.len() >= Self::MAX_ENTRIES {
                entries.clear();
            }
        }
        entries.insert(user.token_hash.clone(), (user.clone(), until));
    }

    /// Forgets one token (logout).
    pub fn remove(&self, hash: &str) {
        self.entries.lock().unwrap_or_else(|p| p.into_inner()).remove(hash);
    }

    /// Forgets every token of a user (disabled, or role changed).
    pub fn remove_user(&self, user_id: &str) {
        self.entries.lock().unwrap_or_else(|p| p.into_inner()).retain(|_, (u, _)| u.id != user_id);
    }
}

/// The authenticated caller, from `Authorization: Bearer <token>`.
#[derive(Debug, Clone)]
pub struct AuthUser {
    /// User id.
    pub id: String,
    /// Email address (PHI).
    pub email: String,
    /// Full name (PHI).
    pub name: String,
    /// Role.
    pub role: Role,
    /// Hash of the token used, so logout can revoke exactly it.
    pub token_hash: String,
}

impl FromRequestParts<AppState> for AuthUser {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        let header = parts
            .headers
            .get(AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .ok_or_else(|| ApiError::unauthorized("missing bearer token"))?;
        let token = header
            .strip_prefix("Bearer ")
            .or_else(|| header.strip_prefix("bearer "))
            .map(str::trim)
            .filter(|t| !t.is_empty() && t.len() <= 256)
            .ok_or_else(|| ApiError::unauthorized("authorization header must be `Bearer <token>`"))?;
        let hash = token_hash(token);
        if let Some(user) = state.token_cache.get(&hash) {
            return Ok(user);
        }
        let row: Option<(String, String, String, String, i64, i64, Option<i64>)> = state
            .db
            .timed(
                "token_lookup",
                sqlx::query_as(
                    "SELECT u.id, u.email, u.name, u.role, u.disabled, t.expires_at, t.revoked_at \
                     FROM tokens t JOIN users u ON u.id = t.user_id WHERE t.token_hash = $1",
                )
                .bind(&hash)
                .fetch_optional(state.db.pool()),
            )
            .await?;
        let invalid = || ApiError::unauthorized("invalid or expired token");
        let (id, email, name, role, disabled, expires_at, revoked_at) = row.ok_or_else(invalid)?;
        if disabled != 0 || revoked_at.is_some() || expires_at <= now_ms() {
            return Err(invalid());
        }
        let role =
            Role::parse(&role).ok_or_else(|| ApiError::internal("stored role", &"unknown role in users table"))?;
        let user = AuthUser { id, email, name, role, token_hash: hash };
        state.token_cache.put(&user, expires_at);
        Ok(user)
    }
}

impl AuthUser {
    /// Refuses anyone but an admin.
    pub fn require_admin(&self) -> ApiResult<()> {
        if self.role == Role::Admin { Ok(()) } else { Err(ApiError::forbidden("admin role required")) }
    }
}

/// Whether `user` may read and write the data of patient `patient_id`.
pub async fn may_access_patient(state: &AppState, user: &AuthUser, patient_id: &str) -> ApiResult<bool> {
    if user.role == Role::Patient {
        return Ok(user.id == patient_id);
    }
    let found: Option<(String,)> = state
        .db
        .timed(
            "grant_check",
            sqlx::query_as(
                "SELECT id FROM grants WHERE patient_id = $1 AND clinician_id = $2 AND revoked_at IS NULL LIMIT 1",
            )
            .bind(patient_id)
            .bind(&user.id)
            .fetch_optional(state.db.pool()),
        )
        .await?;
    Ok(found.is_some())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limiter_counts_per_account_and_address() {
        let l = LoginLimiter::new(2, 3);
        let a: std::net::IpAddr = "127.0.0.1".parse().unwrap();
        let b: std::net::IpAddr = "127.0.0.2".parse().unwrap();
        assert!(l.allow("x@example.org", a));
        assert!(l.allow("x@example.org", a));
        assert!(!l.allow("x@example.org", b), "third attempt on one account is refused");
        assert!(l.allow("y@example.org", a), "third attempt from one address is allowed");
        assert!(!l.allow("z@example.org", a), "fourth attempt from one address is refused");
        assert!(l.allow("z@example.org", b));
    }

    #[test]
    fn token_cache_expires_and_forgets() {
        let user = |id: &str, hash: &str| AuthUser {
            id: id.into(),
            email: String::new(),
            name: String::new(),
            role: Role::Patient,
            token_hash: hash.into(),
        };
        let far = now_ms() + 3_600_000;
        let cache = TokenCache::new(Duration::from_secs(60));
        cache.put(&user("u1", "h1"), far);
        cache.put(&user("u1", "h2"), far);
        cache.put(&user("u2", "h3"), far);
        cache.put(&user("u2", "h4"), now_ms() - 1);
        assert_eq!(cache.get("h1").map(|u| u.id), Some("u1".into()));
        assert!(cache.get("h4").is_none(), "never past the token's own expiry");
        cache.remove("h1");
        assert!(cache.get("h1").is_none());
        cache.remove_user("u1");
        assert!(cache.get("h2").is_none());
        assert!(cache.get("h3").is_some());
        let off = TokenCache::new(Duration::ZERO);
        off.put(&user("u1", "h1"), far);
        assert!(off.get("h1").is_none());
    }

    #[test]
    fn tokens_are_random_and_hashed() {
        let (t1, t2) = (new_token(), new_token());
        assert_ne!(t1, t2);
        assert_eq!(t1.len(), 43);
        assert_eq!(token_hash(&t1).len(), 64);
        assert_eq!(token_hash(&t1), token_hash(&t1));
        assert_ne!(token_hash(&t1), token_hash(&t2));
    }

    #[tokio::test]
    async fn passwords_verify() {
        let h = hash_password("correct horse battery".into()).await.unwrap();
        assert!(h.starts_with("$argon2id$"));
        assert!(verify_password(Some(h.clone()), "correct horse battery".into()).await.unwrap());
        assert!(!verify_password(Some(h), "wrong".into()).await.unwrap());
        assert!(!verify_password(None, "not a real password".into()).await.unwrap());
    }
}
