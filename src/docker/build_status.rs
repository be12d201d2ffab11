//! The progress of a build made over BuildKit's gRPC API, which reports none by
//! itself: BuildKit's Control API, reached by upgrading a connection to the
//! daemon's `POST /grpc` to HTTP/2, streams the build's status by its ref.

use std::path::PathBuf;

use bollard::moby::buildkit::v1::control_client::ControlClient;
use bollard::moby::buildkit::v1::{StatusRequest, StatusResponse};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::mpsc;
use tonic::transport::Endpoint;

/// The longest answer to the upgrade request read before giving up on it.
const MAX_UPGRADE_ANSWER: usize = 16 * 1024;

/// Where the daemon listens, when dockpub can open a plain connection to it.
pub enum DaemonSocket {
    Unix(PathBuf),
    Tcp(String),
}

impl DaemonSocket {
    /// `unix:///path` or `tcp://host:port`; None for TLS daemons (not followed).
    pub fn of(host: &str, tls: bool) -> Option<Self> {
        if let Some(path) = host.strip_prefix("unix://") {
            return Some(DaemonSocket::Unix(PathBuf::from(path)));
        }
        let address = host.strip_prefix("tcp://")?;
        (!tls).then(|| DaemonSocket::Tcp(address.to_string()))
    }
}

/// Sends the build's status updates to `updates` until the build ends or the
/// receiver goes away. Errors only lose progress, never the build.
pub async fn follow_status(
    socket: DaemonSocket,
    build_ref: String,
    updates: mpsc::Sender<StatusResponse>,
) {
    if let Err(err) = stream_status(socket, build_ref, &updates).await {
        log::warn!("cannot follow a secret build's progress: {err}");
    }
}

async fn stream_status(
    socket: DaemonSocket,
    build_ref: String,
    updates: &mpsc::Sender<StatusResponse>,
) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    let connector = tower::service_fn(move |_| {
        let socket = match &socket {
            DaemonSocket::Unix(path) => DaemonSocket::Unix(path.clone()),
            DaemonSocket::Tcp(address) => DaemonSocket::Tcp(address.clone()),
        };
        async move { upgraded(socket).await }
    });
    let channel = Endpoint::from_static("http://buildkit")
        .connect_with_connector(connector)
        .await?;
    let mut status = ControlClient::new(channel)
        .status(StatusRequest { r#ref: build_ref })
        .await?
        .into_inner();
    while let Some(update) = status.message().await? {
        if updates.send(update).await.is_err() {
            break;
        }
    }
    Ok(())
}

type Io = TokioIo<Box<dyn Connection>>;

trait Connection: AsyncRead + AsyncWrite + Send + Unpin {}
impl<T: AsyncRead + AsyncWrite + Send + Unpin> Connection for T {}

/// A connection to the daemon, upgraded from `POST /grpc` to HTTP/2.
async fn upgraded(socket: DaemonSocket) -> std::io::Result<Io> {
    let mut stream: Box<dyn Connection> = match socket {
        DaemonSocket::Unix(path) => Box::new(tokio::net::UnixStream::connect(path).await?),
        DaemonSocket::Tcp(address) => Box::new(tokio::net::TcpStream::connect(address).await?),
    };
    stream
        .write_all(
            b"POST /grpc HTTP/1.1\r\nHost: docker\r\nConnection: Upgrade\r\nUpgrade: h2c\r\nContent-Length: 0\r\n\r\n",
        )
        .await?;
    let answer = read_head(&mut stream).await?;
    if !answer.starts_with("HTTP/1.1 101") {
        let first = answer.lines().next().unwrap_or_default().to_string();
        return Err(std::io::Error::other(format!(
            "the daemon answered {first}"
        )));
    }
    Ok(TokioIo::new(stream))
}

/// The answer's status line and headers, up to the blank line; nothing past it.
async fn read_head(stream: &mut Box<dyn Connection>) -> std::io::Result<String> {
    let mut head = Vec::new();
    while !head.ends_with(b"\r\n\r\n") {
        if head.len() > MAX_UPGRADE_ANSWER {
            return Err(std::io::Error::other("the daemon's answer has no end"));
        }
        head.push(stream.read_u8().await?);
    }
    Ok(String::from_utf8_lossy(&head).into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn follows_plain_daemons_only() {
        assert!(matches!(
            DaemonSocket::of("unix:///var/run/docker.sock", false),
            Some(DaemonSocket::Unix(_))
        ));
        assert!(DaemonSocket::of("tcp://10.0.0.7:2375", false).is_some());
        assert!(DaemonSocket::of("tcp://10.0.0.7:2376", true).is_none());
        assert!(DaemonSocket::of("ssh://box", false).is_none());
    }
}
