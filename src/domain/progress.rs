//! How far a running build has come: the Dockerfile step while building, layers
//! and bytes while pushing, and the push messages the daemon reports them in.

use serde::Serialize;

/// Live progress of a running build; held in memory, never stored.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct Progress {
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

#[cfg(test)]
mod tests {
    use super::*;

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
