//! The progress of a build made over BuildKit's gRPC API, which reports none by
//! itself: BuildKit's Control API, reached by upgrading a connection to the
//! daemon's `POST /grpc` to HTTP/2, streams the build's status by its ref.

use std::path::PathBuf;
use std::pin::Pin;
use std::task::{Context, Poll};

use bollard::moby::buildkit::v1::control_client::ControlClient;
use bollard::moby::buildkit::v1::{StatusRequest, StatusResponse};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::sync::mpsc;
use tonic::transport::{Channel, Endpoint};

/// The longest answer to the upgrade request read before giving up on it.
const MAX_UPGRADE_ANSWER: usize = 16 * 1024;

/// Where the daemon listens, when dockpub can open a plain connection to it.
#[derive(Debug, Clone)]
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
    let channel = grpc_channel(socket).await?;
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

pub trait Connection: AsyncRead + AsyncWrite + Send + Unpin {}
impl<T: AsyncRead + AsyncWrite + Send + Unpin> Connection for T {}

/// A connection to the daemon upgraded to HTTP/2; dockpub is the client on one
/// to `/grpc`, the server on one to `/session`.
pub struct Upgraded(Box<dyn Connection>);

impl Upgraded {
    /// As hyper's client connector hands it over.
    pub fn into_tokio_io(self) -> TokioIo<Box<dyn Connection>> {
        TokioIo::new(self.0)
    }
}

/// A connection to the daemon, upgraded from `POST path` (with `headers`) to HTTP/2.
/// A gRPC channel to the daemon's BuildKit (its `/grpc` endpoint, upgraded to
/// HTTP/2 over the daemon's own socket).
pub async fn grpc_channel(socket: DaemonSocket) -> Result<Channel, tonic::transport::Error> {
    let connector = tower::service_fn(move |_| {
        let socket = socket.clone();
        async move {
            upgrade(&socket, "/grpc", &[])
                .await
                .map(Upgraded::into_tokio_io)
        }
    });
    Endpoint::from_static("http://buildkit")
        .connect_with_connector(connector)
        .await
}

pub async fn upgrade(
    socket: &DaemonSocket,
    path: &str,
    headers: &[(&str, String)],
) -> std::io::Result<Upgraded> {
    let mut stream: Box<dyn Connection> = match socket {
        DaemonSocket::Unix(path) => Box::new(tokio::net::UnixStream::connect(path).await?),
        DaemonSocket::Tcp(address) => Box::new(tokio::net::TcpStream::connect(address).await?),
    };
    let mut request =
        format!("POST {path} HTTP/1.1\r\nHost: docker\r\nConnection: Upgrade\r\nUpgrade: h2c\r\n");
    for (name, value) in headers {
        request.push_str(&format!("{name}: {value}\r\n"));
    }
    request.push_str("Content-Length: 0\r\n\r\n");
    stream.write_all(request.as_bytes()).await?;
    let answer = read_head(&mut stream).await?;
    if !answer.starts_with("HTTP/1.1 101") {
        let first = answer.lines().next().unwrap_or_default().to_string();
        return Err(std::io::Error::other(format!(
            "the daemon answered {first}"
        )));
    }
    Ok(Upgraded(stream))
}

impl tonic::transport::server::Connected for Upgraded {
    type ConnectInfo = ();

    fn connect_info(&self) -> Self::ConnectInfo {}
}

impl AsyncRead for Upgraded {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.0).poll_read(cx, buf)
    }
}

impl AsyncWrite for Upgraded {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.0).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.0).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.0).poll_shutdown(cx)
    }
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
