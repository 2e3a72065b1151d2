//! The in-memory time-series store: Gorilla-compressed chunks per series, an inverted
//! label index, a retention window and a series limit.
//!
//! Layout:
//! - Series are found by their labels' hash in one of [`SHARDS`] lock-striped maps, so
//!   appends from many producers take only a shared lock on one shard and the mutex of
//!   their own series. A shard is locked for writing only to create or remove a series.
//! - Each series holds sealed immutable chunks of up to 120 samples (with their first
//!   and last timestamps, so reads skip chunks outside the range and retention drops
//!   whole chunks) and one head chunk being appended.
//! - The label index ([`Postings`]) and the id → series table sit behind one `RwLock`,
//!   read by `select` and written only when a series is created or removed.
//!
//! Invariants:
//! - Lock order is shard → index, shard → series and index → series (`select` reads
//!   samples under the index read lock); a series mutex is never held while taking a
//!   shard or the index lock, and the index lock never while taking a shard.
//! - A series is in its shard iff it is in the index (the two are updated together
//!   under the shard's write lock, except in [`Db::clear`], which holds every lock).
//! - Within a series, timestamps strictly increase across chunks; `last` is the newest
//!   sample ever accepted, kept even when retention dropped the chunk holding it.
//! - After [`Db::truncate`]`(now)`, samples before `now - retention` are never returned,
//!   and appends before it fail with [`AppendError::TooOld`]. The chunk straddling the
//!   cutoff is kept whole, so [`DbStats::samples`] may count a few such hidden samples.
//! - `select` returns series sorted by labels. To sort without comparing labels, each
//!   series carries a rank: its position in label order among the series present at the
//!   last re-ranking (done under the index write lock when many series were created
//!   since). All ranked series hold ranks of the same re-ranking, so ranks order them as
//!   their labels do; series created since are unranked and compared by labels.
//! - Locks are taken through helpers that ignore poisoning: no panic can leave a
//!   half-written chunk (pushes do not panic), so the data stays usable.

use std::collections::HashMap;
use std::hash::{BuildHasher, BuildHasherDefault, Hasher};

use foldhash::fast::RandomState;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard};

use promql_parser::label::Matcher;

use super::chunk::{Chunk, HeadChunk, MAX_CHUNK_SAMPLES};
use super::index::{Postings, SeriesId};
use super::{AppendError, Appendable, Queryable, Sample, Series, SeriesHandle};
use crate::labels::Labels;

/// Number of lock stripes for the labels → series maps.
const SHARDS: usize = 64;

/// Shortest time span a head chunk may cover before it is cut, whatever the retention.
const MIN_CHUNK_SPAN_MS: i64 = 60_000;

/// Store limits.
#[derive(Clone, Debug)]
pub struct DbConfig {
    /// Samples older than the newest timestamp minus this are dropped by [`Db::truncate`].
    pub retention_ms: i64,
    /// Maximum number of series; appends creating more are refused.
    pub max_series: usize,
}

impl Default for DbConfig {
    fn default() -> Self {
        DbConfig { retention_ms: 6 * 3600 * 1000, max_series: 1_000_000 }
    }
}

/// Size figures and counters (counters are monotonic for the life of the store, so the
/// agent can export them as metrics; [`Db::clear`] does not reset them).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct DbStats {
    /// Series held.
    pub series: usize,
    /// Samples held (chunks straddling the retention cutoff are counted whole).
    pub samples: usize,
    /// Chunks held, the head chunks included.
    pub chunks: usize,
    /// Compressed size of all chunks' sample data, in bytes (labels, index and per-chunk
    /// bookkeeping not included).
    pub bytes: usize,
    /// Appends refused because they would have created a series past `max_series`.
    pub series_limit_refusals: u64,
    /// Appends refused as out of order.
    pub out_of_order: u64,
    /// Appends refused as a duplicate timestamp with a different value.
    pub duplicate_timestamps: u64,
    /// Appends refused as older than the retention cutoff.
    pub too_old: u64,
    /// Series created since the store was built.
    pub series_created: u64,
    /// Series removed (left empty by retention, or cleared) since the store was built.
    pub series_removed: u64,
}

/// A hasher for keys that already are a hash: the shard maps are keyed by the labels'
/// hash (foldhash, seeded at random per store), computed once per append.
#[derive(Default)]
struct PassThrough(u64);

impl Hasher for PassThrough {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(b);
        }
    }

    fn write_u64(&mut self, v: u64) {
        self.0 = v;
    }
}

/// A hasher for series ids: they are dense and sequential, so one multiplication by an
/// odd constant spreads them over the high bits the table probes with.
#[derive(Default)]
struct IdHasher(u64);

impl Hasher for IdHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0.rotate_left(8) ^ u64::from(b)).wrapping_mul(0x9e37_79b9_7f4a_7c15);
        }
    }

    fn write_u64(&mut self, v: u64) {
        self.0 = v.wrapping_mul(0x9e37_79b9_7f4a_7c15);
    }
}

/// One shard: labels hash → the series with that hash (almost always one).
type ShardMap = HashMap<u64, Bucket, BuildHasherDefault<PassThrough>>;

/// The series sharing one hash. The single series of the usual case sits in the map's
/// slot itself, so a lookup reaches it without a further memory access.
#[derive(Debug)]
enum Bucket {
    One(Arc<MemSeries>),
    /// Two or more series (hash collisions).
    Many(Vec<Arc<MemSeries>>),
}

impl Bucket {
    fn as_slice(&self) -> &[Arc<MemSeries>] {
        match self {
            Bucket::One(s) => std::slice::from_ref(s),
            Bucket::Many(v) => v,
        }
    }

    fn push(&mut self, s: Arc<MemSeries>) {
        match self {
            Bucket::One(first) => *self = Bucket::Many(vec![Arc::clone(first), s]),
            Bucket::Many(v) => v.push(s),
        }
    }

    /// Keeps the series for which `keep` is true; returns false if none is left.
    fn retain(&mut self, mut keep: impl FnMut(&Arc<MemSeries>) -> bool) -> bool {
        match self {
            Bucket::One(s) => keep(s),
            Bucket::Many(v) => {
                v.retain(|s| keep(s));
                let left = !v.is_empty();
                if let [only] = v.as_slice() {
                    let only = Arc::clone(only);
                    *self = Bucket::One(only);
                }
                left
            }
        }
    }
}

/// Rank of a series created since the last re-ranking.
const UNRANKED: u64 = u64::MAX;

/// Series created since the last re-ranking above which `select` re-ranks, if they are
/// also more than a quarter of all series (so re-ranking costs O(log n) label
/// comparisons per created series).
const RERANK_MIN: usize = 1024;

/// One series.
#[derive(Debug)]
struct MemSeries {
    id: SeriesId,
    /// The store holding the series ([`Db::store_id`]).
    store: u64,
    /// Set, under the shard's write lock, when the series leaves the store; a
    /// [`SeriesHandle`] on it is then stale.
    removed: AtomicBool,
    labels: Labels,
    /// Position in label order at the last re-ranking, or [`UNRANKED`]. Written only
    /// under the index write lock.
    rank: AtomicU64,
    data: Mutex<SeriesData>,
}

/// A series' samples.
#[derive(Debug, Default)]
struct SeriesData {
    sealed: Vec<Chunk>,
    head: Option<HeadChunk>,
    /// Newest accepted sample: timestamp and value bits.
    last: Option<(i64, u64)>,
}

impl SeriesData {
    fn is_empty(&self) -> bool {
        self.sealed.is_empty() && self.head.is_none()
    }

    /// Appends the samples in `[mint, maxt]` to `out`.
    fn collect(&self, mint: i64, maxt: i64, out: &mut Vec<Sample>) {
        let first = self.sealed.partition_point(|c| c.max_t() < mint);
        // Reserve for every sample of the chunks the window touches, so `out` grows once.
        let touched = self.sealed[first..].iter().take_while(|c| c.min_t() <= maxt).map(|c| usize::from(c.count()));
        let head =
            self.head.as_ref().filter(|h| h.max_t() >= mint && h.min_t() <= maxt).map(|h| usize::from(h.count()));
        out.reserve(touched.chain(head).sum());
        for c in &self.sealed[first..] {
            if c.min_t() > maxt {
                return;
            }
            if c.min_t() >= mint && c.max_t() <= maxt {
                out.extend(c.iter());
                continue;
            }
            for s in c.iter() {
                if s.t > maxt {
                    return;
                }
                if s.t >= mint {
                    out.push(s);
                }
            }
        }
        if let Some(h) = &self.head
            && h.max_t() >= mint
            && h.min_t() <= maxt
        {
            for s in h.iter_from(mint) {
                if s.t > maxt {
                    return;
                }
                if s.t >= mint {
                    out.push(s);
                }
            }
        }
    }

    /// Drops the chunks whose samples are all before `cutoff`.
    fn drop_before(&mut self, cutoff: i64) {
        let keep_from = self.sealed.partition_point(|c| c.max_t() < cutoff);
        self.sealed.drain(..keep_from);
        if self.sealed.is_empty() && self.head.as_ref().is_some_and(|h| h.max_t() < cutoff) {
            self.head = None;
        }
    }
}

/// The label index and the id → series table.
#[derive(Debug, Default)]
struct Index {
    postings: Postings,
    series: HashMap<SeriesId, Arc<MemSeries>, BuildHasherDefault<IdHasher>>,
    next_id: SeriesId,
    /// Series created since the last re-ranking (some may have been removed since).
    unranked: usize,
}

impl Index {
    fn needs_rerank(&self) -> bool {
        self.unranked > RERANK_MIN && self.unranked.saturating_mul(4) > self.series.len()
    }

    /// Ranks every series by its labels.
    fn rerank(&mut self) {
        let mut all: Vec<&Arc<MemSeries>> = self.series.values().collect();
        all.sort_unstable_by(|a, b| a.labels.cmp(&b.labels));
        for (i, s) in all.iter().enumerate() {
            s.rank.store(i as u64, Ordering::Relaxed);
        }
        self.unranked = 0;
    }
}

/// The in-memory time-series store.
pub struct Db {
    config: DbConfig,
    /// Unique per store in the process, so a [`SeriesHandle`] of another store is ignored.
    store_id: u64,
    chunk_span_ms: i64,
    hasher: RandomState,
    shards: Box<[RwLock<ShardMap>]>,
    index: RwLock<Index>,
    num_series: AtomicUsize,
    /// Appends before this fail and selects do not look before it (`i64::MIN` until the
    /// first truncate).
    min_valid_t: AtomicI64,
    series_limit_refusals: AtomicU64,
    out_of_order: AtomicU64,
    duplicate_timestamps: AtomicU64,
    too_old: AtomicU64,
    series_created: AtomicU64,
    series_removed: AtomicU64,
}

impl Default for Db {
    fn default() -> Self {
        Db::new(DbConfig::default())
    }
}

impl std::fmt::Debug for Db {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Db")
            .field("config", &self.config)
            .field("series", &self.num_series.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}

fn read<T>(l: &RwLock<T>) -> RwLockReadGuard<'_, T> {
    l.read().unwrap_or_else(PoisonError::into_inner)
}

fn write<T>(l: &RwLock<T>) -> RwLockWriteGuard<'_, T> {
    l.write().unwrap_or_else(PoisonError::into_inner)
}

fn lock<T>(l: &Mutex<T>) -> MutexGuard<'_, T> {
    l.lock().unwrap_or_else(PoisonError::into_inner)
}

fn find<'a>(map: &'a ShardMap, hash: u64, labels: &Labels) -> Option<&'a Arc<MemSeries>> {
    map.get(&hash)?.as_slice().iter().find(|s| s.labels == *labels)
}

impl Db {
    /// An empty store. A negative `retention_ms` is taken as zero.
    pub fn new(mut config: DbConfig) -> Self {
        config.retention_ms = config.retention_ms.max(0);
        // Cut head chunks after a quarter of the retention at the latest, so that slow
        // series also free memory in steps of at most a quarter of the window.
        let chunk_span_ms = (config.retention_ms / 4).max(MIN_CHUNK_SPAN_MS);
        static NEXT_STORE_ID: AtomicU64 = AtomicU64::new(0);
        Db {
            config,
            store_id: NEXT_STORE_ID.fetch_add(1, Ordering::Relaxed),
            chunk_span_ms,
            hasher: RandomState::default(),
            shards: (0..SHARDS).map(|_| RwLock::new(ShardMap::default())).collect(),
            index: RwLock::new(Index::default()),
            num_series: AtomicUsize::new(0),
            min_valid_t: AtomicI64::new(i64::MIN),
            series_limit_refusals: AtomicU64::new(0),
            out_of_order: AtomicU64::new(0),
            duplicate_timestamps: AtomicU64::new(0),
            too_old: AtomicU64::new(0),
            series_created: AtomicU64::new(0),
            series_removed: AtomicU64::new(0),
        }
    }

    /// The configuration in use.
    pub fn config(&self) -> &DbConfig {
        &self.config
    }

    /// Drops every series and sample, and forgets the retention cutoff. Counters stay.
    pub fn clear(&self) {
        let mut shards: Vec<RwLockWriteGuard<'_, ShardMap>> = self.shards.iter().map(write).collect();
        let mut index = write(&self.index);
        let n = index.series.len();
        for s in &mut shards {
            for series in s.values().flat_map(Bucket::as_slice) {
                series.removed.store(true, Ordering::Relaxed);
            }
            s.clear();
        }
        index.postings.clear();
        index.series.clear();
        index.unranked = 0;
        self.num_series.store(0, Ordering::Relaxed);
        self.min_valid_t.store(i64::MIN, Ordering::Relaxed);
        self.series_removed.fetch_add(n as u64, Ordering::Relaxed);
    }

    /// Drops chunks whose samples are all older than `now - retention` (the chunk
    /// straddling the cutoff is kept but its older samples are no longer returned), then
    /// removes the series left without samples. Later appends older than the cutoff fail
    /// with [`AppendError::TooOld`]. The cutoff never moves back.
    pub fn truncate(&self, now: i64) {
        let cutoff = now.saturating_sub(self.config.retention_ms);
        let cutoff = self.min_valid_t.fetch_max(cutoff, Ordering::Relaxed).max(cutoff);
        for shard in self.shards.iter() {
            let map = read(shard);
            for s in map.values().flat_map(Bucket::as_slice) {
                lock(&s.data).drop_before(cutoff);
            }
        }
        self.remove_empty_series();
    }

    /// Removes the series that hold no sample (after [`Db::truncate`]) from the store and
    /// its index; returns how many were removed.
    pub fn remove_empty_series(&self) -> usize {
        let mut removed: Vec<(SeriesId, Labels)> = Vec::new();
        for shard in self.shards.iter() {
            // Appenders hold the shard's read lock while they append, so under the write
            // lock no sample can arrive in a series between the check and its removal.
            let mut map = write(shard);
            map.retain(|_, bucket| {
                bucket.retain(|s| {
                    let empty = lock(&s.data).is_empty();
                    if empty {
                        s.removed.store(true, Ordering::Relaxed);
                        removed.push((s.id, s.labels.clone()));
                    }
                    !empty
                })
            });
        }
        if removed.is_empty() {
            return 0;
        }
        {
            let mut index = write(&self.index);
            index.postings.remove(&removed);
            for (id, _) in &removed {
                index.series.remove(id);
            }
        }
        self.num_series.fetch_sub(removed.len(), Ordering::Relaxed);
        self.series_removed.fetch_add(removed.len() as u64, Ordering::Relaxed);
        removed.len()
    }

    /// Current size and counters. Walks every series: meant for periodic metrics.
    pub fn stats(&self) -> DbStats {
        let mut st = DbStats {
            series_limit_refusals: self.series_limit_refusals.load(Ordering::Relaxed),
            out_of_order: self.out_of_order.load(Ordering::Relaxed),
            duplicate_timestamps: self.duplicate_timestamps.load(Ordering::Relaxed),
            too_old: self.too_old.load(Ordering::Relaxed),
            series_created: self.series_created.load(Ordering::Relaxed),
            series_removed: self.series_removed.load(Ordering::Relaxed),
            ..DbStats::default()
        };
        for shard in self.shards.iter() {
            let map = read(shard);
            for s in map.values().flat_map(Bucket::as_slice) {
                st.series += 1;
                let d = lock(&s.data);
                for c in &d.sealed {
                    st.samples += usize::from(c.count());
                    st.bytes += c.bytes();
                    st.chunks += 1;
                }
                if let Some(h) = &d.head {
                    st.samples += usize::from(h.count());
                    st.bytes += h.bytes();
                    st.chunks += 1;
                }
            }
        }
        st
    }

    /// Sorted names of the labels present in at least one series.
    pub fn label_names(&self) -> Vec<String> {
        read(&self.index).postings.label_names()
    }

    /// Sorted values of label `name` over all series.
    pub fn label_values(&self, name: &str) -> Vec<String> {
        read(&self.index).postings.label_values(name)
    }

    /// Appends to an existing series. The caller holds the series' shard lock (read or
    /// write), which keeps [`Db::remove_empty_series`] from removing it meanwhile.
    fn append_to(&self, s: &MemSeries, t: i64, v: f64) -> Result<(), AppendError> {
        let mut d = lock(&s.data);
        let bits = v.to_bits();
        if let Some((last_t, last_v)) = d.last {
            if t < last_t {
                self.out_of_order.fetch_add(1, Ordering::Relaxed);
                return Err(AppendError::OutOfOrder { labels: s.labels.clone(), t, last: last_t });
            }
            if t == last_t {
                if last_v == bits {
                    return Ok(());
                }
                self.duplicate_timestamps.fetch_add(1, Ordering::Relaxed);
                return Err(AppendError::DuplicateTimestamp { labels: s.labels.clone(), t });
            }
        }
        d.last = Some((t, bits));
        match &mut d.head {
            Some(h) if h.count() < MAX_CHUNK_SAMPLES && t.saturating_sub(h.min_t()) < self.chunk_span_ms => {
                h.push(t, v);
            }
            _ => {
                if let Some(h) = d.head.take() {
                    d.sealed.push(h.seal());
                }
                d.head = Some(HeadChunk::new(t, v));
            }
        }
        Ok(())
    }
}

impl Db {
    /// The shard of the series whose labels hash to `hash`.
    fn shard(&self, hash: u64) -> &RwLock<ShardMap> {
        &self.shards[((hash >> 32) as usize) % SHARDS]
    }

    /// Refuses samples before the retention cutoff.
    fn check_age(&self, labels: &Labels, t: i64) -> Result<(), AppendError> {
        if t < self.min_valid_t.load(Ordering::Relaxed) {
            self.too_old.fetch_add(1, Ordering::Relaxed);
            return Err(AppendError::TooOld { labels: labels.clone(), t });
        }
        Ok(())
    }

    /// [`Appendable::append`], also returning the series (if it exists now) when `want`.
    fn append_find(
        &self,
        labels: &Labels,
        t: i64,
        v: f64,
        want: bool,
    ) -> (Result<(), AppendError>, Option<Arc<MemSeries>>) {
        if let Err(e) = self.check_age(labels, t) {
            return (Err(e), None);
        }
        let hash = self.hasher.hash_one(labels);
        let shard = self.shard(hash);
        {
            let map = read(shard);
            if let Some(s) = find(&map, hash, labels) {
                return (self.append_to(s, t, v), want.then(|| Arc::clone(s)));
            }
        }
        let mut map = write(shard);
        if let Some(s) = find(&map, hash, labels) {
            return (self.append_to(s, t, v), want.then(|| Arc::clone(s)));
        }
        if self.num_series.fetch_add(1, Ordering::Relaxed) >= self.config.max_series {
            self.num_series.fetch_sub(1, Ordering::Relaxed);
            self.series_limit_refusals.fetch_add(1, Ordering::Relaxed);
            let e = AppendError::SeriesLimit { limit: self.config.max_series, labels: labels.clone() };
            return (Err(e), None);
        }
        self.series_created.fetch_add(1, Ordering::Relaxed);
        let series = {
            let mut index = write(&self.index);
            // Ids are assigned under the index lock so postings receive them in order.
            let id = index.next_id;
            index.next_id += 1;
            let series = Arc::new(MemSeries {
                id,
                store: self.store_id,
                removed: AtomicBool::new(false),
                labels: labels.clone(),
                rank: AtomicU64::new(UNRANKED),
                data: Mutex::default(),
            });
            index.unranked += 1;
            index.postings.add(id, labels);
            index.series.insert(id, Arc::clone(&series));
            series
        };
        let result = self.append_to(&series, t, v);
        let handle = want.then(|| Arc::clone(&series));
        match map.get_mut(&hash) {
            Some(bucket) => bucket.push(series),
            None => {
                map.insert(hash, Bucket::One(series));
            }
        }
        (result, handle)
    }
}

impl Appendable for Db {
    fn append(&self, labels: &Labels, t: i64, v: f64) -> Result<(), AppendError> {
        self.append_find(labels, t, v, false).0
    }

    /// Keeps the series in `handle`; while it is this store's live series with these
    /// labels, the append skips the shard lookup (it still takes the shard's read lock,
    /// which keeps [`Db::remove_empty_series`] out, and checks the series is not removed).
    fn append_with_handle(
        &self,
        labels: &Labels,
        t: i64,
        v: f64,
        handle: &mut SeriesHandle,
    ) -> Result<(), AppendError> {
        if let Some(s) = handle.0.as_ref().and_then(|h| h.downcast_ref::<MemSeries>())
            && s.store == self.store_id
            && s.labels == *labels
        {
            self.check_age(labels, t)?;
            let _map = read(self.shard(self.hasher.hash_one(labels)));
            if !s.removed.load(Ordering::Relaxed) {
                return self.append_to(s, t, v);
            }
        }
        let (result, series) = self.append_find(labels, t, v, true);
        handle.0 = series.map(|s| s as Arc<dyn std::any::Any + Send + Sync>);
        result
    }
}

impl Queryable for Db {
    fn select(&self, matchers: &[Matcher], mint: i64, maxt: i64) -> Vec<Series> {
        let mint = mint.max(self.min_valid_t.load(Ordering::Relaxed));
        if mint > maxt {
            return Vec::new();
        }
        let rerank = read(&self.index).needs_rerank();
        if rerank {
            let mut index = write(&self.index);
            if index.needs_rerank() {
                index.rerank();
            }
        }
        // Ranks are read under the lock, so they all come from one re-ranking. The lock is
        // held to the end so the series need no reference-count traffic (index → series
        // mutex is a permitted order: no series mutex holder waits for the index).
        let index = read(&self.index);
        let ids = index.postings.select(matchers, |id| index.series.get(&id).map(|s| &s.labels));
        let mut hits: Vec<(u64, &MemSeries)> =
            ids.iter().filter_map(|id| index.series.get(id).map(|s| (s.rank.load(Ordering::Relaxed), &**s))).collect();
        hits.sort_unstable_by(
            |(ra, a), (rb, b)| {
                if *ra != UNRANKED && *rb != UNRANKED { ra.cmp(rb) } else { a.labels.cmp(&b.labels) }
            },
        );
        let mut out = Vec::with_capacity(hits.len());
        for (_, s) in hits {
            let mut samples = Vec::new();
            lock(&s.data).collect(mint, maxt, &mut samples);
            if !samples.is_empty() {
                out.push(Series { labels: s.labels.clone(), samples });
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use promql_parser::label::MatchOp;

    use super::*;

    fn select_all(db: &Db) -> Vec<Labels> {
        let m = [Matcher::new(MatchOp::Equal, "__name__", "m")];
        db.select(&m, 0, 10).into_iter().map(|s| s.labels).collect()
    }

    #[test]
    fn handles_skip_lookups_but_never_change_results() {
        let a = Labels::from_pairs(&[("__name__", "m"), ("k", "a")]);
        let b = Labels::from_pairs(&[("__name__", "m"), ("k", "b")]);
        let samples = |db: &Db, l: &Labels| -> Vec<(i64, f64)> {
            let m = [Matcher::new(MatchOp::Equal, "k", l.get("k").unwrap_or(""))];
            db.select(&m, 0, i64::MAX).into_iter().flat_map(|s| s.samples).map(|s| (s.t, s.v)).collect()
        };
        let db = Db::new(DbConfig { retention_ms: 100, max_series: 2 });
        let mut h = SeriesHandle::default();
        db.append_with_handle(&a, 1, 1.0, &mut h).expect("new series");
        assert!(h.0.is_some());
        db.append_with_handle(&a, 2, 2.0, &mut h).expect("through the handle");
        assert_eq!(db.append_with_handle(&a, 2, 2.0, &mut h), Ok(()), "same sample again");
        assert!(matches!(db.append_with_handle(&a, 2, 3.0, &mut h), Err(AppendError::DuplicateTimestamp { .. })));
        assert!(matches!(db.append_with_handle(&a, 1, 3.0, &mut h), Err(AppendError::OutOfOrder { .. })));
        // The handle of `a` used for `b`: `b` gets its own series, and the handle follows.
        db.append_with_handle(&b, 1, 5.0, &mut h).expect("other labels");
        assert_eq!(samples(&db, &a), [(1, 1.0), (2, 2.0)]);
        assert_eq!(samples(&db, &b), [(1, 5.0)]);
        // Another store ignores the handle.
        let other = Db::default();
        other.append_with_handle(&b, 7, 7.0, &mut h).expect("other store");
        assert_eq!(samples(&other, &b), [(7, 7.0)]);
        assert_eq!(samples(&db, &b), [(1, 5.0)]);
        // A removed series: the stale handle must not write into it.
        let mut ha = SeriesHandle::default();
        db.append_with_handle(&a, 3, 3.0, &mut ha).expect("append");
        db.truncate(1_000);
        assert_eq!(db.stats().series, 0);
        assert!(matches!(db.append_with_handle(&a, 5, 1.0, &mut ha), Err(AppendError::TooOld { .. })));
        db.append_with_handle(&a, 950, 9.0, &mut ha).expect("recreated");
        assert_eq!(samples(&db, &a), [(950, 9.0)]);
        db.clear();
        db.append_with_handle(&a, 1, 4.0, &mut ha).expect("after clear");
        assert_eq!(samples(&db, &a), [(1, 4.0)]);
        assert_eq!(db.stats().series, 1);
    }

    #[test]
    fn bucket_holds_colliding_series() {
        let mk = |id: SeriesId| {
            Arc::new(MemSeries {
                id,
                store: 0,
                removed: AtomicBool::new(false),
                labels: Labels::from_pairs(&[("k", &id.to_string())]),
                rank: AtomicU64::new(UNRANKED),
                data: Mutex::default(),
            })
        };
        let mut b = Bucket::One(mk(1));
        b.push(mk(2));
        b.push(mk(3));
        let ids = |b: &Bucket| b.as_slice().iter().map(|s| s.id).collect::<Vec<_>>();
        assert_eq!(ids(&b), [1, 2, 3]);
        assert!(b.retain(|s| s.id != 2));
        assert_eq!(ids(&b), [1, 3]);
        assert!(b.retain(|s| s.id == 3));
        assert!(matches!(b, Bucket::One(_)));
        assert_eq!(ids(&b), [3]);
        assert!(!b.retain(|_| false));
        let mut m = Bucket::Many(vec![mk(4), mk(5)]);
        assert!(!m.retain(|_| false));
    }

    #[test]
    fn select_sorts_by_labels_across_reranks() {
        let db = Db::default();
        let labels = |i: usize| Labels::from_pairs(&[("__name__", "m"), ("k", &format!("{i:05}"))]);
        // Created in reverse label order, so ids order them backwards.
        for i in (0..3000).rev().filter(|i| i % 2 == 0) {
            db.append(&labels(i), 1, 1.0).expect("append");
        }
        let got = select_all(&db);
        assert_eq!(got.len(), 1500);
        assert!(got.windows(2).all(|w| w[0] < w[1]), "sorted after the first re-ranking");
        assert_eq!(read(&db.index).unranked, 0, "1500 new series trigger a re-ranking");
        // Fewer than a quarter new: they stay unranked, between ranked ones.
        for i in (0..600).map(|i| i * 2 + 1) {
            db.append(&labels(i), 1, 1.0).expect("append");
        }
        assert_eq!(read(&db.index).unranked, 600);
        let got = select_all(&db);
        assert_eq!(got.len(), 2100);
        assert!(got.windows(2).all(|w| w[0] < w[1]), "sorted with ranked and unranked series mixed");
        assert_eq!(got[0], labels(0));
        assert_eq!(got[1], labels(1));
    }
}
