//! Reading a multipart/form-data body into named fields, within size limits,
//! before anything is validated or stored. Text and Dockerfile fields are kept in
//! memory (bounded by `max_upload_bytes`); archive fields are streamed to a
//! temporary file (bounded by `max_context_bytes`) that is removed unless kept.

use std::collections::HashMap;
use std::path::PathBuf;

use actix_multipart::{Field, Multipart};
use actix_web::http::header::{CONTENT_LENGTH, CONTENT_TYPE};
use actix_web::{web, HttpRequest};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::Poll;
use std::time::{Duration, Instant};

use actix_web::error::PayloadError;
use bytes::Bytes;
use futures_util::{Stream, StreamExt};
use tokio::io::{AsyncWriteExt, BufWriter};
use tokio::sync::Semaphore;

use super::error::ApiError;
use crate::builds::context::ContextUpload;
use crate::domain::{Credentials, Secret};

/// How often a wait on the multipart parser checks whether the body has ended.
const STALL_CHECK: Duration = Duration::from_millis(200);

/// The longest value a text field (repository, tag, credentials…) may have.
const MAX_TEXT_FIELD_BYTES: usize = 8 * 1024;
const ARCHIVE_WRITE_BUFFER: usize = 256 * 1024;

#[derive(Debug, Clone)]
pub struct UploadLimits {
    pub max_upload_bytes: usize,
    pub max_dockerfile_bytes: usize,
    pub max_context_bytes: u64,
    /// Where archive fields are written while they arrive.
    pub staging_dir: PathBuf,
    /// A body that sends nothing for this long is cut off with 408.
    pub idle_timeout: Duration,
    /// Forms being read at once; past it a request gets 503 at once.
    pub slots: Arc<Semaphore>,
    /// Parts (fields) one form may have; one more is refused with 400 at once.
    pub max_parts: usize,
}

/// Which fields are more than short text.
#[derive(Debug, Clone, Copy, Default)]
pub struct FieldKinds<'a> {
    /// Kept in memory up to the Dockerfile limit.
    pub files: &'a [&'a str],
    /// Streamed to disk up to the context limit.
    pub archives: &'a [&'a str],
}

/// The fields of one form, by name, each value in the order sent.
#[derive(Debug, Default)]
pub struct Form {
    fields: HashMap<String, Vec<Vec<u8>>>,
    /// The filename of each value of `fields`, when its part had one.
    filenames: HashMap<String, Vec<Option<String>>>,
    uploads: HashMap<String, ContextUpload>,
    order: Vec<String>,
}

/// The `Content-Type` header's value when it is not multipart/form-data.
pub fn non_multipart_content_type(req: &HttpRequest) -> Option<String> {
    let content_type = req
        .headers()
        .get(CONTENT_TYPE)
        .map(|value| String::from_utf8_lossy(value.as_bytes()).into_owned())
        .unwrap_or_default();
    let is_multipart = content_type
        .split(';')
        .next()
        .is_some_and(|mime| mime.trim().eq_ignore_ascii_case("multipart/form-data"));
    (!is_multipart).then_some(content_type)
}

/// Reads the whole form.
pub async fn read_form(
    req: &HttpRequest,
    payload: web::Payload,
    limits: &UploadLimits,
    kinds: FieldKinds<'_>,
) -> Result<Form, ApiError> {
    if let Some(content_type) = non_multipart_content_type(req) {
        return Err(ApiError::NotMultipart(content_type));
    }
    let mut body_limit = limits.max_upload_bytes as u64;
    if !kinds.archives.is_empty() {
        body_limit += limits.max_context_bytes;
    }
    if declared_length(req).is_some_and(|length| length > body_limit) {
        return Err(too_large(limits, kinds));
    }
    // Held while the body arrives: stalled clients cannot pile up without bound.
    let _slot = limits
        .slots
        .clone()
        .try_acquire_owned()
        .map_err(|_| ApiError::TooManyUploads("max_concurrent_uploads"))?;
    let ended = Arc::new(AtomicBool::new(false));
    let mut multipart = Multipart::new(req.headers(), mark_end(payload, ended.clone()));
    let watch = BodyWatch {
        ended,
        idle_timeout: limits.idle_timeout,
    };
    let mut form = Form::default();
    let mut in_memory = 0usize;
    let mut parts = 0usize;
    while let Some(field) = next_unless_stalled(&mut multipart, &watch).await? {
        parts += 1;
        if parts > limits.max_parts {
            return Err(ApiError::TooManyParts {
                limit: limits.max_parts,
            });
        }
        let mut field = field.map_err(|err| ApiError::BadMultipart(err.to_string()))?;
        let name = field.name().unwrap_or_default().to_string();
        if kinds.archives.contains(&name.as_str()) {
            if form.uploads.contains_key(&name) {
                return Err(ApiError::invalid_field(&name, "sent more than once"));
            }
            let upload = stream_to_file(&mut field, limits, &watch).await?;
            form.order.push(name.clone());
            form.uploads.insert(name, upload);
            continue;
        }
        let is_file = kinds.files.contains(&name.as_str());
        let filename = field
            .content_disposition()
            .and_then(|disposition| disposition.get_filename())
            .map(str::to_string);
        let value =
            read_in_memory(&mut field, limits, kinds, is_file, &mut in_memory, &watch).await?;
        if value.len() > MAX_TEXT_FIELD_BYTES && !is_file {
            return Err(ApiError::invalid_field(
                &name,
                format!("longer than {MAX_TEXT_FIELD_BYTES} bytes"),
            ));
        }
        form.add(name, value, filename);
    }
    Ok(form)
}

/// Where a small body (JSON, a url-encoded form) may be read: how many at once
/// and how long one may send nothing; the same watch as forms.
#[derive(Debug, Clone)]
pub struct BodyGate {
    /// Bodies being read at once; past it a request gets 503 at once.
    pub slots: Arc<Semaphore>,
    /// A body that sends nothing for this long is cut off with 408.
    pub idle_timeout: Duration,
    /// The setting that sizes `slots`, for the 503's message.
    pub slots_setting: &'static str,
}

impl UploadLimits {
    /// The uploads' own slots and idle timeout, for a small body.
    pub fn gate(&self) -> BodyGate {
        BodyGate {
            slots: self.slots.clone(),
            idle_timeout: self.idle_timeout,
            slots_setting: "max_concurrent_uploads",
        }
    }
}

/// A small body read whole into memory, at most `limit` bytes: a declared
/// length past it is refused before anything is read, a slot of the gate is
/// held while it arrives, and a body that stalls is cut off.
pub async fn read_small_body(
    req: &HttpRequest,
    mut payload: web::Payload,
    limit: usize,
    gate: &BodyGate,
) -> Result<Bytes, ApiError> {
    refuse_declared_over(req, limit)?;
    let declared = declared_length(req);
    let _slot = gate
        .slots
        .clone()
        .try_acquire_owned()
        .map_err(|_| ApiError::TooManyUploads(gate.slots_setting))?;
    let watch = BodyWatch {
        // A plain body has no parser that could wait past its end.
        ended: Arc::new(AtomicBool::new(false)),
        idle_timeout: gate.idle_timeout,
    };
    let mut body = bytes::BytesMut::with_capacity(declared.unwrap_or(0) as usize);
    while let Some(chunk) = next_unless_stalled(&mut payload, &watch).await? {
        let chunk = chunk.map_err(|err| ApiError::BadBody(err.to_string()))?;
        if body.len() + chunk.len() > limit {
            return Err(ApiError::TooLarge {
                limit,
                context_limit: None,
            });
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body.freeze())
}

/// A `413` for a body whose declared length is over `limit`, before any of it is read.
pub fn refuse_declared_over(req: &HttpRequest, limit: usize) -> Result<(), ApiError> {
    match declared_length(req).is_some_and(|length| length > limit as u64) {
        true => Err(ApiError::TooLarge {
            limit,
            context_limit: None,
        }),
        false => Ok(()),
    }
}

fn too_large(limits: &UploadLimits, kinds: FieldKinds<'_>) -> ApiError {
    ApiError::TooLarge {
        limit: limits.max_upload_bytes,
        context_limit: (!kinds.archives.is_empty()).then_some(limits.max_context_bytes),
    }
}

/// A file field (which may hold up to the Dockerfile limit, plus one byte so
/// validation can say it is too large) or a text field.
async fn read_in_memory(
    field: &mut Field,
    limits: &UploadLimits,
    kinds: FieldKinds<'_>,
    is_file: bool,
    total: &mut usize,
    watch: &BodyWatch,
) -> Result<Vec<u8>, ApiError> {
    let keep = if is_file {
        limits.max_dockerfile_bytes + 1
    } else {
        MAX_TEXT_FIELD_BYTES + 1
    };
    let mut value = Vec::new();
    while let Some(chunk) = next_unless_stalled(field, watch).await? {
        let chunk = chunk.map_err(|err| ApiError::BadMultipart(err.to_string()))?;
        *total += chunk.len();
        if *total > limits.max_upload_bytes {
            return Err(too_large(limits, kinds));
        }
        // Past the field's limit the rest is read but not kept: the answer is a
        // clear 400, not a connection cut mid-upload.
        let room = keep.saturating_sub(value.len());
        value.extend_from_slice(&chunk[..chunk.len().min(room)]);
    }
    Ok(value)
}

/// Writes an archive field to a new temporary file as it arrives. On any error the
/// file is removed (dropping the `TempPath` deletes it).
async fn stream_to_file(
    field: &mut Field,
    limits: &UploadLimits,
    watch: &BodyWatch,
) -> Result<ContextUpload, ApiError> {
    let temp = tempfile::NamedTempFile::new_in(&limits.staging_dir).map_err(ApiError::Staging)?;
    let (file, path) = temp.into_parts();
    let mut writer =
        BufWriter::with_capacity(ARCHIVE_WRITE_BUFFER, tokio::fs::File::from_std(file));
    let mut bytes = 0u64;
    while let Some(chunk) = next_unless_stalled(field, watch).await? {
        let chunk = chunk.map_err(|err| ApiError::BadMultipart(err.to_string()))?;
        bytes += chunk.len() as u64;
        if bytes > limits.max_context_bytes {
            return Err(ApiError::ContextTooLarge {
                limit: limits.max_context_bytes,
            });
        }
        writer.write_all(&chunk).await.map_err(ApiError::Staging)?;
    }
    writer.flush().await.map_err(ApiError::Staging)?;
    // Kept archives are a build's record: on disk before the build is accepted.
    writer
        .into_inner()
        .sync_all()
        .await
        .map_err(ApiError::Staging)?;
    Ok(ContextUpload { file: path })
}

/// Sets `ended` once the request body has been read to its end.
fn mark_end(
    payload: web::Payload,
    ended: Arc<AtomicBool>,
) -> impl Stream<Item = Result<Bytes, PayloadError>> {
    payload.chain(futures_util::stream::poll_fn(move |_| {
        ended.store(true, Ordering::Release);
        Poll::Ready(None)
    }))
}

/// The stream's next item; a 400 when the body has ended but the multipart
/// parser still waits for more (a body cut off right after a boundary line
/// would otherwise hold the request open forever), and a 408 when the client
/// sends nothing for the idle timeout.
async fn next_unless_stalled<S: Stream + Unpin>(
    stream: &mut S,
    watch: &BodyWatch,
) -> Result<Option<S::Item>, ApiError> {
    let waiting_since = Instant::now();
    loop {
        match tokio::time::timeout(STALL_CHECK, stream.next()).await {
            Ok(item) => return Ok(item),
            Err(_) if watch.ended.load(Ordering::Acquire) => {
                return Err(ApiError::BadMultipart(
                    "the body ended before the closing boundary".into(),
                ))
            }
            Err(_) if waiting_since.elapsed() >= watch.idle_timeout => {
                return Err(ApiError::UploadStalled {
                    secs: watch.idle_timeout.as_secs(),
                })
            }
            Err(_) => continue,
        }
    }
}

/// What a wait on the body checks: whether it has ended, and for how long it
/// may send nothing.
struct BodyWatch {
    ended: Arc<AtomicBool>,
    idle_timeout: Duration,
}

fn declared_length(req: &HttpRequest) -> Option<u64> {
    req.headers()
        .get(CONTENT_LENGTH)?
        .to_str()
        .ok()?
        .parse()
        .ok()
}

impl Form {
    fn add(&mut self, name: String, value: Vec<u8>, filename: Option<String>) {
        if !self.fields.contains_key(&name) {
            self.order.push(name.clone());
        }
        self.filenames
            .entry(name.clone())
            .or_default()
            .push(filename);
        self.fields.entry(name).or_default().push(value);
    }

    /// Every value of a repeatable field, with the filename its part had.
    pub fn named_values(&mut self, name: &str) -> Vec<(Option<String>, Vec<u8>)> {
        let values = self.fields.remove(name).unwrap_or_default();
        let filenames = self.filenames.remove(name).unwrap_or_default();
        filenames.into_iter().zip(values).collect()
    }

    /// The raw bytes of a field that may be sent at most once.
    pub fn bytes(&mut self, name: &str) -> Result<Option<Vec<u8>>, ApiError> {
        let Some(mut values) = self.fields.remove(name) else {
            return Ok(None);
        };
        if values.len() > 1 {
            return Err(ApiError::invalid_field(name, "sent more than once"));
        }
        Ok(values.pop())
    }

    /// An archive field, streamed to a temporary file.
    pub fn upload(&mut self, name: &str) -> Option<ContextUpload> {
        self.uploads.remove(name)
    }

    /// A text field that may be sent at most once.
    pub fn text(&mut self, name: &str) -> Result<Option<String>, ApiError> {
        self.bytes(name)?.map(|value| utf8(name, value)).transpose()
    }

    /// Every value of a repeatable text field.
    pub fn texts(&mut self, name: &str) -> Result<Vec<String>, ApiError> {
        let values = self.fields.remove(name).unwrap_or_default();
        values.into_iter().map(|value| utf8(name, value)).collect()
    }

    /// A yes/no field (see [`parse_flag`]).
    pub fn flag(&mut self, name: &str) -> Result<Option<bool>, ApiError> {
        self.text(name)?
            .map(|value| parse_flag(name, &value))
            .transpose()
    }

    /// Fails on the first field, in the order sent, that nobody took.
    pub fn reject_unknown(self) -> Result<(), ApiError> {
        match self
            .order
            .into_iter()
            .find(|name| self.fields.contains_key(name) || self.uploads.contains_key(name))
        {
            Some(name) => Err(ApiError::UnknownField(name)),
            None => Ok(()),
        }
    }
}

/// true, false, 1, 0, yes, no, on, off: in a form field or a query parameter.
pub fn parse_flag(name: &str, value: &str) -> Result<bool, ApiError> {
    match value.trim().to_ascii_lowercase().as_str() {
        "true" | "1" | "yes" | "on" => Ok(true),
        "false" | "0" | "no" | "off" => Ok(false),
        _ => Err(ApiError::invalid_field(
            name,
            format!("'{value}' is not true or false"),
        )),
    }
}

fn utf8(name: &str, value: Vec<u8>) -> Result<String, ApiError> {
    String::from_utf8(value).map_err(|_| ApiError::invalid_field(name, "not UTF-8 text"))
}

/// The optional registry login of a form: both fields or neither.
pub(super) fn credentials(
    username: Option<String>,
    password: Option<String>,
) -> Result<Option<Credentials>, ApiError> {
    match (username, password) {
        (None, None) => Ok(None),
        (Some(username), Some(password)) if !username.is_empty() => Ok(Some(Credentials {
            username,
            password: Secret::new(password),
        })),
        (Some(_), Some(_)) => Err(ApiError::invalid_field("username", "must not be empty")),
        (Some(_), None) => Err(ApiError::MissingField("password")),
        (None, Some(_)) => Err(ApiError::MissingField("username")),
    }
}
