use crate::helpers::{spawn_app, VIEWER};
use std::time::Duration;
use triplegain_actors::messages::{EventMeta, SystemEvent};

async fn next_chunk(resp: &mut reqwest::Response) -> String {
    let chunk = tokio::time::timeout(Duration::from_secs(5), resp.chunk())
        .await
        .expect("a chunk within 5 s")
        .expect("stream readable")
        .expect("stream still open");
    String::from_utf8(chunk.to_vec()).unwrap()
}

#[actix_web::test]
async fn event_stream_delivers_an_event_published_after_the_client_connected() {
    // Arrange
    let app = spawn_app().await;
    assert_eq!(app.get("/api/v1/events", None).await.status(), 401);
    let mut resp = app.get("/api/v1/events", Some(VIEWER)).await;
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["content-type"], "text/event-stream");
    assert!(next_chunk(&mut resp).await.starts_with(": connected"));

    // Act: publish after the client is connected (and subscribed).
    let mut text = String::new();
    for attempt in 0..20 {
        app.state.bus.system_events.publish(SystemEvent {
            meta: EventMeta::new("test", chrono::Utc::now()),
            event: format!("operator_note_{attempt}"),
            details: serde_json::json!({"attempt": attempt}),
        });
        if let Ok(Ok(Some(chunk))) = tokio::time::timeout(Duration::from_millis(250), resp.chunk()).await {
            text = String::from_utf8(chunk.to_vec()).unwrap();
            break;
        }
    }

    // Assert
    assert!(text.starts_with("event: system_events\ndata: "), "{text}");
    let json: serde_json::Value =
        serde_json::from_str(text.lines().nth(1).unwrap().trim_start_matches("data: ")).unwrap();
    assert!(json["event"].as_str().unwrap().starts_with("operator_note_"), "{json}");
    drop(resp);
    app.shutdown().await;
}

fn metric_value(text: &str, name: &str, label: &str) -> f64 {
    text.lines()
        .filter(|l| l.starts_with(name) && l.contains(label))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

#[actix_web::test]
async fn metrics_parse_as_prometheus_text_and_fill_counters_move() {
    use rust_decimal::Decimal;
    use triplegain_actors::domain::{OrderStatus, Side, Symbol};
    use triplegain_actors::messages::{ExecutionEvent, ExecutionEventType};
    let app = spawn_app().await;
    let label = "symbol=\"ETH/USDT\"";
    let before = app.get("/metrics", None).await.text().await.unwrap();
    assert_eq!(metric_value(&before, "triplegain_fills_total", label), 0.0);

    app.state.bus.execution_events.publish(ExecutionEvent {
        meta: EventMeta::new("execution_manager", chrono::Utc::now()),
        event_type: ExecutionEventType::OrderFilled,
        order_id: "o-1".into(),
        client_order_id: None,
        symbol: Symbol::parse("ETH/USDT").unwrap(),
        side: Side::Buy,
        status: OrderStatus::Filled,
        size: Decimal::ONE,
        fill_price: Some(Decimal::new(3000, 0)),
        fee: Decimal::new(78, 2),
        realized_pnl: None,
        position_id: None,
    });
    let mut after = String::new();
    for _ in 0..50 {
        after = app.get("/metrics", None).await.text().await.unwrap();
        if metric_value(&after, "triplegain_fills_total", label) >= 1.0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(metric_value(&after, "triplegain_fills_total", label), 1.0, "{after}");
    // Every sample line is `name{labels} value` or `name value`; comments start with `#`.
    for line in after.lines().filter(|l| !l.is_empty() && !l.starts_with('#')) {
        let value = line.rsplit(' ').next().unwrap();
        assert!(value.parse::<f64>().is_ok(), "not a Prometheus sample: {line}");
    }
    app.shutdown().await;
}
