//! WeChat's callback addresses (`cgi-bin/getcallbackip`). With `WECHAT_CALLBACK_IP_CHECK=on`
//! the message-push URLs take pushes only from them: a leaked token then still does not let
//! anyone else post messages in a follower's name. The list is fetched at start, refreshed
//! daily, and fetched on demand while it is not known; the client address is the one
//! `TRUSTED_PROXIES` names (`client_addr`).

use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use ipnet::IpNet;

use crate::jobs::{Job, every};
use crate::telemetry::Metrics;
use crate::wechat::mini::{MiniClient, WechatError};

/// How old a list may get before it is fetched again.
const REFRESH_AFTER: Duration = Duration::from_secs(24 * 3600);
/// How often the job looks at the list's age (and retries a failed fetch).
const LOOK_EVERY: Duration = Duration::from_secs(300);

#[derive(Debug, thiserror::Error)]
pub enum CallbackIpError {
    #[error("pushes are taken only from WeChat's callback addresses; {0} is not one")]
    Foreign(IpAddr),
    /// The list could not be fetched: nothing can be told apart, so nothing is taken
    /// (WeChat retries its pushes).
    #[error("WeChat's callback addresses are not known: {0}")]
    Unknown(WechatError),
}

#[derive(Clone)]
pub struct CallbackIps {
    mini: MiniClient,
    /// `WECHAT_CALLBACK_IP_CHECK=on`.
    on: bool,
    list: Arc<tokio::sync::RwLock<Option<Fetched>>>,
}

struct Fetched {
    nets: Vec<IpNet>,
    at: Instant,
}

fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

impl CallbackIps {
    pub fn new(mini: MiniClient, on: bool) -> Self {
        Self {
            mini,
            on,
            list: Arc::default(),
        }
    }

    pub fn is_on(&self) -> bool {
        self.on
    }

    /// Whether a push from `ip` is taken.
    pub async fn check(&self, ip: IpAddr) -> Result<(), CallbackIpError> {
        if !self.on {
            return Ok(());
        }
        let ip = canonical(ip);
        if let Some(f) = self.list.read().await.as_ref() {
            return if f.nets.iter().any(|n| n.contains(&ip)) {
                Ok(())
            } else {
                Err(CallbackIpError::Foreign(ip))
            };
        }
        self.refresh().await.map_err(CallbackIpError::Unknown)?;
        Box::pin(self.check(ip)).await
    }

    /// Fetches the list; how many ranges it holds.
    pub async fn refresh(&self) -> Result<usize, WechatError> {
        let nets = self.mini.callback_ips().await?;
        let n = nets.len();
        *self.list.write().await = Some(Fetched {
            nets,
            at: Instant::now(),
        });
        Ok(n)
    }

    async fn refresh_if_due(&self) -> Result<usize, WechatError> {
        let due = self
            .list
            .read()
            .await
            .as_ref()
            .is_none_or(|f| f.at.elapsed() >= REFRESH_AFTER);
        if due { self.refresh().await } else { Ok(0) }
    }

    pub(crate) fn jobs(&self, metrics: &Metrics) -> Vec<Job> {
        if !self.on {
            return Vec::new();
        }
        let s = self.clone();
        vec![every(metrics, "callback_ips", LOOK_EVERY, move || {
            let s = s.clone();
            async move { s.refresh_if_due().await }
        })]
    }
}

/// Parses `getcallbackip`'s `ip_list`: ranges (`101.226.103.0/25`) and bare addresses.
/// Entries that are neither are skipped; a list with none left is a bad answer.
pub(crate) fn parse_list(list: &[String]) -> Result<Vec<IpNet>, WechatError> {
    let nets: Vec<IpNet> = list
        .iter()
        .filter_map(|s| {
            let s = s.trim();
            s.parse::<IpNet>()
                .ok()
                .or_else(|| s.parse::<IpAddr>().ok().map(IpNet::from))
                .or_else(|| {
                    tracing::warn!(entry = s, "getcallbackip entry is not an address; skipped");
                    None
                })
        })
        .collect();
    if nets.is_empty() {
        return Err(WechatError::BadResponse(
            "getcallbackip gave no addresses".into(),
        ));
    }
    Ok(nets)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lists_take_ranges_and_addresses() {
        let nets = parse_list(&[
            "101.226.103.0/25".into(),
            "14.17.22.32".into(),
            "junk".into(),
        ])
        .expect("parsed");
        assert_eq!(nets.len(), 2);
        let ip: IpAddr = "101.226.103.77".parse().expect("ip");
        assert!(nets.iter().any(|n| n.contains(&ip)));
        let mapped: IpAddr = "::ffff:14.17.22.32".parse().expect("ip");
        assert!(nets.iter().any(|n| n.contains(&canonical(mapped))));
        assert!(parse_list(&["junk".into()]).is_err());
        assert!(parse_list(&[]).is_err());
    }
}
