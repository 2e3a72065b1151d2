//! Per-detector table tests of the PHI redactor (default config: everything on, mask):
//! positives in every format variant, near misses that must not match, and the
//! observability values that must survive untouched.

use warden_collector::redact::{Config, Detector, Redactor};

/// Runs `(input, expected)` rows; reports every failing row at once.
fn check(rows: &[(&str, &str)]) {
    let r = Redactor::default_mask();
    let mut bad = Vec::new();
    for (input, want) in rows {
        let got = r.redact_str(input);
        if got != *want {
            bad.push(format!("  input:    {input}\n  expected: {want}\n  got:      {got}"));
        }
    }
    assert!(bad.is_empty(), "{} of {} rows failed:\n{}", bad.len(), rows.len(), bad.join("\n\n"));
}

/// Rows that must come out unchanged.
fn unchanged(rows: &[&str]) {
    let pairs: Vec<(&str, &str)> = rows.iter().map(|r| (*r, *r)).collect();
    check(&pairs);
}

#[test]
fn ssn() {
    check(&[
        ("ssn=123-45-6789", "ssn=[REDACTED:SSN]"),
        ("SSN: 123 45 6789 on file", "SSN: [REDACTED:SSN] on file"),
        ("social security number 123456789", "social security number [REDACTED:SSN]"),
        ("member 078-05-1120 enrolled", "member [REDACTED:SSN] enrolled"),
        ("id 899-99-9999", "id [REDACTED:SSN]"),
    ]);
    unchanged(&[
        "order 123456789 shipped",
        "ssn=000-12-3456",
        "ssn=666-12-3456",
        "ssn=912-12-3456",
        "ssn=123-00-4567",
        "ssn=123-45-0000",
        "ref 123-45-67890",
        "ssn 1234567890",
    ]);
}

#[test]
fn phone() {
    check(&[
        ("call me at 555-123-4567", "call me at [REDACTED:PHONE]"),
        ("tel (555) 123-4567.", "tel [REDACTED:PHONE]."),
        ("fax: 555.123.4567", "fax: [REDACTED:PHONE]"),
        ("cell +1 555 123 4567", "cell [REDACTED:PHONE]"),
        ("+1-555-123-4567 called", "[REDACTED:PHONE] called"),
        ("dial 1-800-555-0199", "dial [REDACTED:PHONE]"),
        ("whatsapp +15551234567", "whatsapp [REDACTED:PHONE]"),
        ("phone=5551234567", "phone=[REDACTED:PHONE]"),
        ("phone number: 555-0199", "phone number: [REDACTED:PHONE]"),
        ("+1 (555) 123-4567", "[REDACTED:PHONE]"),
    ]);
    unchanged(&[
        "ts=1700000000 took 12ms",
        "request 1234567890 done",
        "id 155-123-4567",
        "span 0123456789",
        "at 2024-01-15 10:00:00",
        "items 555-123-45678",
    ]);
}

#[test]
fn email() {
    check(&[
        ("user jane.doe@example.com logged in", "user [REDACTED:EMAIL] logged in"),
        ("<john+tag@mail.hospital.org>", "<[REDACTED:EMAIL]>"),
        ("mailto:a_b-c@x.io.", "mailto:[REDACTED:EMAIL]."),
    ]);
    unchanged(&["image@sha256:9f86d081884c", "ssh root@bastion", "@channel deploy done", "a@b"]);
}

#[test]
fn dates_tied_to_a_person() {
    check(&[
        ("DOB: 03/02/1954", "DOB: [REDACTED:DATE]"),
        ("dob=1954-03-02", "dob=[REDACTED:DATE]"),
        ("date of birth 2 March 1954", "date of birth [REDACTED:DATE]"),
        ("born on March 2, 1954 in", "born on [REDACTED:DATE] in"),
        ("admitted 2024-01-15T08:30:00Z via ER", "admitted [REDACTED:DATE] via ER"),
        ("discharge date: 01/20/2024", "discharge date: [REDACTED:DATE]"),
        ("died 20-Jan-2024", "died [REDACTED:DATE]"),
        ("deceased on 1/20/24", "deceased on [REDACTED:DATE]"),
        ("birthDate=19540302", "birthDate=[REDACTED:DATE]"),
    ]);
    unchanged(&[
        "2024-01-15T08:30:00Z INFO request done",
        "2024-01-15T08:30:00.123456+02:00 started worker",
        "ts=2024-01-15 10:00:00,123 level=info",
        "cert expires 2025-06-30",
        "build date 2024-01-15",
    ]);
}

#[test]
fn ages_over_89() {
    check(&[
        ("age: 93", "age: [REDACTED:AGE]"),
        ("aged 101, stable", "aged [REDACTED:AGE], stable"),
        ("a 95 year old patient", "a [REDACTED:AGE] year old patient"),
        ("92-year-old male", "[REDACTED:AGE]-year-old male"),
        ("91 yo F", "[REDACTED:AGE] yo F"),
    ]);
    unchanged(&["age: 45", "a 64 year old", "cache max-age=3600", "age 89", "image age 1000 days", "usage 95%"]);
}

#[test]
fn identifiers_by_context() {
    check(&[
        ("MRN: 00123456", "MRN: [REDACTED:MRN]"),
        ("mrn=A1234567 checked", "mrn=[REDACTED:MRN] checked"),
        ("medical record number 7788991", "medical record number [REDACTED:MRN]"),
        ("Member ID: XJH123456789", "Member ID: [REDACTED:HEALTH_PLAN]"),
        ("policy #: 99-1234-5678", "policy #: [REDACTED:HEALTH_PLAN]"),
        ("medicare 1EG4-TE5-MK73", "medicare [REDACTED:HEALTH_PLAN]"),
        ("account number 12345678 billed", "account number [REDACTED:ACCOUNT] billed"),
        ("acct# 000123456789", "acct# [REDACTED:ACCOUNT]"),
        ("driver's license D1234567", "driver's license [REDACTED:LICENSE]"),
        ("DL: S123-4567-8901", "DL: [REDACTED:LICENSE]"),
    ]);
    unchanged(&[
        "account locked for 30m",
        "policy violation 403",
        "license Apache-2.0",
        "account_id=12345678",
        "chart v1.2.3",
        "member of group sre",
    ]);
}

#[test]
fn cards() {
    check(&[
        ("card 4111111111111111 charged", "card [REDACTED:CARD] charged"),
        ("pan=4111 1111 1111 1111", "pan=[REDACTED:CARD]"),
        ("amex 3782-822463-10005", "amex [REDACTED:CARD]"),
        ("mc 5555-5555-5555-4444", "mc [REDACTED:CARD]"),
    ]);
    unchanged(&[
        "card 4111111111111112 declined",
        "ts_ms=1700000000123",
        "bytes=1234567812345670",
        "id 12345678901234567",
    ]);
}

#[test]
fn ip_addresses() {
    check(&[
        ("client=203.0.113.9 GET /", "client=[REDACTED:IP] GET /"),
        ("from 8.8.8.8:53", "from [REDACTED:IP]:53"),
        ("peer 2001:db8:85a3::8a2e:370:7334 closed", "peer [REDACTED:IP] closed"),
        ("x-forwarded-for: 198.51.100.23, 10.0.0.1", "x-forwarded-for: [REDACTED:IP], 10.0.0.1"),
        ("src=[2607:f8b0:4005:80a::200e]:443", "src=[[REDACTED:IP]]:443"),
    ]);
    unchanged(&[
        "listening on 0.0.0.0:8080",
        "upstream 10.1.2.3:9000 pod 172.16.4.5",
        "localhost 127.0.0.1 and ::1",
        "node 192.168.1.20 fe80::1ff:fe23:4567:890a",
        "version 1.2.3.4",
        "app v1.2.3.4 starting",
        "build 10.0.19041.1",
        "netmask 255.255.255.0",
        "at 10:00:00 mac 00:1a:2b:3c:4d:5e",
    ]);
}

#[test]
fn urls_with_identifiers() {
    check(&[
        (
            "GET https://api.example.com/v1/search?patient_name=John%20Smith&page=2",
            "GET https://api.example.com/v1/search?patient_name=[REDACTED:URL]&page=2",
        ),
        ("redirect http://x.io/cb?dob=1954-03-02", "redirect http://x.io/cb?dob=[REDACTED:DATE]"),
        ("GET https://h.io/u/jane%40example.com/profile", "GET https://h.io/u/[REDACTED:URL]/profile"),
        ("see https://h.io/find?q=ssn+123-45-6789", "see https://h.io/find?q=[REDACTED:URL]"),
    ]);
    unchanged(&[
        "GET https://api.example.com/v1/patients/48213?page=2&limit=50",
        "fetch http://10.0.0.5:8080/metrics",
        "https://example.com/a%20b",
    ]);
}

#[test]
fn zip_codes_keep_three_digits() {
    check(&[
        ("Boston, MA 02139", "Boston, MA [REDACTED:ZIP:021]"),
        ("zip=02139-4307", "zip=[REDACTED:ZIP:021]"),
        ("zip code 03601", "zip code [REDACTED:ZIP:000]"),
        ("Boise, ID 83702", "Boise, ID [REDACTED:ZIP:837]"),
    ]);
    unchanged(&["record ID 48213", "took 12345 ms", "port 30080", "OK 20000 rows"]);
}

#[test]
fn street_addresses() {
    check(&[
        ("lives at 123 Main St", "lives at [REDACTED:ADDRESS]"),
        ("ship to 42 N. Oak Avenue Apt 4B today", "ship to [REDACTED:ADDRESS] today"),
        ("addr 77 W 5th St, Springfield, IL 62704", "addr [REDACTED:ADDRESS], IL [REDACTED:ZIP:627]"),
        ("1600 Pennsylvania Ave NW", "[REDACTED:ADDRESS] NW"),
        ("office 500 Market Street, Suite 200", "office [REDACTED:ADDRESS]"),
    ]);
    unchanged(&["3 Way handshake done", "retry 5 times after drive failure", "took 200 ms", "12 Main"]);
}

#[test]
fn person_names() {
    check(&[
        ("patient=John Smith admitted", "patient=[REDACTED:NAME] admitted"),
        ("seen by Dr. Gregory House", "seen by Dr. [REDACTED:NAME]"),
        ("Mrs. Brown called", "Mrs. [REDACTED:NAME] called"),
        ("refill for Maria Garcia", "refill for [REDACTED:NAME]"),
        ("Robert J. Johnson checked in", "[REDACTED:NAME] checked in"),
        ("contact Mary Ann Williams", "contact [REDACTED:NAME]"),
        ("patient: Smith, John", "patient: [REDACTED:NAME]"),
        ("note by Sarah O'Brien", "note by [REDACTED:NAME]"),
        ("Patient Linda Martinez-Lopez", "Patient [REDACTED:NAME]"),
    ]);
    unchanged(&[
        "Will Check the queue",
        "May Post results",
        "Started Worker Pool",
        "patient record not found",
        "Patient Portal started",
        "waiting for GET /v1/patients",
        "Long Island region",
        "Brown paper bag",
        "level=INFO msg=\"Request Failed\"",
        "for May 2024",
    ]);
}

#[test]
fn observability_values_survive() {
    unchanged(&[
        "2024-01-15T10:00:00Z INFO request_id=4bf92f3577b34da6a3ce929d0e0e4736 span_id=00f067aa0ba902b7 status=200 took=12.5ms bytes=1048576",
        "trace_id=4bf92f3577b34da6a3ce929d0e0e4736 uuid=123e4567-e89b-12d3-a456-426614174000",
        "pod=platform-api-7d9f8b6c5-x2k4q node=ip-10-0-3-17.ec2.internal",
        "version=1.27.3 go1.21.5 build 4.18.0-553.el8 v2.3.4.5",
        "duration=1h30m15s timeout=250ms retries=3 port=8443 status_code=503",
        "epoch=1700000000 epoch_ms=1700000000123 epoch_ns=1700000000123456789",
        "record_id=48213 order=123456789 seq=42 offset=123456789012",
        "GET /v1/patients/{id} 200 0.012s",
        "uuid 550e8400-e29b-41d4-a716-446655440000 12345678-1234-1234-1234-123456789012",
        "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
        "ratio 3:4 at 12:30:45.123 on 2024/01/15",
    ]);
}

#[test]
fn key_rules_in_json_lines() {
    let r = Redactor::default_mask();
    let out = r
        .redact_json_line(r#"{"ts":"2024-01-15T10:00:00Z","patientName":"Zed Q","PATIENT-DOB":"1954-03-02","nested":{"ssn":123456789,"zip_code":"02139","Email":null},"service.name":"api","n":[1,2]}"#)
        .unwrap();
    assert_eq!(
        out,
        r#"{"ts":"2024-01-15T10:00:00Z","patientName":"[REDACTED:NAME]","PATIENT-DOB":"[REDACTED:DATE]","nested":{"ssn":"[REDACTED:SSN]","zip_code":"[REDACTED:ZIP:021]","Email":null},"service.name":"api","n":[1,2]}"#
    );
    assert_eq!(r.redact_json_line("not json"), None);
    assert_eq!(r.redact_json_line("[1,2]"), None);
}

#[test]
fn disabled_detectors_and_extra_patterns() {
    let cfg: Config = serde_json::from_str(
        r#"{"detectors":{"email":{"enabled":false},"mrn":{"patterns":["\\bMRN-\\d{6}\\b"]},"ip":{"allow_cidrs":["203.0.113.0/24"]},
            "account":{"context_words":["billing ref"]}}}"#,
    )
    .unwrap();
    let r = Redactor::new(&cfg).unwrap();
    assert_eq!(r.redact_str("a@example.com"), "a@example.com");
    assert_eq!(
        r.redact_json_line(r#"{"email":"a@example.com"}"#).unwrap(),
        r#"{"email":"a@example.com"}"#,
        "key rules follow their detector"
    );
    assert_eq!(r.redact_str("see MRN-123456 now"), "see [REDACTED:MRN] now");
    assert_eq!(r.redact_str("from 203.0.113.9 and 198.51.100.1"), "from 203.0.113.9 and [REDACTED:IP]");
    assert_eq!(r.redact_str("billing ref 99887766"), "billing ref [REDACTED:ACCOUNT]");
    let counts = r.counters();
    assert_eq!(counts.get(Detector::Mrn, warden_collector::redact::Action::Mask), 1);
}
