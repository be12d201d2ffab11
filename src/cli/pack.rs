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
    /// Where `-f`'s Dockerfile is inside the archive, when one was named.
    pub dockerfile: Option<String>,
}

/// The name a Dockerfile from outside the context gets inside it (a context
/// file of that name gives way to it).
const OUTSIDE_DOCKERFILE: &str = ".dockpub.Dockerfile";

/// `path` as a Dockerfile or a context directory. `file` (`-f`) is the
/// Dockerfile of a directory, inside it or anywhere else, as with docker;
/// `dockerfile` (`--dockerfile`) its path inside the directory. `buildkit` says
/// whether the build asks for BuildKit (the server's default unless
/// `--no-buildkit`), which picks the ignore file.
pub async fn pack(
    path: &Path,
    file: Option<&Path>,
    dockerfile: Option<&str>,
    buildkit: bool,
) -> Result<Packed, CliError> {
    let missing =
        |path: &Path| CliError::Usage(format!("{}: no such file or directory", path.display()));
    if !path.exists() {
        return Err(missing(path));
    }
    if let Some(file) = file.filter(|file| !file.is_file()) {
        return Err(if file.exists() {
            CliError::Usage(format!("-f {}: not a file", file.display()))
        } else {
            missing(file)
        });
    }
    if path.is_file() {
        if file.is_some() {
            return Err(CliError::Usage(format!(
                "with -f, PATH is the context directory, and {} is a file",
                path.display()
            )));
        }
        return Ok(Packed::Dockerfile(tokio::fs::read(path).await?));
    }
    let dir = path.to_path_buf();
    let placed = match file {
        Some(file) => match inside(&dir, file)? {
            Some(relative) => Placed::Inside(relative),
            None => Placed::Outside(file.to_path_buf()),
        },
        None => {
            let name = dockerfile.unwrap_or("Dockerfile");
            Placed::Inside(clean_path(Path::new(name)).unwrap_or_else(|_| name.to_string()))
        }
    };
    let named = (file.is_some()).then(|| placed.name().to_string());
    let archive = tokio::task::spawn_blocking(move || pack_dir(&dir, &placed, buildkit))
        .await
        .map_err(|err| CliError::Pack(err.to_string()))??;
    Ok(Packed::Context(Archive {
        dockerfile: named,
        ..archive
    }))
}

/// Where the Dockerfile comes from: a path inside the context, or a file
/// outside it that is added under [`OUTSIDE_DOCKERFILE`].
enum Placed {
    Inside(String),
    Outside(PathBuf),
}

impl Placed {
    /// The Dockerfile's name inside the archive.
    fn name(&self) -> &str {
        match self {
            Placed::Inside(name) => name,
            Placed::Outside(_) => OUTSIDE_DOCKERFILE,
        }
    }
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

/// The rules of the ignore file at `path`, if there is one; `name` is how an
/// error calls it.
fn read_rules(path: &Path, name: &str) -> Result<Option<IgnoreRules>, CliError> {
    match std::fs::read_to_string(path) {
        Ok(text) => IgnoreRules::parse(&text)
            .map(Some)
            .map_err(|err| CliError::Pack(err.in_file(name).to_string())),
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(err) => Err(err.into()),
    }
}

/// The Dockerfile's own ignore file (BuildKit's rule), where it lies on disk.
fn own_ignore_path(dir: &Path, placed: &Placed) -> PathBuf {
    match placed {
        Placed::Inside(name) => dir.join(dockerfile_ignore_name(name)),
        Placed::Outside(file) => PathBuf::from(dockerfile_ignore_name(&file.to_string_lossy())),
    }
}

fn pack_dir(dir: &Path, placed: &Placed, buildkit: bool) -> Result<Archive, CliError> {
    let dockerfile = placed.name();
    let own_ignore = dockerfile_ignore_name(dockerfile);
    let own_path = own_ignore_path(dir, placed);
    let own_rules = match buildkit {
        true => read_rules(&own_path, &own_ignore)?,
        false => None,
    };
    let own_outside = matches!(placed, Placed::Outside(_)) && own_rules.is_some();
    let rules = match own_rules {
        Some(rules) => rules,
        None => read_rules(&dir.join(".dockerignore"), ".dockerignore")?
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
        let replaced = matches!(placed, Placed::Outside(_))
            && (name == OUTSIDE_DOCKERFILE || (own_outside && name == own_ignore));
        if replaced {
            continue;
        }
        if always.contains(&name.as_str()) || !rules.excludes(&name) {
            tar.append_path_with_name(dir.join(&relative), &name)?;
        }
    }
    if let Placed::Outside(outside) = placed {
        tar.append_path_with_name(outside, OUTSIDE_DOCKERFILE)?;
        if own_outside {
            tar.append_path_with_name(&own_path, &own_ignore)?;
        }
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
        dockerfile: None,
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
