//! The daemon's output, of either builder, read to its end and turned into
//! [`BuildEvent`]s: BuildKit's status messages, the legacy builder's lines
//! (joined from the pieces the daemon sends), and a refusal of BuildKit told
//! from a failed build.

use bollard::models::{BuildInfo, BuildInfoAux};
use futures_util::{Stream, StreamExt};

use super::options::Engine;
use crate::docker::events::{legacy_line_events, BuildEvent, BuildkitTranslator};
use crate::docker::DockerError;

/// Turns the daemon's messages, of either builder, into events.
#[derive(Default)]
struct Translator {
    lines: LineSplitter,
    buildkit: BuildkitTranslator,
    /// Anything at all came from the daemon: a refusal of BuildKit comes first.
    heard: bool,
}

impl Translator {
    fn events(&mut self, info: BuildInfo) -> Vec<BuildEvent> {
        self.heard = true;
        let mut events = Vec::new();
        match info.aux.clone() {
            Some(BuildInfoAux::BuildKit(status)) => events.extend(self.buildkit.translate(status)),
            Some(BuildInfoAux::Default(image)) => {
                events.extend(image.id.map(BuildEvent::ImageBuilt));
            }
            None => {}
        }
        for line in self.lines.push(&info) {
            events.extend(legacy_line_events(line));
        }
        events
    }

    fn finish(&mut self) -> Vec<BuildEvent> {
        let mut events = self.buildkit.finish();
        events.extend(self.lines.finish().into_iter().flat_map(legacy_line_events));
        events
    }
}

/// Reads the build's output to its end; notes every step container it starts.
pub(super) async fn follow<F>(
    stream: impl Stream<Item = Result<BuildInfo, bollard::errors::Error>>,
    engine: Engine,
    on_event: &mut F,
    containers: &mut Vec<String>,
) -> Result<String, DockerError>
where
    F: FnMut(BuildEvent) + Send,
{
    let mut stream = std::pin::pin!(stream);
    let mut translator = Translator::default();
    let mut image_id = None;
    while let Some(item) = stream.next().await {
        let info = match item {
            Ok(info) => info,
            Err(err) => {
                if engine == Engine::Buildkit && !translator.heard {
                    if let Some(reason) = buildkit_refusal(&err) {
                        return Err(DockerError::BuildkitRefused(reason));
                    }
                }
                translator.finish().into_iter().for_each(&mut *on_event);
                return Err(match err {
                    bollard::errors::Error::DockerStreamError { error } => {
                        on_event(BuildEvent::Output {
                            step: None,
                            elapsed: None,
                            text: error.trim_end().to_string(),
                        });
                        DockerError::BuildFailed(error.trim().to_string())
                    }
                    other => other.into(),
                });
            }
        };
        for event in translator.events(info) {
            match &event {
                BuildEvent::StepContainer(id) => containers.push(id.clone()),
                BuildEvent::ImageBuilt(id) => image_id = Some(id.clone()),
                _ => {}
            }
            on_event(event);
        }
    }
    translator.finish().into_iter().for_each(&mut *on_event);
    if image_id.is_some() {
        translator
            .buildkit
            .succeeded()
            .into_iter()
            .for_each(&mut *on_event);
    }
    image_id.ok_or(DockerError::NoImageId)
}

/// The daemon's answer when it cannot build with BuildKit at all (an old or a
/// Windows daemon, BuildKit switched off), as opposed to a build that failed.
fn buildkit_refusal(err: &bollard::errors::Error) -> Option<String> {
    use bollard::errors::Error as E;
    let message = match err {
        E::DockerResponseServerError { message, .. } => message,
        E::DockerStreamError { error } => error,
        _ => return None,
    };
    let lower = message.to_ascii_lowercase();
    let refused = lower.contains("buildkit")
        && ["not supported", "not enabled", "unsupported", "disabled"]
            .iter()
            .any(|phrase| lower.contains(phrase));
    refused.then(|| message.trim().to_string())
}

/// A line of the legacy builder's output longer than this (a step printing
/// without a newline) is cut into lines of this size: the partial line is
/// never held whole.
const MAX_LINE_BYTES: usize = 64 * 1024;

/// The daemon sends output in arbitrary pieces; the log wants whole lines.
#[derive(Default)]
struct LineSplitter {
    partial: String,
}

impl LineSplitter {
    fn push(&mut self, info: &BuildInfo) -> Vec<String> {
        let mut complete = Vec::new();
        if let Some(text) = &info.stream {
            self.partial.push_str(text);
            // One pass, then one drain: draining line by line from the front moves the
            // rest of the piece each time, quadratic in the lines a piece holds (the
            // daemon sends up to 32 KiB of RUN output per message).
            let mut start = 0;
            while let Some(offset) = self.partial[start..].find('\n') {
                let end = start + offset;
                complete.push(self.partial[start..end].trim_end_matches('\r').to_string());
                start = end + 1;
            }
            self.partial.drain(..start);
            while self.partial.len() > MAX_LINE_BYTES {
                let mut cut = MAX_LINE_BYTES;
                while !self.partial.is_char_boundary(cut) {
                    cut -= 1;
                }
                complete.push(self.partial[..cut].to_string());
                self.partial.drain(..cut);
            }
        }
        if let Some(status) = &info.status {
            complete.extend(self.finish());
            complete.push(status_line(status, info));
        }
        complete
    }

    fn finish(&mut self) -> Option<String> {
        (!self.partial.is_empty()).then(|| std::mem::take(&mut self.partial))
    }
}

fn status_line(status: &str, info: &BuildInfo) -> String {
    let id = info
        .id
        .as_deref()
        .map(|id| format!("{id}: "))
        .unwrap_or_default();
    let progress = info
        .progress_detail
        .as_ref()
        .and_then(|p| Some(format!(" {}/{}", p.current?, p.total?)))
        .unwrap_or_default();
    format!("{id}{status}{progress}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stream(text: &str) -> BuildInfo {
        BuildInfo {
            stream: Some(text.to_string()),
            ..Default::default()
        }
    }

    #[test]
    fn joins_pieces_into_lines() {
        let mut splitter = LineSplitter::default();
        assert!(splitter.push(&stream("Step 1/2 : FROM scr")).is_empty());
        assert_eq!(
            splitter.push(&stream("atch\n ---> \n")),
            vec!["Step 1/2 : FROM scratch", " ---> "]
        );
        assert_eq!(splitter.push(&stream("tail")), Vec::<String>::new());
        assert_eq!(splitter.finish(), Some("tail".to_string()));
        assert_eq!(splitter.finish(), None);
    }

    #[test]
    fn splits_a_piece_of_many_lines_in_order() {
        let mut splitter = LineSplitter::default();
        let text: String = (1..=5000).map(|n| format!("{n}\r\n")).collect();
        let (head, tail) = text.split_at(text.len() / 2 + 3);
        let mut lines = splitter.push(&stream(head));
        lines.extend(splitter.push(&stream(tail)));
        let expected: Vec<String> = (1..=5000).map(|n| n.to_string()).collect();
        assert_eq!(lines, expected);
        assert_eq!(splitter.finish(), None);
        assert_eq!(splitter.push(&stream("\n\nlast")), vec!["", ""]);
        assert_eq!(splitter.finish(), Some("last".to_string()));
    }

    #[test]
    fn a_line_without_end_is_cut_at_the_line_limit() {
        let mut splitter = LineSplitter::default();
        let lines = splitter.push(&stream(&"é".repeat(MAX_LINE_BYTES)));
        assert_eq!(lines.len(), 1);
        assert!(lines.iter().all(|line| line.len() <= MAX_LINE_BYTES));
        assert_eq!(splitter.finish().unwrap().len(), MAX_LINE_BYTES);
    }

    #[test]
    fn tells_a_refused_buildkit_from_a_failed_build() {
        let refused = bollard::errors::Error::DockerResponseServerError {
            status_code: 400,
            message: "buildkit not supported by daemon".into(),
        };
        assert!(buildkit_refusal(&refused).is_some());
        let failed = bollard::errors::Error::DockerStreamError {
            error: "executor failed running [/bin/sh -c false]: exit code: 1".into(),
        };
        assert_eq!(buildkit_refusal(&failed), None);
    }
}
