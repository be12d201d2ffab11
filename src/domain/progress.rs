//! How far a running build has come: the Dockerfile step while building, layers
//! and bytes while pushing (per platform for a build of several), and the push
//! messages the daemon reports them in.

use serde::Serialize;

/// Live progress of a running build; held in memory, never stored.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct Progress {
    /// The whole build's counts; for several platforms, the sums of theirs.
    #[serde(flatten)]
    pub counts: ProgressCounts,
    /// For a build of several platforms: each platform's own progress, in the
    /// request's order. Empty for a build of one platform.
    pub platforms: Vec<PlatformProgress>,
}

/// How far a build, or one platform of it, has come.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct ProgressCounts {
    /// The Dockerfile step: the steps done (BuildKit) or the one running (legacy).
    pub step: Option<u32>,
    /// The steps known so far.
    pub steps: Option<u32>,
    /// Layers the registry has (pushed, mounted or already there).
    pub layers_done: Option<u32>,
    /// Layers the push prepares.
    pub layers_total: Option<u32>,
    /// Bytes of the layers sent so far.
    pub bytes_done: Option<u64>,
    /// Bytes of the layers in flight, as the daemon reports their sizes.
    pub bytes_total: Option<u64>,
}

/// One platform of a build of several, as it goes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct PlatformProgress {
    /// `os/arch[/variant]`, as the request wrote it.
    pub platform: String,
    /// Where it is now.
    pub phase: PlatformPhase,
    /// The builder it runs or ran on; null until it has a slot.
    pub builder: Option<String>,
    /// Its own steps, layers and bytes.
    #[serde(flatten)]
    pub counts: ProgressCounts,
}

/// Where one platform of a build of several is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum PlatformPhase {
    /// No slot on a builder offering it is free yet.
    WaitingForSlot,
    /// On its builder, building its image.
    Building,
    /// Pushed by digest (the index comes once every platform is done).
    Pushing,
    /// Built, pushed, and its manifest confirmed by the registry.
    Done,
    /// It failed: the build fails, and its `error` says why.
    Failed,
    /// Stopped unfinished: another platform failed, or the build was cancelled
    /// or lost its builder.
    Stopped,
}

impl PlatformPhase {
    /// Still under way: not done, failed or stopped.
    pub fn is_under_way(self) -> bool {
        matches!(self, Self::WaitingForSlot | Self::Building | Self::Pushing)
    }
}

impl Progress {
    /// A build of several platforms: theirs, and the sums of their counts.
    pub fn of_platforms(platforms: Vec<PlatformProgress>) -> Progress {
        let mut counts = ProgressCounts::default();
        for platform in &platforms {
            counts.add(&platform.counts);
        }
        Progress { counts, platforms }
    }
}

impl ProgressCounts {
    /// Adds `other`'s counts; a count neither knows stays unknown.
    fn add(&mut self, other: &ProgressCounts) {
        fn sum<T: std::ops::Add<Output = T> + Copy>(into: &mut Option<T>, more: Option<T>) {
            *into = match (*into, more) {
                (Some(a), Some(b)) => Some(a + b),
                (a, b) => a.or(b),
            };
        }
        sum(&mut self.step, other.step);
        sum(&mut self.steps, other.steps);
        sum(&mut self.layers_done, other.layers_done);
        sum(&mut self.layers_total, other.layers_total);
        sum(&mut self.bytes_done, other.bytes_done);
        sum(&mut self.bytes_total, other.bytes_total);
    }
}

/// One message of a push's progress stream.
#[derive(Debug, Clone)]
pub struct PushUpdate {
    /// The daemon's message, e.g. `Pushing`, `Pushed` or `Layer already exists`.
    pub status: String,
    /// Bytes of the layer sent so far, when the message counts them.
    pub current: Option<i64>,
    /// The layer's size on disk, when the message counts bytes.
    pub total: Option<i64>,
}

impl PushUpdate {
    /// The message as a log line. The daemon's total is the layer's size on
    /// disk and its current counts the compressed bytes sent, so for a small
    /// layer current can pass total: then only what was sent is shown.
    pub fn line(&self) -> String {
        match (self.current, self.total) {
            (Some(current), Some(total)) if current <= total && total > 0 => {
                format!("{} {current}/{total} bytes", self.status)
            }
            (Some(current), _) => format!("{} {current} bytes sent", self.status),
            _ => self.status.clone(),
        }
    }
}

/// How far one tag's push has come, for the record: the daemon writes the
/// tag's manifest only once every layer it announced is in the registry, so
/// from then on the registry may serve the pushed image under the tag, even
/// if the push is then cut, cancelled or never confirmed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PushPhase {
    layers: u32,
    layers_done: u32,
    /// The daemon reported the manifest written (`TAG: digest: … size: N`).
    manifest_written: bool,
}

impl PushPhase {
    /// Counts one message of the push.
    pub fn note(&mut self, update: &PushUpdate) {
        let status = update.status.as_str();
        if status.starts_with("The push refers to repository") {
            // A push started again (after a stall) counts its layers anew.
            self.layers = 0;
            self.layers_done = 0;
        } else if status == "Preparing" {
            self.layers += 1;
        } else if status == "Pushed"
            || status == "Layer already exists"
            || status.starts_with("Mounted from")
        {
            self.layers_done += 1;
        } else if status.contains("digest: sha256:") {
            self.manifest_written = true;
        }
    }

    /// An image index sent with the registry's own API: from then on it may
    /// have reached the registry.
    pub fn index_sent() -> PushPhase {
        PushPhase {
            manifest_written: true,
            ..PushPhase::default()
        }
    }

    /// The manifest may have reached the registry.
    pub fn may_have_landed(&self) -> bool {
        self.manifest_written || (self.layers > 0 && self.layers_done >= self.layers)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_push_may_have_landed_once_every_layer_is_in() {
        let update = |status: &str| PushUpdate {
            status: status.into(),
            current: None,
            total: None,
        };
        let mut phase = PushPhase::default();
        assert!(!phase.may_have_landed());
        for status in ["Preparing", "Preparing", "Waiting", "Pushed"] {
            phase.note(&update(status));
        }
        assert!(!phase.may_have_landed(), "one layer is still out");
        phase.note(&update("Layer already exists"));
        assert!(phase.may_have_landed());
        // Pushed once more after a stall: its own layers count.
        for status in [
            "The push refers to repository [r]",
            "Preparing",
            "Preparing",
            "Pushed",
        ] {
            phase.note(&update(status));
        }
        assert!(
            !phase.may_have_landed(),
            "one layer of the new push is still out"
        );
        phase.note(&update("Pushed"));
        assert!(phase.may_have_landed());
        let mut written = PushPhase::default();
        written.note(&update(
            "t: digest: sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef size: 527",
        ));
        assert!(written.may_have_landed());
    }

    #[test]
    fn a_build_of_several_platforms_counts_the_sums_of_theirs() {
        let platform = |name: &str, step, layers_done| PlatformProgress {
            platform: name.into(),
            phase: PlatformPhase::Building,
            builder: Some("local".into()),
            counts: ProgressCounts {
                step: Some(step),
                steps: Some(3),
                layers_done,
                ..ProgressCounts::default()
            },
        };
        let progress = Progress::of_platforms(vec![
            platform("linux/amd64", 3, Some(2)),
            platform("linux/arm64", 1, None),
        ]);
        let counts = &progress.counts;
        assert_eq!((counts.step, counts.steps), (Some(4), Some(6)));
        assert_eq!((counts.layers_done, counts.bytes_total), (Some(2), None));
        let json = serde_json::to_value(&progress).unwrap();
        assert_eq!(json["step"], 4, "the counts are the object's own fields");
        assert_eq!(json["platforms"][1]["phase"], "building");
        assert_eq!(json["platforms"][1]["step"], 1);
    }

    #[test]
    fn push_lines_never_show_more_sent_than_the_total() {
        let update = |current, total| PushUpdate {
            status: "Pushing".into(),
            current,
            total,
        };
        assert_eq!(
            update(Some(512), Some(2048)).line(),
            "Pushing 512/2048 bytes"
        );
        assert_eq!(update(Some(512), Some(9)).line(), "Pushing 512 bytes sent");
        assert_eq!(update(None, None).line(), "Pushing");
    }
}
