//! Deterministic fuzzing of the rule-file loader and the evaluator: no input may panic or
//! run unbounded.
//!
//! There is no nightly toolchain here for `cargo fuzz`, so these are seeded mutation
//! fuzzers that run as ordinary tests: every expression of the PromQL conformance scripts
//! and every rule-file fixture is mutated (token splices, byte flips, truncations) and fed
//! through the real code. Any panic fails the test and prints the input. Set
//! `WARDEN_FUZZ_ITERS` to run longer (default: a few thousand cases, seconds in CI), and
//! `WARDEN_FUZZ_SEED` to vary the seed.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::{Rng as _, SeedableRng as _};
use warden_rules::labels::Labels;
use warden_rules::promql::{Engine, EngineOptions};
use warden_rules::rulefile;
use warden_rules::storage::{Appendable, Db, DbConfig, stale_nan};

fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

fn conformance_dir(sub: &str) -> Option<PathBuf> {
    warden_rules::conformance::data_dir_for_test(sub)
}

fn files(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().path()).collect();
    v.sort();
    v
}

const TOKENS: &[&str] = &[
    "[5m]",
    "[1ms]",
    "[100y]",
    "[1s:0s]",
    "[1h:1ms]",
    "[5m:]",
    " offset 1h",
    " offset -1y",
    " @ 100",
    " @ -1e18",
    " @ start()",
    " @ end()",
    " by (a)",
    " without (__name__)",
    " on (x) group_left (y)",
    " ignoring (a) group_right",
    " bool",
    "^",
    "/ 0",
    "% 0",
    " and ",
    " or ",
    " unless ",
    "atan2",
    "1e308",
    "-Inf",
    "NaN",
    "0x10",
    "(",
    ")",
    "{",
    "}",
    "\"",
    "=~\"(\"",
    "=~\".*\"",
    "!~\"a|b\"",
    "sum(",
    "topk(1e9,",
    "quantile(NaN,",
    "count_values(\"le\",",
    "limitk(-1,",
    "limit_ratio(2,",
    "histogram_quantile(0.9,",
    "label_replace(",
    "label_join(",
    "absent(",
    "predict_linear(",
    "holt_winters(",
    "double_exponential_smoothing(",
    "sort_by_label(",
    "vector(",
    "scalar(",
    "time()",
    "timestamp(",
    "-",
    "--",
    "+",
    "*",
    ",",
    " ",
    "",
];

/// Applies 1 to `max_edits` random edits to `s`: insert a token, delete a short run,
/// replace a short run with a token, or truncate.
fn mutate_text(rng: &mut StdRng, s: &str, tokens: &[&str], max_edits: usize) -> String {
    let mut out = s.to_owned();
    for _ in 0..1 + rng.random_range(0..max_edits) {
        let chars: Vec<(usize, char)> = out.char_indices().collect();
        let pos = if chars.is_empty() { 0 } else { chars[rng.random_range(0..chars.len())].0 };
        let run_end = |out: &str, rng: &mut StdRng| {
            out[pos..].char_indices().nth(1 + rng.random_range(0..8)).map_or(out.len(), |(i, _)| pos + i)
        };
        match rng.random_range(0..4) {
            0 => out.insert_str(pos, tokens[rng.random_range(0..tokens.len())]),
            1 => {
                let end = run_end(&out, rng);
                out.replace_range(pos..end, "");
            }
            2 => {
                let end = run_end(&out, rng);
                out.replace_range(pos..end, tokens[rng.random_range(0..tokens.len())]);
            }
            _ => out.truncate(pos),
        }
    }
    out
}

fn fuzz_db() -> Db {
    let db = Db::new(DbConfig::default());
    let names = ["x", "http_requests_total", "le_bucket", "up"];
    for (ni, name) in names.iter().enumerate() {
        for i in 0..4 {
            let le = ["0.1", "1", "+Inf", "bad"][i];
            let l = Labels::from_pairs(&[("__name__", *name), ("a", &format!("v{i}")), ("le", le), ("x", "1")]);
            for k in 0..40i64 {
                let v = match (k + ni as i64) % 13 {
                    0 => f64::NAN,
                    5 => f64::INFINITY,
                    7 if k > 30 => stale_nan(),
                    _ => (k * (i as i64 + 1)) as f64 - 3.0,
                };
                // A stale marker then more samples, and NaN/±Inf values, on purpose.
                let _ = db.append(&l, k * 15_000, v);
            }
        }
    }
    db
}

#[test]
fn evaluator_never_panics_on_mutated_conformance_queries() {
    let Some(dir) = conformance_dir("promql") else { return };
    let mut exprs = Vec::new();
    for f in files(&dir) {
        for line in std::fs::read_to_string(&f).unwrap().lines() {
            let line = line.trim();
            if let Some(rest) = line.strip_prefix("eval instant at ") {
                if let Some((_, e)) = rest.split_once(' ') {
                    exprs.push(e.to_owned());
                }
            } else if let Some(rest) = line.strip_prefix("eval range from ") {
                // `<s> to <e> step <d> <expr>`
                let parts: Vec<&str> = rest.splitn(6, ' ').collect();
                if let Some(e) = parts.get(5) {
                    exprs.push((*e).to_owned());
                }
            }
        }
    }
    assert!(exprs.len() > 500, "corpus too small: {}", exprs.len());
    let iters = env_u64("WARDEN_FUZZ_ITERS", 4_000);
    let mut rng = StdRng::seed_from_u64(env_u64("WARDEN_FUZZ_SEED", 0x5eed_1234_abcd_0001));
    let db = fuzz_db();
    // A tight sample budget keeps every case fast; the bound itself is under test.
    let engine = Engine::new(EngineOptions { max_samples: 200_000, ..EngineOptions::default() });
    let times = [0i64, 1, 300_000, 600_000, -1_000_000_000, i64::MAX / 4];
    let mut parsed = 0;
    let started = Instant::now();
    for i in 0..iters {
        let base = &exprs[rng.random_range(0..exprs.len())];
        let text = if i % 5 == 0 { base.clone() } else { mutate_text(&mut rng, base, TOKENS, 3) };
        let Ok(expr) = warden_rules::promql::parse(&text) else { continue };
        parsed += 1;
        let case_started = Instant::now();
        let t = times[rng.random_range(0..times.len())];
        let _ = engine.instant(&db, &expr, t);
        let step = [1i64, 15_000, 60_000, 3_600_000][rng.random_range(0..4)];
        let _ = engine.range(&db, &expr, 0, 600_000, step);
        assert!(
            case_started.elapsed() < Duration::from_secs(20),
            "query took {:?}, the engine's bounds failed: {text}",
            case_started.elapsed()
        );
    }
    assert!(parsed > iters / 10, "too few mutated inputs parsed ({parsed}); the mutator is broken");
    use std::io::Write as _;
    let _ = writeln!(
        std::io::stderr(),
        "fuzz: evaluated {parsed} parsed expressions of {iters} mutations in {:?}",
        started.elapsed()
    );
}

#[test]
fn rule_loader_never_panics_on_mutated_rule_files() {
    let mut corpus: Vec<String> = Vec::new();
    for sub in ["rulefmt", "promtool"] {
        if let Some(dir) = conformance_dir(sub) {
            corpus.extend(files(&dir).iter().filter_map(|f| std::fs::read_to_string(f).ok()));
        }
    }
    let deploy = Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/rules");
    corpus.extend(files(&deploy).iter().filter(|f| f.is_file()).filter_map(|f| std::fs::read_to_string(f).ok()));
    assert!(!corpus.is_empty());
    let iters = env_u64("WARDEN_FUZZ_ITERS", 4_000);
    let mut rng = StdRng::seed_from_u64(env_u64("WARDEN_FUZZ_SEED", 0x5eed_1234_abcd_0002));
    let yaml_tokens = [
        ": ",
        "\n",
        "- ",
        "  ",
        "{",
        "}",
        "[",
        "]",
        "&a ",
        "*a",
        "!!binary ",
        "'",
        "\"",
        "#",
        "|",
        ">-",
        "~",
        "null",
        "for: -1m",
        "interval: 0s",
        "limit: -1",
        "expr: ",
        "alert: ",
        "record: ",
        "labels: {a: [1]}",
        "annotations: {x: '{{ $value | humanize }}'}",
        "{{",
        "}}",
        "\u{0}",
        "\u{feff}",
        "?",
        "%YAML 1.2\n---\n",
    ];
    for _ in 0..iters {
        let base = &corpus[rng.random_range(0..corpus.len())];
        let text = mutate_text(&mut rng, base, &yaml_tokens, 4);
        let _ = rulefile::parse_str(Path::new("fuzz.yml"), &text);
    }
    // Deep nesting and a huge flow sequence must be refused, not overflow the stack.
    let deep = format!("groups: {}{}", "[".repeat(100_000), "]".repeat(100_000));
    assert!(rulefile::parse_str(Path::new("deep.yml"), &deep).is_err());
}

/// Runs `f` on a thread with a 2 MiB stack: the size of a spawned thread's or a tokio
/// worker's, where a stack overflow aborts the whole process.
fn on_small_stack<F: FnOnce() + Send + 'static>(f: F) {
    std::thread::Builder::new().stack_size(2 << 20).spawn(f).unwrap().join().unwrap();
}

#[test]
fn deep_or_long_expressions_are_refused_without_overflowing_the_stack() {
    on_small_stack(|| {
        let refused = |text: String, why: &str| {
            let err = warden_rules::promql::parse(&text).expect_err("must be refused").to_string();
            assert!(err.contains(why), "{err}");
        };
        // Bracket nesting is refused before the parser builds (and would later drop) a deep tree.
        refused(format!("{}1{}", "(".repeat(300_000), ")".repeat(300_000)), "more than the");
        refused(format!("{}vector(1){}", "abs(".repeat(300), ")".repeat(300)), "nests brackets 301 deep");
        // A long operator chain is deep without any bracket.
        refused(vec!["up"; 3_000].join("+"), "operations deep");
        refused(vec!["up"; 10_000].join(" + "), "bytes long");

        // Just under the bound: parses and evaluates on the small stack.
        let db = Db::new(DbConfig::default());
        db.append(&Labels::from_pairs(&[("__name__", "up")]), 0, 1.0).unwrap();
        let chain = warden_rules::promql::parse(&vec!["up"; 200].join(" + ")).unwrap();
        let engine = Engine::default();
        let v = engine.instant(&db, &chain, 0).unwrap();
        assert!(format!("{:?}", v.value).contains("200"), "{:?}", v.value);
        let nested = format!("{}up{}", "abs(".repeat(250), ")".repeat(250));
        engine.instant(&db, &warden_rules::promql::parse(&nested).unwrap(), 0).unwrap();

        // Through the rule-file loader too: an error naming the rule, not an abort.
        let deep = format!(
            "groups:\n- name: g\n  rules:\n  - record: r\n    expr: '{}1{}'\n",
            "(".repeat(100_000),
            ")".repeat(100_000)
        );
        let errs = rulefile::parse_str(Path::new("deep.yml"), &deep).unwrap_err();
        assert!(errs[0].to_string().contains("deep.yml:5"), "{}", errs[0]);
    });
}
