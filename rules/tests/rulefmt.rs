//! Rule-file loading against Prometheus' own fixtures (`shared/conformance/rulefmt` and the
//! rule files among `shared/conformance/promtool`), with the verdicts `promtool check
//! rules` gives, and against the rule files this repository ships (`deploy/rules`).

use std::path::{Path, PathBuf};

use warden_rules::labels::Labels;
use warden_rules::rulefile::{
    NameValidation, ParseOptions, RuleFileError, RuleKind, duplicate_rules, lint_duplicates, load_file, load_file_with,
};
use warden_rules::template::{Template, TemplateData};

fn conformance_dir(sub: &str) -> Option<PathBuf> {
    warden_rules::conformance::data_dir_for_test(sub)
}

/// Files named `legacy_*` are Prometheus' fixtures for the legacy name validation scheme.
fn options_for(name: &str) -> ParseOptions {
    let name_validation = if name.starts_with("legacy_") { NameValidation::Legacy } else { NameValidation::Utf8 };
    ParseOptions { name_validation, ..Default::default() }
}

fn assert_names_position(file: &Path, errs: &[RuleFileError]) {
    for e in errs {
        let msg = e.to_string();
        let shown = file.display().to_string();
        assert!(msg.starts_with(&shown), "error does not name the file: {msg}");
        assert!(e.line > 0, "error has no line: {msg}");
        assert!(msg[shown.len()..].starts_with(&format!(":{}", e.line)), "line not printed: {msg}");
    }
}

#[test]
fn rulefmt_fixtures() {
    let Some(dir) = conformance_dir("rulefmt") else { return };
    let mut entries: Vec<PathBuf> =
        std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().path()).filter(|p| p.is_file()).collect();
    entries.sort();
    let (mut good, mut bad) = (0, 0);
    for path in &entries {
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        let res = load_file_with(path, &options_for(&name));
        if name.ends_with(".bad.yaml") {
            let errs = match res {
                Ok(f) => panic!("{name}: accepted but must be rejected ({} groups)", f.groups.len()),
                Err(e) => e,
            };
            assert_names_position(path, &errs);
            for e in &errs {
                // Rule-level problems name the group and the rule.
                let rule_level = !e.message.starts_with("yaml:") && !e.message.starts_with("groupname");
                if rule_level {
                    assert_eq!(e.group.as_deref(), Some("yolo"), "{name}: {e}");
                    assert!(e.rule.is_some(), "{name}: rule not named: {e}");
                    assert!(e.to_string().contains("group \"yolo\", rule 1 ("), "{name}: {e}");
                }
            }
            bad += 1;
        } else if name.ends_with(".good.yaml") || name.starts_with("test") {
            if let Err(e) = res {
                panic!("{name}: rejected but must be accepted: {e:#?}");
            }
            good += 1;
        }
    }
    assert!(bad >= 11 && good >= 5, "fixture count changed: {bad} bad, {good} good");
}

#[test]
fn rulefmt_fixture_messages() {
    let Some(dir) = conformance_dir("rulefmt") else { return };
    // The message each bad fixture must produce (Prometheus' own expectations) and where.
    let cases = [
        ("bad_expr.bad.yaml", "5:15: group \"yolo\", rule 1 (\"yolo\"): could not parse expression"),
        ("bad_field.bad.yaml", "8:9: yaml: unknown field `annotation`"),
        ("duplicate_grp.bad.yaml", "3:11: groupname: \"yolo\" is repeated in the same file"),
        ("invalid_label_name.bad.yaml", "group \"yolo\", rule 1 (\"hola\"): invalid label name: __name__"),
        ("invalid_record_name.bad.yaml", "4:17: group \"yolo\", rule 1 (\"strawberry{flavor=\\\"sweet\\\"}\"): braces"),
        ("legacy_validation_annotation.bad.yaml", "invalid annotation name: ins-tance"),
        ("no_rec_alert.bad.yaml", "4:9: group \"yolo\", rule 1 (\"\"): one of 'record' or 'alert' must be set"),
        ("noexpr.bad.yaml", "4:9: group \"yolo\", rule 1 (\"ylo\"): field 'expr' must be set in rule"),
        ("record_and_alert.bad.yaml", "5:16: group \"yolo\", rule 1 (\"Hello\"): only one of 'record' and 'alert'"),
        ("record_and_for.bad.yaml", "4:17: group \"yolo\", rule 1 (\"Hello\"): invalid field 'for' in recording rule"),
        ("record_and_keep_firing_for.bad.yaml", "invalid field 'keep_firing_for' in recording rule"),
    ];
    for (name, want) in cases {
        let path = dir.join(name);
        let errs = load_file_with(&path, &options_for(name)).expect_err(name);
        let all: Vec<String> = errs.iter().map(ToString::to_string).collect();
        assert!(all.iter().any(|m| m.contains(want)), "{name}: want {want:?} in {all:#?}");
    }
}

#[test]
fn rulefmt_good_fixture_contents() {
    let Some(dir) = conformance_dir("rulefmt") else { return };
    let f = load_file(&dir.join("test.yaml")).unwrap();
    assert_eq!(f.groups.len(), 2);
    assert_eq!(f.groups[0].name, "my-group-name");
    assert_eq!(f.groups[0].interval_ms, Some(30_000));
    assert_eq!(f.groups[0].rules.len(), 3);
    let r = &f.groups[0].rules[0];
    assert_eq!((r.kind, r.name.as_str(), r.for_ms, r.line), (RuleKind::Alert, "HighErrors", 300_000, 5));
    assert_eq!(f.groups[0].rules[1].kind, RuleKind::Record);
    assert_eq!(f.groups[0].rules[1].labels, vec![("abc".into(), "edf".into()), ("uvw".into(), "xyz".into())]);
    // Anchors, aliases and merge keys resolve as in Go's YAML.
    let a = load_file(&dir.join("test_aliases.yaml")).unwrap();
    let g = &a.groups[0];
    assert_eq!(g.rules.len(), 4);
    assert_eq!(g.rules[2].name, "HighAlert");
    assert_eq!(g.rules[2].expr_text, g.rules[0].expr_text);
    assert_eq!(g.rules[3].name, "HighAlert2");
    assert_eq!(g.rules[3].for_ms, 300_000);
    assert_eq!(g.rules[3].labels, vec![("severity".into(), "critical".into())]);
    // promtool's duplicate lint: HighAlert and HighAlert2 (both with severity=critical).
    let d: Vec<String> = duplicate_rules(&a).into_iter().map(|(n, _)| n).collect();
    assert_eq!(d, vec!["HighAlert".to_owned(), "HighAlert2".to_owned()]);
    assert_eq!(duplicate_rules(&f).len(), 1);
}

#[test]
fn promtool_rule_fixtures() {
    let Some(dir) = conformance_dir("promtool") else { return };
    // (file, accepted?, lint warnings, substring of the first error)
    let cases: [(&str, bool, usize, &str); 9] = [
        ("rules.yml", true, 0, ""),
        (
            "rules-bad.yml",
            false,
            0,
            "12:11: group \"alerts\", rule 1 (\"InstanceDown\"): annotation \"summary\": template: __alert_InstanceDown:1: undefined variable \"$label\"",
        ),
        ("bad-rules-error.yml", true, 0, ""),
        ("bad-rules-syntax.yml", false, 0, "7:15: group \"bad-syntax\", rule 1 (\"x\"): could not parse expression"),
        ("bad-rules-error-test.yml", false, 0, "1:1: yaml: unknown field `rule_files`"),
        ("bad-rules-syntax-test.yml", false, 0, "1:1: yaml: unknown field `rule_files`"),
        ("rules_duplicates.yml", true, 1, ""),
        ("rules_extrafields.yml", false, 0, "7:5: yaml: unknown field `namespace`"),
        ("unittest.yml", false, 0, "unknown field"),
    ];
    for (name, ok, lints, want) in cases {
        let path = dir.join(name);
        match load_file(&path) {
            Ok(f) => {
                assert!(ok, "{name}: accepted but promtool rejects it");
                let l = lint_duplicates(&f);
                assert_eq!(l.len(), lints, "{name}: lint {l:#?}");
            }
            Err(errs) => {
                assert!(!ok, "{name}: rejected but promtool accepts it: {errs:#?}");
                assert_names_position(&path, &errs);
                let first = errs[0].to_string();
                assert!(first.contains(want), "{name}: want {want:?} in {first}");
            }
        }
    }
    let l = lint_duplicates(&load_file(&dir.join("rules_duplicates.yml")).unwrap());
    assert!(l[0].contains("\"job:test:count_over_time1m\""), "{}", l[0]);
    // Like Go's strict decoder, every unknown field is reported (promtool: lines 7 and 21).
    let e = load_file(&dir.join("rules_extrafields.yml")).unwrap_err();
    assert_eq!(e.iter().map(|e| (e.line, e.column)).collect::<Vec<_>>(), vec![(7, 5), (21, 5)]);
    // `--ignore-unknown-fields` accepts the extra-fields file.
    let lenient = ParseOptions { ignore_unknown_fields: true, ..Default::default() };
    let f = load_file_with(&dir.join("rules_extrafields.yml"), &lenient).unwrap();
    assert_eq!(f.groups.iter().map(|g| g.rules.len()).sum::<usize>(), 5);
}

#[test]
fn shipped_default_rules_load() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/rules");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yml" || e == "yaml"))
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no rule files in {}", dir.display());
    let mut rules = 0;
    for f in &files {
        match load_file(f) {
            Ok(rf) => {
                assert!(!rf.groups.is_empty(), "{}: no groups", f.display());
                rules += rf.groups.iter().map(|g| g.rules.len()).sum::<usize>();
                assert!(lint_duplicates(&rf).is_empty(), "{}: duplicates {:?}", f.display(), lint_duplicates(&rf));
                // Every template renders without error against a typical alert.
                let labels = Labels::from_pairs(&[("instance", "10.0.0.1:9100"), ("job", "node"), ("mountpoint", "/")]);
                let ext = Labels::empty();
                let data =
                    TemplateData { labels: &labels, value: 0.75, external_labels: &ext, external_url: "http://x" };
                for r in rf.groups.iter().flat_map(|g| &g.rules).filter(|r| r.kind == RuleKind::Alert) {
                    for (k, v) in r.labels.iter().chain(&r.annotations) {
                        let t = Template::parse_named(&format!("__alert_{}", r.name), v).unwrap();
                        let out = t.render(&data).unwrap_or_else(|e| panic!("{}: {} {k}: {e}", f.display(), r.name));
                        assert!(!out.contains("{{"), "{}: {} {k}: {out}", f.display(), r.name);
                    }
                }
            }
            Err(e) => panic!("{}: {}", f.display(), e.iter().map(ToString::to_string).collect::<Vec<_>>().join("\n")),
        }
    }
    assert!(rules > 0);
}

#[test]
fn missing_file_is_an_error() {
    let e = load_file(Path::new("/nonexistent/rules.yml")).unwrap_err();
    assert!(e[0].to_string().starts_with("/nonexistent/rules.yml: cannot read file"), "{}", e[0]);
}
