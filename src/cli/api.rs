//! The HTTP calls the CLI makes.

use reqwest::multipart::{Form, Part};
use reqwest::{Client, RequestBuilder, Response};
use serde_json::Value;

use super::options::LoginArgs;
use super::pack::{self, Packed};
use super::{CliError, SubmitArgs};
use crate::domain::is_plain_name;

pub struct ApiClient {
    http: Client,
    base: String,
    token: Option<String>,
}

impl ApiClient {
    pub fn new(base: &str, token: Option<String>) -> Self {
        ApiClient {
            http: Client::new(),
            base: base.trim_end_matches('/').to_string(),
            token,
        }
    }

    fn request(&self, method: reqwest::Method, path: &str) -> RequestBuilder {
        let request = self.http.request(method, format!("{}{path}", self.base));
        match &self.token {
            Some(token) => request.bearer_auth(token),
            None => request,
        }
    }

    pub async fn get(&self, path: &str) -> Result<Response, CliError> {
        checked(self.request(reqwest::Method::GET, path).send().await?).await
    }

    pub async fn list(&self) -> Result<Value, CliError> {
        Ok(self.get("/api/v1/builds").await?.json().await?)
    }

    pub async fn build(&self, id: i64) -> Result<Value, CliError> {
        Ok(self
            .get(&format!("/api/v1/builds/{id}"))
            .await?
            .json()
            .await?)
    }

    pub async fn logs(&self, id: i64) -> Result<String, CliError> {
        Ok(self
            .get(&format!("/api/v1/builds/{id}/logs"))
            .await?
            .text()
            .await?)
    }

    pub async fn cancel(&self, id: i64) -> Result<Value, CliError> {
        let response = self
            .request(
                reqwest::Method::POST,
                &format!("/api/v1/builds/{id}/cancel"),
            )
            .send()
            .await?;
        Ok(checked(response).await?.json().await?)
    }

    pub async fn retry(&self, id: i64, login: &LoginArgs) -> Result<Value, CliError> {
        let mut request =
            self.request(reqwest::Method::POST, &format!("/api/v1/builds/{id}/retry"));
        if login.username.is_some() {
            request = request.multipart(login.add_to(Form::new())?);
        }
        let response = request.send().await?;
        Ok(checked(response).await?.json().await?)
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
        let response = self
            .request(reqwest::Method::POST, &path)
            .json(&body)
            .send()
            .await?;
        Ok(checked(response).await?.json().await?)
    }

    pub async fn delete(&self, id: i64, force: bool) -> Result<(), CliError> {
        let path = format!("/api/v1/builds/{id}?force={force}");
        checked(self.request(reqwest::Method::DELETE, &path).send().await?).await?;
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
        // The server fetches a git context itself: nothing local is packed.
        let packed = match submit.git.git {
            Some(_) => None,
            None => Some(
                pack::pack(
                    &submit.path,
                    submit.options.dockerfile.as_deref(),
                    !submit.no_buildkit,
                )
                .await?,
            ),
        };
        form = match &packed {
            None => submit.git.add_to(form),
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
                form.part("context", archive.upload_part(show_progress).await?)
            }
        };
        let response = self
            .request(reqwest::Method::POST, "/api/v1/builds")
            .multipart(form)
            .send()
            .await?;
        Ok(checked(response).await?.json().await?)
    }
}

/// The response when it is a success; the server's own error message otherwise.
async fn checked(response: Response) -> Result<Response, CliError> {
    let status = response.status();
    if status.is_success() {
        return Ok(response);
    }
    let body = response.text().await.unwrap_or_default();
    let message = serde_json::from_str::<Value>(&body)
        .ok()
        .and_then(|json| json["error"]["message"].as_str().map(str::to_string))
        .unwrap_or(body);
    Err(CliError::Api {
        status: status.as_u16(),
        message,
    })
}
