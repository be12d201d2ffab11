//! A build's Server-Sent Events, read whole as a follower sees them.

use std::io::Read;
use std::time::Duration;

use reqwest::blocking::Client;

use super::Server;

/// One Server-Sent Event of a build's `/events`.
pub struct SseEvent {
    pub event: String,
    pub id: Option<i64>,
    pub data: String,
}

/// Every event of a build's `/events`, read until the stream ends (after `done`).
pub fn read_events(server: &Server, id: i64, last_event_id: Option<i64>) -> Vec<SseEvent> {
    events_with(&server.client, server, id, last_event_id)
}

/// The same, for a build that may run longer than the harness client's timeout.
pub fn read_events_within(server: &Server, id: i64, limit: Duration) -> Vec<SseEvent> {
    let client = Client::builder().timeout(limit).build().unwrap();
    events_with(&client, server, id, None)
}

fn events_with(
    client: &Client,
    server: &Server,
    id: i64,
    last_event_id: Option<i64>,
) -> Vec<SseEvent> {
    let mut request = client.get(server.url(&format!("/api/v1/builds/{id}/events")));
    if let Some(last) = last_event_id {
        request = request.header("Last-Event-ID", last.to_string());
    }
    let mut response = request.send().unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-type"], "text/event-stream");
    let mut body = String::new();
    response.read_to_string(&mut body).unwrap();
    body.split("\n\n")
        .filter(|block| !block.is_empty())
        .map(|block| {
            let mut event = SseEvent {
                event: String::new(),
                id: None,
                data: String::new(),
            };
            for line in block.lines() {
                let (key, value) = line.split_once(": ").unwrap_or((line, ""));
                match key {
                    "event" => event.event = value.to_string(),
                    "id" => event.id = Some(value.parse().unwrap()),
                    "data" => event.data = value.to_string(),
                    other => panic!("unexpected SSE field {other}"),
                }
            }
            event
        })
        .collect()
}
