//! The cardiometabolic risk score (model `cardiometabolic-v1`): deterministic points from a
//! patient's latest vitals and labs. It is an operational example, not a clinical tool.
//!
//! | input (latest value) | points |
//! | --- | --- |
//! | systolic_bp (mmHg) | ≥ 160: 3, 140–159: 2, 130–139: 1 |
//! | diastolic_bp (mmHg) | ≥ 100: 2, 90–99: 1 |
//! | hba1c (%) | ≥ 6.5: 3, 5.7–6.4: 1 |
//! | glucose (mg/dL; mmol/L × 18.016) | ≥ 126: 2, 100–125: 1 |
//! | ldl (mg/dL; mmol/L × 38.67) | ≥ 190: 3, 160–189: 2, 130–159: 1 |
//! | hdl (mg/dL; mmol/L × 38.67) | < 40: 1 |
//! | BMI from weight and height | ≥ 35: 2, 30–34.9: 1 |
//! | heart_rate (bpm) | > 100: 1 |
//!
//! Category: 0–2 `low`, 3–5 `moderate`, ≥ 6 `high`. Missing inputs score 0 and are listed.

use serde::Serialize;
use std::collections::HashMap;
use utoipa::ToSchema;

/// The model's name, stored with each assessment.
pub const MODEL: &str = "cardiometabolic-v1";

/// One input's contribution.
#[derive(Debug, Clone, PartialEq, Serialize, serde::Deserialize, ToSchema)]
pub struct Factor {
    /// Input code (`bmi` for the derived body-mass index).
    pub code: String,
    /// Value used, in the unit the rule is stated in.
    pub value: f64,
    /// Points contributed.
    pub points: i64,
}

/// A computed score.
#[derive(Debug, Clone, PartialEq)]
pub struct Score {
    /// Total points.
    pub score: i64,
    /// `low`, `moderate` or `high`.
    pub category: &'static str,
    /// Inputs that contributed (with zero points too).
    pub factors: Vec<Factor>,
    /// Inputs with no data.
    pub missing: Vec<String>,
}

/// Latest measurements by code: `(value, unit)`.
pub type Latest = HashMap<String, (f64, String)>;

fn to_mg_dl(code: &str, value: f64, unit: &str) -> f64 {
    match (code, unit) {
        ("glucose", "mmol/L") => value * 18.016,
        ("ldl" | "hdl", "mmol/L") => value * 38.67,
        _ => value,
    }
}

fn bands(value: f64, bands: &[(f64, i64)]) -> i64 {
    bands.iter().find(|(min, _)| value >= *min).map(|(_, p)| *p).unwrap_or(0)
}

/// Computes the score from the latest measurements.
pub fn assess(latest: &Latest) -> Score {
    let mut factors = Vec::new();
    let mut missing = Vec::new();
    let mut rule = |code: &str, f: &dyn Fn(f64) -> i64| match latest.get(code) {
        Some((v, unit)) => {
            let v = to_mg_dl(code, *v, unit);
            factors.push(Factor { code: code.to_owned(), value: v, points: f(v) });
        }
        None => missing.push(code.to_owned()),
    };
    rule("systolic_bp", &|v| bands(v, &[(160.0, 3), (140.0, 2), (130.0, 1)]));
    rule("diastolic_bp", &|v| bands(v, &[(100.0, 2), (90.0, 1)]));
    rule("hba1c", &|v| bands(v, &[(6.5, 3), (5.7, 1)]));
    rule("glucose", &|v| bands(v, &[(126.0, 2), (100.0, 1)]));
    rule("ldl", &|v| bands(v, &[(190.0, 3), (160.0, 2), (130.0, 1)]));
    rule("hdl", &|v| i64::from(v < 40.0));
    rule("heart_rate", &|v| i64::from(v > 100.0));
    match (latest.get("weight"), latest.get("height")) {
        (Some((w, wu)), Some((h, hu))) => {
            let kg = if wu == "lb" { w * 0.453_592_37 } else { *w };
            let m = if hu == "in" { h * 0.0254 } else { h / 100.0 };
            let bmi = kg / (m * m);
            factors.push(Factor { code: "bmi".into(), value: bmi, points: bands(bmi, &[(35.0, 2), (30.0, 1)]) });
        }
        _ => missing.push("bmi".into()),
    }
    let score = factors.iter().map(|f| f.points).sum();
    let category = match score {
        ..=2 => "low",
        3..=5 => "moderate",
        _ => "high",
    };
    Score { score, category, factors, missing }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn latest(items: &[(&str, f64, &str)]) -> Latest {
        items.iter().map(|(c, v, u)| ((*c).to_owned(), (*v, (*u).to_owned()))).collect()
    }

    #[test]
    fn empty_is_low_with_everything_missing() {
        let s = assess(&Latest::new());
        assert_eq!((s.score, s.category, s.factors.len(), s.missing.len()), (0, "low", 0, 8));
    }

    #[test]
    fn scores_are_deterministic() {
        let s = assess(&latest(&[
            ("systolic_bp", 145.0, "mmHg"),
            ("diastolic_bp", 85.0, "mmHg"),
            ("hba1c", 6.0, "%"),
            ("glucose", 7.2, "mmol/L"),
            ("ldl", 4.5, "mmol/L"),
            ("hdl", 35.0, "mg/dL"),
            ("heart_rate", 72.0, "bpm"),
            ("weight", 220.0, "lb"),
            ("height", 170.0, "cm"),
        ]));
        let points: Vec<_> = s.factors.iter().map(|f| (f.code.as_str(), f.points)).collect();
        assert_eq!(
            points,
            vec![
                ("systolic_bp", 2),
                ("diastolic_bp", 0),
                ("hba1c", 1),
                ("glucose", 2),
                ("ldl", 2),
                ("hdl", 1),
                ("heart_rate", 0),
                ("bmi", 1),
            ]
        );
        assert_eq!((s.score, s.category), (9, "high"));
        assert!(s.missing.is_empty());
    }

    #[test]
    fn band_edges() {
        let one = |code: &str, v: f64, u: &str| assess(&latest(&[(code, v, u)])).score;
        assert_eq!(one("systolic_bp", 129.9, "mmHg"), 0);
        assert_eq!(one("systolic_bp", 130.0, "mmHg"), 1);
        assert_eq!(one("systolic_bp", 160.0, "mmHg"), 3);
        assert_eq!(one("hba1c", 6.5, "%"), 3);
        assert_eq!(one("hdl", 40.0, "mg/dL"), 0);
        assert_eq!(one("heart_rate", 100.0, "bpm"), 0);
        assert_eq!(one("heart_rate", 101.0, "bpm"), 1);
    }
}
