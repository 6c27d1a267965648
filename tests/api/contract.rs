//! The API contract over every registered route (the app's own route table): roles (401/403),
//! happy paths, each class of bad input with nothing changed afterwards, per-token rate limits,
//! and the OpenAPI document against the route table.

use crate::execution::{body, limit_buy, open_position, patch, price, ready};
use crate::helpers::{spawn_app, spawn_app_with, TestApp, ADMIN, OPERATOR, VIEWER};
use serde_json::{json, Value};
use std::collections::BTreeSet;
use std::time::Duration;
use triplegain::settings::RateLimitSettings;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Need {
    Public,
    Viewer,
    Operator,
    Admin,
}

/// The role each route requires. Must name exactly the routes the app registers.
const ROLES: [(&str, &str, Need); 34] = [
    ("GET", "/healthz", Need::Public),
    ("GET", "/readyz", Need::Public),
    ("GET", "/metrics", Need::Public),
    ("GET", "/api/v1/openapi.json", Need::Public),
    ("GET", "/api/v1/actors", Need::Viewer),
    ("POST", "/api/v1/actors/{name}/crash", Need::Admin),
    ("POST", "/api/v1/coordinator/pause", Need::Operator),
    ("POST", "/api/v1/coordinator/resume", Need::Operator),
    ("POST", "/api/v1/coordinator/halt", Need::Operator),
    ("POST", "/api/v1/coordinator/admin-resume", Need::Admin),
    ("GET", "/api/v1/agents/{name}/latest", Need::Viewer),
    ("GET", "/api/v1/coordinator/status", Need::Viewer),
    ("POST", "/api/v1/coordinator/tasks/{task}/{command}", Need::Operator),
    ("POST", "/api/v1/coordinator/task/{task}/{command}", Need::Operator),
    ("GET", "/api/v1/risk/state", Need::Viewer),
    ("POST", "/api/v1/risk/reset", Need::Admin),
    ("GET", "/api/v1/decisions", Need::Viewer),
    ("GET", "/api/v1/decisions/{correlation_id}", Need::Viewer),
    ("GET", "/api/v1/positions", Need::Viewer),
    ("GET", "/api/v1/positions/{id}", Need::Viewer),
    ("PATCH", "/api/v1/positions/{id}", Need::Operator),
    ("POST", "/api/v1/positions/{id}/close", Need::Operator),
    ("GET", "/api/v1/orders", Need::Viewer),
    ("GET", "/api/v1/orders/{id}", Need::Viewer),
    ("POST", "/api/v1/orders/{id}/cancel", Need::Operator),
    ("GET", "/api/v1/trades", Need::Viewer),
    ("POST", "/api/v1/trades", Need::Operator),
    ("POST", "/api/v1/trades/validate", Need::Viewer),
    ("GET", "/api/v1/portfolio/allocation", Need::Viewer),
    ("POST", "/api/v1/portfolio/rebalance", Need::Operator),
    ("GET", "/api/v1/hodl", Need::Viewer),
    ("GET", "/api/v1/hodl/history", Need::Viewer),
    ("GET", "/api/v1/events", Need::Viewer),
    ("GET", "/api/v1/session", Need::Viewer),
];

fn registered() -> BTreeSet<(String, String)> {
    triplegain::routes::route_list()
        .into_iter()
        .map(|(m, p)| (m.as_str().to_owned(), p))
        .collect()
}

/// A concrete path for a pattern: every parameter gets a well-formed value.
fn concrete(pattern: &str) -> String {
    let id = uuid::Uuid::new_v4().to_string();
    pattern
        .replace("/agents/{name}", "/agents/technical_analysis")
        .replace("{name}", "coordinator")
        .replace("{task}", "ta_analysis")
        .replace("{command}", "run")
        .replace("{correlation_id}", &id)
        .replace("{id}", &id)
}

async fn send(
    app: &TestApp,
    method: &str,
    path: &str,
    token: Option<&str>,
    json_body: Option<Value>,
) -> reqwest::Response {
    let method = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
    let mut r = app.client.request(method, app.url(path));
    if let Some(t) = token {
        r = r.bearer_auth(t);
    }
    if let Some(b) = json_body {
        r = r.json(&b);
    }
    r.send().await.expect("request")
}

async fn count(app: &TestApp, sql: &str) -> i64 {
    let client = app.pool.as_ref().unwrap().get().await.unwrap();
    client.query_one(sql, &[]).await.unwrap().get(0)
}

async fn coordinator_state(app: &TestApp) -> Value {
    let (s, b) = body(app.get("/api/v1/coordinator/status", Some(VIEWER)).await).await;
    assert_eq!(s, 200, "{b}");
    b["state"].clone()
}

#[test]
fn the_role_table_names_exactly_the_registered_routes() {
    let table: BTreeSet<(String, String)> = ROLES
        .iter()
        .map(|(m, p, _)| ((*m).to_owned(), (*p).to_owned()))
        .collect();
    assert_eq!(table, registered());
}

#[actix_web::test]
async fn every_route_refuses_missing_and_bad_tokens_401_and_lower_roles_403_and_nothing_changes() {
    let app = spawn_app().await;
    let tokens = [(Need::Viewer, VIEWER), (Need::Operator, OPERATOR), (Need::Admin, ADMIN)];
    for (method, pattern, need) in ROLES {
        let path = concrete(pattern);
        if need == Need::Public {
            let r = send(&app, method, &path, None, None).await;
            assert_eq!(r.status(), 200, "{method} {pattern} is public");
            continue;
        }
        for token in [None, Some("not-a-real-token-at-all"), Some("")] {
            let r = send(&app, method, &path, token, None).await;
            assert_eq!(r.status(), 401, "{method} {pattern} with {token:?}");
            assert_eq!(r.headers()["www-authenticate"], "Bearer");
            let b: Value = r.json().await.unwrap();
            assert_eq!(b["error"]["code"], "unauthorized", "{method} {pattern}: {b}");
        }
        for (role, token) in tokens.iter().filter(|(role, _)| *role < need) {
            let r = send(&app, method, &path, Some(token), Some(json!({}))).await;
            assert_eq!(r.status(), 403, "{method} {pattern} as {role:?}");
            let b: Value = r.json().await.unwrap();
            assert_eq!(b["error"]["code"], "forbidden", "{method} {pattern}: {b}");
        }
    }
    // Nothing was done: no control action recorded, nothing placed, the coordinator still runs
    // and every actor is up.
    // Refusals are audited (401/403 with their request id), but no action was done.
    assert_eq!(
        count(
            &app,
            "SELECT count(*) FROM api_audit_log WHERE status NOT IN (401, 403)"
        )
        .await,
        0
    );
    assert!(count(&app, "SELECT count(*) FROM api_audit_log WHERE request_id IS NOT NULL").await > 0);
    assert_eq!(count(&app, "SELECT count(*) FROM orders").await, 0);
    assert_eq!(count(&app, "SELECT count(*) FROM rebalance_history").await, 0);
    assert_eq!(coordinator_state(&app).await, "running");
    let (_, actors) = body(app.get("/api/v1/actors", Some(VIEWER)).await).await;
    for a in actors["actors"].as_array().unwrap() {
        assert_eq!(a["restarts"], 0, "{a}");
    }
    app.shutdown().await;
}

/// Routes whose happy path needs a setup that another test makes, with that test.
const HAPPY_ELSEWHERE: [(&str, &str, &str); 2] = [
    (
        "POST",
        "/api/v1/actors/{name}/crash",
        "skeleton::crashed_actor_restarts_and_server_keeps_answering",
    ),
    (
        "GET",
        "/api/v1/agents/{name}/latest",
        "analysis::latest_output_appears_after_an_agent_ran",
    ),
];

#[actix_web::test]
async fn every_route_answers_its_happy_path() {
    let app = spawn_app().await;
    let mut done: BTreeSet<(String, String)> = HAPPY_ELSEWHERE
        .iter()
        .map(|(m, p, _)| ((*m).to_owned(), (*p).to_owned()))
        .collect();
    let mut ok = |method: &str, pattern: &str, status: u16, b: &Value, want: u16| {
        assert_eq!(status, want, "{method} {pattern}: {b}");
        done.insert((method.to_owned(), pattern.to_owned()));
    };

    for p in ["/healthz", "/readyz", "/metrics", "/api/v1/openapi.json"] {
        let r = app.get(p, None).await;
        let s = r.status().as_u16();
        ok("GET", p, s, &Value::Null, 200);
    }
    let mut events = app.get("/api/v1/events", Some(VIEWER)).await;
    let s = events.status().as_u16();
    let first = tokio::time::timeout(Duration::from_secs(5), events.chunk())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert!(first.starts_with(b": connected"));
    ok("GET", "/api/v1/events", s, &Value::Null, 200);
    drop(events);

    for (method, p, token, want) in [
        ("GET", "/api/v1/actors", VIEWER, 200),
        ("GET", "/api/v1/session", VIEWER, 200),
        ("GET", "/api/v1/coordinator/status", VIEWER, 200),
        ("GET", "/api/v1/risk/state", VIEWER, 200),
        ("GET", "/api/v1/decisions", VIEWER, 200),
        ("GET", "/api/v1/hodl", VIEWER, 200),
        ("GET", "/api/v1/hodl/history", VIEWER, 200),
    ] {
        let (s, b) = body(send(&app, method, p, Some(token), None).await).await;
        ok(method, p, s, &b, want);
    }

    // Trading: a limit buy that fills into a protected position, then a resting order.
    ready(&app).await;
    let (s, b) = body(
        app.post("/api/v1/trades/validate", Some(VIEWER), Some(limit_buy("1000")))
            .await,
    )
    .await;
    ok("POST", "/api/v1/trades/validate", s, &b, 200);
    let (s, b) = body(
        app.post("/api/v1/trades", Some(OPERATOR), Some(limit_buy("1000")))
            .await,
    )
    .await;
    ok("POST", "/api/v1/trades", s, &b, 200);
    let order_id = b["orders"][0]["id"].as_str().unwrap().to_owned();
    let correlation_id = b["correlation_id"].as_str().unwrap().to_owned();
    price(&app, "49990");
    let position = open_position(&app).await;
    let position_id = position["id"].as_str().unwrap().to_owned();

    for (p, concrete_path) in [
        ("/api/v1/positions", "/api/v1/positions".to_owned()),
        ("/api/v1/positions/{id}", format!("/api/v1/positions/{position_id}")),
        ("/api/v1/orders", "/api/v1/orders".to_owned()),
        ("/api/v1/orders/{id}", format!("/api/v1/orders/{order_id}")),
        ("/api/v1/trades", "/api/v1/trades".to_owned()),
        (
            "/api/v1/decisions/{correlation_id}",
            format!("/api/v1/decisions/{correlation_id}"),
        ),
    ] {
        let (s, b) = body(app.get(&concrete_path, Some(VIEWER)).await).await;
        ok("GET", p, s, &b, 200);
    }
    let (s, b) = patch(
        &app,
        &format!("/api/v1/positions/{position_id}"),
        OPERATOR,
        json!({"take_profit": "53000"}),
    )
    .await;
    ok("PATCH", "/api/v1/positions/{id}", s, &b, 200);
    let (s, b) = body(
        app.post(
            &format!("/api/v1/positions/{position_id}/close"),
            Some(OPERATOR),
            Some(json!({"reason": "by hand"})),
        )
        .await,
    )
    .await;
    ok("POST", "/api/v1/positions/{id}/close", s, &b, 200);

    // The close started the post-trade cooldown; an admin lifts it.
    let (s, b) = body(
        app.post("/api/v1/risk/reset", Some(ADMIN), Some(json!({"scope": "cooldown"})))
            .await,
    )
    .await;
    ok("POST", "/api/v1/risk/reset", s, &b, 200);
    let mut low = limit_buy("1000");
    low["price"] = json!("45000");
    low["stop_loss"] = json!("44000");
    low["take_profit"] = json!("48000");
    let (s, b) = body(app.post("/api/v1/trades", Some(OPERATOR), Some(low)).await).await;
    assert_eq!(s, 200, "{b}");
    let resting = b["orders"][0]["id"].as_str().unwrap().to_owned();
    let (s, b) = body(
        app.post(&format!("/api/v1/orders/{resting}/cancel"), Some(OPERATOR), None)
            .await,
    )
    .await;
    ok("POST", "/api/v1/orders/{id}/cancel", s, &b, 200);

    // Portfolio (needs an XRP price as well).
    let paper = app.state.paper.as_ref().unwrap();
    paper.on_price(
        &triplegain_actors::domain::Symbol::parse("XRP/USDT").unwrap(),
        rust_decimal::Decimal::new(5, 1),
        app.state.clock.now(),
    );
    let (s, b) = body(app.get("/api/v1/portfolio/allocation", Some(VIEWER)).await).await;
    ok("GET", "/api/v1/portfolio/allocation", s, &b, 200);
    let (s, b) = body(
        app.post(
            "/api/v1/portfolio/rebalance",
            Some(OPERATOR),
            Some(json!({"force": false})),
        )
        .await,
    )
    .await;
    ok("POST", "/api/v1/portfolio/rebalance", s, &b, 200);

    // Control.
    for (p, token, body_json) in [
        ("/api/v1/coordinator/tasks/{task}/{command}", OPERATOR, None),
        ("/api/v1/coordinator/task/{task}/{command}", OPERATOR, None),
        ("/api/v1/coordinator/pause", OPERATOR, Some(json!({"reason": "lunch"}))),
        ("/api/v1/coordinator/resume", OPERATOR, None),
        ("/api/v1/coordinator/halt", OPERATOR, Some(json!({"reason": "drill"}))),
        ("/api/v1/coordinator/admin-resume", ADMIN, None),
    ] {
        let path = p.replace("{task}", "ta_analysis").replace("{command}", "disable");
        let (s, b) = body(app.post(&path, Some(token), body_json).await).await;
        ok("POST", p, s, &b, 200);
    }
    assert_eq!(coordinator_state(&app).await, "running");

    assert_eq!(done, registered(), "every registered route has a happy path");
    app.shutdown().await;
}

#[actix_web::test]
async fn each_class_of_bad_input_is_refused_naming_the_field_and_changes_nothing() {
    let app = spawn_app().await;
    ready(&app).await;
    let raw = |path: &str, token: &str, text: &'static str| {
        app.client
            .post(app.url(path))
            .bearer_auth(token)
            .header("content-type", "application/json")
            .body(text)
    };

    // 400: malformed JSON and a wrong type name the field.
    let (s, b) = body(
        raw("/api/v1/coordinator/halt", OPERATOR, r#"{"reason": tru"#)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!((s, b["error"]["code"].as_str()), (400, Some("bad_request")), "{b}");
    assert_eq!(b["error"]["field"], "reason", "{b}");
    let (s, b) = body(
        raw("/api/v1/portfolio/rebalance", OPERATOR, r#"{"force": "yes"}"#)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!((s, b["error"]["field"].as_str()), (400, Some("force")), "{b}");
    let mut wrong = limit_buy("1000");
    wrong["size_usd"] = json!([1]);
    let (s, b) = body(app.post("/api/v1/trades", Some(OPERATOR), Some(wrong)).await).await;
    assert_eq!((s, b["error"]["field"].as_str()), (400, Some("size_usd")), "{b}");

    // 422: out of range names the field.
    let mut lev = limit_buy("1000");
    lev["leverage"] = json!(9);
    let (s, b) = body(app.post("/api/v1/trades", Some(OPERATOR), Some(lev)).await).await;
    assert_eq!((s, b["error"]["field"].as_str()), (422, Some("leverage")), "{b}");
    let (s, b) = body(
        app.post("/api/v1/risk/reset", Some(ADMIN), Some(json!({"scope": "everything"})))
            .await,
    )
    .await;
    assert_eq!((s, b["error"]["field"].as_str()), (422, Some("scope")), "{b}");
    let (s, b) = body(app.get("/api/v1/events?types=bogus", Some(VIEWER)).await).await;
    assert_eq!((s, b["error"]["field"].as_str()), (422, Some("types")), "{b}");

    // 404: unknown ids.
    let id = uuid::Uuid::new_v4();
    for p in [
        format!("/api/v1/positions/{id}/close"),
        format!("/api/v1/orders/{id}/cancel"),
    ] {
        let (s, b) = body(app.post(&p, Some(OPERATOR), None).await).await;
        assert_eq!((s, b["error"]["code"].as_str()), (404, Some("not_found")), "{p}: {b}");
    }
    let (s, b) = patch(
        &app,
        &format!("/api/v1/positions/{id}"),
        OPERATOR,
        json!({"take_profit": "53000"}),
    )
    .await;
    assert_eq!(s, 404, "{b}");

    // 409: an invalid transition.
    let (s, b) = body(app.post("/api/v1/coordinator/resume", Some(OPERATOR), None).await).await;
    assert_eq!((s, b["error"]["code"].as_str()), (409, Some("conflict")), "{b}");

    // 413: too large.
    let mut big = limit_buy("1000");
    big["note"] = json!("x".repeat(70 * 1024));
    let (s, b) = body(app.post("/api/v1/trades", Some(OPERATOR), Some(big)).await).await;
    assert_eq!(
        (s, b["error"]["code"].as_str()),
        (413, Some("payload_too_large")),
        "{b}"
    );

    // Nothing changed: read back through the API and the database.
    assert_eq!(coordinator_state(&app).await, "running");
    let (_, orders) = body(app.get("/api/v1/orders", Some(VIEWER)).await).await;
    assert_eq!(orders["orders"].as_array().unwrap().len(), 0, "{orders}");
    let (_, positions) = body(app.get("/api/v1/positions?status=all", Some(VIEWER)).await).await;
    assert_eq!(positions["positions"].as_array().unwrap().len(), 0);
    assert_eq!(count(&app, "SELECT count(*) FROM orders").await, 0);
    assert_eq!(count(&app, "SELECT count(*) FROM rebalance_history").await, 0);
    let (_, risk) = body(app.get("/api/v1/risk/state", Some(VIEWER)).await).await;
    assert_eq!(risk["halted"], false, "{risk}");
    // Refusals that reached a handler are recorded with their result; none as done.
    assert_eq!(
        count(
            &app,
            "SELECT count(*) FROM api_audit_log WHERE status < 400 OR result = 'ok'"
        )
        .await,
        0
    );
    app.shutdown().await;
}

#[actix_web::test]
async fn rate_limits_are_per_token_and_class_answer_429_with_retry_after_and_change_nothing() {
    let app = spawn_app_with(|s| {
        s.api.rate_limit = RateLimitSettings {
            reads_per_minute: 3,
            control_per_minute: 1,
        };
    })
    .await;

    // Reads: three per minute for the viewer, then 429 with Retry-After.
    for _ in 0..3 {
        let (s, b) = body(app.get("/api/v1/coordinator/status", Some(VIEWER)).await).await;
        assert_eq!(s, 200, "{b}");
    }
    let r = app.get("/api/v1/risk/state", Some(VIEWER)).await;
    assert_eq!(r.status(), 429);
    let retry: u64 = r.headers()["retry-after"].to_str().unwrap().parse().unwrap();
    assert!((1..=20).contains(&retry), "Retry-After {retry}");
    let b: Value = r.json().await.unwrap();
    assert_eq!(b["error"]["code"], "rate_limited", "{b}");
    // Probes and the scrape are never limited; another token has its own quota.
    for _ in 0..5 {
        assert_eq!(app.get("/healthz", Some(VIEWER)).await.status(), 200);
        assert_eq!(app.get("/metrics", Some(VIEWER)).await.status(), 200);
    }
    assert_eq!(app.get("/api/v1/coordinator/status", Some(ADMIN)).await.status(), 200);
    // A missing token is still 401, not counted.
    assert_eq!(app.get("/api/v1/coordinator/status", None).await.status(), 401);

    // Control: one per minute for the operator, counted apart from its reads.
    let (s, b) = body(
        app.post(
            "/api/v1/coordinator/pause",
            Some(OPERATOR),
            Some(json!({"reason": "one"})),
        )
        .await,
    )
    .await;
    assert_eq!(s, 200, "{b}");
    let r = app.post("/api/v1/coordinator/resume", Some(OPERATOR), None).await;
    assert_eq!(r.status(), 429);
    assert!(r.headers().contains_key("retry-after"));
    let r = app
        .post("/api/v1/trades", Some(OPERATOR), Some(limit_buy("1000")))
        .await;
    assert_eq!(r.status(), 429);
    assert_eq!(
        app.get("/api/v1/coordinator/status", Some(OPERATOR)).await.status(),
        200
    );

    // The refused requests changed nothing and are audited as rate_limited.
    let (_, status) = body(app.get("/api/v1/coordinator/status", Some(ADMIN)).await).await;
    assert_eq!(status["state"], "paused", "{status}");
    assert_eq!(count(&app, "SELECT count(*) FROM orders").await, 0);
    let client = app.pool.as_ref().unwrap().get().await.unwrap();
    let rows = client
        .query(
            "SELECT route, status, result, token_name FROM api_audit_log ORDER BY id",
            &[],
        )
        .await
        .unwrap();
    let log: Vec<(String, i32, String, String)> =
        rows.iter().map(|r| (r.get(0), r.get(1), r.get(2), r.get(3))).collect();
    assert_eq!(
        log,
        vec![
            (
                "/api/v1/coordinator/pause".to_owned(),
                200,
                "ok".to_owned(),
                "operator".to_owned()
            ),
            (
                "/api/v1/coordinator/resume".to_owned(),
                429,
                "rate_limited".to_owned(),
                "operator".to_owned()
            ),
            (
                "/api/v1/trades".to_owned(),
                429,
                "rate_limited".to_owned(),
                "operator".to_owned()
            ),
        ]
    );
    app.shutdown().await;
}

#[actix_web::test]
async fn default_limits_allow_ten_control_requests_a_minute() {
    let app = spawn_app_with(|s| s.api.rate_limit = RateLimitSettings::default()).await;
    for i in 0..10 {
        let r = app.post("/api/v1/coordinator/resume", Some(OPERATOR), None).await;
        assert_eq!(
            r.status(),
            409,
            "request {i}: running, so resume is refused by the coordinator"
        );
    }
    let r = app.post("/api/v1/coordinator/resume", Some(OPERATOR), None).await;
    assert_eq!(r.status(), 429);
    app.shutdown().await;
}

#[actix_web::test]
async fn openapi_document_lists_every_registered_route() {
    let app = spawn_app().await;
    let doc: Value = app.get("/api/v1/openapi.json", None).await.json().await.unwrap();
    let mut documented: BTreeSet<(String, String)> = BTreeSet::new();
    for (path, ops) in doc["paths"].as_object().unwrap() {
        for method in ops.as_object().unwrap().keys() {
            documented.insert((method.to_uppercase(), path.clone()));
        }
    }
    assert_eq!(documented, registered());
    app.shutdown().await;
}
