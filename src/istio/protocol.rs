//! Protocol selection for a Service port, as Istio does it: `appProtocol` wins over the port name.

/// A protocol Istio recognises on a Service port.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Protocol {
    Http,
    Http2,
    Https,
    Tcp,
    Tls,
    Grpc,
    GrpcWeb,
    Mongo,
    Mysql,
    Redis,
    Udp,
}

impl Protocol {
    pub fn as_str(self) -> &'static str {
        match self {
            Protocol::Http => "http",
            Protocol::Http2 => "http2",
            Protocol::Https => "https",
            Protocol::Tcp => "tcp",
            Protocol::Tls => "tls",
            Protocol::Grpc => "grpc",
            Protocol::GrpcWeb => "grpc-web",
            Protocol::Mongo => "mongo",
            Protocol::Mysql => "mysql",
            Protocol::Redis => "redis",
            Protocol::Udp => "udp",
        }
    }

    /// Envoy terminates these as HTTP (HTTP connection manager, retries, idle timeouts per request).
    pub fn is_http(self) -> bool {
        matches!(
            self,
            Protocol::Http | Protocol::Http2 | Protocol::Grpc | Protocol::GrpcWeb
        )
    }

    pub fn is_grpc(self) -> bool {
        matches!(self, Protocol::Grpc | Protocol::GrpcWeb)
    }

    /// Declared as opaque TCP (or TLS passthrough): Envoy will not parse HTTP on it.
    pub fn is_opaque(self) -> bool {
        matches!(self, Protocol::Tcp | Protocol::Tls)
    }

    /// Case-insensitively, without allocating: this runs for every Service port, many times
    /// per analysis.
    fn parse(text: &str) -> Option<Protocol> {
        const NAMES: [(&str, Protocol); 11] = [
            ("http", Protocol::Http),
            ("http2", Protocol::Http2),
            ("https", Protocol::Https),
            ("tcp", Protocol::Tcp),
            ("tls", Protocol::Tls),
            ("grpc", Protocol::Grpc),
            ("grpc-web", Protocol::GrpcWeb),
            ("mongo", Protocol::Mongo),
            ("mysql", Protocol::Mysql),
            ("redis", Protocol::Redis),
            ("udp", Protocol::Udp),
        ];
        NAMES
            .iter()
            .find(|(name, _)| name.eq_ignore_ascii_case(text))
            .map(|(_, p)| *p)
    }
}

impl std::fmt::Display for Protocol {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How a Service port's protocol was decided.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Declared {
    /// By `appProtocol`.
    AppProtocol(Protocol),
    /// By the port name's prefix.
    Name(Protocol),
    /// By a well-known port number (25, 53, 3306, 27017 are TCP).
    WellKnownPort(Protocol),
    /// Not decided: Istio sniffs the protocol. The appProtocol, when one was set but not recognised.
    Undeclared { unrecognised_app_protocol: bool },
}

impl Declared {
    pub fn protocol(self) -> Option<Protocol> {
        match self {
            Declared::AppProtocol(p) | Declared::Name(p) | Declared::WellKnownPort(p) => Some(p),
            Declared::Undeclared { .. } => None,
        }
    }

    /// Explicitly declared by name or appProtocol (not inferred from the port number).
    pub fn explicit(self) -> Option<Protocol> {
        match self {
            Declared::AppProtocol(p) | Declared::Name(p) => Some(p),
            _ => None,
        }
    }
}

/// The protocol named by a port name or `appProtocol`: `grpc-web` as a prefix, else the text
/// before the first `-`, case-insensitively (Istio's `ConvertProtocol`).
pub fn parse_prefix(text: &str) -> Option<Protocol> {
    // `grpc-web` contains the separator itself, so Istio matches it as a prefix first.
    let grpc_web = b"grpc-web";
    if text
        .as_bytes()
        .get(..grpc_web.len())
        .is_some_and(|head| head.eq_ignore_ascii_case(grpc_web))
    {
        return Some(Protocol::GrpcWeb);
    }
    Protocol::parse(text.split('-').next().unwrap_or_default())
}

/// Kubernetes' standard appProtocol names, honoured only in `appProtocol`.
fn kubernetes_app_protocol(app_protocol: &str) -> Option<Protocol> {
    match app_protocol {
        "kubernetes.io/h2c" => Some(Protocol::Http2),
        "kubernetes.io/ws" => Some(Protocol::Http),
        "kubernetes.io/wss" => Some(Protocol::Https),
        _ => None,
    }
}

/// Istio's protocol selection for a Service port: when `appProtocol` is set only it is parsed,
/// else the name; an unparsed well-known port (25, 53, 3306, 27017) is TCP.
pub fn select(name: Option<&str>, app_protocol: Option<&str>, port: i32) -> Declared {
    let parsed = match app_protocol {
        Some(app) => kubernetes_app_protocol(app)
            .or_else(|| parse_prefix(app))
            .map(Declared::AppProtocol),
        None => name.and_then(parse_prefix).map(Declared::Name),
    };
    parsed.unwrap_or(match port {
        25 | 53 | 3306 | 27017 => Declared::WellKnownPort(Protocol::Tcp),
        _ => Declared::Undeclared {
            unrecognised_app_protocol: app_protocol.is_some(),
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn name_prefix_before_first_dash_case_insensitive() {
        assert_eq!(
            select(Some("http-web"), None, 80),
            Declared::Name(Protocol::Http)
        );
        assert_eq!(
            select(Some("HTTP2"), None, 80),
            Declared::Name(Protocol::Http2)
        );
        assert_eq!(
            select(Some("grpc-web"), None, 80),
            Declared::Name(Protocol::GrpcWeb)
        );
        assert_eq!(
            select(Some("grpc-api"), None, 80),
            Declared::Name(Protocol::Grpc)
        );
        assert_eq!(select(Some("tcp"), None, 80), Declared::Name(Protocol::Tcp));
        assert_eq!(
            select(Some("web-http"), None, 80),
            Declared::Undeclared {
                unrecognised_app_protocol: false
            }
        );
        assert_eq!(
            select(Some("httpx"), None, 80),
            Declared::Undeclared {
                unrecognised_app_protocol: false
            }
        );
    }

    #[test]
    fn app_protocol_wins_over_name() {
        assert_eq!(
            select(Some("tcp-x"), Some("http"), 80),
            Declared::AppProtocol(Protocol::Http)
        );
        assert_eq!(
            select(None, Some("GRPC"), 80),
            Declared::AppProtocol(Protocol::Grpc)
        );
        assert_eq!(
            select(None, Some("kubernetes.io/h2c"), 80),
            Declared::AppProtocol(Protocol::Http2)
        );
        assert_eq!(
            select(None, Some("kubernetes.io/ws"), 80),
            Declared::AppProtocol(Protocol::Http)
        );
        assert_eq!(
            select(None, Some("kubernetes.io/wss"), 80),
            Declared::AppProtocol(Protocol::Https)
        );
        // An unrecognised appProtocol is the only thing parsed: the good name does not help.
        assert_eq!(
            select(Some("http"), Some("fancy"), 80),
            Declared::Undeclared {
                unrecognised_app_protocol: true
            }
        );
    }

    #[test]
    fn well_known_ports_are_tcp_when_unnamed() {
        for port in [25, 53, 3306, 27017] {
            assert_eq!(
                select(None, None, port),
                Declared::WellKnownPort(Protocol::Tcp)
            );
        }
        assert_eq!(
            select(None, None, 8080),
            Declared::Undeclared {
                unrecognised_app_protocol: false
            }
        );
    }

    #[test]
    fn http_family() {
        assert!(
            Protocol::Grpc.is_http() && Protocol::Http2.is_http() && Protocol::GrpcWeb.is_http()
        );
        assert!(!Protocol::Https.is_http() && !Protocol::Tcp.is_http());
    }
}
