//! Gorilla-compressed sample chunks: delta-of-delta timestamps and XOR'd float values.
//!
//! A chunk is a bit stream. The first sample is written raw (64-bit timestamp, 64-bit
//! value). Every later sample writes the delta-of-delta of its timestamp in one of five
//! buckets (`0`, `10`+7 bits, `110`+14 bits, `1110`+20 bits, `1111`+64 bits) and the XOR
//! of its value's bits with the previous value's bits (`0` when equal; `10` + the
//! meaningful bits when they fit the previous leading/trailing-zero window; `11` + 5 bits
//! of leading zeros + 6 bits of length + the meaningful bits otherwise).
//!
//! Invariants:
//! - Values round-trip bit-exactly: the codec works on `f64::to_bits`, so every NaN
//!   payload (the staleness marker included), ±Inf and -0.0 come back unchanged.
//! - Timestamps round-trip exactly for any `i64`, using wrapping arithmetic; callers
//!   only append strictly increasing timestamps.
//! - Decoding never panics: a truncated or corrupt stream ends the iteration early.
//! - A chunk holds at most [`MAX_CHUNK_SAMPLES`] samples (the count fits a `u16`).
//! - The head chunk (only) keeps a decoder checkpoint every [`CHECKPOINT_EVERY`] samples,
//!   the decoder's whole state after that sample (the newest [`KEPT_CHECKPOINTS`], held
//!   inline so finding one costs no extra memory access), so a read of its recent samples
//!   starts there instead of at the first sample. Checkpoints live beside the bit stream
//!   (it is unchanged, and sealing drops them), so sealed chunks stay as compact as the
//!   stream.

use super::Sample;

/// Samples per chunk before it is sealed (about 30 minutes at a 15 s interval).
pub(crate) const MAX_CHUNK_SAMPLES: u16 = 120;

/// Samples between two decoder checkpoints of a head chunk.
const CHECKPOINT_EVERY: u16 = 16;

/// Checkpoints a head chunk keeps (the newest ones): enough for windows up to about
/// `(KEPT_CHECKPOINTS - 1) * CHECKPOINT_EVERY` samples long, which covers the usual 5–15
/// minute windows at a 15 s interval. Older windows decode from the chunk's start.
const KEPT_CHECKPOINTS: usize = 4;

/// An append-only bit stream, most significant bit first.
#[derive(Debug, Default)]
struct BitWriter {
    buf: Vec<u8>,
    /// Bits written; the last byte holds `bits % 8` used bits (8 if zero and non-empty).
    bits: usize,
}

impl BitWriter {
    fn with_capacity(bytes: usize) -> Self {
        BitWriter { buf: Vec::with_capacity(bytes), bits: 0 }
    }

    /// Writes the low `n` bits of `v` (`n <= 64`).
    #[inline]
    fn write_bits(&mut self, v: u64, mut n: u32) {
        while n > 0 {
            let used = (self.bits % 8) as u32;
            if used == 0 {
                self.buf.push(0);
            }
            let free = 8 - used;
            let take = free.min(n);
            let shift = n - take;
            let chunk = ((v >> shift) & ((1u64 << take) - 1)) as u8;
            if let Some(last) = self.buf.last_mut() {
                *last |= chunk << (free - take);
            }
            self.bits += take as usize;
            n -= take;
        }
    }

    #[inline]
    fn write_bit(&mut self, bit: bool) {
        self.write_bits(u64::from(bit), 1);
    }
}

/// Reads a bit stream written by [`BitWriter`], through a 64-bit buffer.
struct BitReader<'a> {
    data: &'a [u8],
    /// Next byte of `data` to load into `buf`.
    next: usize,
    /// Unread bits, left-aligned; the bits below the top `avail` are zero.
    buf: u64,
    avail: u32,
}

impl<'a> BitReader<'a> {
    fn new(data: &'a [u8]) -> Self {
        BitReader { data, next: 0, buf: 0, avail: 0 }
    }

    /// A reader positioned `bit` bits into `data` (at its end if `bit` is past it).
    fn at(data: &'a [u8], bit: usize) -> Self {
        let next = (bit / 8).min(data.len());
        let mut r = BitReader { data, next, buf: 0, avail: 0 };
        let skip = (bit % 8) as u32;
        if skip > 0 && r.read_small(skip).is_none() {
            r.next = data.len();
        }
        r
    }

    /// Loads whole bytes while they fit.
    #[inline]
    fn refill(&mut self) {
        // Fast path: eight bytes at once, of which the whole ones that fit are kept.
        if let Some(&word) = self.data.get(self.next..).and_then(|rest| rest.first_chunk::<8>()) {
            let bytes = (64 - self.avail) / 8;
            if bytes == 0 {
                return;
            }
            let bits = bytes * 8;
            let w = u64::from_be_bytes(word) >> (64 - bits);
            self.buf |= w << (64 - self.avail - bits);
            self.avail += bits;
            self.next += bytes as usize;
            return;
        }
        while self.avail <= 56 {
            let Some(&b) = self.data.get(self.next) else { return };
            self.buf |= u64::from(b) << (56 - self.avail);
            self.avail += 8;
            self.next += 1;
        }
    }

    /// Reads `n` bits (`1..=56`) or `None` past the end of the stream.
    #[inline(always)]
    fn read_small(&mut self, n: u32) -> Option<u64> {
        debug_assert!((1..=56).contains(&n));
        if self.avail < n {
            self.refill();
            if self.avail < n {
                return None;
            }
        }
        let v = self.buf >> (64 - n);
        self.buf <<= n;
        self.avail -= n;
        Some(v)
    }

    /// Reads `n` bits (`1..=64`).
    #[inline(always)]
    fn read_bits(&mut self, n: u32) -> Option<u64> {
        if n <= 56 {
            self.read_small(n)
        } else {
            let hi = self.read_small(32)?;
            let lo = self.read_small(n - 32)?;
            Some((hi << (n - 32)) | lo)
        }
    }

    #[inline(always)]
    fn read_bit(&mut self) -> Option<bool> {
        self.read_small(1).map(|b| b == 1)
    }
}

/// Delta-of-delta buckets: (control bits, control length, payload bits).
/// The smallest bucket holds ±64 ms, so timestamps with a few milliseconds of scrape
/// jitter cost 9 bits instead of the 16 of a 14-bit first bucket.
const DOD_BUCKETS: [(u64, u32, u32); 3] = [(0b10, 2, 7), (0b110, 3, 14), (0b1110, 4, 20)];

/// Sign-extends the low `n` bits of `v`.
#[inline]
fn sign_extend(v: u64, n: u32) -> i64 {
    ((v << (64 - n)) as i64) >> (64 - n)
}

/// True if `v` fits in `n` bits two's complement.
#[inline]
fn fits(v: i64, n: u32) -> bool {
    let lim = 1i64 << (n - 1);
    v >= -lim && v < lim
}

/// The decoder's state right after sample `index` of a head chunk.
#[derive(Clone, Copy, Debug, Default)]
struct Checkpoint {
    /// Bit offset of the next sample.
    bit: u32,
    /// Index of the sample just decoded.
    index: u16,
    leading: u8,
    trailing: u8,
    t: i64,
    delta: i64,
    v: u64,
}

/// The chunk being appended to.
#[derive(Debug)]
pub(crate) struct HeadChunk {
    w: BitWriter,
    count: u16,
    min_t: i64,
    t: i64,
    delta: i64,
    v: u64,
    leading: u32,
    trailing: u32,
    /// Checkpoint `k` (after sample `k * CHECKPOINT_EVERY`, `k >= 1`) is in slot
    /// `k % KEPT_CHECKPOINTS` while `k > made - KEPT_CHECKPOINTS`.
    checkpoints: [Checkpoint; KEPT_CHECKPOINTS],
    /// Checkpoints made so far.
    made: u16,
}

impl HeadChunk {
    /// A chunk holding one sample.
    pub(crate) fn new(t: i64, v: f64) -> Self {
        let mut w = BitWriter::with_capacity(32);
        w.write_bits(t as u64, 64);
        w.write_bits(v.to_bits(), 64);
        HeadChunk {
            w,
            count: 1,
            min_t: t,
            t,
            delta: 0,
            v: v.to_bits(),
            leading: u32::MAX,
            trailing: 0,
            checkpoints: [Checkpoint::default(); KEPT_CHECKPOINTS],
            made: 0,
        }
    }

    /// Appends a sample; `t` must be greater than [`HeadChunk::max_t`].
    #[inline]
    pub(crate) fn push(&mut self, t: i64, v: f64) {
        let delta = t.wrapping_sub(self.t);
        let dod = delta.wrapping_sub(self.delta);
        if dod == 0 {
            self.w.write_bit(false);
        } else if let Some(&(ctl, ctl_len, n)) = DOD_BUCKETS.iter().find(|&&(_, _, n)| fits(dod, n)) {
            self.w.write_bits(ctl, ctl_len);
            self.w.write_bits(dod as u64, n);
        } else {
            self.w.write_bits(0b1111, 4);
            self.w.write_bits(dod as u64, 64);
        }
        self.t = t;
        self.delta = delta;
        self.count += 1;

        let bits = v.to_bits();
        let xor = bits ^ self.v;
        self.v = bits;
        if xor == 0 {
            self.w.write_bit(false);
        } else {
            self.push_xor(xor);
        }
        if (self.count - 1).is_multiple_of(CHECKPOINT_EVERY) {
            self.checkpoint();
        }
    }

    /// Records the decoder's state after the sample just pushed.
    fn checkpoint(&mut self) {
        // Before the first value window the decoder's window is unused: any value does.
        let (leading, trailing) = if self.leading == u32::MAX { (0, 0) } else { (self.leading, self.trailing) };
        // The stream of a chunk is far below 4 Gbit (120 samples of at most 146 bits).
        let Ok(bit) = u32::try_from(self.w.bits) else { return };
        self.made += 1;
        self.checkpoints[usize::from(self.made) % KEPT_CHECKPOINTS] = Checkpoint {
            bit,
            index: self.count - 1,
            leading: leading as u8,
            trailing: trailing as u8,
            t: self.t,
            delta: self.delta,
            v: self.v,
        };
    }

    /// Writes a non-zero value XOR.
    #[inline]
    fn push_xor(&mut self, xor: u64) {
        let lead = xor.leading_zeros().min(31);
        let trail = xor.trailing_zeros();
        if self.leading != u32::MAX && lead >= self.leading && trail >= self.trailing {
            self.w.write_bits(0b10, 2);
            self.w.write_bits(xor >> self.trailing, 64 - self.leading - self.trailing);
        } else {
            self.leading = lead;
            self.trailing = trail;
            let sig = 64 - lead - trail;
            self.w.write_bits(0b11, 2);
            self.w.write_bits(u64::from(lead), 5);
            // 64 meaningful bits are written as 0: six bits cannot hold 64, and 0 never occurs.
            self.w.write_bits(u64::from(sig & 63), 6);
            self.w.write_bits(xor >> trail, sig);
        }
    }

    /// Samples held.
    pub(crate) fn count(&self) -> u16 {
        self.count
    }

    /// Timestamp of the first sample.
    pub(crate) fn min_t(&self) -> i64 {
        self.min_t
    }

    /// Timestamp of the last sample.
    pub(crate) fn max_t(&self) -> i64 {
        self.t
    }

    /// Compressed size in bytes.
    pub(crate) fn bytes(&self) -> usize {
        self.w.buf.len()
    }

    /// An iterator over the samples, oldest first.
    pub(crate) fn iter(&self) -> ChunkIter<'_> {
        ChunkIter::new(&self.w.buf, self.count)
    }

    /// An iterator over the samples, oldest first, that may skip samples before `mint`
    /// (it starts after the last checkpoint older than `mint`): it yields every sample at
    /// or after `mint` and possibly a few before.
    pub(crate) fn iter_from(&self, mint: i64) -> ChunkIter<'_> {
        // Newest first: the first checkpoint older than `mint` is where to start.
        let oldest = self.made.saturating_sub(KEPT_CHECKPOINTS as u16 - 1).max(1);
        let Some(c) = (oldest..=self.made)
            .rev()
            .map(|k| &self.checkpoints[usize::from(k) % KEPT_CHECKPOINTS])
            .find(|c| c.t < mint)
        else {
            return self.iter();
        };
        ChunkIter {
            r: BitReader::at(&self.w.buf, c.bit as usize),
            left: self.count.saturating_sub(c.index + 1),
            first: false,
            t: c.t,
            delta: c.delta,
            v: c.v,
            leading: u32::from(c.leading),
            trailing: u32::from(c.trailing),
        }
    }

    /// Freezes the chunk.
    pub(crate) fn seal(self) -> Chunk {
        let mut data = Vec::with_capacity(2 + 10 + self.w.buf.len());
        data.extend_from_slice(&self.count.to_le_bytes());
        let mut span = self.t.wrapping_sub(self.min_t) as u64;
        loop {
            let byte = (span & 0x7f) as u8;
            span >>= 7;
            if span == 0 {
                data.push(byte);
                break;
            }
            data.push(byte | 0x80);
        }
        data.extend_from_slice(&self.w.buf);
        Chunk { data: data.into_boxed_slice() }
    }
}

/// A sealed, immutable chunk: one boxed byte slice holding a small header and the bit
/// stream, `[count: u16 LE][max_t - min_t: LEB128 u64][bit stream]`. The first timestamp
/// is the stream's first 64 bits, so `min_t` is not stored twice. A sealed chunk costs
/// its `Box<[u8]>` (16 bytes) plus 3–12 header bytes beside the stream.
#[derive(Debug)]
pub(crate) struct Chunk {
    data: Box<[u8]>,
}

impl Chunk {
    /// `(count, max_t - min_t, offset of the bit stream)`.
    #[inline]
    fn header(&self) -> (u16, u64, usize) {
        let d = &self.data;
        let count = u16::from_le_bytes([d.first().copied().unwrap_or(0), d.get(1).copied().unwrap_or(0)]);
        let mut span = 0u64;
        let mut at = 2;
        for shift in (0..64).step_by(7) {
            let Some(&b) = d.get(at) else { break };
            at += 1;
            span |= u64::from(b & 0x7f) << shift;
            if b & 0x80 == 0 {
                break;
            }
        }
        (count, span, at)
    }

    /// Samples held.
    pub(crate) fn count(&self) -> u16 {
        self.header().0
    }

    /// Timestamp of the first sample.
    pub(crate) fn min_t(&self) -> i64 {
        let (_, _, at) = self.header();
        self.data.get(at..).and_then(|s| s.first_chunk::<8>()).map_or(0, |b| i64::from_be_bytes(*b))
    }

    /// Timestamp of the last sample.
    pub(crate) fn max_t(&self) -> i64 {
        let (_, span, _) = self.header();
        self.min_t().wrapping_add(span as i64)
    }

    /// Size in bytes of the compressed stream and its header.
    pub(crate) fn bytes(&self) -> usize {
        self.data.len()
    }

    /// An iterator over the samples, oldest first.
    pub(crate) fn iter(&self) -> ChunkIter<'_> {
        let (count, _, at) = self.header();
        ChunkIter::new(self.data.get(at..).unwrap_or_default(), count)
    }
}

/// Bytes a sealed chunk holds besides its [`Chunk::bytes`]: the boxed slice's pointer and
/// length.
pub const SEALED_CHUNK_OVERHEAD: usize = std::mem::size_of::<Chunk>();

/// Decodes a chunk's samples in order.
pub(crate) struct ChunkIter<'a> {
    r: BitReader<'a>,
    left: u16,
    first: bool,
    t: i64,
    delta: i64,
    v: u64,
    leading: u32,
    trailing: u32,
}

impl<'a> ChunkIter<'a> {
    fn new(data: &'a [u8], count: u16) -> Self {
        ChunkIter { r: BitReader::new(data), left: count, first: true, t: 0, delta: 0, v: 0, leading: 0, trailing: 0 }
    }

    fn decode(&mut self) -> Option<Sample> {
        if self.first {
            self.first = false;
            self.t = self.r.read_bits(64)? as i64;
            self.v = self.r.read_bits(64)?;
            return Some(Sample { t: self.t, v: f64::from_bits(self.v) });
        }
        let dod = if !self.r.read_bit()? {
            0
        } else {
            let mut dod = None;
            for &(_, _, n) in &DOD_BUCKETS {
                if !self.r.read_bit()? {
                    dod = Some(sign_extend(self.r.read_bits(n)?, n));
                    break;
                }
            }
            match dod {
                Some(d) => d,
                None => self.r.read_bits(64)? as i64,
            }
        };
        self.delta = self.delta.wrapping_add(dod);
        self.t = self.t.wrapping_add(self.delta);

        if self.r.read_bit()? {
            if self.r.read_bit()? {
                self.leading = self.r.read_bits(5)? as u32;
                let sig = self.r.read_bits(6)? as u32;
                let sig = if sig == 0 { 64 } else { sig };
                if self.leading + sig > 64 {
                    return None;
                }
                self.trailing = 64 - self.leading - sig;
            }
            let sig = 64 - self.leading - self.trailing;
            if sig == 0 {
                return None;
            }
            let xor = self.r.read_bits(sig)? << self.trailing;
            self.v ^= xor;
        }
        Some(Sample { t: self.t, v: f64::from_bits(self.v) })
    }
}

impl Iterator for ChunkIter<'_> {
    type Item = Sample;

    #[inline]
    fn next(&mut self) -> Option<Sample> {
        if self.left == 0 {
            return None;
        }
        self.left -= 1;
        let s = self.decode();
        if s.is_none() {
            self.left = 0;
        }
        s
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        (0, Some(usize::from(self.left)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::rngs::StdRng;
    use rand::{Rng as _, SeedableRng as _};

    fn encode(samples: &[(i64, u64)]) -> HeadChunk {
        let mut h = HeadChunk::new(samples[0].0, f64::from_bits(samples[0].1));
        for &(t, v) in &samples[1..] {
            h.push(t, f64::from_bits(v));
        }
        h
    }

    fn check_round_trip(samples: &[(i64, u64)]) {
        let h = encode(samples);
        assert_eq!(usize::from(h.count()), samples.len());
        assert_eq!(h.min_t(), samples[0].0);
        assert_eq!(h.max_t(), samples[samples.len() - 1].0);
        let got: Vec<(i64, u64)> = h.iter().map(|s| (s.t, s.v.to_bits())).collect();
        assert_eq!(got, samples);
        let c = h.seal();
        let got: Vec<(i64, u64)> = c.iter().map(|s| (s.t, s.v.to_bits())).collect();
        assert_eq!(got, samples);
    }

    /// Special values every store must keep bit-exactly.
    const SPECIAL: [u64; 12] = [
        super::super::STALE_NAN_BITS,
        0x7ff8_0000_0000_0001, // quiet NaN with a payload
        0xfff8_0000_0000_0000, // negative NaN
        0x7ff0_0000_0000_0001, // signalling NaN
        0x7ff0_0000_0000_0000, // +Inf
        0xfff0_0000_0000_0000, // -Inf
        0x8000_0000_0000_0000, // -0.0
        0,                     // +0.0
        1,                     // smallest subnormal
        0x7fef_ffff_ffff_ffff, // f64::MAX
        0xffff_ffff_ffff_ffff,
        0x3ff0_0000_0000_0000, // 1.0
    ];

    #[test]
    fn special_values_round_trip_bit_exactly() {
        // Every special value after every other, so each XOR shape is exercised.
        let mut samples = Vec::new();
        let mut t = 1_000;
        for &a in &SPECIAL {
            for &b in &SPECIAL {
                samples.push((t, a));
                samples.push((t + 15_000, b));
                t += 30_000;
            }
        }
        for chunk in samples.chunks(usize::from(MAX_CHUNK_SAMPLES)) {
            check_round_trip(chunk);
        }
    }

    #[test]
    fn extreme_timestamps_round_trip() {
        check_round_trip(&[(i64::MIN, 1), (i64::MIN + 1, 2), (-1, 3), (0, 3), (i64::MAX - 1, 4), (i64::MAX, 5)]);
        check_round_trip(&[(-5, 0)]);
        // Deltas at every bucket edge, both signs of delta-of-delta.
        let mut samples = vec![(0, 0u64)];
        let mut t = 0i64;
        let mut delta = 1i64;
        for step in [0i64, 1, -1, 63, -64, 64, -65, 8191, -8192, 8192, -8193, 524287, -524288, 524288, 1 << 40] {
            delta = (delta + step).max(1);
            t += delta;
            samples.push((t, step as u64));
        }
        check_round_trip(&samples);
    }

    #[test]
    fn random_series_round_trip() {
        let mut rng = StdRng::seed_from_u64(42);
        for case in 0..400 {
            let n = 1 + rng.random_range(0..u64::from(MAX_CHUNK_SAMPLES)) as usize;
            let mut t = rng.random::<u64>() as i64 >> (rng.random_range(0..40) + 1);
            let interval = 1 + rng.random_range(0..60_000) as i64;
            let mut v = 0f64;
            let mut samples = Vec::with_capacity(n);
            for _ in 0..n {
                let bits = match case % 5 {
                    0 => {
                        v += rng.random_range(0..4) as f64;
                        v.to_bits()
                    }
                    1 => [0.0f64, 1.0, 2.5, -3.0][rng.random_range(0..4) as usize].to_bits(),
                    2 => (0.5 + (rng.random_range(0..1 << 20) as f64) / (1u64 << 30) as f64).to_bits(),
                    3 => rng.random::<u64>(),
                    _ => SPECIAL[rng.random_range(0..SPECIAL.len() as u64) as usize],
                };
                samples.push((t, bits));
                let jitter = rng.random_range(0..2001) as i64 - 1000;
                t = t.saturating_add((interval + jitter).max(1));
            }
            samples.dedup_by_key(|s| s.0);
            check_round_trip(&samples);
        }
    }

    #[test]
    fn regular_interval_compresses_well() {
        // 120 samples 15 s apart with a constant value: 1 bit per timestamp and per
        // value after the first sample and the first delta.
        let samples: Vec<(i64, u64)> = (0..120).map(|i| (1_700_000_000_000 + i * 15_000, 7.0f64.to_bits())).collect();
        let h = encode(&samples);
        assert!(h.bytes() <= 16 + 4 + 30 + 1, "{} bytes", h.bytes());
        check_round_trip(&samples);
    }

    #[test]
    fn iter_from_starts_at_a_checkpoint_and_misses_nothing() {
        let mut rng = StdRng::seed_from_u64(7);
        for case in 0..60 {
            let n = 1 + rng.random_range(0..u64::from(MAX_CHUNK_SAMPLES)) as usize;
            let mut t = 1_000_000i64;
            let mut samples = Vec::with_capacity(n);
            for i in 0..n {
                let bits = if case % 2 == 0 { ((i / 3) as f64).to_bits() } else { rng.random::<u64>() };
                samples.push((t, bits));
                t += 1 + rng.random_range(0..30_000) as i64;
            }
            let h = encode(&samples);
            let made = (n - 1) / usize::from(CHECKPOINT_EVERY);
            assert_eq!(usize::from(h.made), made);
            // The oldest kept checkpoint's sample: windows starting after it skip decoding.
            let kept_from = made.saturating_sub(KEPT_CHECKPOINTS - 1).max(1) * usize::from(CHECKPOINT_EVERY);
            for k in 0..n {
                let mint = samples[k].0 - i64::from(k % 2 == 1);
                let got: Vec<(i64, u64)> =
                    h.iter_from(mint).map(|s| (s.t, s.v.to_bits())).filter(|s| s.0 >= mint).collect();
                assert_eq!(got, samples[k..], "case {case} from sample {k}");
                // It skips whole checkpoint intervals: at most CHECKPOINT_EVERY samples before mint.
                let decoded = h.iter_from(mint).count();
                if made > 0 && k > kept_from {
                    let bound = n - k + usize::from(CHECKPOINT_EVERY);
                    assert!(decoded <= bound, "case {case}: {decoded} decoded from {k}");
                } else {
                    assert!(decoded <= n);
                }
            }
            let got: Vec<(i64, u64)> = h.iter_from(i64::MAX).map(|s| (s.t, s.v.to_bits())).collect();
            assert!(got.iter().all(|s| samples.contains(s)));
        }
    }

    #[test]
    fn corrupt_stream_ends_without_panic() {
        let samples: Vec<(i64, u64)> = (0..50).map(|i| (i * 1000, (i as f64 * 1.1).to_bits())).collect();
        let h = encode(&samples);
        let mut data = h.w.buf.clone();
        for cut in 0..data.len() {
            let n = ChunkIter::new(&data[..cut], 50).count();
            assert!(n <= 50);
        }
        for b in data.iter_mut() {
            *b = !*b;
        }
        assert!(ChunkIter::new(&data, 50).count() <= 50);
    }
}
