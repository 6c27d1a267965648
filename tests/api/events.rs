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
