//! `warden redact` end to end: the built binary over stdin and files.

use std::io::Write;
use std::process::{Command, Stdio};

fn warden() -> Command {
    Command::new(env!("CARGO_BIN_EXE_warden"))
}

fn run_stdin(args: &[&str], input: &[u8]) -> (i32, String, String) {
    let mut child = warden()
        .arg("redact")
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let data = input.to_vec();
    let writer = std::thread::spawn(move || {
        let _ = stdin.write_all(&data);
    });
    let out = child.wait_with_output().unwrap();
    writer.join().unwrap();
    (out.status.code().unwrap_or(-1), String::from_utf8(out.stdout).unwrap(), String::from_utf8(out.stderr).unwrap())
}

#[test]
fn stdin_one_line_out_per_line_in_and_json_stays_json() {
    let mut input = String::new();
    for i in 0..2000 {
        match i % 4 {
            0 => input.push_str(&format!("{i} INFO patient=John Smith ssn 123-45-6789 took 12ms\n")),
            1 => input.push_str(&format!("{{\"i\":{i},\"dob\":\"1950-01-0{}\",\"msg\":\"mail jane@example.com\",\"nested\":{{\"zip\":\"02139\"}}}}\n", i % 9 + 1)),
            2 => input.push_str("2024-01-15T10:00:00Z GET /v1/patients/48213 200 trace_id=4bf92f3577b34da6a3ce929d0e0e4736\n"),
            _ => input.push_str("{not json: 555-123-4567}\n"),
        }
    }
    let (code, out, err) = run_stdin(&[], input.as_bytes());
    assert_eq!(code, 0, "{err}");
    let lines: Vec<&str> = out.split_terminator('\n').collect();
    assert_eq!(lines.len(), 2000);
    for (i, l) in lines.iter().enumerate() {
        match i % 4 {
            0 => assert_eq!(*l, format!("{i} INFO patient=[REDACTED:NAME] ssn [REDACTED:SSN] took 12ms")),
            1 => {
                let v: serde_json::Value =
                    serde_json::from_str(l).unwrap_or_else(|e| panic!("line {i} not JSON ({e}): {l}"));
                assert_eq!(v["i"], i);
                assert_eq!(v["dob"], "[REDACTED:DATE]");
                assert_eq!(v["msg"], "mail [REDACTED:EMAIL]");
                assert_eq!(v["nested"]["zip"], "[REDACTED:ZIP:021]");
            }
            2 => assert_eq!(
                *l,
                "2024-01-15T10:00:00Z GET /v1/patients/48213 200 trace_id=4bf92f3577b34da6a3ce929d0e0e4736"
            ),
            _ => assert_eq!(*l, "{not json: [REDACTED:PHONE]}"),
        }
    }
}

#[test]
fn files_in_order_with_a_config() {
    let dir = std::env::temp_dir().join(format!("warden_redact_e2e_{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let a = dir.join("a.log");
    let b = dir.join("b.log");
    std::fs::write(&a, "one 555-123-4567\ntwo\n").unwrap();
    std::fs::write(&b, b"three a@example.com\n\xff\n").unwrap();
    let cfg = dir.join("redact.yaml");
    std::fs::write(&cfg, "action: mask\ndetectors:\n  email:\n    action: drop_record\n  phone:\n    enabled: false\n")
        .unwrap();
    let out = warden().args(["redact", "--config"]).arg(&cfg).arg(&a).arg(&b).output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(String::from_utf8(out.stdout).unwrap(), "one 555-123-4567\ntwo\n\n\u{fffd}\n");

    std::fs::write(&cfg, "detectors:\n  ssn: { action: hash }\nhash_key_env: WARDEN_TEST_REDACT_KEY\n").unwrap();
    let run = |key: &str| {
        let out = warden()
            .args(["redact", "--config"])
            .arg(&cfg)
            .env("WARDEN_TEST_REDACT_KEY", key)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut out = out;
        out.stdin.take().unwrap().write_all(b"ssn 123-45-6789\n").unwrap();
        let o = out.wait_with_output().unwrap();
        assert_eq!(o.status.code(), Some(0), "{}", String::from_utf8_lossy(&o.stderr));
        String::from_utf8(o.stdout).unwrap()
    };
    let k1 = run("0123456789abcdef-key-one");
    assert!(k1.starts_with("ssn [SSN:") && k1.ends_with("]\n"), "{k1}");
    assert_eq!(k1, run("0123456789abcdef-key-one"));
    assert_ne!(k1, run("0123456789abcdef-key-two"));

    // Hash mode without its key refuses to start, without printing the key name's value.
    let out = warden().args(["redact", "--config"]).arg(&cfg).env_remove("WARDEN_TEST_REDACT_KEY").output().unwrap();
    assert_eq!(out.status.code(), Some(64));
    assert!(String::from_utf8_lossy(&out.stderr).contains("WARDEN_TEST_REDACT_KEY"));
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn closed_stdout_exits_quietly() {
    // `warden redact | head -1` style: the reader goes away early.
    let mut child =
        warden().arg("redact").stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
    let stdout = child.stdout.take().unwrap();
    drop(stdout);
    let mut stdin = child.stdin.take().unwrap();
    let line = "ssn 123-45-6789 and more text to fill the pipe\n".repeat(1000);
    for _ in 0..200 {
        if stdin.write_all(line.as_bytes()).is_err() {
            break;
        }
    }
    drop(stdin);
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(out.stderr.is_empty(), "{}", String::from_utf8_lossy(&out.stderr));
}
