//! Target URL parsing and the loopback safety check.

use std::net::{IpAddr, SocketAddr};

use anyhow::{Context, bail};
use url::{Host, Url};

/// A parsed, checked load-test target.
#[derive(Debug, Clone)]
pub struct Target {
    /// The URL as given (normalised by the `url` crate).
    pub url: Url,
    /// `Host` header value (`host[:port]`, port only when not the default).
    pub host_header: String,
    /// Path and query to put on the request line.
    pub path_and_query: String,
    /// `scheme://host[:port]`.
    pub origin: String,
    /// Resolved addresses, in resolver order (loopback only unless remote is allowed).
    pub addrs: Vec<SocketAddr>,
}

/// Parses `raw` as an absolute http(s) URL.
pub fn parse_url(raw: &str, what: &str) -> anyhow::Result<Url> {
    let url =
        Url::parse(raw.trim()).with_context(|| format!("{what} `{raw}` is not a valid URL"))?;
    match url.scheme() {
        "http" | "https" => {}
        other => bail!("{what} `{raw}`: scheme `{other}` is not supported (use http://)"),
    }
    if url.host().is_none() {
        bail!("{what} `{raw}` has no host");
    }
    if !url.username().is_empty() || url.password().is_some() {
        bail!("{what} `{raw}`: credentials in the URL are not supported (use -H or --token)");
    }
    Ok(url)
}

/// True for 127.0.0.0/8, ::1 and IPv4-mapped loopback.
pub fn is_loopback_ip(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => v4.is_loopback(),
        IpAddr::V6(v6) => {
            v6.is_loopback() || v6.to_ipv4_mapped().is_some_and(|v4| v4.is_loopback())
        }
    }
}

/// True when the URL's host is loopback by its name alone (no DNS).
pub fn is_loopback_host(url: &Url) -> bool {
    match url.host() {
        Some(Host::Ipv4(ip)) => ip.is_loopback(),
        Some(Host::Ipv6(ip)) => is_loopback_ip(IpAddr::V6(ip)),
        Some(Host::Domain(d)) => {
            let d = d.strip_suffix('.').unwrap_or(d);
            d.eq_ignore_ascii_case("localhost")
        }
        None => false,
    }
}

/// Refuses non-loopback hosts unless `allow_remote`.
pub fn check_host(url: &Url, what: &str, allow_remote: bool) -> anyhow::Result<()> {
    if !allow_remote && !is_loopback_host(url) {
        bail!(
            "refusing to load-test {what} {}: it is not a loopback address \
             (127.0.0.0/8, ::1, localhost); pass --allow-remote if you really mean to",
            url.host_str().unwrap_or("?")
        );
    }
    Ok(())
}

/// Resolves the URL's host; without `allow_remote` only loopback addresses are kept.
pub async fn resolve(url: &Url, allow_remote: bool) -> anyhow::Result<Vec<SocketAddr>> {
    let host = url.host_str().context("URL has no host")?;
    let port = url.port_or_known_default().context("URL has no port")?;
    let addrs: Vec<SocketAddr> = match url.host() {
        Some(Host::Ipv4(ip)) => vec![SocketAddr::new(IpAddr::V4(ip), port)],
        Some(Host::Ipv6(ip)) => vec![SocketAddr::new(IpAddr::V6(ip), port)],
        _ => tokio::net::lookup_host((host, port))
            .await
            .with_context(|| format!("cannot resolve {host}"))?
            .collect(),
    };
    let addrs: Vec<SocketAddr> = if allow_remote {
        addrs
    } else {
        addrs
            .into_iter()
            .filter(|a| is_loopback_ip(a.ip()))
            .collect()
    };
    if addrs.is_empty() {
        bail!("{host} resolves to no usable (loopback) address");
    }
    Ok(addrs)
}

/// Parses, checks and resolves a load-test target.
pub async fn target(raw: &str, allow_remote: bool) -> anyhow::Result<Target> {
    let url = parse_url(raw, "--url")?;
    if url.scheme() != "http" {
        bail!(
            "--url {raw}: the load engine speaks plain HTTP/1.1 only; \
             point it at the server's http:// listener"
        );
    }
    check_host(&url, "target", allow_remote)?;
    let addrs = resolve(&url, allow_remote).await?;
    let host = url.host_str().context("URL has no host")?;
    let host_header = match url.port() {
        Some(p) => format!("{host}:{p}"),
        None => host.to_string(),
    };
    let mut path_and_query = url.path().to_string();
    if let Some(q) = url.query() {
        path_and_query.push('?');
        path_and_query.push_str(q);
    }
    Ok(Target {
        origin: url.origin().ascii_serialization(),
        url,
        host_header,
        path_and_query,
        addrs,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn loopback(s: &str) -> bool {
        is_loopback_host(&parse_url(s, "u").expect("valid url"))
    }

    #[test]
    fn loopback_names() {
        assert!(loopback("http://127.0.0.1:8080/x"));
        assert!(loopback("http://127.9.8.7/"));
        assert!(loopback("http://[::1]:8080/"));
        assert!(loopback("http://[::ffff:127.0.0.1]/"));
        assert!(loopback("http://localhost:8080/"));
        assert!(loopback("http://LOCALHOST./"));
        assert!(!loopback("http://10.0.0.1/"));
        assert!(!loopback("http://0.0.0.0:8080/"));
        assert!(!loopback("http://example.com/"));
        assert!(!loopback("http://localhost.example.com/"));
        assert!(!loopback("http://127.0.0.1.nip.io/"));
        assert!(!loopback("http://[::2]/"));
    }

    #[test]
    fn bad_urls() {
        assert!(parse_url("ftp://127.0.0.1/", "u").is_err());
        assert!(parse_url("127.0.0.1:8080", "u").is_err());
        assert!(parse_url("http://user:pw@127.0.0.1/", "u").is_err());
        assert!(check_host(&parse_url("http://8.8.8.8/", "u").expect("url"), "t", false).is_err());
        assert!(check_host(&parse_url("http://8.8.8.8/", "u").expect("url"), "t", true).is_ok());
    }

    #[tokio::test]
    async fn target_parts() {
        let t = target("http://127.0.0.1:8080/api/v1/orders?limit=5", false)
            .await
            .expect("target");
        assert_eq!(t.host_header, "127.0.0.1:8080");
        assert_eq!(t.path_and_query, "/api/v1/orders?limit=5");
        assert_eq!(t.origin, "http://127.0.0.1:8080");
        assert_eq!(t.addrs, vec!["127.0.0.1:8080".parse().expect("addr")]);
        assert!(target("https://127.0.0.1/", false).await.is_err());
        assert!(target("http://10.1.2.3/", false).await.is_err());
    }
}
