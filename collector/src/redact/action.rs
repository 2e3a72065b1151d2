//! Rendering a match: mask tokens, keyed-hash tokens, and the secret key behind them.
//!
//! The hash is HMAC-SHA256 over the detector name and a normalised value (digits only for
//! number-like detectors, lower case for emails and names), truncated to 12 hex digits:
//! `(555) 123-4567` and `555.123.4567` give the same token, so one patient correlates
//! across signals, and without the key the token cannot be reversed or brute-forced.

use super::detector::{Action, Detector};
use hmac::{Hmac, Mac};
use sha2::Sha256;
use std::fmt;

/// The HMAC key. Its `Debug` prints `***`; it has no `Display` and is never logged.
#[derive(Clone)]
pub struct HashKey(Vec<u8>);

impl HashKey {
    /// The shortest key accepted, in bytes.
    pub const MIN_LEN: usize = 16;

    /// A key from raw bytes (one trailing `\n` or `\r\n` is trimmed); `None` if shorter
    /// than [`HashKey::MIN_LEN`].
    pub fn new(mut bytes: Vec<u8>) -> Option<HashKey> {
        if bytes.last() == Some(&b'\n') {
            bytes.pop();
            if bytes.last() == Some(&b'\r') {
                bytes.pop();
            }
        }
        (bytes.len() >= HashKey::MIN_LEN).then_some(HashKey(bytes))
    }
}

impl fmt::Debug for HashKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

/// A keyed hasher, ready to clone per token.
#[derive(Clone)]
pub(crate) struct Hasher(Hmac<Sha256>);

impl fmt::Debug for Hasher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Hasher(***)")
    }
}

impl Hasher {
    pub(crate) fn new(key: &HashKey) -> Hasher {
        // HMAC accepts keys of any length; the error case cannot happen.
        Hasher(Hmac::<Sha256>::new_from_slice(&key.0).expect("hmac accepts any key length"))
    }

    /// Appends `[LABEL:xxxxxxxxxxxx]` for `value` found by `det`.
    pub(crate) fn token(&self, det: Detector, value: &str, out: &mut String) {
        let mut mac = self.0.clone();
        mac.update(det.name().as_bytes());
        mac.update(&[0]);
        normalized(det, value, |chunk| mac.update(chunk));
        let digest = mac.finalize().into_bytes();
        out.push('[');
        out.push_str(det.label());
        out.push(':');
        const HEX: &[u8; 16] = b"0123456789abcdef";
        for b in &digest[..6] {
            out.push(HEX[usize::from(b >> 4)] as char);
            out.push(HEX[usize::from(b & 15)] as char);
        }
        out.push(']');
    }
}

/// Feeds the normalised form of `value` to `f`.
fn normalized(det: Detector, value: &str, mut f: impl FnMut(&[u8])) {
    match det {
        Detector::Ssn | Detector::Phone | Detector::Card | Detector::Zip => {
            let digits: Vec<u8> = value.bytes().filter(u8::is_ascii_digit).collect();
            // A US phone number with the country code is the same number without it.
            let d =
                if det == Detector::Phone && digits.len() == 11 && digits[0] == b'1' { &digits[1..] } else { &digits };
            f(d);
        }
        Detector::Email | Detector::Name | Detector::Address => {
            let mut first = true;
            for word in value.split(|c: char| c.is_whitespace() || c == ',').filter(|w| !w.is_empty()) {
                if !first {
                    f(b" ");
                }
                first = false;
                f(word.to_lowercase().as_bytes());
            }
        }
        _ => f(value.as_bytes()),
    }
}

/// Appends the mask token for `det`.
pub(crate) fn mask(det: Detector, out: &mut String) {
    out.push_str("[REDACTED:");
    out.push_str(det.label());
    out.push(']');
}

/// What the caller must do after a string was redacted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default)]
pub(crate) enum Fate {
    /// Keep the (possibly rewritten) field.
    #[default]
    Keep,
    /// Remove the field holding the string.
    DropField,
    /// Remove the record.
    DropRecord,
}

impl Fate {
    pub(crate) fn of(action: Action) -> Fate {
        match action {
            Action::Mask | Action::Hash => Fate::Keep,
            Action::DropField => Fate::DropField,
            Action::DropRecord => Fate::DropRecord,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(b: &[u8]) -> HashKey {
        HashKey::new(b.to_vec()).unwrap()
    }

    #[test]
    fn key_is_never_printed_and_short_keys_are_refused() {
        let k = key(b"0123456789abcdef-secret\n");
        assert_eq!(format!("{k:?}"), "***");
        assert!(!format!("{:?}", Hasher::new(&k)).contains("secret"));
        assert!(HashKey::new(b"short\n".to_vec()).is_none());
    }

    #[test]
    fn tokens_are_stable_normalised_and_key_dependent() {
        let a = Hasher::new(&key(b"0123456789abcdef"));
        let b = Hasher::new(&key(b"fedcba9876543210"));
        let tok = |h: &Hasher, d, v| {
            let mut s = String::new();
            h.token(d, v, &mut s);
            s
        };
        let t1 = tok(&a, Detector::Phone, "(555) 123-4567");
        assert_eq!(t1.len(), "[PHONE:".len() + 12 + 1);
        assert!(t1.starts_with("[PHONE:") && t1.ends_with(']'));
        assert_eq!(t1, tok(&a, Detector::Phone, "+1 555.123.4567"));
        assert_ne!(t1, tok(&b, Detector::Phone, "(555) 123-4567"));
        assert_ne!(t1, tok(&a, Detector::Phone, "(555) 123-4568"));
        assert_eq!(tok(&a, Detector::Name, "John  Smith"), tok(&a, Detector::Name, "JOHN SMITH"));
        // The same digits under another detector give another token.
        assert_ne!(tok(&a, Detector::Ssn, "123456789"), tok(&a, Detector::Account, "123456789"));
    }
}
