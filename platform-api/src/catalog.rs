//! The catalogue of measurements the service accepts: each vital sign and lab test, its
//! allowed units and the plausible range per unit. Values outside the range are refused as
//! a data-entry error (a heart rate of 900 is a typo, not a patient).

/// Kind of a health record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A vital sign.
    Vital,
    /// A lab result.
    Lab,
    /// A free-text clinical note.
    Note,
}

/// One measurement code with its units and plausible ranges.
pub struct Code {
    /// Record kind (vital or lab).
    pub kind: Kind,
    /// Code, e.g. `heart_rate`.
    pub code: &'static str,
    /// `(unit, min, max)`; the first unit is the default.
    pub units: &'static [(&'static str, f64, f64)],
}

/// Every accepted code.
pub const CODES: &[Code] = &[
    Code { kind: Kind::Vital, code: "heart_rate", units: &[("bpm", 20.0, 300.0)] },
    Code { kind: Kind::Vital, code: "respiratory_rate", units: &[("breaths/min", 4.0, 80.0)] },
    Code { kind: Kind::Vital, code: "systolic_bp", units: &[("mmHg", 50.0, 300.0)] },
    Code { kind: Kind::Vital, code: "diastolic_bp", units: &[("mmHg", 20.0, 200.0)] },
    Code { kind: Kind::Vital, code: "temperature", units: &[("C", 30.0, 45.0), ("F", 86.0, 113.0)] },
    Code { kind: Kind::Vital, code: "spo2", units: &[("%", 50.0, 100.0)] },
    Code { kind: Kind::Vital, code: "weight", units: &[("kg", 0.2, 500.0), ("lb", 0.5, 1100.0)] },
    Code { kind: Kind::Vital, code: "height", units: &[("cm", 20.0, 272.0), ("in", 8.0, 107.0)] },
    Code { kind: Kind::Lab, code: "hba1c", units: &[("%", 2.0, 20.0)] },
    Code { kind: Kind::Lab, code: "glucose", units: &[("mg/dL", 10.0, 2000.0), ("mmol/L", 0.5, 111.0)] },
    Code { kind: Kind::Lab, code: "ldl", units: &[("mg/dL", 0.0, 1000.0), ("mmol/L", 0.0, 26.0)] },
    Code { kind: Kind::Lab, code: "hdl", units: &[("mg/dL", 0.0, 300.0), ("mmol/L", 0.0, 8.0)] },
    Code { kind: Kind::Lab, code: "total_cholesterol", units: &[("mg/dL", 0.0, 1500.0), ("mmol/L", 0.0, 39.0)] },
    Code { kind: Kind::Lab, code: "triglycerides", units: &[("mg/dL", 0.0, 5000.0), ("mmol/L", 0.0, 57.0)] },
    Code { kind: Kind::Lab, code: "creatinine", units: &[("mg/dL", 0.1, 30.0)] },
    Code { kind: Kind::Lab, code: "hemoglobin", units: &[("g/dL", 1.0, 25.0)] },
    Code { kind: Kind::Lab, code: "potassium", units: &[("mmol/L", 1.0, 10.0)] },
    Code { kind: Kind::Lab, code: "sodium", units: &[("mmol/L", 90.0, 200.0)] },
    Code { kind: Kind::Lab, code: "tsh", units: &[("mIU/L", 0.0, 200.0)] },
];

/// Looks a code up.
pub fn code(code: &str) -> Option<&'static Code> {
    CODES.iter().find(|c| c.code == code)
}

/// Checks a measurement; the error names the field at fault and the allowed values.
pub fn check_measurement(kind: Kind, code_name: &str, value: f64, unit: &str) -> Result<(), String> {
    let Some(c) = code(code_name).filter(|c| c.kind == kind) else {
        let allowed: Vec<&str> = CODES.iter().filter(|c| c.kind == kind).map(|c| c.code).collect();
        return Err(format!("`code` must be one of: {}", allowed.join(", ")));
    };
    let Some((_, min, max)) = c.units.iter().find(|(u, _, _)| *u == unit) else {
        let allowed: Vec<&str> = c.units.iter().map(|(u, _, _)| *u).collect();
        return Err(format!("`unit` for {} must be one of: {}", c.code, allowed.join(", ")));
    };
    if !value.is_finite() || value < *min || value > *max {
        return Err(format!("`value` for {} in {unit} must be between {min} and {max}", c.code));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn measurements() {
        let ok = |k, c, v, u| check_measurement(k, c, v, u).is_ok();
        assert!(ok(Kind::Vital, "heart_rate", 72.0, "bpm"));
        assert!(!ok(Kind::Vital, "heart_rate", 900.0, "bpm"));
        assert!(!ok(Kind::Vital, "heart_rate", f64::NAN, "bpm"));
        assert!(!ok(Kind::Vital, "heart_rate", 72.0, "mmHg"));
        assert!(!ok(Kind::Lab, "heart_rate", 72.0, "bpm"), "a vital code is not a lab code");
        assert!(ok(Kind::Vital, "temperature", 98.6, "F"));
        assert!(!ok(Kind::Vital, "temperature", 98.6, "C"));
        assert!(ok(Kind::Lab, "glucose", 5.4, "mmol/L"));
        assert!(!ok(Kind::Lab, "unobtainium", 1.0, "%"));
        assert_eq!(
            check_measurement(Kind::Vital, "spo2", 101.0, "%").unwrap_err(),
            "`value` for spo2 in % must be between 50 and 100"
        );
    }
}
