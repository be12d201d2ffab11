//! `--follow`: reads the build's Server-Sent Events, prints the log as it comes
//! and shows the push as a progress bar; the exit status says how the build ended.

use std::process::ExitCode;

use futures_util::StreamExt;
use indicatif::{ProgressBar, ProgressStyle};
use serde_json::Value;

use super::api::{ApiClient, CliError};
use super::{summary, Output};

pub async fn follow(client: &ApiClient, id: i64, output: Output) -> Result<ExitCode, CliError> {
    let mut events = client
        .get(&format!("/api/v1/builds/{id}/events"))
        .await?
        .bytes_stream();
    let mut view = View::new(output);
    let mut pending = String::new();
    while let Some(chunk) = events.next().await {
        pending.push_str(&String::from_utf8_lossy(&chunk?));
        while let Some(end) = pending.find("\n\n") {
            let event: String = pending.drain(..end + 2).collect();
            if let Some(done) = view.show(&event) {
                return Ok(done);
            }
        }
    }
    Err(CliError::Unexpected(
        "the event stream ended before the build did".into(),
    ))
}

struct View {
    output: Output,
    push: ProgressBar,
}

impl View {
    fn new(output: Output) -> Self {
        let push = ProgressBar::hidden();
        push.set_style(
            ProgressStyle::with_template("push   {bar:30} {bytes}/{total_bytes}  {msg}")
                .expect("a valid template"),
        );
        View { output, push }
    }

    /// Shows one SSE event; returns the exit status once the build is over.
    fn show(&mut self, event: &str) -> Option<ExitCode> {
        let (kind, data) = parse(event);
        match kind {
            "log" => self.line(&data),
            "progress" => self.progress(&data),
            "done" => return Some(self.done(&data)),
            _ => {}
        }
        None
    }

    fn line(&self, line: &str) {
        match self.output {
            Output::Text => self.push.suspend(|| println!("{line}")),
            // Standard output is kept for the one JSON answer.
            Output::Json => eprintln!("{line}"),
        }
    }

    fn progress(&mut self, data: &str) {
        let Ok(progress) = serde_json::from_str::<Value>(data) else {
            return;
        };
        let (Some(done), Some(total)) = (
            progress["bytes_done"].as_u64(),
            progress["bytes_total"].as_u64(),
        ) else {
            return;
        };
        if self.output == Output::Text && self.push.is_hidden() {
            self.push
                .set_draw_target(indicatif::ProgressDrawTarget::stderr());
        }
        self.push.set_length(total);
        self.push.set_position(done);
        let layers = (
            progress["layers_done"].as_u64(),
            progress["layers_total"].as_u64(),
        );
        if let (Some(layers_done), Some(layers_total)) = layers {
            self.push
                .set_message(format!("{layers_done}/{layers_total} layers"));
        }
    }

    fn done(&self, data: &str) -> ExitCode {
        self.push.finish();
        let build: Value = serde_json::from_str(data).unwrap_or(Value::Null);
        match self.output {
            Output::Text => println!("{}", summary(&build)),
            Output::Json => println!("{build}"),
        }
        if build["status"] == "succeeded" {
            ExitCode::SUCCESS
        } else {
            ExitCode::FAILURE
        }
    }
}

/// The event's type and its data lines joined, as SSE defines them.
fn parse(event: &str) -> (&str, String) {
    let mut kind = "message";
    let mut data = Vec::new();
    for line in event.lines() {
        if let Some(value) = line.strip_prefix("event: ") {
            kind = value;
        } else if let Some(value) = line.strip_prefix("data: ") {
            data.push(value);
        } else if line == "data:" {
            data.push("");
        }
    }
    (kind, data.join("\n"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_events() {
        assert_eq!(
            parse("event: log\nid: 3\ndata: hello\n\n"),
            ("log", "hello".to_string())
        );
        assert_eq!(
            parse("event: log\ndata: a\ndata: b\n\n"),
            ("log", "a\nb".to_string())
        );
    }
}
