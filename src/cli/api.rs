//! The HTTP calls the CLI makes.

use reqwest::multipart::{Form, Part};
use reqwest::{Client, RequestBuilder, Response};
use serde_json::Value;

use super::options::{ListArgs, LogRangeArgs, RetryArgs};
use super::pack::{self, Packed};
use super::{CliError, SubmitArgs};
use crate::domain::is_plain_name;

pub struct ApiClient {
    http: Client,
    base: String,
    token: Option<String>,
}

impl ApiClient {
    /// A client of the server at `base`, which must be an http:// or https:// URL.
    pub fn new(base: &str, token: Option<String>) -> Result<Self, CliError> {
        check_server_url(base)?;
        Ok(ApiClient {
            http: Client::new(),
            base: base.trim_end_matches('/').to_string(),
            token,
        })
    }

    fn request(&self, method: reqwest::Method, path: &str) -> RequestBuilder {
        let request = self.http.request(method, format!("{}{path}", self.base));
        match &self.token {
            Some(token) => request.bearer_auth(token),
            None => request,
        }
    }

    pub async fn get(&self, path: &str) -> Result<Response, CliError> {
        checked(send(self.request(reqwest::Method::GET, path)).await?).await
    }

    pub async fn get_json(&self, path: &str) -> Result<Value, CliError> {
        Ok(self.get(path).await?.json().await?)
    }

    async fn post_json(&self, path: &str) -> Result<Value, CliError> {
        let response = send(self.request(reqwest::Method::POST, path)).await?;
        Ok(checked(response).await?.json().await?)
    }

    pub async fn list(&self, filter: &ListArgs) -> Result<Value, CliError> {
        let request = self
            .request(reqwest::Method::GET, "/api/v1/builds")
            .query(&filter.query());
        Ok(checked(send(request).await?).await?.json().await?)
    }

    /// The build's event stream, resuming after log line `after`.
    pub async fn events(&self, id: i64, after: u64) -> Result<Response, CliError> {
        let request = self
            .request(reqwest::Method::GET, &format!("/api/v1/builds/{id}/events"))
            .header("Last-Event-ID", after.to_string());
        checked(send(request).await?).await
    }

    pub async fn redeliver(&self, delivery: i64) -> Result<Value, CliError> {
        self.post_json(&format!("/api/v1/deliveries/{delivery}/redeliver"))
            .await
    }

    pub async fn build(&self, id: i64) -> Result<Value, CliError> {
        Ok(self
            .get(&format!("/api/v1/builds/{id}"))
            .await?
            .json()
            .await?)
    }

    pub async fn logs(&self, id: i64, range: &LogRangeArgs) -> Result<String, CliError> {
        let request = self
            .request(reqwest::Method::GET, &format!("/api/v1/builds/{id}/logs"))
            .query(&range.query());
        Ok(checked(send(request).await?).await?.text().await?)
    }

    pub async fn cancel(&self, id: i64) -> Result<Value, CliError> {
        self.post_json(&format!("/api/v1/builds/{id}/cancel")).await
    }

    pub async fn retry(&self, id: i64, retry: &RetryArgs) -> Result<Value, CliError> {
        let mut request =
            self.request(reqwest::Method::POST, &format!("/api/v1/builds/{id}/retry"));
        if retry.login.username.is_some() || !retry.secrets.is_empty() {
            let mut form = retry.login.add_to(Form::new())?;
            for spec in &retry.secrets {
                form = form.part("secret", super::secret::secret_part(spec)?);
            }
            request = request.multipart(form);
        }
        Ok(checked(send(request).await?).await?.json().await?)
    }

    pub async fn triggers(&self) -> Result<Value, CliError> {
        Ok(self.get("/api/v1/triggers").await?.json().await?)
    }

    /// `POST /api/v1/triggers/{name}/run` with the ref as JSON.
    pub async fn run_trigger(&self, name: &str, git_ref: &str) -> Result<Value, CliError> {
        // A trigger's name is a path segment: only what the server's names may hold.
        if !is_plain_name(name) {
            return Err(CliError::Usage(format!("'{name}' is not a trigger name")));
        }
        let path = format!("/api/v1/triggers/{name}/run");
        let body = serde_json::json!({ "ref": git_ref });
        let response = send(self.request(reqwest::Method::POST, &path).json(&body)).await?;
        Ok(checked(response).await?.json().await?)
    }

    pub async fn delete(&self, id: i64, force: bool) -> Result<(), CliError> {
        let path = format!("/api/v1/builds/{id}?force={force}");
        checked(send(self.request(reqwest::Method::DELETE, &path)).await?).await?;
        Ok(())
    }

    /// Sends a Dockerfile as `file`, or a directory packed as `context`.
    pub async fn submit(
        &self,
        submit: &SubmitArgs,
        show_progress: bool,
    ) -> Result<Value, CliError> {
        let mut form = Form::new().text("repository", submit.repository.clone());
        for tag in &submit.tags {
            form = form.text("tag", tag.clone());
        }
        if submit.no_push {
            form = form.text("push", "false");
        }
        form = submit.login.add_to(submit.options.add_to(form))?;
        if submit.no_buildkit {
            form = form.text("buildkit", "false");
        }
        for reference in &submit.cache_from {
            form = form.text("cache_from", reference.clone());
        }
        for spec in &submit.secrets {
            form = form.part("secret", super::secret::secret_part(spec)?);
        }
        for id in &submit.ssh {
            form = form.text("ssh", id.clone());
        }
        // The server fetches a git context itself: nothing local is packed.
        let packed = match submit.git.git {
            Some(_) => None,
            None => Some(
                pack::pack(
                    &submit.path,
                    submit.file.as_deref(),
                    submit.options.dockerfile.as_deref(),
                    !submit.no_buildkit,
                )
                .await?,
            ),
        };
        form = match &packed {
            None => {
                // With a repository, -f names the Dockerfile inside it, as `dockerfile` does.
                let named = submit.file.as_ref().map(|file| file.to_string_lossy());
                let form = match named {
                    Some(file) => form.text("dockerfile", file.into_owned()),
                    None => form,
                };
                submit.git.add_to(form)?
            }
            Some(Packed::Dockerfile(_)) if submit.options.dockerfile.is_some() => {
                return Err(CliError::Usage(format!(
                    "--dockerfile names the Dockerfile inside a directory, and {} is a file",
                    submit.path.display()
                )))
            }
            Some(Packed::Dockerfile(bytes)) => {
                form.part("file", Part::bytes(bytes.clone()).file_name("Dockerfile"))
            }
            Some(Packed::Context(archive)) => {
                let form = match &archive.dockerfile {
                    Some(name) => form.text("dockerfile", name.clone()),
                    None => form,
                };
                form.part("context", archive.upload_part(show_progress).await?)
            }
        };
        let request = self
            .request(reqwest::Method::POST, "/api/v1/builds")
            .multipart(form);
        Ok(checked(send(request).await?).await?.json().await?)
    }
}

/// `--server` as a URL reqwest can use, or what to write instead.
fn check_server_url(base: &str) -> Result<(), CliError> {
    let scheme = reqwest::Url::parse(base).map(|url| url.scheme().to_string());
    match scheme.as_deref() {
        Ok("http" | "https") => Ok(()),
        _ if !base.contains("://") => Err(CliError::Usage(format!(
            "--server {base}: the URL needs its scheme, e.g. http://{base}"
        ))),
        _ => Err(CliError::Usage(format!(
            "--server {base}: not an http:// or https:// URL"
        ))),
    }
}

/// The request sent; a failure to get any answer names the URL and the cause
/// (refused, no such host, TLS), not reqwest's "error sending request".
async fn send(request: RequestBuilder) -> Result<Response, CliError> {
    request.send().await.map_err(|err| {
        let url = err
            .url()
            .map(|url| url.to_string())
            .unwrap_or_else(|| "the server".into());
        let mut causes = Vec::new();
        let mut source = std::error::Error::source(&err);
        while let Some(cause) = source {
            let text = cause.to_string();
            if !causes.iter().any(|seen: &String| seen.contains(&text)) {
                causes.push(text);
            }
            source = cause.source();
        }
        let cause = if causes.is_empty() {
            err.without_url().to_string()
        } else {
            causes.join(": ")
        };
        CliError::Unreachable { url, cause }
    })
}

/// The response when it is a success; the server's own error message otherwise.
async fn checked(response: Response) -> Result<Response, CliError> {
    let status = response.status();
    if status.is_success() {
        return Ok(response);
    }
    let body = response.text().await.unwrap_or_default();
    let mut message = serde_json::from_str::<Value>(&body)
        .ok()
        .and_then(|json| json["error"]["message"].as_str().map(str::to_string))
        .unwrap_or(body);
    if status == reqwest::StatusCode::UNAUTHORIZED {
        message.push_str(" (give a token of the server's with --token or DOCKPUB_TOKEN)");
    }
    Err(CliError::Api {
        status: status.as_u16(),
        message,
    })
}
