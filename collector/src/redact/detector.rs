//! The closed set of PHI detectors and the actions the redactor can take on a match.
//!
//! Each detector has a config name (`ssn`, `health_plan`, ...) used in YAML and in the
//! `detector` label of `warden_redactions_total`, and an upper-case label used in mask
//! tokens (`[REDACTED:SSN]`) and hash tokens (`[SSN:3f9a12c4e7b0]`).

use serde::Deserialize;
use std::fmt;

/// One kind of PHI.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Detector {
    /// US Social Security number.
    Ssn,
    /// US phone or fax number.
    Phone,
    /// Email address.
    Email,
    /// A date tied to a person (birth, admission, discharge, death).
    Date,
    /// An age over 89.
    Age,
    /// Medical record number.
    Mrn,
    /// Health-plan beneficiary / member / policy number.
    HealthPlan,
    /// Account number.
    Account,
    /// Licence or certificate number (driver's licence, ...).
    License,
    /// Payment card number (Luhn-valid).
    Card,
    /// IPv4 or IPv6 address outside the infrastructure allow-list.
    Ip,
    /// A URL whose query or path holds an identifier.
    Url,
    /// A US ZIP code (Safe Harbor: first three digits kept unless restricted).
    Zip,
    /// A street address.
    Address,
    /// A person's name.
    Name,
}

impl Detector {
    /// Number of detectors.
    pub const COUNT: usize = 15;

    /// Every detector, in declaration order.
    pub const ALL: [Detector; Detector::COUNT] = [
        Detector::Ssn,
        Detector::Phone,
        Detector::Email,
        Detector::Date,
        Detector::Age,
        Detector::Mrn,
        Detector::HealthPlan,
        Detector::Account,
        Detector::License,
        Detector::Card,
        Detector::Ip,
        Detector::Url,
        Detector::Zip,
        Detector::Address,
        Detector::Name,
    ];

    /// The config / metric-label name (`ssn`, `health_plan`, ...).
    pub fn name(self) -> &'static str {
        match self {
            Detector::Ssn => "ssn",
            Detector::Phone => "phone",
            Detector::Email => "email",
            Detector::Date => "date",
            Detector::Age => "age",
            Detector::Mrn => "mrn",
            Detector::HealthPlan => "health_plan",
            Detector::Account => "account",
            Detector::License => "license",
            Detector::Card => "card",
            Detector::Ip => "ip",
            Detector::Url => "url",
            Detector::Zip => "zip",
            Detector::Address => "address",
            Detector::Name => "name",
        }
    }

    /// The token label (`SSN`, `HEALTH_PLAN`, ...).
    pub fn label(self) -> &'static str {
        match self {
            Detector::Ssn => "SSN",
            Detector::Phone => "PHONE",
            Detector::Email => "EMAIL",
            Detector::Date => "DATE",
            Detector::Age => "AGE",
            Detector::Mrn => "MRN",
            Detector::HealthPlan => "HEALTH_PLAN",
            Detector::Account => "ACCOUNT",
            Detector::License => "LICENSE",
            Detector::Card => "CARD",
            Detector::Ip => "IP",
            Detector::Url => "URL",
            Detector::Zip => "ZIP",
            Detector::Address => "ADDRESS",
            Detector::Name => "NAME",
        }
    }

    /// The detector with config name `name`.
    pub fn from_name(name: &str) -> Option<Detector> {
        Detector::ALL.into_iter().find(|d| d.name() == name)
    }

    /// Index into per-detector arrays.
    pub(crate) fn index(self) -> usize {
        self as usize
    }
}

impl fmt::Display for Detector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl<'de> Deserialize<'de> for Detector {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Detector, D::Error> {
        let s = String::deserialize(d)?;
        Detector::from_name(&s).ok_or_else(|| {
            let names: Vec<&str> = Detector::ALL.iter().map(|d| d.name()).collect();
            serde::de::Error::custom(format!("unknown detector {s:?}, expected one of {}", names.join(", ")))
        })
    }
}

/// What to do with a match.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    /// Replace the match with `[REDACTED:<LABEL>]`.
    #[default]
    Mask,
    /// Replace the match with `[<LABEL>:<12 hex digits of HMAC-SHA256(key, value)>]`, so
    /// the same value correlates across signals without being readable.
    Hash,
    /// Remove the attribute / field holding the match (a text line or a log body that
    /// cannot be removed is emptied).
    DropField,
    /// Remove the whole record (log record, span, metric point; an empty line in
    /// `warden redact`).
    DropRecord,
}

impl Action {
    /// Number of actions.
    pub const COUNT: usize = 4;

    /// Every action.
    pub const ALL: [Action; Action::COUNT] = [Action::Mask, Action::Hash, Action::DropField, Action::DropRecord];

    /// The config / metric-label name.
    pub fn name(self) -> &'static str {
        match self {
            Action::Mask => "mask",
            Action::Hash => "hash",
            Action::DropField => "drop_field",
            Action::DropRecord => "drop_record",
        }
    }

    pub(crate) fn index(self) -> usize {
        self as usize
    }
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_indexes_are_dense() {
        for (i, d) in Detector::ALL.into_iter().enumerate() {
            assert_eq!(d.index(), i);
            assert_eq!(Detector::from_name(d.name()), Some(d));
            assert_eq!(d.label(), d.name().to_ascii_uppercase());
        }
        for (i, a) in Action::ALL.into_iter().enumerate() {
            assert_eq!(a.index(), i);
        }
        assert_eq!(Detector::from_name("nope"), None);
    }
}
