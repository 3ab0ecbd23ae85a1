//! A TCP proxy between two rvdb processes that a test can cut, as a network partition would: while it is cut,
//! bytes stop flowing both ways on the connections it carries (they stay open and silent, as when packets are
//! dropped: the peers notice by their keep-alive pings or deadlines), and new connections are accepted but never
//! reach the other side. When it is mended, the connections held meanwhile are closed (the peers dial again, as
//! after a partition long enough for their connections to fail) and new ones flow.

use std::net::SocketAddr;
use std::sync::Arc;

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

#[derive(Debug)]
pub struct Proxy {
    /// `http://127.0.0.1:<port>`: give it to the process that should reach the upstream through the proxy.
    pub url: String,
    cut: Arc<watch::Sender<bool>>,
    task: tokio::task::AbortHandle,
}

impl Proxy {
    /// A proxy to the gRPC URL `upstream` (`http://host:port`), serving on a free loopback port.
    pub async fn start(upstream: &str) -> Proxy {
        let target: SocketAddr = upstream
            .trim_start_matches("http://")
            .trim_end_matches('/')
            .parse()
            .unwrap_or_else(|e| panic!("proxy upstream {upstream:?}: {e}"));
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind proxy");
        let url = format!("http://{}", listener.local_addr().expect("addr"));
        let cut = Arc::new(watch::Sender::new(false));
        let rx = cut.subscribe();
        let task = tokio::spawn(async move {
            loop {
                let Ok((inbound, _)) = listener.accept().await else { continue };
                let _ = inbound.set_nodelay(true);
                tokio::spawn(carry(inbound, target, rx.clone()));
            }
        })
        .abort_handle();
        Proxy { url, cut, task }
    }

    /// Cuts the link (a partition).
    pub fn cut(&self) {
        self.cut.send_replace(true);
    }

    /// Mends it.
    pub fn mend(&self) {
        self.cut.send_replace(false);
    }

    pub fn is_cut(&self) -> bool {
        *self.cut.borrow()
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.task.abort();
        self.cut.send_replace(false);
    }
}

/// One connection: forwarded until the link is cut, then held silent until it is mended, then closed.
async fn carry(mut inbound: TcpStream, target: SocketAddr, mut cut: watch::Receiver<bool>) {
    if !*cut.borrow() {
        let Ok(mut upstream) = TcpStream::connect(target).await else { return };
        let _ = upstream.set_nodelay(true);
        tokio::select! {
            _ = tokio::io::copy_bidirectional(&mut inbound, &mut upstream) => return,
            _ = cut.wait_for(|c| *c) => {}
        }
        // cut while the connection was open: the upstream side is held as well, silent
        let _ = cut.wait_for(|c| !*c).await;
        return;
    }
    let _ = cut.wait_for(|c| !*c).await;
}
