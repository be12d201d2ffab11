//! BuildKit's `sshforward` session service: how a `RUN --mount=type=ssh` step
//! reaches the client's agent. BuildKit asks whether an id is there
//! (CheckAgent), then, for each connection to the socket it mounts in the step,
//! opens a stream (ForwardAgent, the id in its metadata) that carries the agent
//! protocol's bytes both ways. Here the agent is dockpub's own (`ssh_agent`),
//! holding the build's granted `[ssh.ID]` keys.

use std::collections::HashMap;
use std::pin::Pin;

use bollard::moby::sshforward::v1::ssh_server::Ssh;
use bollard::moby::sshforward::v1::{BytesMessage, CheckAgentRequest, CheckAgentResponse};
use futures_util::Stream;
use tonic::{Request, Response, Status, Streaming};

use crate::ssh_agent::{AgentConnection, AgentKey, DEFAULT_ID};

/// The metadata key BuildKit names the mount's id in.
const ID_METADATA: &str = "buildkit.ssh.id";

/// The session methods of this service, as the daemon is told of them.
pub(super) const SSH_METHODS: [&str; 2] = [
    "/moby.sshforward.v1.SSH/CheckAgent",
    "/moby.sshforward.v1.SSH/ForwardAgent",
];

/// The build's granted keys, by id.
pub(super) struct SshForward {
    keys: HashMap<String, AgentKey>,
}

impl SshForward {
    pub(super) fn new(keys: &[AgentKey]) -> Self {
        SshForward {
            keys: keys
                .iter()
                .map(|key| (key.id.clone(), key.clone()))
                .collect(),
        }
    }

    /// The key of `id` (a mount without one asks for `default`).
    fn key(&self, id: &str) -> Result<&AgentKey, Status> {
        let id = if id.is_empty() { DEFAULT_ID } else { id };
        self.keys.get(id).ok_or_else(|| {
            Status::not_found(format!(
                "dockpub: no SSH key '{id}' was granted to this build (send ssh={id})"
            ))
        })
    }
}

type AgentAnswers = Pin<Box<dyn Stream<Item = Result<BytesMessage, Status>> + Send>>;

#[tonic::async_trait]
impl Ssh for SshForward {
    async fn check_agent(
        &self,
        request: Request<CheckAgentRequest>,
    ) -> Result<Response<CheckAgentResponse>, Status> {
        self.key(&request.get_ref().id)?;
        Ok(Response::new(CheckAgentResponse {}))
    }

    type ForwardAgentStream = AgentAnswers;

    async fn forward_agent(
        &self,
        request: Request<Streaming<BytesMessage>>,
    ) -> Result<Response<AgentAnswers>, Status> {
        let id = request
            .metadata()
            .get(ID_METADATA)
            .and_then(|value| value.to_str().ok())
            .unwrap_or_default();
        let key = self.key(id)?.clone();
        let incoming = request.into_inner();
        let agent = AgentConnection::new(vec![key]);
        Ok(Response::new(Box::pin(answers(incoming, agent))))
    }
}

/// The agent's answers to what the step's client sends, until either side
/// closes (a request too long closes it too).
fn answers(
    incoming: Streaming<BytesMessage>,
    agent: AgentConnection,
) -> impl Stream<Item = Result<BytesMessage, Status>> + Send {
    futures_util::stream::unfold((incoming, agent), |(mut incoming, mut agent)| async move {
        loop {
            let Ok(Some(message)) = incoming.message().await else {
                return None;
            };
            match agent.receive(&message.data) {
                Ok(data) if data.is_empty() => continue,
                Ok(data) => return Some((Ok(BytesMessage { data }), (incoming, agent))),
                Err(err) => {
                    log::debug!("an SSH agent connection closed: {err}");
                    return None;
                }
            }
        }
    })
}
