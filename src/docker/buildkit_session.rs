//! A BuildKit solve with a session of dockpub's own, for builds with secrets on a
//! daemon dockpub reaches by a plain socket. bollard's gRPC build (0.21) cannot
//! set the Dockerfile frontend's attributes, and the daemon's frontend imports
//! only the cache its `cache-from` attribute names: so this solve is made here,
//! with the same attributes the daemon's HTTP build gives its frontend.
//!
//! The session is a connection to the daemon's `POST /session`, upgraded to
//! HTTP/2, on which dockpub serves what BuildKit asks of a client: the context
//! (Upload), registry logins (Auth), the secrets (Secrets), the SSH agent of the
//! granted `[ssh.ID]` keys (SSH, in `ssh_forward`) and a health check.
//! The solve goes over another upgraded connection, to `POST /grpc`.

use std::collections::HashMap;
use std::pin::Pin;
use std::sync::Arc;

use bollard::auth::DockerCredentials;
use bollard::grpc::build::health::health_check_response::ServingStatus;
use bollard::grpc::build::health::health_server::{Health, HealthServer};
use bollard::grpc::build::health::{
    HealthCheckRequest, HealthCheckResponse, HealthListRequest, HealthListResponse,
};
use bollard::moby::buildkit::secrets::v1::secrets_server::{Secrets, SecretsServer};
use bollard::moby::buildkit::secrets::v1::{GetSecretRequest, GetSecretResponse};
use bollard::moby::buildkit::v1::control_client::ControlClient;
use bollard::moby::buildkit::v1::{CacheOptions, CacheOptionsEntry, SolveRequest};
use bollard::moby::filesync::v1::auth_server::{Auth, AuthServer};
use bollard::moby::filesync::v1::{
    CredentialsRequest, CredentialsResponse, FetchTokenRequest, FetchTokenResponse,
    GetTokenAuthorityRequest, GetTokenAuthorityResponse, VerifyTokenAuthorityRequest,
    VerifyTokenAuthorityResponse,
};
use bollard::moby::sshforward::v1::ssh_server::SshServer;
use bollard::moby::upload::v1::upload_server::{Upload, UploadServer};
use bollard::moby::upload::v1::BytesMessage;
use futures_util::Stream;
use tonic::service::Interceptor;
use tonic::transport::Server;
use tonic::{Request, Response, Status, Streaming};

use super::build_status::{grpc_channel, upgrade, DaemonSocket, Upgraded};
use super::ssh_forward::{SshForward, SSH_METHODS};
use crate::ssh_agent::AgentKey;

/// The chunks the context is sent in: far below gRPC's message limits.
const UPLOAD_CHUNK: usize = 32 * 1024;
/// The grpc methods the session serves, as the daemon is told of them.
const SESSION_METHODS: [&str; 5] = [
    "/moby.filesync.v1.Auth/Credentials",
    "/moby.filesync.v1.Auth/FetchToken",
    "/moby.upload.v1.Upload/Pull",
    "/moby.buildkit.secrets.v1.Secrets/GetSecret",
    "/grpc.health.v1.Health/Check",
];

/// What a solve needs: the request's frontend attributes and cache, and what the
/// session serves.
pub(super) struct SessionSolve {
    pub build_ref: String,
    /// The image name the `moby` exporter gives the result.
    pub reference: String,
    /// The frontend's attributes, without `context` (the session's upload).
    pub frontend_attrs: HashMap<String, String>,
    pub cache_imports: Vec<CacheOptionsEntry>,
    pub cache_exports: Vec<CacheOptionsEntry>,
    pub context: Vec<u8>,
    pub secrets: HashMap<String, Vec<u8>>,
    /// The `[ssh.ID]` keys the request was granted.
    pub ssh: Vec<AgentKey>,
    pub logins: HashMap<String, DockerCredentials>,
}

/// Runs the solve to its end; dropping the future ends the session and the
/// connection, and BuildKit stops the build.
pub(super) async fn solve(socket: DaemonSocket, request: SessionSolve) -> Result<(), String> {
    let session_id = uuid::Uuid::new_v4().simple().to_string();
    let upload_id = uuid::Uuid::new_v4().simple().to_string();
    let mut headers = vec![
        ("X-Docker-Expose-Session-Uuid", session_id.clone()),
        ("X-Docker-Expose-Session-Name", "dockpub".to_string()),
        ("X-Docker-Expose-Session-Sharedkey", String::new()),
    ];
    headers.extend(
        SESSION_METHODS
            .iter()
            .chain(&SSH_METHODS)
            .map(|method| ("X-Docker-Expose-Session-Grpc-Method", method.to_string())),
    );
    let session = upgrade(&socket, "/session", &headers)
        .await
        .map_err(|err| format!("cannot open a BuildKit session: {err}"))?;
    let services = SessionServices {
        upload_path: format!("/{upload_id}"),
        context: Arc::new(request.context),
        secrets: request.secrets,
        logins: request.logins,
    };
    let ssh = SshForward::new(&request.ssh);
    let _server = ServerTask(tokio::spawn(serve(session, services, ssh)));

    let channel = grpc_channel(socket)
        .await
        .map_err(|err| format!("cannot reach BuildKit's API: {err}"))?;
    let metadata = SessionMetadata {
        session_id: session_id.clone(),
    };
    let mut control = ControlClient::with_interceptor(channel, metadata);
    let mut frontend_attrs = request.frontend_attrs;
    frontend_attrs.insert(
        "context".into(),
        format!("http://buildkit-session/{upload_id}"),
    );
    let solve = SolveRequest {
        r#ref: request.build_ref,
        session: session_id,
        frontend: "dockerfile.v0".into(),
        frontend_attrs,
        exporter_deprecated: "moby".into(),
        exporter_attrs_deprecated: HashMap::from([
            ("type".to_string(), "docker".to_string()),
            ("name".to_string(), request.reference),
        ]),
        cache: Some(CacheOptions {
            imports: request.cache_imports,
            exports: request.cache_exports,
            ..CacheOptions::default()
        }),
        ..SolveRequest::default()
    };
    control
        .solve(solve)
        .await
        .map(drop)
        .map_err(|status| status.message().to_string())
}

/// Serves the session on its upgraded connection until it closes.
async fn serve(connection: Upgraded, services: SessionServices, ssh: SshForward) {
    let services = Arc::new(services);
    let served = Server::builder()
        .add_service(HealthServer::new(Healthy))
        .add_service(SshServer::new(ssh))
        .add_service(AuthServer::from_arc(services.clone()))
        .add_service(UploadServer::from_arc(services.clone()))
        .add_service(SecretsServer::from_arc(services))
        .serve_with_incoming(futures_util::stream::iter([Ok::<_, std::io::Error>(
            connection,
        )]))
        .await;
    if let Err(err) = served {
        log::debug!("a BuildKit session ended: {err}");
    }
}

struct ServerTask(tokio::task::JoinHandle<()>);

impl Drop for ServerTask {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// The session's id on every call to the Control API, as the docker CLI sends it.
#[derive(Clone)]
struct SessionMetadata {
    session_id: String,
}

impl Interceptor for SessionMetadata {
    fn call(&mut self, mut request: Request<()>) -> Result<Request<()>, Status> {
        let id = self
            .session_id
            .parse()
            .map_err(|_| Status::invalid_argument("session id"))?;
        request
            .metadata_mut()
            .insert("x-docker-expose-session-uuid", id);
        Ok(request)
    }
}

/// What the session serves BuildKit.
struct SessionServices {
    /// The path BuildKit asks the context for (its `urlpath` metadata).
    upload_path: String,
    context: Arc<Vec<u8>>,
    secrets: HashMap<String, Vec<u8>>,
    logins: HashMap<String, DockerCredentials>,
}

type Chunks = Pin<Box<dyn Stream<Item = Result<BytesMessage, Status>> + Send>>;

#[tonic::async_trait]
impl Upload for SessionServices {
    type PullStream = Chunks;

    async fn pull(
        &self,
        request: Request<Streaming<BytesMessage>>,
    ) -> Result<Response<Chunks>, Status> {
        let path = request
            .metadata()
            .get("urlpath")
            .and_then(|v| v.to_str().ok());
        if path != Some(self.upload_path.as_str()) {
            return Err(Status::not_found("no such upload in this session"));
        }
        let context = self.context.clone();
        let chunks = (0..context.len().div_ceil(UPLOAD_CHUNK)).map(move |index| {
            let start = index * UPLOAD_CHUNK;
            let end = (start + UPLOAD_CHUNK).min(context.len());
            Ok(BytesMessage {
                data: context[start..end].to_vec(),
            })
        });
        Ok(Response::new(Box::pin(futures_util::stream::iter(chunks))))
    }
}

#[tonic::async_trait]
impl Secrets for SessionServices {
    async fn get_secret(
        &self,
        request: Request<GetSecretRequest>,
    ) -> Result<Response<GetSecretResponse>, Status> {
        let id = &request.get_ref().id;
        match self.secrets.get(id) {
            Some(value) => Ok(Response::new(GetSecretResponse {
                data: value.clone(),
            })),
            // BuildKit skips an optional mount whose secret is not found.
            None => Err(Status::not_found(format!("secret {id} not found"))),
        }
    }
}

/// Docker Hub's logins are kept under its index's address.
const DOCKER_HUB_HOST: &str = "registry-1.docker.io";
const DOCKER_HUB_INDEX: &str = "https://index.docker.io/v1/";

#[tonic::async_trait]
impl Auth for SessionServices {
    async fn credentials(
        &self,
        request: Request<CredentialsRequest>,
    ) -> Result<Response<CredentialsResponse>, Status> {
        let host = request.get_ref().host.as_str();
        let login = self.logins.get(host).or_else(|| match host {
            DOCKER_HUB_HOST => self.logins.get(DOCKER_HUB_INDEX),
            _ => None,
        });
        // No login: an empty answer, and BuildKit pulls anonymously.
        let answer = login.map_or_else(CredentialsResponse::default, |login| CredentialsResponse {
            username: login.username.clone().unwrap_or_default(),
            secret: login.password.clone().unwrap_or_default(),
        });
        Ok(Response::new(answer))
    }

    async fn fetch_token(
        &self,
        _request: Request<FetchTokenRequest>,
    ) -> Result<Response<FetchTokenResponse>, Status> {
        Err(Status::unavailable("client-side authentication disabled"))
    }

    async fn get_token_authority(
        &self,
        _request: Request<GetTokenAuthorityRequest>,
    ) -> Result<Response<GetTokenAuthorityResponse>, Status> {
        Err(Status::unavailable("client-side authentication disabled"))
    }

    async fn verify_token_authority(
        &self,
        _request: Request<VerifyTokenAuthorityRequest>,
    ) -> Result<Response<VerifyTokenAuthorityResponse>, Status> {
        Err(Status::unavailable("client-side authentication disabled"))
    }
}

/// The session is up as long as its connection is.
struct Healthy;

type HealthUpdates = Pin<Box<dyn Stream<Item = Result<HealthCheckResponse, Status>> + Send>>;

#[tonic::async_trait]
impl Health for Healthy {
    async fn check(
        &self,
        _request: Request<HealthCheckRequest>,
    ) -> Result<Response<HealthCheckResponse>, Status> {
        Ok(Response::new(HealthCheckResponse {
            status: ServingStatus::Serving as i32,
        }))
    }

    async fn list(
        &self,
        _request: Request<HealthListRequest>,
    ) -> Result<Response<HealthListResponse>, Status> {
        Err(Status::unimplemented("list"))
    }

    type WatchStream = HealthUpdates;

    async fn watch(
        &self,
        _request: Request<HealthCheckRequest>,
    ) -> Result<Response<HealthUpdates>, Status> {
        Err(Status::unimplemented("watch"))
    }
}
