//! Both builders' output as one stream of typed events. The legacy builder
//! speaks text (`Step 2/5 : RUN make`); BuildKit speaks vertexes, statuses and
//! logs. Everything above `docker/` sees only [`BuildEvent`], and the log shows
//! BuildKit's progress in the shape of `docker buildx build --progress=plain`.

use std::collections::{HashMap, HashSet};
use std::sync::LazyLock;

use bollard::moby::buildkit::v1::{StatusResponse, Vertex, VertexLog, VertexStatus};
use regex::Regex;

/// How BuildKit names a vertex that is a Dockerfile step: `[2/4] RUN make`, or
/// `[builder 2/4] RUN make` in a named stage. Other vertexes (`[internal] load
/// build definition`, cache imports, exporting) are its own work.
static DOCKERFILE_STEP: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"^\[(?:(\S+) )?(\d+)/(\d+)\] ").expect("step regex"));

/// How the legacy builder names the container of a RUN step it started.
static STEP_CONTAINER: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"---> Running in ([0-9a-f]{12,64})").expect("container regex"));

/// One thing that happened in a build.
#[derive(Debug, Clone, PartialEq)]
pub enum BuildEvent {
    /// A step began. `of` is the legacy builder's step count; BuildKit numbers
    /// steps as it discovers them.
    StepStarted {
        step: u32,
        of: Option<u32>,
        name: String,
    },
    /// BuildKit reused the step from its cache.
    StepCached {
        step: u32,
    },
    StepFinished {
        step: u32,
        secs: f64,
    },
    /// A step's own error. Not always fatal (a missing cache source fails its
    /// import step and the build goes on): only the build's result decides.
    StepFailed {
        step: u32,
        message: String,
    },
    /// A line of output, of a step when known; `elapsed` is seconds into the step.
    Output {
        step: Option<u32>,
        elapsed: Option<f64>,
        text: String,
    },
    /// The legacy builder started a step's container (to remove on cancel).
    StepContainer(String),
    /// Dockerfile steps finished (BuildKit) or running (legacy), of the steps
    /// known so far, counted as the log numbers them (`[3/4]`, `Step 3/4`).
    Progress {
        done: u32,
        total: u32,
    },
    /// The daemon refused BuildKit; the build goes on with the legacy builder.
    FellBackToLegacy {
        reason: String,
    },
    ImageBuilt(String),
}

impl BuildEvent {
    /// The event as a line of the build's log, when it is one.
    pub fn log_line(&self) -> Option<String> {
        match self {
            BuildEvent::StepStarted {
                step,
                of: Some(of),
                name,
            } => Some(format!("Step {step}/{of} : {name}")),
            BuildEvent::StepStarted {
                step,
                of: None,
                name,
            } => Some(format!("#{step} {name}")),
            BuildEvent::StepCached { step } => Some(format!("#{step} CACHED")),
            BuildEvent::StepFinished { step, secs } => Some(format!("#{step} DONE {secs:.1}s")),
            BuildEvent::StepFailed { step, message } => Some(format!("#{step} ERROR: {message}")),
            BuildEvent::Output {
                step: Some(step),
                elapsed: Some(elapsed),
                text,
            } => Some(format!("#{step} {elapsed:.3} {text}")),
            BuildEvent::Output {
                step: Some(step),
                elapsed: None,
                text,
            } => Some(format!("#{step} {text}")),
            BuildEvent::Output {
                step: None, text, ..
            } => Some(text.clone()),
            BuildEvent::FellBackToLegacy { reason } => Some(format!(
                "dockpub: the daemon refused BuildKit ({reason}); building with the legacy builder"
            )),
            BuildEvent::StepContainer(_)
            | BuildEvent::Progress { .. }
            | BuildEvent::ImageBuilt(_) => None,
        }
    }
}

/// The events of one line of the legacy builder's output.
pub fn legacy_line_events(line: String) -> Vec<BuildEvent> {
    if let Some((step, of, name)) = legacy_step(&line) {
        return vec![
            BuildEvent::StepStarted {
                step,
                of: Some(of),
                name: name.to_string(),
            },
            BuildEvent::Progress {
                done: step,
                total: of,
            },
        ];
    }
    let container = STEP_CONTAINER
        .captures(&line)
        .map(|found| BuildEvent::StepContainer(found[1].to_string()));
    let output = BuildEvent::Output {
        step: None,
        elapsed: None,
        text: line,
    };
    std::iter::once(output).chain(container).collect()
}

/// `Step N/M : INSTRUCTION`.
fn legacy_step(line: &str) -> Option<(u32, u32, &str)> {
    let rest = line.strip_prefix("Step ")?;
    let (counts, name) = rest.split_once(" : ")?;
    let (step, of) = counts.split_once('/')?;
    Some((step.parse().ok()?, of.parse().ok()?, name))
}

/// Turns BuildKit's status updates into events. A vertex is sent again each
/// time it changes; each change is told once.
#[derive(Default)]
pub struct BuildkitTranslator {
    vertexes: HashMap<String, VertexState>,
    /// Each stage's step count, by the stage's name ("" for an unnamed one).
    stage_steps: HashMap<String, u32>,
    /// Each stage's last step finished (cached, done or failed). Steps run in
    /// order within a stage, and a step two stages share (the same `FROM`) is one
    /// vertex, named after one of them: the last step finished counts the rest.
    stage_done: HashMap<String, u32>,
    statuses_done: HashSet<String>,
    last_progress: Option<(u32, u32)>,
}

struct VertexState {
    step: u32,
    /// Its stage and number, when it is one of the Dockerfile's steps.
    dockerfile_step: Option<(String, u32)>,
    /// Seconds since the epoch when it started.
    started: Option<f64>,
    finished: bool,
    /// The end of its output that is not a whole line yet.
    partial: String,
}

impl BuildkitTranslator {
    pub fn translate(&mut self, status: StatusResponse) -> Vec<BuildEvent> {
        let mut events = Vec::new();
        for vertex in status.vertexes {
            self.vertex(vertex, &mut events);
        }
        for status in status.statuses {
            self.status(status, &mut events);
        }
        for log in status.logs {
            self.log(log, &mut events);
        }
        let total = self.stage_steps.values().sum::<u32>();
        let done = self.stage_done.values().sum::<u32>();
        let progress = (done.min(total), total);
        if total > 0 && self.last_progress != Some(progress) {
            self.last_progress = Some(progress);
            events.push(BuildEvent::Progress {
                done: progress.0,
                total: progress.1,
            });
        }
        events
    }

    /// The build made its image: every step it knew of is done, also when
    /// BuildKit's last status reached us after the image (its stream does not
    /// keep the two in order).
    pub fn succeeded(&mut self) -> Vec<BuildEvent> {
        let total = self.stage_steps.values().sum::<u32>();
        let progress = (total, total);
        if total == 0 || self.last_progress == Some(progress) {
            return Vec::new();
        }
        self.last_progress = Some(progress);
        vec![BuildEvent::Progress { done: total, total }]
    }

    /// Output still waiting for its line end, when the build ends.
    pub fn finish(&mut self) -> Vec<BuildEvent> {
        let mut events = Vec::new();
        for state in self.vertexes.values_mut() {
            flush_partial(state, &mut events);
        }
        events
    }

    fn vertex(&mut self, vertex: Vertex, events: &mut Vec<BuildEvent>) {
        let next_step = self.vertexes.len() as u32 + 1;
        let stage_steps = &mut self.stage_steps;
        let state = self
            .vertexes
            .entry(vertex.digest.clone())
            .or_insert_with(|| {
                events.push(BuildEvent::StepStarted {
                    step: next_step,
                    of: None,
                    name: vertex.name.clone(),
                });
                let dockerfile_step = DOCKERFILE_STEP.captures(&vertex.name).map(|found| {
                    let stage = found.get(1).map_or("", |m| m.as_str()).to_string();
                    let number = |at: usize| found[at].parse::<u32>().unwrap_or(0);
                    // BuildKit shares a FROM vertex between builds running at
                    // once, named as whichever build asked first: its count may
                    // be another Dockerfile's. The stage's other steps say it.
                    let shared = vertex.name[found[0].len()..].starts_with("FROM ");
                    if !shared {
                        stage_steps.insert(stage.clone(), number(3));
                    }
                    (stage, number(2))
                });
                VertexState {
                    step: next_step,
                    dockerfile_step,
                    started: None,
                    finished: false,
                    partial: String::new(),
                }
            });
        if let Some(started) = &vertex.started {
            state
                .started
                .get_or_insert(seconds(started.seconds, started.nanos));
        }
        if state.finished {
            return;
        }
        let step = state.step;
        let ended = if vertex.cached {
            Some(BuildEvent::StepCached { step })
        } else if !vertex.error.is_empty() {
            Some(BuildEvent::StepFailed {
                step,
                message: vertex.error.clone(),
            })
        } else {
            vertex.completed.as_ref().map(|completed| {
                let end = seconds(completed.seconds, completed.nanos);
                BuildEvent::StepFinished {
                    step,
                    secs: (end - state.started.unwrap_or(end)).max(0.0),
                }
            })
        };
        if let Some(ended) = ended {
            flush_partial(state, events);
            state.finished = true;
            if let Some((stage, number)) = &state.dockerfile_step {
                let done = self.stage_done.entry(stage.clone()).or_default();
                *done = (*done).max(*number);
            }
            events.push(ended);
        }
    }

    fn status(&mut self, status: VertexStatus, events: &mut Vec<BuildEvent>) {
        if status.completed.is_none() || !self.statuses_done.insert(status.id.clone()) {
            return;
        }
        let step = self.vertexes.get(&status.vertex).map(|state| state.step);
        events.push(BuildEvent::Output {
            step,
            elapsed: None,
            text: format!("{} done", status.id),
        });
    }

    fn log(&mut self, log: VertexLog, events: &mut Vec<BuildEvent>) {
        let Some(state) = self.vertexes.get_mut(&log.vertex) else {
            return;
        };
        let at = log
            .timestamp
            .as_ref()
            .map(|time| seconds(time.seconds, time.nanos));
        let elapsed = match (at, state.started) {
            (Some(at), Some(started)) => Some((at - started).max(0.0)),
            _ => None,
        };
        state.partial.push_str(&String::from_utf8_lossy(&log.msg));
        let mut start = 0;
        while let Some(offset) = state.partial[start..].find('\n') {
            let end = start + offset;
            events.push(BuildEvent::Output {
                step: Some(state.step),
                elapsed,
                text: state.partial[start..end].trim_end_matches('\r').to_string(),
            });
            start = end + 1;
        }
        state.partial.drain(..start);
    }
}

fn flush_partial(state: &mut VertexState, events: &mut Vec<BuildEvent>) {
    if !state.partial.is_empty() {
        events.push(BuildEvent::Output {
            step: Some(state.step),
            elapsed: None,
            text: std::mem::take(&mut state.partial),
        });
    }
}

fn seconds(seconds: i64, nanos: i32) -> f64 {
    seconds as f64 + f64::from(nanos) / 1e9
}

#[cfg(test)]
mod tests {
    use super::*;
    use bollard::moby::buildkit::v1::Vertex;

    fn time(secs: i64, nanos: i32) -> Option<bollard_buildkit_proto::google::protobuf::Timestamp> {
        Some(bollard_buildkit_proto::google::protobuf::Timestamp {
            seconds: secs,
            nanos,
        })
    }

    fn vertex(digest: &str, name: &str) -> Vertex {
        Vertex {
            digest: digest.into(),
            name: name.into(),
            ..Vertex::default()
        }
    }

    fn lines(events: &[BuildEvent]) -> Vec<String> {
        events.iter().filter_map(BuildEvent::log_line).collect()
    }

    #[test]
    fn buildkit_progress_reads_like_buildx_plain() {
        let mut translator = BuildkitTranslator::default();
        let run = vertex("sha256:b", "[2/2] RUN echo hi");
        let first = translator.translate(StatusResponse {
            vertexes: vec![
                vertex("sha256:a", "[1/2] FROM base"),
                Vertex {
                    started: time(100, 0),
                    ..run.clone()
                },
            ],
            ..StatusResponse::default()
        });
        assert_eq!(
            lines(&first),
            ["#1 [1/2] FROM base", "#2 [2/2] RUN echo hi"]
        );
        assert_eq!(
            first.last(),
            Some(&BuildEvent::Progress { done: 0, total: 2 })
        );
        let second = translator.translate(StatusResponse {
            vertexes: vec![Vertex {
                cached: true,
                ..vertex("sha256:a", "[1/2] FROM base")
            }],
            logs: vec![VertexLog {
                vertex: "sha256:b".into(),
                timestamp: time(100, 420_000_000),
                stream: 1,
                msg: b"hi\npart".to_vec(),
            }],
            ..StatusResponse::default()
        });
        assert_eq!(lines(&second), ["#1 CACHED", "#2 0.420 hi"]);
        let third = translator.translate(StatusResponse {
            vertexes: vec![Vertex {
                started: time(100, 0),
                completed: time(101, 500_000_000),
                ..run
            }],
            ..StatusResponse::default()
        });
        assert_eq!(lines(&third), ["#2 part", "#2 DONE 1.5s"]);
        assert_eq!(
            third.last(),
            Some(&BuildEvent::Progress { done: 2, total: 2 })
        );
    }

    #[test]
    fn a_build_that_made_its_image_has_done_every_step() {
        let mut translator = BuildkitTranslator::default();
        translator.translate(StatusResponse {
            vertexes: vec![
                vertex("sha256:1", "[1/2] FROM base"),
                vertex("sha256:2", "[2/2] RUN a"),
            ],
            ..StatusResponse::default()
        });
        // The last vertex's "completed" never came before the image did.
        assert_eq!(
            translator.succeeded(),
            [BuildEvent::Progress { done: 2, total: 2 }]
        );
        assert!(translator.succeeded().is_empty(), "said once");
    }

    #[test]
    fn a_from_named_by_another_build_does_not_count_its_steps() {
        let mut translator = BuildkitTranslator::default();
        // Another build at the same time asked for the same base first: the
        // shared vertex carries its numbering, [1/2], not this build's [1/4].
        let events = translator.translate(StatusResponse {
            vertexes: vec![
                vertex("sha256:1", "[1/2] FROM base"),
                vertex("sha256:2", "[2/4] RUN a"),
                vertex("sha256:3", "[3/4] RUN b"),
                vertex("sha256:4", "[4/4] RUN c"),
            ],
            ..StatusResponse::default()
        });
        assert_eq!(
            events.last(),
            Some(&BuildEvent::Progress { done: 0, total: 4 })
        );
    }

    #[test]
    fn progress_counts_the_dockerfiles_steps_not_buildkits_own_work() {
        let mut translator = BuildkitTranslator::default();
        let done = |digest: &str, name: &str| Vertex {
            completed: time(101, 0),
            ..vertex(digest, name)
        };
        let events = translator.translate(StatusResponse {
            vertexes: vec![
                done(
                    "sha256:i",
                    "[internal] load build definition from Dockerfile",
                ),
                done("sha256:m", "[internal] load metadata for base"),
                vertex("sha256:1", "[builder 1/2] FROM base"),
                vertex("sha256:2", "[builder 2/2] RUN make"),
                vertex("sha256:4", "[2/3] COPY --from=builder /out /out"),
                vertex("sha256:5", "[3/3] RUN test"),
            ],
            ..StatusResponse::default()
        });
        assert_eq!(
            events.last(),
            Some(&BuildEvent::Progress { done: 0, total: 5 })
        );
        // [1/3] FROM base is the vertex [builder 1/2] already is: never named again.
        let events = translator.translate(StatusResponse {
            vertexes: vec![
                done("sha256:1", "[builder 1/2] FROM base"),
                done("sha256:2", "[builder 2/2] RUN make"),
                done("sha256:4", "[2/3] COPY --from=builder /out /out"),
            ],
            ..StatusResponse::default()
        });
        assert_eq!(
            events.last(),
            Some(&BuildEvent::Progress { done: 4, total: 5 })
        );
        let events = translator.translate(StatusResponse {
            vertexes: vec![done("sha256:5", "[3/3] RUN test")],
            ..StatusResponse::default()
        });
        assert_eq!(
            events.last(),
            Some(&BuildEvent::Progress { done: 5, total: 5 })
        );
        let events = translator.translate(StatusResponse {
            vertexes: vec![done("sha256:e", "exporting to image")],
            ..StatusResponse::default()
        });
        assert!(
            !events
                .iter()
                .any(|e| matches!(e, BuildEvent::Progress { .. })),
            "exporting is no Dockerfile step: {events:?}"
        );
    }

    #[test]
    fn a_failed_vertex_says_why() {
        let mut translator = BuildkitTranslator::default();
        let events = translator.translate(StatusResponse {
            vertexes: vec![Vertex {
                error: "exit code: 1".into(),
                ..vertex("sha256:c", "[1/1] RUN false")
            }],
            ..StatusResponse::default()
        });
        assert_eq!(
            lines(&events),
            ["#1 [1/1] RUN false", "#1 ERROR: exit code: 1"]
        );
    }

    #[test]
    fn legacy_lines_keep_their_text() {
        let events = legacy_line_events("Step 2/5 : RUN make".into());
        assert_eq!(lines(&events), ["Step 2/5 : RUN make"]);
        assert!(events.contains(&BuildEvent::Progress { done: 2, total: 5 }));
        let events = legacy_line_events(" ---> Running in 1e39f6454ba1".into());
        assert_eq!(events[1], BuildEvent::StepContainer("1e39f6454ba1".into()));
        assert_eq!(lines(&events), [" ---> Running in 1e39f6454ba1"]);
        assert_eq!(legacy_line_events(" ---> 9b96ae2a7a6d".into()).len(), 1);
    }
}
