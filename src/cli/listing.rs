//! Text for `dockpub builders`, `deliveries` and `redeliver`: one line per
//! builder or delivery, each server string made safe for a terminal.

use serde_json::Value;

use super::terminal;

/// Whether `answer` is a list of builders or deliveries, or one delivery.
pub fn is_listing(answer: &Value) -> bool {
    ["builders", "deliveries", "delivery_id"]
        .iter()
        .any(|key| answer.get(key).is_some())
}

pub fn print(answer: &Value) {
    let lines: Vec<String> = if let Some(builders) = answer["builders"].as_array() {
        builders.iter().map(builder_line).collect()
    } else if let Some(deliveries) = answer["deliveries"].as_array() {
        deliveries.iter().map(delivery_line).collect()
    } else {
        vec![delivery_line(answer)]
    };
    for line in lines {
        println!("{}", terminal::for_stdout(&line));
    }
}

fn text(value: &Value) -> &str {
    value.as_str().unwrap_or("?")
}

/// `local  unix:///var/run/docker.sock  up  1/2 running  linux/amd64  12 built`
fn builder_line(builder: &Value) -> String {
    let platforms: Vec<&str> = builder["platforms"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .collect();
    let mut line = format!(
        "{:<12} {}  {}  {}/{} running  {}  {} built",
        text(&builder["name"]),
        text(&builder["host"]),
        if builder["up"] == true { "up" } else { "down" },
        builder["running"],
        builder["slots"],
        if platforms.is_empty() {
            "-".to_string()
        } else {
            platforms.join(",")
        },
        builder["builds_done"],
    );
    if let Some(error) = builder["last_error"].as_str() {
        line.push_str(&format!("  last error: {error}"));
    }
    line
}

/// `3  build.succeeded  delivered  1 attempt(s)  HTTP 200  https://hooks.example.com/x`
fn delivery_line(delivery: &Value) -> String {
    let mut line = format!(
        "{:<6} {}  {}  {} attempt(s)",
        delivery["id"],
        text(&delivery["event"]),
        text(&delivery["state"]),
        delivery["attempts"],
    );
    if let Some(status) = delivery["last_status"].as_u64() {
        line.push_str(&format!("  HTTP {status}"));
    }
    line.push_str(&format!("  {}", text(&delivery["url"])));
    if let Some(error) = delivery["last_error"].as_str() {
        line.push_str(&format!("  error: {error}"));
    }
    if let Some(original) = delivery["redelivery_of"].as_i64() {
        line.push_str(&format!("  (again of {original})"));
    }
    line
}
