//! Parses lab values out of a plain-text lab report.
//!
//! A report is free text as labs send it: a header with the patient's details, then one
//! test per line, e.g. `HbA1c: 6.1 %`, `LDL Cholesterol   131 mg/dL   (ref < 130)  H`,
//! `Glucose, fasting = 5.4 mmol/L`. A line whose name is a known test (by alias) and whose
//! value is a number becomes a lab value; the unit defaults to the test's first unit when
//! missing. Lines that look like `name: number` but are not an accepted lab value are
//! reported as skipped, by line number.

use crate::catalog::{self, Kind};
use regex::Regex;
use std::sync::LazyLock;

/// A lab value found in a report.
#[derive(Debug, Clone, PartialEq)]
pub struct LabValue {
    /// 1-based line number in the report.
    pub line: usize,
    /// Catalogue code.
    pub code: &'static str,
    /// The value.
    pub value: f64,
    /// The unit (normalised to the catalogue's spelling).
    pub unit: &'static str,
}

/// A line that looked like a value but was not accepted.
#[derive(Debug, Clone, PartialEq)]
pub struct Skipped {
    /// 1-based line number.
    pub line: usize,
    /// Why, without the line's content.
    pub reason: String,
}

/// What a report yielded.
#[derive(Debug, Default, PartialEq)]
pub struct Parsed {
    /// Accepted values, in report order.
    pub values: Vec<LabValue>,
    /// Value-like lines that were refused.
    pub skipped: Vec<Skipped>,
}

/// Report names of tests, lowercased, to catalogue codes.
const ALIASES: &[(&str, &str)] = &[
    ("hba1c", "hba1c"),
    ("hemoglobin a1c", "hba1c"),
    ("haemoglobin a1c", "hba1c"),
    ("a1c", "hba1c"),
    ("glucose", "glucose"),
    ("glucose, fasting", "glucose"),
    ("glucose (fasting)", "glucose"),
    ("fasting glucose", "glucose"),
    ("ldl", "ldl"),
    ("ldl cholesterol", "ldl"),
    ("ldl-c", "ldl"),
    ("hdl", "hdl"),
    ("hdl cholesterol", "hdl"),
    ("hdl-c", "hdl"),
    ("total cholesterol", "total_cholesterol"),
    ("cholesterol, total", "total_cholesterol"),
    ("cholesterol", "total_cholesterol"),
    ("triglycerides", "triglycerides"),
    ("creatinine", "creatinine"),
    ("hemoglobin", "hemoglobin"),
    ("haemoglobin", "hemoglobin"),
    ("hgb", "hemoglobin"),
    ("potassium", "potassium"),
    ("k", "potassium"),
    ("sodium", "sodium"),
    ("na", "sodium"),
    ("tsh", "tsh"),
];

static LINE: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(
        r"(?x)^\s*
        (?P<name>[A-Za-z][A-Za-z0-9\x20,()\-]*?) # test name (\x20: verbose mode ignores spaces)
        \s*[:=]?\s+
        (?P<value>[-+]?\d+(?:\.\d+)?)               # value
        (?:\s*(?P<unit>%|[A-Za-zµ]+(?:/[A-Za-z]+)?))? # unit
        (?:\s.*)?$                                  # reference range, flags",
    )
    .expect("static regex")
});

/// Finds the lab values in `text`.
pub fn parse(text: &str) -> Parsed {
    let mut out = Parsed::default();
    for (i, line) in text.lines().enumerate() {
        let line_no = i + 1;
        let Some(caps) = LINE.captures(line) else { continue };
        let name = caps["name"].trim().trim_end_matches([':', '=']).trim().to_ascii_lowercase();
        let name = name.split_whitespace().collect::<Vec<_>>().join(" ");
        let Some((_, code_name)) = ALIASES.iter().find(|(alias, _)| *alias == name) else {
            // Lines such as `MRN: 12345678` or `Age: 54` carry numbers but no lab value;
            // they are reported as skipped so the uploader can see nothing was lost.
            out.skipped.push(Skipped { line: line_no, reason: "not a known lab test".into() });
            tracing::warn!(line = %line, line_no, "report line is not a known lab test");
            continue;
        };
        let code = catalog::code(code_name).expect("aliases name catalogue codes");
        let Ok(value) = caps["value"].parse::<f64>() else {
            out.skipped.push(Skipped { line: line_no, reason: "value is not a number".into() });
            continue;
        };
        let unit = match caps.name("unit") {
            None => code.units[0].0,
            Some(u) => match code.units.iter().find(|(known, _, _)| known.eq_ignore_ascii_case(u.as_str())) {
                Some((known, _, _)) => known,
                None => {
                    out.skipped.push(Skipped { line: line_no, reason: format!("unit not accepted for {}", code.code) });
                    continue;
                }
            },
        };
        match catalog::check_measurement(Kind::Lab, code.code, value, unit) {
            Ok(()) => out.values.push(LabValue { line: line_no, code: code.code, value, unit }),
            Err(reason) => out.skipped.push(Skipped { line: line_no, reason }),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_a_typical_report() {
        let report = "\
ACME Laboratories - Final Report
Patient: Jane Q. Doe    DOB: 1961-03-04
MRN: 00123456
Collected 2026-11-02 08:15

HbA1c: 6.1 %
LDL Cholesterol   131 mg/dL   (ref < 130)  H
HDL-C = 38 mg/dL L
Glucose, fasting: 5.4 mmol/L
Triglycerides 150
Potassium: 4.1 mmol/L
Sodium: 250 mmol/L
TSH: 2.1 furlongs
";
        let p = parse(report);
        let got: Vec<_> = p.values.iter().map(|v| (v.line, v.code, v.value, v.unit)).collect();
        assert_eq!(
            got,
            vec![
                (6, "hba1c", 6.1, "%"),
                (7, "ldl", 131.0, "mg/dL"),
                (8, "hdl", 38.0, "mg/dL"),
                (9, "glucose", 5.4, "mmol/L"),
                (10, "triglycerides", 150.0, "mg/dL"),
                (11, "potassium", 4.1, "mmol/L"),
            ]
        );
        let skipped: Vec<_> = p.skipped.iter().map(|s| s.line).collect();
        assert_eq!(skipped, vec![3, 12, 13], "MRN line, out-of-range sodium, unknown unit");
        assert!(p.skipped.iter().all(|s| !s.reason.contains("250") && !s.reason.contains("00123456")));
    }

    #[test]
    fn nothing_in_prose() {
        assert_eq!(parse("No abnormal findings.\nSee attached.\n"), Parsed::default());
        assert_eq!(parse(""), Parsed::default());
    }
}
