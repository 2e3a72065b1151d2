//! Hot reload under load: a file watcher and reloads (files read outside the manager's
//! lock, installed under it, as the agent does) racing continuous evaluation, with
//! good and bad versions of the rule file written in turn. The rules in force must always
//! be the last good ones, evaluation must never stop or fail because of a reload, and the
//! firing alert must survive every reload.

use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use warden_rules::group::GroupOptions;
use warden_rules::labels::Labels;
use warden_rules::manager::RuleManager;
use warden_rules::promql::Engine;
use warden_rules::storage::{Appendable, Db, DbConfig};
use warden_rules::watch::RuleWatcher;

fn rules(threshold: u32, extra_record: bool) -> String {
    let mut s = format!(
        "groups:\n- name: load\n  interval: 1s\n  rules:\n  - alert: High\n    expr: x > {threshold}\n    labels:\n      severity: page\n"
    );
    if extra_record {
        s.push_str("  - record: x:doubled\n    expr: x * 2\n");
    }
    s
}

const BAD: &str = "groups:\n- name: load\n  rules:\n  - alert: High\n    expr: sum(x\n";

#[test]
fn reload_under_load_keeps_last_good_rules_and_alert_state() {
    let dir = std::env::temp_dir().join(format!("warden-reload-under-load-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("rules.yml");
    std::fs::write(&file, rules(4, false)).unwrap();
    let pattern = dir.join("*.yml").display().to_string();

    let db = Arc::new(Db::new(DbConfig::default()));
    let manager = Arc::new(Mutex::new(RuleManager::new(vec![pattern.clone()], GroupOptions::default())));
    manager.lock().unwrap().reload(&*db, 0).unwrap();
    let now = Arc::new(AtomicI64::new(0));
    let stop = Arc::new(AtomicBool::new(false));

    // Evaluator: simulated time advancing 1 s per round, x always 10 (so `High` fires).
    let evaluator = {
        let (db, manager, now, stop) = (db.clone(), manager.clone(), now.clone(), stop.clone());
        std::thread::spawn(move || {
            let engine = Engine::default();
            let x = Labels::from_pairs(&[("__name__", "x")]);
            let mut rounds = 0u32;
            let mut first_active_at = None;
            while !stop.load(Ordering::Relaxed) {
                let t = now.fetch_add(1_000, Ordering::SeqCst) + 1_000;
                db.append(&x, t, 10.0).unwrap();
                let mut m = manager.lock().unwrap();
                for report in m.eval_due(&engine, &*db, t) {
                    assert_eq!(report.failed(), 0, "evaluation failed during reloads: {report:?}");
                }
                assert_eq!(m.groups().count(), 1, "the group must never disappear");
                let alerts: Vec<_> = m.groups().flat_map(|g| g.active_alerts()).collect();
                if let Some(a) = alerts.first() {
                    // The alert keeps the time it became active across every reload.
                    assert_eq!(*first_active_at.get_or_insert(a.active_at), a.active_at);
                }
                drop(m);
                rounds += 1;
                std::thread::sleep(Duration::from_micros(200));
            }
            rounds
        })
    };

    // Watcher-driven reloader, as the agent runs it.
    let reloader = {
        let (db, manager, now, stop) = (db.clone(), manager.clone(), now.clone(), stop.clone());
        let watcher = RuleWatcher::new(&[pattern]).unwrap();
        let loader = manager.lock().unwrap().loader();
        std::thread::spawn(move || {
            let mut refused = 0u32;
            while !stop.load(Ordering::Relaxed) {
                if watcher.wait(Duration::from_millis(100)) {
                    // Files are read and parsed without the lock; only the swap takes it.
                    if manager.lock().unwrap().fingerprint() == Some(loader.fingerprint()) {
                        continue;
                    }
                    let prepared = loader.load();
                    let t = now.load(Ordering::SeqCst);
                    if manager.lock().unwrap().install(prepared, &*db, t).is_err() {
                        refused += 1;
                    }
                }
            }
            refused
        })
    };

    // Writer: good, bad, good with an extra rule, bad, ... (editor-style rename saves);
    // after each write, wait (bounded) for the watcher-driven reload to happen.
    let versions = [rules(5, false), BAD.to_owned(), rules(5, true), BAD.to_owned()];
    for (i, text) in versions.iter().cycle().take(13).enumerate() {
        let before = manager.lock().unwrap().status().reloads_total;
        let tmp = dir.join(format!(".rules.yml.{i}"));
        std::fs::write(&tmp, text).unwrap();
        std::fs::rename(&tmp, &file).unwrap();
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        while manager.lock().unwrap().status().reloads_total == before {
            assert!(std::time::Instant::now() < deadline, "version {i} was never reloaded");
            std::thread::sleep(Duration::from_millis(20));
        }
        let m = manager.lock().unwrap();
        let st = m.status();
        let bad = text == BAD;
        assert_eq!(st.last_reload_success, !bad, "after writing version {i} (bad: {bad}): {st:?}");
        if bad {
            assert!(st.last_error.as_deref().unwrap().contains("rules.yml"), "{st:?}");
        }
    }
    // The last version written (index 12) is the one-rule good file.
    stop.store(true, Ordering::Relaxed);
    let rounds = evaluator.join().unwrap();
    let refused = reloader.join().unwrap();
    let m = manager.lock().unwrap();
    assert_eq!(m.groups().next().unwrap().rules().len(), 1);
    assert_eq!(refused, 6, "each of the six bad writes refused once");
    assert_eq!(m.status().reload_errors_total, 6);
    assert!(rounds > 100, "evaluation kept running: {rounds} rounds");
    std::fs::remove_dir_all(dir).unwrap();
}
