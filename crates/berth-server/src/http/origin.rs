//! Where a request came from and which origin (`scheme://host`) it addressed, worked
//! out once per request by [`guard`](crate::http::limits::guard) and read by everything
//! that builds URLs (token realms), compares origins (cross-site checks) or limits
//! clients (sign-in and upload limits).
//!
//! `X-Forwarded-For` is believed only with `--trust-forwarded-for`, and
//! `X-Forwarded-Proto`/`-Host` only with `--trust-forwarded-host`: anyone can send
//! them. Whatever ends up in a URL or a header is validated first: a scheme is `http`
//! or `https`, a host is a DNS name, IPv4 address or bracketed IPv6 address with an
//! optional port.

use std::net::{IpAddr, SocketAddr};

use axum::extract::ConnectInfo;
use axum::http::request::Parts;
use axum::http::{HeaderMap, header};

/// The longest host (with port) accepted.
const MAX_HOST_LEN: usize = 255;

/// Which forwarded headers to believe (set when berth runs behind a proxy).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TrustedProxy {
    /// The client address is the last `X-Forwarded-For` entry.
    pub forwarded_for: bool,
    /// The scheme and host come from `X-Forwarded-Proto` and `X-Forwarded-Host`.
    pub forwarded_host: bool,
}

/// The request's client and the origin it addressed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestOrigin {
    /// The client's address as failed-login and upload limits key it (an IPv6 client by
    /// its /64, which it can vary freely).
    pub client: String,
    pub scheme: &'static str,
    /// `host[:port]`, validated.
    pub host: String,
}

/// A forwarded or `Host` header that cannot be part of a URL.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OriginError {
    #[error("invalid Host header")]
    Host,
    #[error("invalid X-Forwarded-Host header")]
    ForwardedHost,
    #[error("invalid X-Forwarded-Proto header: use http or https")]
    ForwardedProto,
}

impl RequestOrigin {
    /// Works out the origin of a request from its connection and headers.
    pub fn of(parts: &Parts, trust: TrustedProxy) -> Result<RequestOrigin, OriginError> {
        let peer = parts
            .extensions
            .get::<ConnectInfo<SocketAddr>>()
            .map(|ConnectInfo(addr)| addr.ip());
        let forwarded_for = trust
            .forwarded_for
            .then(|| last_forwarded_for(&parts.headers))
            .flatten();
        let client = address_key(forwarded_for.or(peer));

        let mut scheme = "http";
        let mut host = None;
        if trust.forwarded_host {
            if let Some(proto) = first_value(&parts.headers, "x-forwarded-proto") {
                scheme = match proto.to_ascii_lowercase().as_str() {
                    "http" => "http",
                    "https" => "https",
                    _ => return Err(OriginError::ForwardedProto),
                };
            }
            if let Some(forwarded) = first_value(&parts.headers, "x-forwarded-host") {
                if !is_valid_host(forwarded) {
                    return Err(OriginError::ForwardedHost);
                }
                host = Some(forwarded.to_ascii_lowercase());
            }
        }
        let host = match host {
            Some(host) => host,
            None => match parts.headers.get(header::HOST) {
                Some(value) => {
                    let value = value.to_str().map_err(|_| OriginError::Host)?.trim();
                    if !is_valid_host(value) {
                        return Err(OriginError::Host);
                    }
                    value.to_ascii_lowercase()
                }
                // HTTP/2 carries the host in the request line (`:authority`).
                None => parts
                    .uri
                    .authority()
                    .map(|a| a.as_str().to_ascii_lowercase())
                    .filter(|a| is_valid_host(a))
                    .unwrap_or_else(|| "localhost".to_owned()),
            },
        };
        Ok(RequestOrigin {
            client,
            scheme,
            host,
        })
    }

    /// `scheme://host`, as a browser writes it in `Origin`.
    pub fn base_url(&self) -> String {
        format!("{}://{}", self.scheme, self.host)
    }

    pub fn is_https(&self) -> bool {
        self.scheme == "https"
    }

    /// Whether an `Origin` header names this origin: same scheme, host and port (a
    /// default port written or left out is the same port).
    pub fn matches(&self, origin: &str) -> bool {
        let Some((scheme, host)) = origin.trim().split_once("://") else {
            return false;
        };
        let default_port = match self.scheme {
            "https" => ":443",
            _ => ":80",
        };
        let normal = |h: &str| {
            h.strip_suffix(default_port)
                .unwrap_or(h)
                .to_ascii_lowercase()
        };
        scheme.eq_ignore_ascii_case(self.scheme) && normal(host) == normal(&self.host)
    }
}

fn first_value<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(',').next())
        .map(str::trim)
        .filter(|v| !v.is_empty())
}

/// The last `X-Forwarded-For` entry: the one the trusted proxy appended (earlier ones
/// are the client's to invent).
fn last_forwarded_for(headers: &HeaderMap) -> Option<IpAddr> {
    headers
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .next_back()
        .and_then(|last| last.trim().parse::<IpAddr>().ok())
}

/// How limits key a client address: IPv4 as is, IPv6 by its /64.
pub fn address_key(ip: Option<IpAddr>) -> String {
    match ip {
        Some(IpAddr::V6(v6)) => match v6.to_ipv4_mapped() {
            Some(v4) => v4.to_string(),
            None => {
                let s = v6.segments();
                format!("{:x}:{:x}:{:x}:{:x}::/64", s[0], s[1], s[2], s[3])
            }
        },
        Some(IpAddr::V4(v4)) => v4.to_string(),
        None => "unknown".to_owned(),
    }
}

/// `host[:port]` where host is a DNS name, an IPv4 address or `[IPv6]`.
pub fn is_valid_host(value: &str) -> bool {
    if value.is_empty() || value.len() > MAX_HOST_LEN {
        return false;
    }
    let (name_ok, port) = if let Some(rest) = value.strip_prefix('[') {
        let Some((v6, after)) = rest.split_once(']') else {
            return false;
        };
        let port = match after {
            "" => None,
            _ => match after.strip_prefix(':') {
                Some(port) => Some(port),
                None => return false,
            },
        };
        (v6.parse::<std::net::Ipv6Addr>().is_ok(), port)
    } else {
        let (name, port) = match value.split_once(':') {
            Some((name, port)) => (name, Some(port)),
            None => (value, None),
        };
        let name_ok = !name.starts_with(['.', '-'])
            && name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'-' || b == b'_');
        (!name.is_empty() && name_ok, port)
    };
    let port_ok =
        port.is_none_or(|p| !p.is_empty() && p.len() <= 5 && p.bytes().all(|b| b.is_ascii_digit()));
    name_ok && port_ok
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use axum::http::Request;

    fn parts(headers: &[(&str, &str)]) -> Parts {
        let mut request = Request::builder().uri("/v2/");
        for (k, v) in headers {
            request = request.header(*k, *v);
        }
        let (mut parts, ()) = request.body(()).unwrap().into_parts();
        parts
            .extensions
            .insert(ConnectInfo(SocketAddr::from(([192, 0, 2, 7], 4000))));
        parts
    }

    const TRUST_ALL: TrustedProxy = TrustedProxy {
        forwarded_for: true,
        forwarded_host: true,
    };

    #[test]
    fn hosts_are_validated() {
        for ok in [
            "localhost",
            "localhost:5000",
            "registry.example.com",
            "10.0.0.1:443",
            "[::1]",
            "[::1]:5000",
            "my_host",
        ] {
            assert!(is_valid_host(ok), "{ok}");
        }
        for bad in [
            "",
            "a\"b",
            "a b",
            "host:",
            "host:123456",
            "host:80x",
            "[::1",
            "[nothex]:80",
            "[::1]x",
            "a/b",
            "a@b",
            "-lead",
            "javascript:alert(1)",
            &"a".repeat(300),
        ] {
            assert!(!is_valid_host(bad), "{bad}");
        }
    }

    #[test]
    fn forwarded_headers_count_only_when_trusted() {
        let p = parts(&[
            ("host", "berth.internal:5000"),
            ("x-forwarded-proto", "https"),
            ("x-forwarded-host", "registry.example.com"),
            ("x-forwarded-for", "203.0.113.9, 198.51.100.1"),
        ]);
        let untrusted = RequestOrigin::of(&p, TrustedProxy::default()).unwrap();
        assert_eq!(untrusted.base_url(), "http://berth.internal:5000");
        assert_eq!(untrusted.client, "192.0.2.7");
        let trusted = RequestOrigin::of(&p, TRUST_ALL).unwrap();
        assert_eq!(trusted.base_url(), "https://registry.example.com");
        assert_eq!(trusted.client, "198.51.100.1");
    }

    #[test]
    fn bad_values_are_refused_not_copied() {
        let bad = |headers: &[(&str, &str)]| RequestOrigin::of(&parts(headers), TRUST_ALL);
        assert_eq!(
            bad(&[("x-forwarded-proto", "javascript")]),
            Err(OriginError::ForwardedProto)
        );
        assert_eq!(
            bad(&[("x-forwarded-host", "evil\",x=\"y")]),
            Err(OriginError::ForwardedHost)
        );
        assert_eq!(bad(&[("host", "a\"b")]), Err(OriginError::Host));
        // Untrusted forwarded headers are ignored, whatever they hold.
        let ignored = RequestOrigin::of(
            &parts(&[("host", "h:1"), ("x-forwarded-proto", "javascript")]),
            TrustedProxy::default(),
        );
        assert_eq!(ignored.unwrap().base_url(), "http://h:1");
    }

    #[test]
    fn origins_match_on_scheme_host_and_port() {
        let origin = RequestOrigin {
            client: String::new(),
            scheme: "https",
            host: "r.example.com".into(),
        };
        assert!(origin.matches("https://r.example.com"));
        assert!(origin.matches("https://R.example.com:443"));
        assert!(!origin.matches("http://r.example.com"), "the scheme counts");
        assert!(!origin.matches("https://r.example.com:8443"));
        assert!(!origin.matches("https://evil.example.com"));
        assert!(!origin.matches("null"));
    }

    #[test]
    fn ipv6_clients_are_keyed_by_their_64() {
        let ip: IpAddr = "2001:db8:1:2:3:4:5:6".parse().unwrap();
        assert_eq!(address_key(Some(ip)), "2001:db8:1:2::/64");
        let mapped: IpAddr = "::ffff:192.0.2.1".parse().unwrap();
        assert_eq!(address_key(Some(mapped)), "192.0.2.1");
    }
}
