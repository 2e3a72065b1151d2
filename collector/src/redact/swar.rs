//! Skipping runs of a byte class eight bytes at a time (SWAR: SIMD within a register,
//! in plain safe integer arithmetic). A mask has the high bit of a byte set when the byte
//! belongs to the class; bytes of 0x80 and above (UTF-8) belong to none of these
//! classes except plain string content.

const HIGH: u64 = 0x8080_8080_8080_8080;
const LOW7: u64 = 0x7f7f_7f7f_7f7f_7f7f;

const fn splat(b: u8) -> u64 {
    b as u64 * 0x0101_0101_0101_0101
}

/// High bits where a byte of `y` (every byte below 0x80) is in `lo..=hi`: adding
/// `0x80 - lo` sets the high bit from `lo` up, adding `0x7f - hi` from `hi + 1` up, and
/// neither carries into the next byte.
#[inline(always)]
fn between(y: u64, lo: u8, hi: u8) -> u64 {
    y.wrapping_add(splat(0x80 - lo)) & !y.wrapping_add(splat(0x7f - hi)) & HIGH
}

/// The eight bytes at `p < b.len()` as a little-endian word, zeros past the end.
#[inline(always)]
pub(crate) fn load8(b: &[u8], p: usize) -> u64 {
    let n = b.len();
    if let Some(chunk) = b.get(p..p + 8) {
        let mut w = [0u8; 8];
        w.copy_from_slice(chunk);
        u64::from_le_bytes(w)
    } else if n >= 8 {
        // The last eight bytes, shifted so that `b[p]` comes first (1 to 7 bytes).
        let mut w = [0u8; 8];
        w.copy_from_slice(&b[n - 8..]);
        u64::from_le_bytes(w) >> (8 * (p + 8 - n))
    } else {
        b[p..].iter().rev().fold(0u64, |x, &c| (x << 8) | u64::from(c))
    }
}

/// From `p`, skips the ASCII bytes whose high bit `mask` sets in a little-endian word of
/// eight (given the word with its high bits cleared).
#[inline(always)]
fn skip_run(b: &[u8], mut p: usize, mask: impl Fn(u64) -> u64) -> usize {
    while p < b.len() {
        // Past the end the word has zero bytes, which belong to no class.
        let x = load8(b, p);
        let m = mask(x & LOW7) & !x;
        if m != HIGH {
            return p + ((!m & HIGH).trailing_zeros() / 8) as usize;
        }
        p += 8;
    }
    b.len()
}

/// Skips lower-case letters.
#[inline]
pub(crate) fn skip_lower(b: &[u8], p: usize) -> usize {
    skip_run(b, p, |y| between(y, b'a', b'z'))
}

/// Skips digits and lower-case letters but `y`: inside an alphanumeric run, the bytes
/// where no context word can start.
#[inline]
pub(crate) fn skip_quiet(b: &[u8], p: usize) -> usize {
    skip_run(b, p, |y| between(y, b'0', b'9') | between(y, b'a', b'x') | between(y, b'z', b'z'))
}

/// Skips digits, `.`, `-`, `_` and `:` (the compound bytes that start nothing).
#[inline]
pub(crate) fn skip_plain(b: &[u8], p: usize) -> usize {
    skip_run(b, p, |y| between(y, b'-', b'.') | between(y, b'0', b':') | between(y, b'_', b'_'))
}

/// Skips JSON string content that needs no attention: everything but `"`, `\` and
/// control bytes (UTF-8 bytes included).
#[inline]
pub(crate) fn skip_string(b: &[u8], mut i: usize) -> usize {
    while i < b.len() {
        // Zero bytes past the end stop the run (as control bytes).
        let x = load8(b, i);
        let y = x & LOW7;
        let stop = (between(y, b'"', b'"') | between(y, b'\\', b'\\') | between(y, 0, 0x1f)) & !x;
        if stop != 0 {
            return (i + (stop.trailing_zeros() / 8) as usize).min(b.len());
        }
        i += 8;
    }
    b.len()
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::rngs::StdRng;
    use rand::{Rng, SeedableRng};

    /// Random short byte strings, half from an alphabet of class edges.
    fn samples(seed: u64, alphabet: &[u8]) -> Vec<Vec<u8>> {
        let mut rng = StdRng::seed_from_u64(seed);
        (0..3000)
            .map(|_| {
                (0..rng.random_range(0..40))
                    .map(|_| {
                        if rng.random_bool(0.5) { alphabet[rng.random_range(0..alphabet.len())] } else { rng.random() }
                    })
                    .collect()
            })
            .collect()
    }

    #[test]
    fn skips_match_the_byte_classes() {
        for b in samples(3, b"aby09Zz:._-/ @\x00\x7f\x80\xc3\xa9\xff") {
            let run = |p: usize, f: &dyn Fn(u8) -> bool| p + b[p..].iter().take_while(|&&c| f(c)).count();
            for p in 0..b.len() {
                let want: u64 = b[p..].iter().take(8).rev().fold(0, |x, &c| (x << 8) | u64::from(c));
                assert_eq!(load8(&b, p), want, "{b:?} at {p}");
                assert_eq!(skip_lower(&b, p), run(p, &|c| c.is_ascii_lowercase()), "{b:?} at {p}");
                assert_eq!(
                    skip_quiet(&b, p),
                    run(p, &|c| c.is_ascii_digit() || (c.is_ascii_lowercase() && c != b'y')),
                    "{b:?} at {p}"
                );
                assert_eq!(
                    skip_plain(&b, p),
                    run(p, &|c| c.is_ascii_digit() || matches!(c, b'.' | b'-' | b'_' | b':')),
                    "{b:?} at {p}"
                );
            }
            assert_eq!(skip_lower(&b, b.len()), b.len());
        }
    }

    #[test]
    fn string_content_stops_at_quote_backslash_and_control_bytes() {
        for b in samples(5, b"a\"\\\x00\x1f \x7f\x80\xc3\xa9{}:") {
            for i in 0..=b.len() {
                let want = i + b[i..].iter().take_while(|&&c| c >= 0x20 && c != b'"' && c != b'\\').count();
                assert_eq!(skip_string(&b, i), want, "{b:?} at {i}");
            }
        }
    }
}
