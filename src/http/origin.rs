//! Who may talk to this server from a browser. A page on another site can send a
//! "simple" multipart POST without any CORS preflight, and a DNS-rebinding page
//! reaches a loopback server under its own host name; tokens are off by default,
//! so neither may rely on them.

use std::net::{IpAddr, SocketAddr};

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::header::{HeaderName, HOST, ORIGIN};
use actix_web::http::Method;
use actix_web::middleware::Next;
use actix_web::{web, Error};

use super::auth::in_shape_of;
use super::error::ApiError;
use super::AppState;

/// The names this server answers to.
#[derive(Debug, Clone)]
pub struct HostPolicy {
    /// The address the listener is bound to (its port is the one clients use).
    pub bind: SocketAddr,
    /// `allowed_hosts`: names with or without `:port`; `*` is any.
    pub allowed: Vec<String>,
}

pub async fn check_origin(
    req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<impl MessageBody>, Error> {
    if let Some(state) = req.app_data::<web::Data<AppState>>() {
        let host = header(&req, HOST).unwrap_or_default();
        let refused = if !state.hosts.accepts(host) {
            Some(ApiError::HostNotAllowed(host.to_string()))
        } else {
            refuse_cross_site(&req, host).err()
        };
        if let Some(err) = refused {
            return Err(in_shape_of(req.match_info().as_str(), err));
        }
    }
    next.call(req).await
}

fn header(req: &ServiceRequest, name: HeaderName) -> Option<&str> {
    req.headers().get(name)?.to_str().ok()
}

/// A request that changes state must come from this server's own page or from a
/// client that is no browser (curl and the CLI send no `Origin`).
fn refuse_cross_site(req: &ServiceRequest, host: &str) -> Result<(), ApiError> {
    if matches!(*req.method(), Method::GET | Method::HEAD | Method::OPTIONS) {
        return Ok(());
    }
    if header(req, HeaderName::from_static("sec-fetch-site")) == Some("cross-site") {
        return Err(ApiError::CrossSite("Sec-Fetch-Site: cross-site"));
    }
    match header(req, ORIGIN) {
        None => Ok(()),
        Some(origin) if is_same_origin(origin, host) => Ok(()),
        Some(_) => Err(ApiError::CrossSite("its Origin is not this server")),
    }
}

/// `http://HOST` where HOST is exactly what the request's `Host` names.
fn is_same_origin(origin: &str, host: &str) -> bool {
    ["http://", "https://"].iter().any(|scheme| {
        origin
            .strip_prefix(scheme)
            .is_some_and(|authority| !host.is_empty() && authority.eq_ignore_ascii_case(host))
    })
}

impl HostPolicy {
    /// The bind address, localhost and loopback addresses, each with the server's
    /// port, or a name in `allowed_hosts`.
    pub fn accepts(&self, host: &str) -> bool {
        let host = host.trim();
        if host.is_empty() {
            return false;
        }
        if self
            .allowed
            .iter()
            .any(|allowed| matches_allowed(allowed, host))
        {
            return true;
        }
        let Some((name, port)) = split_port(host) else {
            return false;
        };
        port == Some(self.bind.port()) && self.is_own_name(name)
    }

    fn is_own_name(&self, name: &str) -> bool {
        if name.eq_ignore_ascii_case("localhost") {
            return true;
        }
        let literal = name.trim_start_matches('[').trim_end_matches(']');
        let Ok(ip) = literal.parse::<IpAddr>() else {
            return false;
        };
        // Listening on every interface: any address of this machine may be used,
        // and an IP literal cannot be rebound by a hostile DNS server.
        ip.is_loopback() || ip == self.bind.ip() || self.bind.ip().is_unspecified()
    }
}

/// `name` and its port; None when the port is not a number.
fn split_port(host: &str) -> Option<(&str, Option<u16>)> {
    let (name, port) = match host.rsplit_once(':') {
        // `[::1]` alone: the colon is inside the brackets.
        Some((name, port)) if !port.contains(']') => (name, Some(port.parse().ok()?)),
        _ => (host, None),
    };
    Some((name, port))
}

fn matches_allowed(allowed: &str, host: &str) -> bool {
    if allowed == "*" {
        return true;
    }
    if allowed.eq_ignore_ascii_case(host) {
        return true;
    }
    // An entry without a port allows the name on any port.
    !allowed.contains(':')
        && split_port(host).is_some_and(|(name, _)| name.eq_ignore_ascii_case(allowed))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(bind: &str, allowed: &[&str]) -> HostPolicy {
        HostPolicy {
            bind: bind.parse().unwrap(),
            allowed: allowed.iter().map(|s| s.to_string()).collect(),
        }
    }

    #[test]
    fn loopback_names_with_the_port_are_accepted() {
        let hosts = policy("127.0.0.1:8080", &[]);
        for host in [
            "127.0.0.1:8080",
            "localhost:8080",
            "LOCALHOST:8080",
            "[::1]:8080",
        ] {
            assert!(hosts.accepts(host), "{host}");
        }
    }

    #[test]
    fn other_names_and_ports_are_refused() {
        let hosts = policy("127.0.0.1:8080", &[]);
        for host in [
            "",
            "rebind.evil.example:8080",
            "localhost:9999",
            "localhost",
            "10.1.2.3:8080",
            "127.0.0.1:80a",
            "localhost.evil.example:8080",
        ] {
            assert!(!hosts.accepts(host), "{host}");
        }
    }

    #[test]
    fn allowed_hosts_and_any_address_of_a_wildcard_bind() {
        let hosts = policy("0.0.0.0:8080", &["builds.internal", "proxy.example:443"]);
        assert!(hosts.accepts("10.1.2.3:8080"));
        assert!(hosts.accepts("builds.internal"));
        assert!(hosts.accepts("builds.internal:8080"));
        assert!(hosts.accepts("proxy.example:443"));
        assert!(!hosts.accepts("proxy.example:444"));
        assert!(!hosts.accepts("evil.example:8080"));
        assert!(policy("127.0.0.1:1", &["*"]).accepts("anything:5"));
    }

    #[test]
    fn same_origin_is_the_requests_own_host() {
        assert!(is_same_origin("http://127.0.0.1:8080", "127.0.0.1:8080"));
        assert!(!is_same_origin("https://evil.example", "127.0.0.1:8080"));
        assert!(!is_same_origin("null", "127.0.0.1:8080"));
        assert!(!is_same_origin(
            "http://127.0.0.1:8080.evil.example",
            "127.0.0.1:8080"
        ));
    }
}
