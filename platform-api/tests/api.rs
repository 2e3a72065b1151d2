//! API behaviour over real HTTP, on SQLite and on PostgreSQL: auth flows, the access matrix,
//! the audit trail, record CRUD and validation, every class of bad input, lab reports, risk
//! assessments, faults, metrics and the OpenAPI document.

mod common;

use common::{Backend, PASSWORD, TestServer, error_code, unique};
use serde_json::{Value, json};
use std::collections::BTreeSet;
use std::time::Duration;

on_both_backends!(
    auth_flow,
    login_rate_limit,
    token_expiry,
    access_matrix_and_audit,
    records_crud_validation_and_paging,
    bad_input_answers_json_4xx_without_phi,
    reports_and_assessments,
    admin_user_management,
    faults,
    metrics_count_requests,
    concurrent_reads_are_each_audited_once,
);

async fn concurrent_reads_are_each_audited_once(backend: Backend) {
    let s = std::sync::Arc::new(TestServer::start(&backend, &[]).await);
    let (p, t) = s.user("Busy Patient", "patient").await;
    let (_, rec) = s.post("/v1/records", &t, json!({"kind": "vital", "code": "spo2", "value": 97})).await;
    let path = format!("/v1/records/{}", rec["id"].as_str().unwrap());
    let reads: Vec<_> = (0..150)
        .map(|_| {
            let (s, t, path) = (s.clone(), t.clone(), path.clone());
            tokio::spawn(async move { s.get(&path, &t).await.0 })
        })
        .collect();
    for r in reads {
        assert_eq!(r.await.unwrap(), 200);
    }
    let admin = s.admin().await;
    let mut ids = BTreeSet::new();
    let mut reads = 0;
    for offset in (0..).step_by(100) {
        let (_, page) = s.get(&format!("/admin/audit?actor_id={p}&limit=100&offset={offset}"), &admin).await;
        let items = page["items"].as_array().unwrap();
        for row in items {
            assert!(ids.insert(row["id"].as_str().unwrap().to_owned()));
            reads += usize::from(row["action"] == "read" && row["resource_id"] == rec["id"]);
        }
        if items.len() < 100 {
            break;
        }
    }
    assert_eq!(reads, 150, "every concurrent read has exactly one audit row");
    std::sync::Arc::into_inner(s).expect("all requests finished").stop().await;
}

async fn auth_flow(backend: Backend) {
    let s = TestServer::start(&backend, &[]).await;
    let email = format!("{}@example.org", unique("jane"));
    let register = |body: Value| {
        let s = &s;
        async move { s.call("POST", "/v1/auth/register", None, Some(body)).await }
    };
    let (st, body) =
        register(json!({"email": email, "password": PASSWORD, "name": "Jane Roe", "date_of_birth": "1961-03-04"}))
            .await;
    assert_eq!(st, 201, "{body}");
    assert_eq!(body["role"], "patient");
    assert_eq!(body["date_of_birth"], "1961-03-04");
    assert!(body.get("password_hash").is_none() && body.get("password").is_none());

    let (st, body) = register(json!({"email": email.to_uppercase(), "password": PASSWORD, "name": "Jane Roe"})).await;
    assert_eq!((st, error_code(&body).as_str()), (409, "email_taken"), "emails are case-insensitive");

    let (st, body) =
        register(json!({"email": unique("x") + "@example.org", "password": PASSWORD, "name": "X", "role": "admin"}))
            .await;
    assert_eq!((st, error_code(&body).as_str()), (403, "forbidden"));
    let (st, body) = register(json!({"email": "not-an-email", "password": PASSWORD, "name": "X"})).await;
    assert_eq!((st, error_code(&body).as_str()), (422, "validation_failed"));
    let (st, body) = register(json!({"email": unique("x") + "@example.org", "password": "short", "name": "X"})).await;
    assert_eq!((st, error_code(&body).as_str()), (422, "validation_failed"));
    let (st, body) =
        register(json!({"email": unique("x") + "@example.org", "password": PASSWORD, "name": "X", "date_of_birth": "1961-13-45"})).await;
    assert_eq!((st, error_code(&body).as_str()), (422, "validation_failed"));
    assert!(!body.to_string().contains("1961-13-45"), "the response never echoes the DOB: {body}");

    let (st, body) =
        s.call("POST", "/v1/auth/login", None, Some(json!({"email": email, "password": "wrong password!"}))).await;
    assert_eq!((st, error_code(&body).as_str()), (401, "invalid_credentials"));
    let (st, body) = s
        .call("POST", "/v1/auth/login", None, Some(json!({"email": "nobody@example.org", "password": PASSWORD})))
        .await;
    assert_eq!((st, error_code(&body).as_str()), (401, "invalid_credentials"), "unknown and wrong look the same");

    let token = s.login(&email, PASSWORD).await;
    let (st, me) = s.get("/v1/me", &token).await;
    assert_eq!((st, me["email"].as_str()), (200, Some(email.as_str())));
    let (st, _) = s.call("GET", "/v1/me", None, None).await;
    assert_eq!(st, 401);
    let (st, body) = s.get("/v1/me", "garbage-token").await;
    assert_eq!((st, error_code(&body).as_str()), (401, "unauthorized"));

    let other = s.login(&email, PASSWORD).await;
    let (st, _) = s.call("POST", "/v1/auth/logout", Some(&token), None).await;
    assert_eq!(st, 204);
    let (st, _) = s.get("/v1/me", &token).await;
    assert_eq!(st, 401, "a revoked token is refused");
    let (st, _) = s.get("/v1/me", &other).await;
    assert_eq!(st, 200, "logout revokes only the token used");
    s.stop().await;
}

async fn login_rate_limit(backend: Backend) {
    let s = TestServer::start(&backend, &["--login-limit-per-account", "3", "--login-limit-per-address", "100"]).await;
    let (_, _) = s.user("Rate Limited", "patient").await; // one successful login used
    let email = format!("{}@example.org", unique("victim"));
    let (st, _) = s
        .call("POST", "/v1/auth/register", None, Some(json!({"email": email, "password": PASSWORD, "name": "V"})))
        .await;
    assert_eq!(st, 201);
    for _ in 0..3 {
        let (st, _) =
            s.call("POST", "/v1/auth/login", None, Some(json!({"email": email, "password": "wrong password!"}))).await;
        assert_eq!(st, 401);
    }
    let resp =
        s.http.post(s.url("/v1/auth/login")).json(&json!({"email": email, "password": PASSWORD})).send().await.unwrap();
    assert_eq!(resp.status().as_u16(), 429, "even the right password is refused while limited");
    assert_eq!(resp.headers().get("retry-after").unwrap(), "60");
    let body: Value = resp.json().await.unwrap();
    assert_eq!(error_code(&body), "rate_limited");
    s.stop().await;
}

async fn token_expiry(backend: Backend) {
    let s = TestServer::start(&backend, &["--token-ttl", "1s"]).await;
    let (_, token) = s.user("Short Lived", "patient").await;
    assert_eq!(s.get("/v1/me", &token).await.0, 200);
    tokio::time::sleep(Duration::from_millis(1300)).await;
    assert_eq!(s.get("/v1/me", &token).await.0, 401, "an expired token is refused");
    s.stop().await;
}

async fn access_matrix_and_audit(backend: Backend) {
    let s = TestServer::start(&backend, &[]).await;
    let (a, ta) = s.user("Alice Patient", "patient").await;
    let (b, tb) = s.user("Bob Patient", "patient").await;
    let (c, tc) = s.user("Carol Clinician", "clinician").await;
    let admin = s.admin().await;

    let (st, rec) = s.post("/v1/records", &ta, json!({"kind": "vital", "code": "heart_rate", "value": 64})).await;
    assert_eq!(st, 201, "{rec}");
    let rid = rec["id"].as_str().unwrap().to_owned();
    let rec_path = format!("/v1/records/{rid}");
    let list_a = format!("/v1/records?patient_id={a}");
    let update = json!({"kind": "vital", "code": "heart_rate", "value": 99});

    // Patient B can neither read, change, delete, list, nor write A's data.
    assert_eq!(s.get(&rec_path, &tb).await.0, 404);
    assert_eq!(s.call("PUT", &rec_path, Some(&tb), Some(update.clone())).await.0, 404);
    assert_eq!(s.call("DELETE", &rec_path, Some(&tb), None).await.0, 404);
    assert_eq!(s.get(&list_a, &tb).await.0, 403);
    let (st, _) = s.post("/v1/records", &tb, json!({"patient_id": a, "kind": "note", "text": "x"})).await;
    assert_eq!(st, 403);
    let (_, own) = s.get("/v1/records", &tb).await;
    assert_eq!(own["items"].as_array().unwrap().len(), 0, "B's own list holds nothing of A's");

    // Clinician without a grant: refused. Admin without a grant: refused.
    assert_eq!(s.get(&rec_path, &tc).await.0, 404);
    assert_eq!(s.get(&list_a, &tc).await.0, 403);
    assert_eq!(s.get(&rec_path, &admin).await.0, 404);
    assert_eq!(s.get(&list_a, &admin).await.0, 403);

    // Only patients grant; grants name clinicians.
    assert_eq!(s.post("/v1/grants", &tc, json!({"clinician_id": c})).await.0, 403);
    assert_eq!(s.post("/v1/grants", &ta, json!({"clinician_id": b})).await.0, 422);
    let (st, grant) = s.post("/v1/grants", &ta, json!({"clinician_id": c})).await;
    assert_eq!(st, 201, "{grant}");
    assert_eq!(s.post("/v1/grants", &ta, json!({"clinician_id": c})).await.0, 409);
    let gid = grant["id"].as_str().unwrap().to_owned();
    let (_, held) = s.get("/v1/grants", &tc).await;
    assert_eq!(held["items"][0]["patient_id"], a.as_str());

    // With the grant: allowed.
    assert_eq!(s.get(&rec_path, &tc).await.0, 200);
    let (st, list) = s.get(&list_a, &tc).await;
    assert_eq!((st, list["items"].as_array().unwrap().len()), (200, 1));
    let (st, by_c) =
        s.post("/v1/records", &tc, json!({"patient_id": a, "kind": "note", "text": "Follow up in 3 months"})).await;
    assert_eq!(st, 201);
    assert_eq!((by_c["patient_id"].as_str(), by_c["author_id"].as_str()), (Some(a.as_str()), Some(c.as_str())));
    assert_eq!(s.call("PUT", &rec_path, Some(&tc), Some(update.clone())).await.0, 200);
    assert_eq!(
        s.post("/v1/records", &tc, json!({"kind": "note", "text": "x"})).await.0,
        422,
        "clinicians name the patient"
    );

    // B cannot revoke A's grant; A can; then C is refused again.
    assert_eq!(s.call("DELETE", &format!("/v1/grants/{gid}"), Some(&tb), None).await.0, 404);
    assert_eq!(s.call("DELETE", &format!("/v1/grants/{gid}"), Some(&ta), None).await.0, 204);
    assert_eq!(s.call("DELETE", &format!("/v1/grants/{gid}"), Some(&ta), None).await.0, 204, "idempotent");
    assert_eq!(s.get(&rec_path, &tc).await.0, 404);
    assert_eq!(s.get(&list_a, &tc).await.0, 403);
    let (_, held) = s.get("/v1/grants", &tc).await;
    assert!(held["items"].as_array().unwrap().is_empty());
    let (_, all) = s.get("/v1/grants?include_revoked=true", &ta).await;
    assert!(all["items"][0]["revoked_at"].is_string());

    // The audit trail has every access to A's data, allowed and denied, with ids only.
    let (st, audit) = s.get(&format!("/admin/audit?patient_id={a}&limit=100"), &admin).await;
    assert_eq!(st, 200, "{audit}");
    let rows = audit["items"].as_array().unwrap();
    let has = |actor: &str, action: &str, outcome: &str| {
        rows.iter().any(|r| r["actor_id"] == actor && r["action"] == action && r["outcome"] == outcome)
    };
    assert!(has(&a, "create", "allowed"));
    assert!(has(&b, "read", "denied"));
    assert!(has(&b, "update", "denied"));
    assert!(has(&b, "delete", "denied"));
    assert!(has(&b, "list", "denied"));
    assert!(has(&b, "create", "denied"));
    assert!(has(&c, "read", "denied"));
    assert!(has(&c, "read", "allowed"));
    assert!(has(&c, "list", "allowed"));
    assert!(has(&c, "update", "allowed"));
    assert!(rows.iter().all(|r| r["patient_id"] == a.as_str()));
    assert!(!audit.to_string().contains("Follow up"), "audit rows carry no record content");
    let denied_reads_by_b = rows.iter().filter(|r| r["actor_id"] == b.as_str() && r["action"] == "read").count();
    assert_eq!(denied_reads_by_b, 1);
    assert_eq!(s.get("/admin/audit", &ta).await.0, 403, "patients cannot read the audit log");
    s.stop().await;
}

async fn records_crud_validation_and_paging(backend: Backend) {
    let s = TestServer::start(&backend, &[]).await;
    let (_, t) = s.user("Dana Patient", "patient").await;
    let check = |body: Value, status: u16| {
        let s = &s;
        let t = t.clone();
        async move {
            let (st, resp) = s.post("/v1/records", &t, body.clone()).await;
            assert_eq!(st, status, "{body} -> {resp}");
            resp
        }
    };
    let lab = check(json!({"kind": "lab", "code": "glucose", "value": 5.4, "unit": "mmol/L", "observed_at": "2026-01-31T08:00:00Z"}), 201).await;
    assert_eq!(lab["observed_at"], "2026-01-31T08:00:00Z");
    let vital = check(json!({"kind": "vital", "code": "temperature", "value": 37.2}), 201).await;
    assert_eq!(vital["unit"], "C", "unit defaults to the code's first");
    check(json!({"kind": "note", "text": "Patient reports mild headache."}), 201).await;
    for bad in [
        json!({"kind": "vital", "code": "heart_rate", "value": 900}),
        json!({"kind": "vital", "code": "heart_rate", "value": 70, "unit": "mmHg"}),
        json!({"kind": "vital", "code": "hba1c", "value": 6}),
        json!({"kind": "vital", "code": "heart_rate"}),
        json!({"kind": "lab", "value": 6}),
        json!({"kind": "note"}),
        json!({"kind": "note", "text": "   "}),
        json!({"kind": "note", "text": "x", "value": 3}),
        json!({"kind": "note", "text": "x".repeat(10_001)}),
        json!({"kind": "vital", "code": "heart_rate", "value": 70, "observed_at": "yesterday"}),
        json!({"kind": "vital", "code": "heart_rate", "value": 70, "observed_at": "2999-01-01T00:00:00Z"}),
    ] {
        let resp = check(bad, 422).await;
        assert_eq!(error_code(&resp), "validation_failed");
    }

    let path = format!("/v1/records/{}", vital["id"].as_str().unwrap());
    let (st, upd) = s
        .call("PUT", &path, Some(&t), Some(json!({"kind": "vital", "code": "temperature", "value": 99.1, "unit": "F"})))
        .await;
    assert_eq!((st, upd["value"].as_f64(), upd["unit"].as_str()), (200, Some(99.1), Some("F")));
    assert_eq!(upd["created_at"], vital["created_at"]);
    let (_, got) = s.get(&path, &t).await;
    assert_eq!((got["value"].as_f64(), got["unit"].as_str()), (Some(99.1), Some("F")), "the update is stored");
    let (st, body) = s.call("PUT", &path, Some(&t), Some(json!({"kind": "note", "text": "x"}))).await;
    assert_eq!((st, error_code(&body).as_str()), (422, "validation_failed"), "kind cannot change");
    assert_eq!(s.call("DELETE", &path, Some(&t), None).await.0, 204);
    assert_eq!(s.get(&path, &t).await.0, 404);
    assert_eq!(s.call("DELETE", &path, Some(&t), None).await.0, 404);

    for i in 0..23 {
        check(json!({"kind": "vital", "code": "heart_rate", "value": 60 + i}), 201).await;
    }
    let mut seen = BTreeSet::new();
    let mut offset = Some(0);
    let mut pages = 0;
    while let Some(o) = offset {
        let (st, page) = s.get(&format!("/v1/records?limit=10&offset={o}"), &t).await;
        assert_eq!(st, 200);
        for item in page["items"].as_array().unwrap() {
            assert!(seen.insert(item["id"].as_str().unwrap().to_owned()), "no record twice across pages");
        }
        offset = page["next_offset"].as_i64();
        pages += 1;
        assert!(pages < 10);
    }
    assert_eq!(seen.len(), 25, "2 earlier records + 23 new, each once");
    let (_, notes) = s.get("/v1/records?kind=note", &t).await;
    assert_eq!(notes["items"].as_array().unwrap().len(), 1);
    s.stop().await;
}

async fn bad_input_answers_json_4xx_without_phi(backend: Backend) {
    let s = TestServer::start(&backend, &[]).await;
    let (_, t) = s.user("Eve Patient", "patient").await;
    let phi = "Jane Q. Doe 123-45-6789";
    let raw = |method: &str, path: &str, content_type: Option<&str>, body: Vec<u8>| {
        let s = &s;
        let t = t.clone();
        let method = method.to_owned();
        let path = path.to_owned();
        let content_type = content_type.map(str::to_owned);
        async move {
            let mut req = s.http.request(method.parse().unwrap(), s.url(&path)).bearer_auth(&t).body(body);
            if let Some(ct) = content_type {
                req = req.header("content-type", ct);
            }
            let resp = req.send().await.unwrap();
            let status = resp.status().as_u16();
            let ct = resp.headers().get("content-type").map(|v| v.to_str().unwrap().to_owned());
            let text = resp.text().await.unwrap();
            assert_eq!(ct.as_deref(), Some("application/json"), "{path}: {text}");
            let body: Value = serde_json::from_str(&text).unwrap_or_else(|_| panic!("not JSON: {text}"));
            assert!(!text.contains("Jane") && !text.contains("6789"), "error echoes PHI: {text}");
            (status, error_code(&body))
        }
    };
    let json_ct = Some("application/json");
    let missing = format!("/v1/records/{}", uuid::Uuid::new_v4());
    let cases: Vec<(&str, &str, Option<&str>, Vec<u8>, u16, &str)> = vec![
        ("POST", "/v1/records", json_ct, b"{\"kind\": ".to_vec(), 400, "malformed_json"),
        ("POST", "/v1/records", json_ct, br#"{"kind": "note", "text": "x"} {}"#.to_vec(), 400, "malformed_json"),
        (
            "POST",
            "/v1/records",
            json_ct,
            format!("{{\"kind\": \"vital\", \"code\": \"heart_rate\", \"value\": \"{phi}\"}}").into_bytes(),
            422,
            "invalid_body",
        ),
        ("POST", "/v1/records", json_ct, format!("{{\"kind\": \"{phi}\"}}").into_bytes(), 422, "invalid_body"),
        (
            "POST",
            "/v1/records",
            json_ct,
            format!("{{\"kind\": \"note\", \"text\": \"x\", \"{phi}\": 1}}").into_bytes(),
            422,
            "invalid_body",
        ),
        (
            "POST",
            "/v1/records",
            json_ct,
            format!("{{\"kind\": \"note\", \"text\": \"x\", \"patient_id\": \"{phi}\"}}").into_bytes(),
            422,
            "invalid_body",
        ),
        ("POST", "/v1/records", json_ct, format!("[\"{phi}\"]").into_bytes(), 422, "invalid_body"),
        ("POST", "/v1/records", json_ct, vec![b' '; 70 * 1024], 413, "payload_too_large"),
        ("POST", "/v1/records", json_ct, vec![0xff, 0xfe, 0x00], 400, "malformed_json"),
        ("POST", "/v1/records", Some("text/plain"), b"{}".to_vec(), 415, "unsupported_media_type"),
        ("POST", "/v1/records", None, b"{}".to_vec(), 415, "unsupported_media_type"),
        ("POST", "/v1/reports", Some("text/plain"), vec![b'a'; 300 * 1024], 413, "payload_too_large"),
        ("POST", "/v1/reports", Some("text/plain"), vec![0xff, 0xfe, b'\n'], 400, "invalid_utf8"),
        ("POST", "/v1/reports", Some("text/plain"), b"  \n ".to_vec(), 422, "validation_failed"),
        ("POST", "/v1/reports", json_ct, b"{}".to_vec(), 415, "unsupported_media_type"),
        // Found by schemathesis: PostgreSQL text cannot hold NUL, which must be a 4xx.
        ("POST", "/v1/reports", Some("text/plain"), b"\x00HbA1c: 6 %\n".to_vec(), 422, "validation_failed"),
        ("POST", "/v1/records", json_ct, br#"{"kind": "note", "text": "a\u0000b"}"#.to_vec(), 422, "validation_failed"),
        (
            "POST",
            "/v1/auth/login",
            json_ct,
            br#"{"email": "a\u0000@example.org", "password": "x"}"#.to_vec(),
            401,
            "invalid_credentials",
        ),
        (
            "POST",
            "/v1/auth/register",
            json_ct,
            br#"{"email": "a\u0000@example.org", "password": "long enough password", "name": "X"}"#.to_vec(),
            422,
            "validation_failed",
        ),
        (
            "POST",
            "/v1/auth/register",
            json_ct,
            br#"{"email": "b@example.org", "password": "long enough password", "name": "X\u0000"}"#.to_vec(),
            422,
            "validation_failed",
        ),
        ("GET", "/v1/records/not-a-uuid", None, vec![], 400, "invalid_id"),
        ("GET", &missing, None, vec![], 404, "not_found"),
        ("DELETE", "/v1/grants/12345", None, vec![], 400, "invalid_id"),
        ("GET", "/v1/records?limit=0", None, vec![], 400, "invalid_query"),
        ("GET", "/v1/records?limit=abc", None, vec![], 400, "invalid_query"),
        ("GET", "/v1/records?kind=Jane", None, vec![], 400, "invalid_query"),
        ("GET", "/v1/records?patient_id=Jane", None, vec![], 400, "invalid_query"),
        ("GET", "/v1/nope", None, vec![], 404, "not_found"),
        ("PATCH", "/v1/records", None, vec![], 405, "method_not_allowed"),
    ];
    for (method, path, ct, body, status, code) in cases {
        let got = raw(method, path, ct, body).await;
        assert_eq!(got, (status, code.to_owned()), "{method} {path}");
    }
    let (st, _) = s.get("/healthz", &t).await;
    assert_eq!(st, 200, "still serving after all of that");
    s.stop().await;
}

async fn reports_and_assessments(backend: Backend) {
    let s = TestServer::start(&backend, &[]).await;
    let (p, tp) = s.user("Frank Patient", "patient").await;
    let (_, tc) = s.user("Grace Clinician", "clinician").await;
    let report = "ACME Labs\nPatient: Frank Patient  DOB: 1970-01-01\nMRN: 00123456\nHbA1c: 6.8 %\nLDL Cholesterol 165 mg/dL H\nHDL-C: 35 mg/dL\nGlucose, fasting: 7.5 mmol/L\n";
    let upload = |token: &str, query: &str, text: &str| {
        let s = &s;
        let req = s
            .http
            .post(s.url(&format!("/v1/reports{query}")))
            .bearer_auth(token)
            .header("content-type", "text/plain")
            .body(text.to_owned());
        async move {
            let resp = req.send().await.unwrap();
            (resp.status().as_u16(), resp.json::<Value>().await.unwrap())
        }
    };
    let (st, up) = upload(&tp, "", report).await;
    assert_eq!(st, 201, "{up}");
    let codes: Vec<&str> = up["records"].as_array().unwrap().iter().map(|r| r["code"].as_str().unwrap()).collect();
    assert_eq!(codes, ["hba1c", "ldl", "hdl", "glucose"]);
    assert_eq!(up["skipped"], json!([{"line": 3, "reason": "not a known lab test"}]));
    let rid = up["id"].as_str().unwrap();
    let (st, stored) = s.get(&format!("/v1/reports/{rid}"), &tp).await;
    assert_eq!((st, stored["original"].as_str(), stored["parsed_count"].as_i64()), (200, Some(report), Some(4)));
    let (_, labs) = s.get("/v1/records?kind=lab", &tp).await;
    assert_eq!(labs["items"].as_array().unwrap().len(), 4, "parsed values are lab records");
    assert!(labs["items"].as_array().unwrap().iter().all(|r| r["report_id"] == rid));
    let (_, list) = s.get("/v1/reports", &tp).await;
    assert!(list["items"][0]["original"].is_null(), "lists carry no report text");

    assert_eq!(upload(&tc, &format!("?patient_id={p}"), report).await.0, 403, "no grant, no upload");
    assert_eq!(s.get(&format!("/v1/reports/{rid}"), &tc).await.0, 404);

    for (code, value) in
        [("systolic_bp", 150.0), ("diastolic_bp", 95.0), ("weight", 110.0), ("height", 175.0), ("heart_rate", 80.0)]
    {
        assert_eq!(s.post("/v1/records", &tp, json!({"kind": "vital", "code": code, "value": value})).await.0, 201);
    }
    let (st, a) = s.post("/v1/assessments", &tp, json!({})).await;
    assert_eq!(st, 201, "{a}");
    // systolic 2 + diastolic 1 + hba1c 3 + glucose (7.5 mmol/L = 135 mg/dL) 2 + ldl 2 + hdl 1 + bmi 35.9 2 = 13
    assert_eq!(
        (a["score"].as_i64(), a["category"].as_str(), a["model"].as_str()),
        (Some(13), Some("high"), Some("cardiometabolic-v1"))
    );
    assert!(a["missing"].as_array().unwrap().is_empty());
    let (st, again) = s.get(&format!("/v1/assessments/{}", a["id"].as_str().unwrap()), &tp).await;
    assert_eq!((st, &again["factors"]), (200, &a["factors"]));
    let (_, list) = s.get("/v1/assessments", &tp).await;
    assert_eq!(list["items"].as_array().unwrap().len(), 1);
    assert_eq!(s.post("/v1/assessments", &tc, json!({"patient_id": p})).await.0, 403);
    s.stop().await;
}

async fn admin_user_management(backend: Backend) {
    let s = TestServer::start(&backend, &[]).await;
    let admin = s.admin().await;
    let email = format!("{}@example.org", unique("doc"));
    let (st, doc) = s
        .post(
            "/admin/users",
            &admin,
            json!({"email": email, "password": PASSWORD, "name": "Dr Who", "role": "clinician"}),
        )
        .await;
    assert_eq!((st, doc["role"].as_str()), (201, Some("clinician")), "{doc}");
    let token = s.login(&email, PASSWORD).await;
    let (_, pt) = s.user("Plain Patient", "patient").await;
    assert_eq!(
        s.post(
            "/admin/users",
            &pt,
            json!({"email": "x@example.org", "password": PASSWORD, "name": "X", "role": "admin"})
        )
        .await
        .0,
        403
    );
    let (st, users) = s.get("/admin/users?limit=100", &admin).await;
    assert_eq!(st, 200);
    assert!(users["items"].as_array().unwrap().iter().any(|u| u["email"] == email.as_str()));
    let path = format!("/admin/users/{}", doc["id"].as_str().unwrap());
    let (st, changed) = s.call("PATCH", &path, Some(&admin), Some(json!({"disabled": true}))).await;
    assert_eq!((st, changed["disabled"].as_bool()), (200, Some(true)));
    assert_eq!(s.get("/v1/me", &token).await.0, 401, "disabling revokes tokens");
    let (st, _) = s.call("POST", "/v1/auth/login", None, Some(json!({"email": email, "password": PASSWORD}))).await;
    assert_eq!(st, 401, "a disabled account cannot log in");
    let (_, me) = s.get("/v1/me", &admin).await;
    let own = format!("/admin/users/{}", me["id"].as_str().unwrap());
    assert_eq!(s.call("PATCH", &own, Some(&admin), Some(json!({"disabled": true}))).await.0, 422);
    assert_eq!(
        s.call(
            "PATCH",
            &format!("/admin/users/{}", uuid::Uuid::new_v4()),
            Some(&admin),
            Some(json!({"disabled": true}))
        )
        .await
        .0,
        404
    );
    s.stop().await;
}

async fn faults(backend: Backend) {
    let s = TestServer::start(&backend, &["--enable-fault-injection"]).await;
    let admin = s.admin().await;
    let (_, pt) = s.user("Faulty Patient", "patient").await;
    assert_eq!(s.call("PUT", "/admin/faults", Some(&pt), Some(json!({"error_rate": 1.0}))).await.0, 403);
    assert_eq!(s.call("PUT", "/admin/faults", Some(&admin), Some(json!({"error_rate": 2.0}))).await.0, 422);

    let (st, f) = s.call("PUT", "/admin/faults", Some(&admin), Some(json!({"latency_ms": 300}))).await;
    assert_eq!((st, f["settings"]["latency_ms"].as_u64()), (200, Some(300)));
    let start = std::time::Instant::now();
    assert_eq!(s.get("/v1/me", &pt).await.0, 200);
    assert!(start.elapsed() >= Duration::from_millis(300), "latency injected into /v1");
    let start = std::time::Instant::now();
    assert_eq!(s.call("GET", "/healthz", None, None).await.0, 200);
    assert!(start.elapsed() < Duration::from_millis(300), "not into ops endpoints");

    s.call("PUT", "/admin/faults", Some(&admin), Some(json!({"latency_ms": 0, "error_rate": 1.0}))).await;
    let (st, body) = s.get("/v1/me", &pt).await;
    assert_eq!((st, error_code(&body).as_str()), (500, "injected_fault"));

    s.call("PUT", "/admin/faults", Some(&admin), Some(json!({"readiness_failure": true, "health_hang": true}))).await;
    assert_eq!(s.call("GET", "/readyz", None, None).await.0, 503);
    let hung = s.http.get(s.url("/healthz")).timeout(Duration::from_millis(500)).send().await;
    assert!(hung.is_err_and(|e| e.is_timeout()), "healthz hangs");
    let metrics = s.http.get(s.url("/metrics")).send().await.unwrap().text().await.unwrap();
    assert!(metrics.contains("platform_api_fault_injection_active{fault=\"health_hang\"} 1"));

    s.call("PUT", "/admin/faults", Some(&admin), Some(json!({"memory_growth_mb_per_sec": 50, "memory_max_mb": 8})))
        .await;
    tokio::time::sleep(Duration::from_millis(600)).await;
    let (_, status) = s.get("/admin/faults", &admin).await;
    assert_eq!(status["memory_held_mb"].as_u64(), Some(8), "memory grows up to the cap: {status}");

    // A hung health check answers as soon as the fault is cleared.
    let waiting = tokio::spawn({
        let http = s.http.clone();
        let url = s.url("/healthz");
        async move { http.get(url).send().await.map(|r| r.status().as_u16()) }
    });
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(s.call("DELETE", "/admin/faults", Some(&admin), None).await.0, 204);
    assert_eq!(tokio::time::timeout(Duration::from_secs(5), waiting).await.unwrap().unwrap().unwrap(), 200);
    assert_eq!(s.get("/v1/me", &pt).await.0, 200);
    assert_eq!(s.call("GET", "/readyz", None, None).await.0, 200);
    let (_, status) = s.get("/admin/faults", &admin).await;
    assert_eq!(status["memory_held_mb"].as_u64(), Some(0));
    s.stop().await;

    let off = TestServer::start(&backend, &[]).await;
    let admin = off.admin().await;
    let (st, body) = off.get("/admin/faults", &admin).await;
    assert_eq!((st, error_code(&body).as_str()), (404, "not_found"), "faults are off unless enabled");
    off.stop().await;
}

/// Parses Prometheus text format 0.0.4 strictly enough to catch malformed output, and
/// returns each sample as `(series, value)`.
fn parse_exposition(text: &str) -> Vec<(String, f64)> {
    let sample = regex::Regex::new(
        r#"^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{([a-zA-Z_][a-zA-Z0-9_]*="([^"\\]|\\.)*",?)*\})? (\S+)( -?\d+)?$"#,
    )
    .unwrap();
    let mut out = Vec::new();
    for line in text.lines() {
        if line.is_empty() {
            continue;
        }
        if let Some(rest) = line.strip_prefix('#') {
            let rest = rest.trim_start();
            assert!(rest.starts_with("HELP ") || rest.starts_with("TYPE "), "bad comment line: {line}");
            continue;
        }
        let caps = sample.captures(line).unwrap_or_else(|| panic!("bad sample line: {line}"));
        let value = &caps[5];
        let v: f64 = match value {
            "+Inf" => f64::INFINITY,
            "-Inf" => f64::NEG_INFINITY,
            "NaN" => f64::NAN,
            v => v.parse().unwrap_or_else(|_| panic!("bad value in: {line}")),
        };
        let series = line[..line.len() - value.len() - 1].to_owned();
        out.push((series, v));
    }
    out
}

async fn metrics_count_requests(backend: Backend) {
    let s = TestServer::start(&backend, &[]).await;
    let (_, t) = s.user("Metric Patient", "patient").await;
    let scrape = || async { s.http.get(s.url("/metrics")).send().await.unwrap().text().await.unwrap() };
    let value = |samples: &[(String, f64)], series: &str| {
        samples.iter().find(|(s, _)| s == series).map(|(_, v)| *v).unwrap_or(0.0)
    };
    let ok_series = r#"http_requests_total{method="GET",route="/v1/me",status="200"}"#;
    let unauth_series = r#"http_requests_total{method="GET",route="/v1/me",status="401"}"#;
    let before = parse_exposition(&scrape().await);
    for _ in 0..7 {
        assert_eq!(s.get("/v1/me", &t).await.0, 200);
    }
    assert_eq!(s.call("GET", "/v1/me", None, None).await.0, 401);
    assert_eq!(s.get("/no/such/route", &t).await.0, 404);
    let text = scrape().await;
    let after = parse_exposition(&text);
    assert_eq!(value(&after, ok_series) - value(&before, ok_series), 7.0);
    assert_eq!(value(&after, unauth_series) - value(&before, unauth_series), 1.0);
    assert!(
        value(&after, r#"http_requests_total{method="GET",route="unmatched",status="404"}"#) >= 1.0,
        "raw paths never become labels"
    );
    for needle in [
        r#"http_request_duration_seconds_bucket{method="GET",route="/v1/me",le="0.5"}"#,
        r#"http_request_duration_seconds_bucket{method="GET",route="/v1/me",le="1"}"#,
        r#"db_query_duration_seconds_bucket{query="token_lookup",le="0.005"}"#,
        "http_requests_in_flight ",
        "process_resident_memory_bytes ",
        "process_cpu_seconds_total ",
        "# TYPE http_request_duration_seconds histogram",
    ] {
        assert!(text.contains(needle), "missing {needle}");
    }
    assert!(value(&after, r#"http_request_duration_seconds_count{method="GET",route="/v1/me"}"#) >= 8.0);
    s.stop().await;
}

#[tokio::test]
async fn openapi_documents_exactly_the_routes() {
    let s = TestServer::start(&Backend::Sqlite, &[]).await;
    let (st, doc) = s.call("GET", "/openapi.json", None, None).await;
    assert_eq!(st, 200);
    assert!(doc["openapi"].as_str().unwrap().starts_with("3."));
    let mut documented = BTreeSet::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for method in item.as_object().unwrap().keys() {
            documented.insert(format!("{} {path}", method.to_uppercase()));
        }
    }
    let expected: BTreeSet<String> = [
        "POST /v1/auth/register",
        "POST /v1/auth/login",
        "POST /v1/auth/logout",
        "GET /v1/me",
        "POST /v1/records",
        "GET /v1/records",
        "GET /v1/records/{id}",
        "PUT /v1/records/{id}",
        "DELETE /v1/records/{id}",
        "POST /v1/grants",
        "GET /v1/grants",
        "DELETE /v1/grants/{id}",
        "POST /v1/reports",
        "GET /v1/reports",
        "GET /v1/reports/{id}",
        "POST /v1/assessments",
        "GET /v1/assessments",
        "GET /v1/assessments/{id}",
        "GET /admin/users",
        "POST /admin/users",
        "PATCH /admin/users/{id}",
        "GET /admin/audit",
        "GET /admin/faults",
        "PUT /admin/faults",
        "DELETE /admin/faults",
        "GET /healthz",
        "GET /readyz",
        "GET /metrics",
        "GET /openapi.json",
    ]
    .into_iter()
    .map(String::from)
    .collect();
    assert_eq!(documented, expected);
    // Every documented operation is routed: none answers the router's 404 or 405.
    for op in &documented {
        let (method, path) = op.split_once(' ').unwrap();
        let path = path.replace("{id}", &uuid::Uuid::new_v4().to_string());
        if path == "/healthz" {
            continue;
        }
        let resp = s.http.request(method.parse().unwrap(), s.url(&path)).send().await.unwrap();
        let status = resp.status().as_u16();
        let body = resp.text().await.unwrap();
        assert!(status != 405 && !body.contains("no such route"), "{op} is documented but not routed ({status})");
    }
    s.stop().await;
}
