//! `--follow`: reads the build's Server-Sent Events, prints the log as it comes,
//! shows the push as a progress bar and, for a build of several platforms, each
//! platform's phase as it changes; the exit status says how the build ended.

use std::collections::HashMap;
use std::process::ExitCode;

use futures_util::StreamExt;
use indicatif::{ProgressBar, ProgressStyle};
use serde_json::Value;

use eventsource_stream::Eventsource;

use super::api::ApiClient;
use super::options::LogRangeArgs;
use super::platforms;
use super::terminal;
use super::CliError;
use super::{summary, Output};

pub async fn follow(client: &ApiClient, id: i64, output: Output) -> Result<ExitCode, CliError> {
    follow_after(client, id, 0, View::new(output)).await
}

/// `logs --follow` with `--since`/`--tail`: the lines asked for as they are
/// now, then every new one. The events resume after the last line printed, so
/// none is shown twice or lost in between.
pub async fn follow_range(
    client: &ApiClient,
    id: i64,
    range: &LogRangeArgs,
    output: Output,
) -> Result<ExitCode, CliError> {
    let view = View::new(output);
    if range.since.is_none() && range.tail.is_none() {
        return follow_after(client, id, 0, view).await;
    }
    let since = range.since.unwrap_or(0);
    let after_since = LogRangeArgs {
        since: Some(since),
        tail: None,
    };
    let log = client.logs(id, &after_since).await?;
    let lines: Vec<&str> = log.lines().collect();
    let shown = range
        .tail
        .map_or(0, |tail| lines.len().saturating_sub(tail as usize));
    for line in &lines[shown..] {
        view.line(line);
    }
    follow_after(client, id, since + lines.len() as u64, view).await
}

async fn follow_after(
    client: &ApiClient,
    id: i64,
    after: u64,
    mut view: View,
) -> Result<ExitCode, CliError> {
    // A real SSE parser: it keeps a character split across two network
    // chunks whole, and follows the format's rules for fields and line ends.
    let mut events = client.events(id, after).await?.bytes_stream().eventsource();
    while let Some(event) = events.next().await {
        let event =
            event.map_err(|err| CliError::Unexpected(format!("the event stream broke: {err}")))?;
        if let Some(done) = view.show(&event.event, &event.data) {
            return Ok(done);
        }
    }
    Err(CliError::Unexpected(
        "the event stream ended before the build did".into(),
    ))
}

struct View {
    output: Output,
    push: ProgressBar,
    /// Each platform's last phase line shown, for a build of several.
    platform_phases: HashMap<String, String>,
}

impl View {
    fn new(output: Output) -> Self {
        let push = ProgressBar::hidden();
        push.set_style(
            ProgressStyle::with_template("push   {bar:30} {bytes}/{total_bytes}  {msg}")
                .expect("a valid template"),
        );
        View {
            output,
            push,
            platform_phases: HashMap::new(),
        }
    }

    /// Shows one SSE event; returns the exit status once the build is over.
    fn show(&mut self, kind: &str, data: &str) -> Option<ExitCode> {
        match kind {
            "log" => self.line(data),
            "progress" => self.progress(data),
            "done" => return Some(self.done(data)),
            _ => {}
        }
        None
    }

    fn line(&self, line: &str) {
        match self.output {
            Output::Text => self
                .push
                .suspend(|| println!("{}", terminal::for_stdout(line))),
            // Standard output is kept for the one JSON answer.
            Output::Json => eprintln!("{}", terminal::for_stderr(line)),
        }
    }

    fn progress(&mut self, data: &str) {
        let Ok(progress) = serde_json::from_str::<Value>(data) else {
            return;
        };
        self.platform_phases(&progress);
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

    /// A line on standard error (beside the push bar, apart from the log) each
    /// time a platform of a build of several changes phase or builder.
    fn platform_phases(&mut self, progress: &Value) {
        for (platform, line) in platforms::phase_lines(progress) {
            if self.platform_phases.get(&platform) == Some(&line) {
                continue;
            }
            self.push
                .suspend(|| eprintln!("{}", terminal::for_stderr(&line)));
            self.platform_phases.insert(platform, line);
        }
    }

    fn done(&self, data: &str) -> ExitCode {
        self.push.finish();
        let build: Value = serde_json::from_str(data).unwrap_or(Value::Null);
        match self.output {
            Output::Text => println!("{}", terminal::for_stdout(&summary(&build))),
            Output::Json => println!("{}", terminal::json(&build)),
        }
        if build["status"] == "succeeded" {
            ExitCode::SUCCESS
        } else {
            ExitCode::FAILURE
        }
    }
}
