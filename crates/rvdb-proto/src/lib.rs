//! The wire types and gRPC stubs of rvdb, generated at build time from `proto/rvdb/v1`.
//!
//! Everything lives in [`v1`]: the storage-node service (`storage_node_client` / `storage_node_server`), the index
//! manager service (`index_manager_client` / `index_manager_server`) and the shared messages. [`convert`] maps the
//! shared messages to and from `rvdb-core`'s domain types, once, for every service.
//!
//! [`api`] is how one service reaches another: a trait per service with a remote (gRPC) implementation here and
//! a local one in the service's crate, handed out by URL from a [`api::NodeDirectory`].
//!
//! Beyond the stubs, what every service shares on the wire: [`rpc`] (API keys, request ids, per-method metrics,
//! the [`Channel`] that presents this process's key) and [`tls`] (optional rustls on listeners and channels).

#[allow(clippy::all, missing_docs, unreachable_pub)]
pub mod v1 {
    tonic::include_proto!("rvdb.v1");
}

pub mod api;
pub mod convert;
pub mod rpc;
pub mod tls;

pub use rpc::Channel;

/// The gRPC metadata key of a storage node's refusal of a write routed by an old table (FAILED_PRECONDITION): the
/// placement epoch the replica holds, i.e. the routing-table version the writer must reach before it sends again.
pub const PLACEMENT_EPOCH_HEADER: &str = "rvdb-placement-epoch";

/// The placement epoch a write was refused for ([`PLACEMENT_EPOCH_HEADER`]), if `status` is such a refusal.
pub fn fenced_epoch(status: &tonic::Status) -> Option<u64> {
    if status.code() != tonic::Code::FailedPrecondition {
        return None;
    }
    status.metadata().get(PLACEMENT_EPOCH_HEADER)?.to_str().ok()?.parse().ok()
}

/// An endpoint to another rvdb service, dialled the same way by every service: TCP_NODELAY, a 3 s connect timeout,
/// and HTTP/2 keep-alive pings (every 2 s, also on idle connections; dead after 3 s without an answer), so that a
/// connection to a peer that vanished without closing it (a network partition, a frozen host) is noticed and
/// dialled again instead of hanging every call on it until its deadline.
/// An `https://` URL gets TLS ([`tls`]).
pub fn endpoint(url: &str) -> Result<tonic::transport::Endpoint, tonic::transport::Error> {
    use std::time::Duration;
    let endpoint = tonic::transport::Endpoint::from_shared(url.to_string())?
        .tcp_nodelay(true)
        .connect_timeout(Duration::from_secs(3))
        .http2_keep_alive_interval(Duration::from_secs(2))
        .keep_alive_timeout(Duration::from_secs(3))
        .keep_alive_while_idle(true);
    if url.starts_with("https://") { endpoint.tls_config(tls::client_config()) } else { Ok(endpoint) }
}

/// A lazily connected [`Channel`] (with this process's API key and request ids) to the service at `url`.
pub fn channel(url: &str) -> Result<Channel, tonic::transport::Error> {
    Ok(Channel::new(endpoint(url)?.connect_lazy()))
}

/// A [`Channel`] to `url`, connected now (fails fast when nothing listens there).
pub async fn connect(url: &str) -> Result<Channel, tonic::transport::Error> {
    Ok(Channel::new(endpoint(url)?.connect().await?))
}

/// Lazily connected channels to other rvdb services, one per URL, made by [`endpoint`] and shared by every call
/// to that service (a tonic `Channel` multiplexes calls and reconnects by itself).
#[derive(Debug, Default)]
pub struct Channels(std::sync::Mutex<std::collections::HashMap<String, Channel>>);

impl Channels {
    pub fn get(&self, url: &str) -> Result<Channel, tonic::transport::Error> {
        let mut channels = self.0.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(c) = channels.get(url) {
            return Ok(c.clone());
        }
        let channel = channel(url)?;
        channels.insert(url.to_string(), channel.clone());
        Ok(channel)
    }
}
