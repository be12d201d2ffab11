//! Packing what `dockpub submit` sends: a Dockerfile as it is, or a directory as a
//! gzipped tar written to a temporary file (never held in memory), leaving out what
//! its `.dockerignore` excludes, as the docker CLI does.

use std::io::BufWriter;
use std::path::{Path, PathBuf};

use flate2::write::GzEncoder;
use futures_util::StreamExt;
use indicatif::{ProgressBar, ProgressStyle};
use reqwest::multipart::Part;
use reqwest::Body;
use tempfile::NamedTempFile;
use tokio_util::io::ReaderStream;

use super::CliError;
use crate::builds::context::IgnoreRules;

pub enum Packed {
    Dockerfile(Vec<u8>),
    Context(Archive),
}

pub struct Archive {
    file: NamedTempFile,
    bytes: u64,
    /// Where `-f`'s Dockerfile is inside the archive, when one was named.
    pub dockerfile: Option<String>,
}

/// The name a Dockerfile from outside the context gets inside it (a context
/// file of that name gives way to it).
const OUTSIDE_DOCKERFILE: &str = ".dockpub.Dockerfile";

/// `path` as a Dockerfile or a context directory; `dockerfile` (`-f`) is the
/// Dockerfile of a directory, inside it or anywhere else, as with docker.
pub async fn pack(path: &Path, dockerfile: Option<&Path>) -> Result<Packed, CliError> {
    let missing =
        |path: &Path| CliError::Usage(format!("{}: no such file or directory", path.display()));
    if !path.exists() {
        return Err(missing(path));
    }
    if let Some(file) = dockerfile.filter(|file| !file.is_file()) {
        return Err(if file.exists() {
            CliError::Usage(format!("-f {}: not a file", file.display()))
        } else {
            missing(file)
        });
    }
    if path.is_file() {
        if dockerfile.is_some() {
            return Err(CliError::Usage(format!(
                "with -f, PATH is the context directory, and {} is a file",
                path.display()
            )));
        }
        return Ok(Packed::Dockerfile(tokio::fs::read(path).await?));
    }
    let dir = path.to_path_buf();
    let dockerfile = dockerfile.map(Path::to_path_buf);
    let archive = tokio::task::spawn_blocking(move || pack_dir(&dir, dockerfile.as_deref()))
        .await
        .map_err(|err| CliError::Pack(err.to_string()))??;
    Ok(Packed::Context(archive))
}

/// `dockerfile`'s path inside `dir` (with `/`), or None when it lies outside.
fn inside(dir: &Path, dockerfile: &Path) -> Result<Option<String>, CliError> {
    let dir = dir.canonicalize()?;
    let file = dockerfile.canonicalize()?;
    Ok(file
        .strip_prefix(&dir)
        .ok()
        .map(|relative| relative.to_string_lossy().replace('\\', "/")))
}

fn pack_dir(dir: &Path, dockerfile: Option<&Path>) -> Result<Archive, CliError> {
    let rules = match std::fs::read_to_string(dir.join(".dockerignore")) {
        Ok(text) => IgnoreRules::parse(&text).map_err(|err| CliError::Pack(err.to_string()))?,
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => {
            IgnoreRules::parse("").expect("no rules parse")
        }
        Err(err) => return Err(err.into()),
    };
    let file = NamedTempFile::new()?;
    let gzip = GzEncoder::new(BufWriter::new(file.reopen()?), flate2::Compression::fast());
    let mut tar = tar::Builder::new(gzip);
    tar.follow_symlinks(false);
    let (named, outside) = match dockerfile {
        None => (None, None),
        Some(file) => match inside(dir, file)? {
            Some(relative) => (Some(relative), None),
            None => (Some(OUTSIDE_DOCKERFILE.to_string()), Some(file)),
        },
    };
    let dockerfile_name = named.as_deref().unwrap_or("Dockerfile");
    for relative in files_in(dir)? {
        let name = relative.to_string_lossy().replace('\\', "/");
        if outside.is_some() && name == OUTSIDE_DOCKERFILE {
            continue;
        }
        // Like the docker CLI: the Dockerfile and .dockerignore always go; the daemon drops them if listed.
        let always = name == dockerfile_name || name == ".dockerignore";
        if always || !rules.excludes(&name) {
            tar.append_path_with_name(dir.join(&relative), &name)?;
        }
    }
    if let Some(file) = outside {
        tar.append_path_with_name(file, OUTSIDE_DOCKERFILE)?;
    }
    tar.into_inner()?
        .finish()?
        .into_inner()
        .map_err(|err| err.into_error())?
        .sync_all()?;
    let bytes = file.as_file().metadata()?.len();
    Ok(Archive {
        file,
        bytes,
        dockerfile: named,
    })
}

/// Every file and link below `dir`, relative to it, in a stable order.
fn files_in(dir: &Path) -> Result<Vec<PathBuf>, CliError> {
    let mut found = Vec::new();
    let mut pending = vec![PathBuf::new()];
    while let Some(relative) = pending.pop() {
        let mut entries: Vec<_> =
            std::fs::read_dir(dir.join(&relative))?.collect::<Result<_, _>>()?;
        entries.sort_by_key(|entry| entry.file_name());
        for entry in entries {
            let path = relative.join(entry.file_name());
            if entry.file_type()?.is_dir() {
                pending.push(path);
            } else {
                found.push(path);
            }
        }
    }
    found.sort();
    Ok(found)
}

impl Archive {
    /// The archive as a streamed form part, with an upload progress bar when asked.
    pub async fn upload_part(&self, show_progress: bool) -> Result<Part, CliError> {
        let file = tokio::fs::File::open(self.file.path()).await?;
        let bar = if show_progress {
            let bar = ProgressBar::new(self.bytes);
            bar.set_style(
                ProgressStyle::with_template(
                    "upload {bar:30} {bytes}/{total_bytes} {bytes_per_sec}",
                )
                .expect("a valid template"),
            );
            bar
        } else {
            ProgressBar::hidden()
        };
        let chunks = ReaderStream::new(file).inspect(move |chunk| {
            if let Ok(chunk) = chunk {
                bar.inc(chunk.len() as u64);
                if bar.position() >= bar.length().unwrap_or(0) {
                    bar.finish();
                }
            }
        });
        Ok(
            Part::stream_with_length(Body::wrap_stream(chunks), self.bytes)
                .file_name("context.tar.gz"),
        )
    }
}
