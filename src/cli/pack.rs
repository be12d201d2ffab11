//! Packing what `dockpub submit` sends: a Dockerfile as it is, or a directory as a
//! gzipped tar written to a temporary file (never held in memory), leaving out what
//! its ignore file excludes, as the docker CLI does: for BuildKit builds the
//! Dockerfile's own `<Dockerfile>.dockerignore` when there is one, else the root
//! `.dockerignore`. The server applies the same rule again to what arrives.

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
use crate::builds::context::{clean_path, dockerfile_ignore_name, IgnoreRules};

pub enum Packed {
    Dockerfile(Vec<u8>),
    Context(Archive),
}

pub struct Archive {
    file: NamedTempFile,
    bytes: u64,
}

/// Packs `path`; `dockerfile` is the Dockerfile's path inside a directory, and
/// `buildkit` whether the build asks for BuildKit (the server's default unless
/// `--no-buildkit`), which picks the ignore file.
pub async fn pack(
    path: &Path,
    dockerfile: Option<&str>,
    buildkit: bool,
) -> Result<Packed, CliError> {
    if path.is_file() {
        return Ok(Packed::Dockerfile(tokio::fs::read(path).await?));
    }
    let dir = path.to_path_buf();
    let dockerfile = dockerfile.unwrap_or("Dockerfile");
    let dockerfile = clean_path(Path::new(dockerfile)).unwrap_or_else(|_| dockerfile.to_string());
    let archive = tokio::task::spawn_blocking(move || pack_dir(&dir, &dockerfile, buildkit))
        .await
        .map_err(|err| CliError::Pack(err.to_string()))??;
    Ok(Packed::Context(archive))
}

/// The rules of the ignore file at `name` under `dir`, if there is one.
fn read_rules(dir: &Path, name: &str) -> Result<Option<IgnoreRules>, CliError> {
    match std::fs::read_to_string(dir.join(name)) {
        Ok(text) => IgnoreRules::parse(&text)
            .map(Some)
            .map_err(|err| CliError::Pack(err.in_file(name).to_string())),
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(err) => Err(err.into()),
    }
}

fn pack_dir(dir: &Path, dockerfile: &str, buildkit: bool) -> Result<Archive, CliError> {
    let own_ignore = dockerfile_ignore_name(dockerfile);
    let own_rules = match buildkit {
        true => read_rules(dir, &own_ignore)?,
        false => None,
    };
    let rules = match own_rules {
        Some(rules) => rules,
        None => read_rules(dir, ".dockerignore")?
            .unwrap_or_else(|| IgnoreRules::parse("").expect("no rules parse")),
    };
    // Like the docker CLI: the Dockerfile and the ignore files always go; the
    // server reads them to apply the same rules, then leaves out what they list.
    let always = [dockerfile, ".dockerignore", own_ignore.as_str()];
    let file = NamedTempFile::new()?;
    let gzip = GzEncoder::new(BufWriter::new(file.reopen()?), flate2::Compression::fast());
    let mut tar = tar::Builder::new(gzip);
    tar.follow_symlinks(false);
    for relative in files_in(dir)? {
        let name = relative.to_string_lossy().replace('\\', "/");
        if always.contains(&name.as_str()) || !rules.excludes(&name) {
            tar.append_path_with_name(dir.join(&relative), &name)?;
        }
    }
    tar.into_inner()?
        .finish()?
        .into_inner()
        .map_err(|err| err.into_error())?
        .sync_all()?;
    let bytes = file.as_file().metadata()?.len();
    Ok(Archive { file, bytes })
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
