//! Property tests of the redactor with seeded randomness: PHI inserted at a random place
//! in random log text is always removed; redaction is idempotent; JSON in gives JSON out
//! with the same keys; output is always valid UTF-8 (guaranteed by `&str`, checked on the
//! JSON path by a strict parser).

#[path = "redact_support/corpus.rs"]
mod corpus;

use rand::Rng;
use warden_collector::redact::{Line, Redactor};

fn out(r: &Redactor, line: &str) -> String {
    match r.redact_line(line) {
        Line::Text(t) => t.into_owned(),
        Line::Json(j) => j,
        Line::Dropped => String::new(),
    }
}

#[test]
fn phi_inserted_anywhere_is_removed() {
    let r = Redactor::default_mask();
    let mut g = corpus::Gen::new(11);
    let mut failures = Vec::new();
    for i in 0..6000 {
        let det = corpus::DETECTORS[i % corpus::DETECTORS.len()];
        let (frag, phi) = g.phi_fragment(det);
        // Random clean words around it, joined by a random separator.
        let before: Vec<String> = (0..g.rng().random_range(0..4)).map(|_| g.noise()).collect();
        let after: Vec<String> = (0..g.rng().random_range(0..4)).map(|_| g.noise()).collect();
        let sep = [" ", " | ", "; ", "\t"][g.rng().random_range(0..4)];
        let mut parts = before;
        parts.push(frag);
        parts.extend(after);
        let line = parts.join(sep);
        let o = out(&r, &line);
        for p in &phi {
            if o.matches(p.value.as_str()).count() >= line.matches(p.value.as_str()).count() {
                failures.push(format!("{det}: {:?} survived in {line:?} -> {o:?}", p.value));
            }
        }
    }
    assert!(failures.is_empty(), "{} failures:\n{}", failures.len(), failures[..failures.len().min(20)].join("\n"));
}

#[test]
fn redaction_is_idempotent() {
    let r = Redactor::default_mask();
    let mut g = corpus::Gen::new(12);
    for _ in 0..5000 {
        let l = g.line(0.5, 0.4);
        let once = out(&r, &l.line);
        let twice = out(&r, &once);
        assert_eq!(once, twice, "input: {}", l.line);
    }
}

fn keys(v: &serde_json::Value, path: &str, acc: &mut Vec<String>) {
    match v {
        serde_json::Value::Object(m) => {
            for (k, v) in m {
                let p = format!("{path}/{k}");
                acc.push(p.clone());
                keys(v, &p, acc);
            }
        }
        serde_json::Value::Array(a) => {
            for (i, v) in a.iter().enumerate() {
                keys(v, &format!("{path}/{i}"), acc);
            }
        }
        _ => {}
    }
}

fn random_json(rng: &mut impl Rng, g: &mut corpus::Gen, depth: usize) -> serde_json::Value {
    let pick = if depth > 3 { rng.random_range(0..4) } else { rng.random_range(0..6) };
    match pick {
        0 => serde_json::Value::from(g.noise()),
        1 => serde_json::Value::from(rng.random::<i64>() >> rng.random_range(0..63)),
        2 => {
            let (s, _) = g.phi_fragment(corpus::DETECTORS[rng.random_range(0..corpus::DETECTORS.len())]);
            serde_json::Value::from(s)
        }
        3 => [serde_json::Value::Null, true.into(), 1.5e300.into(), "\u{1}\"\\é😀".into()][rng.random_range(0..4)]
            .clone(),
        4 => serde_json::Value::Array((0..rng.random_range(0..4)).map(|_| random_json(rng, g, depth + 1)).collect()),
        _ => {
            let names = ["ssn", "patientName", "msg", "age", "dob", "id", "zip", "tags", "a.b", "phone", "x y", "ip"];
            let mut m = serde_json::Map::new();
            for _ in 0..rng.random_range(0..5) {
                m.insert(names[rng.random_range(0..names.len())].to_owned(), random_json(rng, g, depth + 1));
            }
            serde_json::Value::Object(m)
        }
    }
}

#[test]
fn json_in_gives_json_out_with_the_same_keys() {
    let r = Redactor::default_mask();
    let mut g = corpus::Gen::new(13);
    let mut rng = rand::rngs::StdRng::seed_from_u64(13);
    use rand::SeedableRng;
    for i in 0..3000 {
        let mut v = random_json(&mut rng, &mut g, 0);
        if !v.is_object() {
            v = serde_json::json!({ "v": v });
        }
        let line =
            if i % 2 == 0 { v.to_string() } else { serde_json::to_string_pretty(&v).unwrap().replace('\n', " ") };
        let o = r.redact_json_line(&line).unwrap_or_else(|| panic!("valid JSON object rejected: {line}"));
        let back: serde_json::Value =
            serde_json::from_str(&o).unwrap_or_else(|e| panic!("invalid JSON out ({e}): {o}\nfrom {line}"));
        let (mut k1, mut k2) = (Vec::new(), Vec::new());
        keys(&v, "", &mut k1);
        keys(&back, "", &mut k2);
        // Array elements may only disappear under drop_field, which the default config
        // does not use, so the key paths must match exactly.
        assert_eq!(k1, k2, "keys changed: {line} -> {o}");
        assert!(!o.contains('\n'), "output must be one line");
    }
}
