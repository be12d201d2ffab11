//! The build status model. Every status change goes through [`Status::predecessors`]:
//! the store only moves a build into a status from one of the states listed there.

use serde::{Deserialize, Serialize};

use super::names::one_of;

/// A build's status; its name is the same in JSON, SQLite, metrics and messages.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Hash,
    Serialize,
    Deserialize,
    utoipa::ToSchema,
    strum::IntoStaticStr,
    strum::Display,
    strum::EnumString,
)]
#[serde(rename_all = "lowercase")]
#[strum(serialize_all = "lowercase")]
#[strum(parse_err_ty = UnknownStatus, parse_err_fn = UnknownStatus::of)]
pub enum Status {
    /// Waiting for a builder slot; the oldest queued build starts first.
    Queued,
    /// On a builder: the image is being built.
    Building,
    /// Built; the image is being pushed and its digest confirmed.
    Pushing,
    /// Built, and pushed when asked to.
    Succeeded,
    /// Ended with an error ([`Build::error`](super::Build::error) says which).
    Failed,
    /// Stopped on request before it ended.
    Cancelled,
}

impl Status {
    /// Every status, in the order a build moves through them.
    pub const ALL: [Status; 6] = [
        Status::Queued,
        Status::Building,
        Status::Pushing,
        Status::Succeeded,
        Status::Failed,
        Status::Cancelled,
    ];

    /// The status's name, as JSON, SQLite, metrics and messages write it.
    pub fn as_str(self) -> &'static str {
        self.into()
    }

    /// A final build never changes again.
    pub fn is_final(self) -> bool {
        matches!(self, Status::Succeeded | Status::Failed | Status::Cancelled)
    }

    /// Building or pushing: work is under way on a daemon.
    pub fn is_running(self) -> bool {
        matches!(self, Status::Building | Status::Pushing)
    }

    /// The states a build may be in when it moves to `self`.
    ///
    /// `queued` is reachable from the running states only through restart recovery:
    /// a build interrupted by a stop goes back to the queue and runs again.
    /// `building → succeeded` is the path of a build-only (push=false) build.
    pub fn predecessors(self) -> &'static [Status] {
        match self {
            Status::Queued => &[Status::Building, Status::Pushing],
            Status::Building => &[Status::Queued],
            Status::Pushing => &[Status::Building],
            Status::Succeeded => &[Status::Building, Status::Pushing],
            Status::Failed | Status::Cancelled => {
                &[Status::Queued, Status::Building, Status::Pushing]
            }
        }
    }

    /// Whether a build in this status may move to `next`.
    pub fn can_move_to(self, next: Status) -> bool {
        next.predecessors().contains(&self)
    }
}

/// A name that is no [`Status`], with the text that was read.
#[derive(Debug, thiserror::Error)]
#[error("unknown status '{0}' (expected one of {expected})", expected = one_of(&Status::ALL))]
pub struct UnknownStatus(pub String);

impl UnknownStatus {
    fn of(text: &str) -> Self {
        UnknownStatus(text.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::Status::*;
    use super::*;

    #[test]
    fn the_happy_paths_are_allowed() {
        assert!(Queued.can_move_to(Building));
        assert!(Building.can_move_to(Pushing));
        assert!(Pushing.can_move_to(Succeeded));
        assert!(Building.can_move_to(Succeeded), "push=false builds");
    }

    #[test]
    fn any_unfinished_build_can_fail_or_be_cancelled() {
        for from in [Queued, Building, Pushing] {
            assert!(from.can_move_to(Failed), "{from} -> failed");
            assert!(from.can_move_to(Cancelled), "{from} -> cancelled");
        }
    }

    #[test]
    fn final_states_never_move() {
        for from in [Succeeded, Failed, Cancelled] {
            for to in Status::ALL {
                assert!(!from.can_move_to(to), "{from} -> {to}");
            }
        }
    }

    #[test]
    fn no_skipping_or_going_backwards() {
        assert!(!Queued.can_move_to(Pushing));
        assert!(!Queued.can_move_to(Succeeded));
        assert!(!Pushing.can_move_to(Building));
        assert!(!Queued.can_move_to(Queued));
    }

    #[test]
    fn only_running_builds_are_requeued() {
        assert!(Building.can_move_to(Queued));
        assert!(Pushing.can_move_to(Queued));
        assert!(!Failed.can_move_to(Queued));
    }

    #[test]
    fn parses_what_it_prints() {
        for status in Status::ALL {
            assert_eq!(status.as_str().parse::<Status>().unwrap(), status);
        }
        assert_eq!(
            "done".parse::<Status>().unwrap_err().to_string(),
            "unknown status 'done' (expected one of queued, building, pushing, succeeded, failed, cancelled)"
        );
        super::super::names::assert_serde_agrees(&Status::ALL);
    }
}
