use crate::helpers::{self, spawn_app, TestDb, ADMIN, OPERATOR, VIEWER};
use serde_json::{json, Value};
use std::time::Duration;

#[actix_web::test]
async fn health_and_readiness_answer() {
    let app = spawn_app().await;
    let r = app.get("/healthz", None).await;
    assert_eq!(r.status(), 200);
    let r = app.get("/readyz", None).await;
    assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());
    app.shutdown().await;
}

#[actix_web::test]
async fn auth_rejects_missing_bad_and_low_role_tokens() {
    let app = spawn_app().await;
    // Table: (token, path, method, expected status, why)
    let cases: [(Option<&str>, &str, &str, u16, &str); 6] = [
        (None, "/api/v1/actors", "GET", 401, "no token"),
        (
            Some("not-a-real-token-at-all"),
            "/api/v1/actors",
            "GET",
            401,
            "unknown token",
        ),
        (Some(VIEWER), "/api/v1/actors", "GET", 200, "viewer may read"),
        (
            Some(VIEWER),
            "/api/v1/coordinator/pause",
            "POST",
            403,
            "viewer may not control",
        ),
        (
            Some(OPERATOR),
            "/api/v1/actors/coordinator/crash",
            "POST",
            403,
            "operator may not inject faults",
        ),
        (
            Some(OPERATOR),
            "/api/v1/coordinator/status",
            "GET",
            200,
            "operator may read",
        ),
    ];
    for (token, path, method, want, why) in cases {
        let r = if method == "GET" {
            app.get(path, token).await
        } else {
            app.post(path, token, None).await
        };
        let status = r.status().as_u16();
        let body: Value = r.json().await.unwrap();
        assert_eq!(status, want, "{why}: {body}");
        if want >= 400 {
            assert!(
                body["error"]["code"].is_string(),
                "{why}: error envelope expected, got {body}"
            );
            assert!(body["error"]["message"].is_string(), "{why}");
        }
    }
    app.shutdown().await;
}

#[actix_web::test]
async fn a_known_path_under_another_method_is_405_with_allow_and_changes_nothing() {
    let app = spawn_app().await;
    for (method, path, allow) in [
        (
            "PUT",
            "/api/v1/positions/7f2c1a9e-0000-4000-8000-000000000001",
            "GET, PATCH",
        ),
        ("DELETE", "/api/v1/trades", "GET, POST"),
        ("TRACE", "/healthz", "GET"),
        ("GET", "/api/v1/coordinator/halt", "POST"),
    ] {
        let r = app
            .client
            .request(reqwest::Method::from_bytes(method.as_bytes()).unwrap(), app.url(path))
            .bearer_auth(ADMIN)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 405, "{method} {path}");
        assert_eq!(r.headers()["allow"], allow, "{method} {path}");
        let body: Value = r.json().await.unwrap();
        assert_eq!(body["error"]["code"], "method_not_allowed", "{body}");
    }
    // A GET on the halt route did not halt.
    let status = crate::orchestration::coordinator_status(&app).await;
    assert_eq!(status["state"], "running", "{status}");
    app.shutdown().await;
}

#[actix_web::test]
async fn unknown_route_is_json_404_and_big_body_is_413() {
    let app = spawn_app().await;
    let r = app.get("/api/v1/nope", Some(VIEWER)).await;
    assert_eq!(r.status(), 404);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["error"]["code"], "not_found");

    let big = "x".repeat(70 * 1024);
    let r = app
        .post(
            "/api/v1/coordinator/pause",
            Some(OPERATOR),
            Some(json!({"reason": big})),
        )
        .await;
    assert_eq!(r.status(), 413);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["error"]["code"], "payload_too_large");

    let r = app
        .client
        .post(app.url("/api/v1/coordinator/pause"))
        .bearer_auth(OPERATOR)
        .header("content-type", "application/json")
        .body(r#"{"reason": 12}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["error"]["field"], "reason", "{body}");
    app.shutdown().await;
}

#[actix_web::test]
async fn crashed_actor_restarts_and_server_keeps_answering() {
    let app = spawn_app().await;
    let r = app.post("/api/v1/actors/coordinator/crash", Some(ADMIN), None).await;
    assert_eq!(r.status(), 202, "{}", r.text().await.unwrap());
    tokio::time::sleep(Duration::from_millis(100)).await;

    let actors: Value = app.get("/api/v1/actors", Some(VIEWER)).await.json().await.unwrap();
    let coord = actors["actors"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["name"] == "coordinator")
        .unwrap()
        .clone();
    assert_eq!(coord["restarts"], 1, "{coord}");
    assert_eq!(coord["state"], "running");
    assert!(coord["last_crash_reason"].as_str().unwrap().contains("injected fault"));

    // Same address, still serving.
    let r = app.get("/api/v1/coordinator/status", Some(VIEWER)).await;
    assert_eq!(r.status(), 200);
    assert_eq!(app.get("/readyz", None).await.status(), 200);
    app.shutdown().await;
}

#[actix_web::test]
async fn restart_intensity_exceeded_escalates_and_readyz_fails() {
    let app = helpers::spawn_app_with(|s| s.supervision.max_restarts = 2).await;
    for _ in 0..3 {
        let r = app.post("/api/v1/actors/coordinator/crash", Some(ADMIN), None).await;
        assert_eq!(r.status(), 202);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let r = app.get("/readyz", None).await;
    assert_eq!(r.status(), 503);
    let body: Value = r.json().await.unwrap();
    assert!(body["reasons"][0].as_str().unwrap().contains("coordinator"), "{body}");
    let actors: Value = app.get("/api/v1/actors", Some(VIEWER)).await.json().await.unwrap();
    let coordinator = actors["actors"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["name"] == "coordinator")
        .unwrap();
    assert_eq!(coordinator["state"], "escalated", "{actors}");
    app.shutdown().await;
}

#[actix_web::test]
async fn fault_injection_can_be_disabled() {
    let app = helpers::spawn_app_with(|s| s.server.fault_injection = Some(false)).await;
    let r = app.post("/api/v1/actors/coordinator/crash", Some(ADMIN), None).await;
    assert_eq!(r.status(), 403);
    app.shutdown().await;
}

#[actix_web::test]
async fn migrations_apply_on_fresh_database_and_are_idempotent() {
    let db = TestDb::empty().await;
    let pool = helpers::pool_for(&db.name);
    let first = triplegain::db::migrate(&pool).await.unwrap();
    assert!(!first.is_empty(), "a fresh database gets every migration");
    let second = triplegain::db::migrate(&pool).await.unwrap();
    assert!(second.is_empty(), "a second run changes nothing: {second:?}");
    let client = pool.get().await.unwrap();
    for table in [
        "orders",
        "order_status_log",
        "positions",
        "position_snapshots",
        "trades",
        "coordinator_state",
        "risk_state",
        "agent_outputs",
        "decisions",
        "model_comparisons",
        "hodl_bags",
        "rebalance_history",
        "candles",
        "api_audit_log",
    ] {
        let row = client
            .query_one(
                "SELECT count(*) FROM information_schema.tables WHERE table_name = $1",
                &[&table],
            )
            .await
            .unwrap();
        assert_eq!(row.get::<_, i64>(0), 1, "table {table} exists");
    }
    let money: String = client
        .query_one(
            "SELECT data_type FROM information_schema.columns WHERE table_name='orders' AND column_name='price'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(money, "numeric");
}

#[actix_web::test]
async fn coordinator_state_survives_restart_and_control_is_audited() {
    let app = spawn_app().await;
    let r = app
        .post(
            "/api/v1/coordinator/halt",
            Some(OPERATOR),
            Some(json!({"reason": "maintenance"})),
        )
        .await;
    assert_eq!(r.status(), 200);
    let again = app.post("/api/v1/coordinator/pause", Some(OPERATOR), None).await;
    assert_eq!(again.status(), 409, "halted cannot be paused");
    let pool = app.pool.clone().unwrap();
    let url = app.db.as_ref().unwrap().url.clone();
    let TestAppParts { db, app } = split(app);
    app.shutdown().await;

    // A new process on the same database comes back HALTED.
    let mut settings = helpers::test_settings();
    settings.database.url = Some(triplegain::settings::Secret::new(url));
    let app2 = helpers::spawn_with_settings(settings).await;
    let status: Value = app2
        .get("/api/v1/coordinator/status", Some(VIEWER))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(status["state"], "halted");
    assert_eq!(status["halt_reason"], "maintenance");
    let r = app2.post("/api/v1/coordinator/resume", Some(OPERATOR), None).await;
    assert_eq!(r.status(), 409, "only an admin resumes a halt");
    let r = app2.post("/api/v1/coordinator/admin-resume", Some(ADMIN), None).await;
    assert_eq!(r.status(), 200);

    let client = pool.get().await.unwrap();
    let rows = client
        .query(
            "SELECT token_name, role, route, status FROM api_audit_log ORDER BY id",
            &[],
        )
        .await
        .unwrap();
    let got: Vec<(String, String, String, i32)> =
        rows.iter().map(|r| (r.get(0), r.get(1), r.get(2), r.get(3))).collect();
    assert_eq!(
        got[0],
        (
            "operator".into(),
            "operator".into(),
            "/api/v1/coordinator/halt".into(),
            200
        )
    );
    assert_eq!(got[1].3, 409);
    assert_eq!(got.last().unwrap().2, "/api/v1/coordinator/admin-resume");
    app2.shutdown().await;
    drop(db);
}

struct TestAppParts {
    db: Option<TestDb>,
    app: helpers::TestApp,
}

fn split(mut app: helpers::TestApp) -> TestAppParts {
    TestAppParts { db: app.db.take(), app }
}

#[actix_web::test]
async fn openapi_document_lists_routes() {
    let app = spawn_app().await;
    let doc: Value = app.get("/api/v1/openapi.json", None).await.json().await.unwrap();
    for path in [
        "/healthz",
        "/readyz",
        "/api/v1/actors",
        "/api/v1/actors/{name}/crash",
        "/api/v1/coordinator/pause",
    ] {
        assert!(doc["paths"][path].is_object(), "{path} documented");
    }
    let metrics = app.get("/metrics", None).await.text().await.unwrap();
    assert!(metrics.contains("triplegain_actor_restarts"), "{metrics}");
    app.shutdown().await;
}
