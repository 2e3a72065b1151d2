//! Key rules: fields redacted whole because of their key, whatever the value looks like.
//!
//! Keys are compared normalised: ASCII letters lower-cased, every other ASCII character
//! that is not a letter or digit removed, so `patientName`, `patient-name`,
//! `patient.name` and `PATIENT_NAME` are all `patientname`. The whole key must match: a
//! rule for `name` does not touch `service.name` or `host.name` (`servicename`,
//! `hostname`). A rule applies only while its detector is enabled.

use super::config::KeyRules;
use super::detector::Detector;
use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

/// A multiply-rotate hash over 8-byte words (FxHash's scheme): keys are short and not
/// attacker-chosen in a way that matters (the rules are the config's), and SipHash was a
/// visible share of structured-line time.
#[derive(Default)]
struct FastHasher(u64);

impl FastHasher {
    #[inline]
    fn add(&mut self, w: u64) {
        self.0 = (self.0.rotate_left(5) ^ w).wrapping_mul(0x51_7c_c1_b7_27_22_0a_95);
    }
}

impl Hasher for FastHasher {
    #[inline]
    fn finish(&self) -> u64 {
        self.0
    }

    #[inline]
    fn write(&mut self, bytes: &[u8]) {
        let mut chunks = bytes.chunks_exact(8);
        for c in &mut chunks {
            self.add(u64::from_le_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]));
        }
        let rest = chunks.remainder();
        if !rest.is_empty() {
            let mut buf = [0u8; 8];
            buf[..rest.len()].copy_from_slice(rest);
            self.add(u64::from_le_bytes(buf));
        }
    }

    #[inline]
    fn write_usize(&mut self, n: usize) {
        self.add(n as u64);
    }
}

type Rules = HashMap<Vec<u8>, Detector, BuildHasherDefault<FastHasher>>;

/// The built-in key rules, by detector.
pub const DEFAULT_KEY_RULES: &[(Detector, &[&str])] = &[
    (
        Detector::Name,
        &[
            "name",
            "patient_name",
            "first_name",
            "firstname",
            "last_name",
            "lastname",
            "middle_name",
            "full_name",
            "given_name",
            "family_name",
            "surname",
            "maiden_name",
            "guardian_name",
            "contact_name",
            "emergency_contact",
            "next_of_kin",
            "mother_name",
            "father_name",
            "spouse_name",
        ],
    ),
    (
        Detector::Date,
        &[
            "dob",
            "birth_date",
            "date_of_birth",
            "birthdate",
            "birthday",
            "admission_date",
            "admit_date",
            "admitted_at",
            "admitted_on",
            "discharge_date",
            "discharged_at",
            "discharged_on",
            "death_date",
            "date_of_death",
            "deceased_date",
            "died_at",
        ],
    ),
    (Detector::Ssn, &["ssn", "social_security_number", "social_security", "ssn_last4"]),
    (Detector::Mrn, &["mrn", "medical_record_number", "medical_record_no", "mrn_number", "chart_number"]),
    (
        Detector::HealthPlan,
        &[
            "member_id",
            "health_plan_id",
            "health_plan_number",
            "insurance_id",
            "policy_number",
            "subscriber_id",
            "beneficiary_id",
            "medicare_id",
            "medicaid_id",
        ],
    ),
    (Detector::Account, &["account_number", "bank_account", "iban", "routing_number", "acct_number"]),
    (
        Detector::License,
        &["license_number", "licence_number", "drivers_license", "driver_license", "dl_number", "passport_number"],
    ),
    (Detector::Email, &["email", "email_address", "e_mail", "patient_email", "contact_email"]),
    (
        Detector::Phone,
        &[
            "phone",
            "phone_number",
            "telephone",
            "mobile",
            "mobile_phone",
            "cell_phone",
            "home_phone",
            "work_phone",
            "fax",
            "fax_number",
            "patient_phone",
            "contact_phone",
        ],
    ),
    (
        Detector::Address,
        &[
            "address",
            "street",
            "street_address",
            "address_line1",
            "address_line2",
            "address1",
            "address2",
            "home_address",
            "mailing_address",
            "city",
        ],
    ),
    (Detector::Zip, &["zip", "zip_code", "zipcode", "postal_code", "postcode"]),
    (Detector::Card, &["card_number", "credit_card", "credit_card_number", "cc_number", "pan"]),
    (Detector::Ip, &["client_ip", "client_address", "remote_addr", "remote_address", "x_forwarded_for"]),
];

/// The normalised form of `key` (see the module docs).
pub fn normalize_key(key: &str) -> String {
    let mut out = String::with_capacity(key.len());
    for c in key.chars() {
        if c.is_ascii_alphanumeric() {
            out.push(c.to_ascii_lowercase());
        } else if !c.is_ascii() {
            out.push(c);
        }
    }
    out
}

/// A key byte normalised: letters and digits lower-cased, other ASCII 0 (dropped),
/// non-ASCII 0xff.
static NORM: [u8; 256] = {
    let mut t = [0u8; 256];
    let mut c = 0;
    while c < 256 {
        let b = c as u8;
        t[c] = if b.is_ascii_alphanumeric() {
            b.to_ascii_lowercase()
        } else if b.is_ascii() {
            0
        } else {
            0xff
        };
        c += 1;
    }
    t
};

/// The longest key worth normalising; longer keys never match a rule.
const MAX_KEY: usize = 64;

/// Compiled key rules.
#[derive(Debug, Clone, Default)]
pub(crate) struct KeyMatcher {
    rules: Rules,
    max_len: usize,
    /// By normalised length: a bit per [`tag`] of the rules of that length, so most keys
    /// are turned away before hashing.
    tags: Vec<u64>,
}

/// A 6-bit digest of a normalised key's first and last bytes.
#[inline]
fn tag(first: u8, last: u8) -> u64 {
    1 << ((u32::from(first).wrapping_mul(7) ^ u32::from(last)) & 63)
}

impl KeyMatcher {
    pub(crate) fn new(cfg: &KeyRules, enabled: impl Fn(Detector) -> bool) -> KeyMatcher {
        let mut rules = Rules::default();
        if cfg.defaults {
            for (d, keys) in DEFAULT_KEY_RULES {
                for k in *keys {
                    rules.insert(normalize_key(k).into_bytes(), *d);
                }
            }
        }
        for (d, keys) in &cfg.extra {
            for k in keys {
                rules.insert(normalize_key(k).into_bytes(), *d);
            }
        }
        for k in &cfg.ignore {
            rules.remove(normalize_key(k).as_bytes());
        }
        rules.retain(|k, d| !k.is_empty() && enabled(*d));
        let max_len = rules.keys().map(Vec::len).max().unwrap_or(0);
        let mut tags = vec![0u64; max_len + 1];
        for k in rules.keys() {
            tags[k.len()] |= tag(k[0], k[k.len() - 1]);
        }
        KeyMatcher { rules, max_len, tags }
    }

    /// The detector whose rule matches `key`, if any. No allocation.
    pub(crate) fn lookup(&self, key: &str) -> Option<Detector> {
        if self.rules.is_empty() || key.len() > MAX_KEY {
            return None;
        }
        let mut buf = [0u8; MAX_KEY];
        let mut n = 0;
        for &b in key.as_bytes() {
            match NORM[usize::from(b)] {
                0 => {}
                // Non-ASCII keys never match the ASCII rules.
                0xff => return None,
                c => {
                    if n == self.max_len {
                        return None;
                    }
                    buf[n] = c;
                    n += 1;
                }
            }
        }
        if n == 0 || self.tags[n] & tag(buf[0], buf[n - 1]) == 0 {
            return None;
        }
        self.rules.get(&buf[..n]).copied()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_match_case_and_separator_insensitively_but_whole() {
        let m = KeyMatcher::new(&KeyRules::default(), |_| true);
        for k in ["patientName", "patient-name", "PATIENT_NAME", "patient.name", "patient name"] {
            assert_eq!(m.lookup(k), Some(Detector::Name), "{k}");
        }
        assert_eq!(m.lookup("DOB"), Some(Detector::Date));
        assert_eq!(m.lookup("dateOfBirth"), Some(Detector::Date));
        assert_eq!(m.lookup("zip-code"), Some(Detector::Zip));
        for k in ["service.name", "host.name", "k8s.pod.name", "username", "patient_id", "status", "", "ñame"] {
            assert_eq!(m.lookup(k), None, "{k}");
        }
    }

    #[test]
    fn extra_ignore_and_disabled_detectors() {
        let mut cfg = KeyRules::default();
        cfg.extra.insert(Detector::Mrn, vec!["chart-no".into()]);
        cfg.ignore.push("NAME".into());
        let m = KeyMatcher::new(&cfg, |d| d != Detector::Email);
        assert_eq!(m.lookup("chartNo"), Some(Detector::Mrn));
        assert_eq!(m.lookup("name"), None);
        assert_eq!(m.lookup("first_name"), Some(Detector::Name));
        assert_eq!(m.lookup("email"), None);
        let none = KeyMatcher::new(&KeyRules { defaults: false, ..KeyRules::default() }, |_| true);
        assert_eq!(none.lookup("ssn"), None);
    }
}
