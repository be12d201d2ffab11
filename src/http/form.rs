//! Reading a multipart/form-data body into named fields, within size limits,
//! before anything is validated or stored.

use std::collections::HashMap;

use actix_multipart::Multipart;
use actix_web::http::header::{CONTENT_LENGTH, CONTENT_TYPE};
use actix_web::{web, HttpRequest};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::Poll;
use std::time::Duration;

use actix_web::error::PayloadError;
use bytes::Bytes;
use futures_util::{Stream, StreamExt};

use super::error::ApiError;

/// How often a wait on the multipart parser checks whether the body has ended.
const STALL_CHECK: Duration = Duration::from_millis(200);

/// The longest value a text field (repository, tag, credentials…) may have.
const MAX_TEXT_FIELD_BYTES: usize = 8 * 1024;

#[derive(Debug, Clone, Copy)]
pub struct UploadLimits {
    pub max_upload_bytes: usize,
    pub max_dockerfile_bytes: usize,
}

/// The fields of one form, by name, each value in the order sent.
#[derive(Debug, Default)]
pub struct Form {
    fields: HashMap<String, Vec<Vec<u8>>>,
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

/// Reads the whole form. Any field named in `file_fields` may hold up to the
/// Dockerfile limit (one byte more is kept so validation can say it is too large);
/// every other field is text.
pub async fn read_form(
    req: &HttpRequest,
    payload: web::Payload,
    limits: UploadLimits,
    file_fields: &[&str],
) -> Result<Form, ApiError> {
    if let Some(content_type) = non_multipart_content_type(req) {
        return Err(ApiError::NotMultipart(content_type));
    }
    let too_large = ApiError::TooLarge {
        limit: limits.max_upload_bytes,
    };
    if declared_length(req).is_some_and(|length| length > limits.max_upload_bytes) {
        return Err(too_large);
    }
    let ended = Arc::new(AtomicBool::new(false));
    let mut multipart = Multipart::new(req.headers(), mark_end(payload, ended.clone()));
    let mut form = Form::default();
    let mut total = 0usize;
    while let Some(field) = next_unless_stalled(&mut multipart, &ended).await? {
        let mut field = field.map_err(|err| ApiError::BadMultipart(err.to_string()))?;
        let name = field.name().unwrap_or_default().to_string();
        let keep = if file_fields.contains(&name.as_str()) {
            limits.max_dockerfile_bytes + 1
        } else {
            MAX_TEXT_FIELD_BYTES + 1
        };
        let mut value = Vec::new();
        while let Some(chunk) = next_unless_stalled(&mut field, &ended).await? {
            let chunk = chunk.map_err(|err| ApiError::BadMultipart(err.to_string()))?;
            total += chunk.len();
            if total > limits.max_upload_bytes {
                return Err(too_large);
            }
            // Past the field's limit the rest is read but not kept: the answer is a
            // clear 400, not a connection cut mid-upload.
            let room = keep.saturating_sub(value.len());
            value.extend_from_slice(&chunk[..chunk.len().min(room)]);
        }
        if value.len() > MAX_TEXT_FIELD_BYTES && !file_fields.contains(&name.as_str()) {
            return Err(ApiError::invalid_field(
                &name,
                format!("longer than {MAX_TEXT_FIELD_BYTES} bytes"),
            ));
        }
        form.add(name, value);
    }
    Ok(form)
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

/// The stream's next item, or a 400 when the body has ended but the multipart
/// parser still waits for more: a body cut off right after a boundary line
/// would otherwise hold the request open forever.
async fn next_unless_stalled<S: Stream + Unpin>(
    stream: &mut S,
    ended: &AtomicBool,
) -> Result<Option<S::Item>, ApiError> {
    loop {
        match tokio::time::timeout(STALL_CHECK, stream.next()).await {
            Ok(item) => return Ok(item),
            Err(_) if ended.load(Ordering::Acquire) => {
                return Err(ApiError::BadMultipart(
                    "the body ended before the closing boundary".into(),
                ))
            }
            Err(_) => continue,
        }
    }
}

fn declared_length(req: &HttpRequest) -> Option<usize> {
    req.headers()
        .get(CONTENT_LENGTH)?
        .to_str()
        .ok()?
        .parse()
        .ok()
}

impl Form {
    fn add(&mut self, name: String, value: Vec<u8>) {
        if !self.fields.contains_key(&name) {
            self.order.push(name.clone());
        }
        self.fields.entry(name).or_default().push(value);
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
            .find(|name| self.fields.contains_key(name))
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
