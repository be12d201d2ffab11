//! Building an image from a Dockerfile with the daemon's builder.

use bollard::models::BuildInfo;
use bollard::query_parameters::BuildImageOptionsBuilder;
use futures_util::StreamExt;

use super::{Builder, DockerError};

pub struct BuildSpec<'a> {
    pub dockerfile: &'a str,
    /// `repository:tag` the image is tagged with when it is built.
    pub reference: &'a str,
}

impl Builder {
    /// Builds the image, handing every output line to `on_line` as it arrives.
    /// Returns the image id.
    pub async fn build<F>(&self, spec: BuildSpec<'_>, mut on_line: F) -> Result<String, DockerError>
    where
        F: FnMut(String) + Send,
    {
        let docker = self.client().await?;
        let mut options = BuildImageOptionsBuilder::default()
            .dockerfile("Dockerfile")
            .t(spec.reference)
            .rm(true)
            // Intermediate containers of a failed step are removed too: nothing left behind.
            .forcerm(true);
        if let Some(network) = &self.config.build_network {
            options = options.networkmode(network);
        }
        let context = dockerfile_context(spec.dockerfile)?;
        let mut stream = docker.build_image(
            options.build(),
            None,
            Some(bollard::body_full(context.into())),
        );

        let mut lines = LineSplitter::default();
        let mut image_id = None;
        while let Some(item) = stream.next().await {
            let info = match item {
                Ok(info) => info,
                Err(bollard::errors::Error::DockerStreamError { error }) => {
                    lines.finish().into_iter().for_each(&mut on_line);
                    on_line(error.trim_end().to_string());
                    return Err(DockerError::BuildFailed(error.trim().to_string()));
                }
                Err(err) => return Err(err.into()),
            };
            if let Some(id) = info.aux.as_ref().and_then(|aux| aux.id.clone()) {
                image_id = Some(id);
            }
            lines.push(&info).into_iter().for_each(&mut on_line);
        }
        lines.finish().into_iter().for_each(&mut on_line);
        image_id.ok_or(DockerError::NoImageId)
    }
}

/// The build context: a tar archive holding only the Dockerfile.
fn dockerfile_context(dockerfile: &str) -> Result<Vec<u8>, DockerError> {
    let mut archive = tar::Builder::new(Vec::new());
    let mut header = tar::Header::new_gnu();
    header.set_size(dockerfile.len() as u64);
    header.set_mode(0o644);
    header.set_cksum();
    let io_error = |err: std::io::Error| {
        DockerError::BuildFailed(format!("cannot pack the Dockerfile: {err}"))
    };
    archive
        .append_data(&mut header, "Dockerfile", dockerfile.as_bytes())
        .map_err(io_error)?;
    archive.into_inner().map_err(io_error)
}

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
    fn the_context_holds_the_dockerfile() {
        let tar = dockerfile_context("FROM scratch\n").unwrap();
        let mut archive = tar::Archive::new(tar.as_slice());
        let entries: Vec<_> = archive
            .entries()
            .unwrap()
            .map(|e| e.unwrap().path().unwrap().display().to_string())
            .collect();
        assert_eq!(entries, vec!["Dockerfile"]);
    }
}
