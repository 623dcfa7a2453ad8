//! A TCP proxy in front of Redis whose connections the test can cut, as an
//! outage or a network failure would, without stopping the shared server.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

/// Forwards connections to a target until [`cut`](Proxy::cut).
pub(crate) struct Proxy {
    address: std::net::SocketAddr,
    up: Arc<AtomicBool>,
    /// Bumped by every cut: open connections end.
    cuts: watch::Sender<u64>,
}

impl Proxy {
    /// A proxy on a free local port to `target` (`host:port`).
    pub(crate) async fn start(target: String) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let address = listener.local_addr().expect("address");
        let up = Arc::new(AtomicBool::new(true));
        let (cuts, _) = watch::channel(0);
        let proxy = Proxy {
            address,
            up: Arc::clone(&up),
            cuts: cuts.clone(),
        };
        tokio::spawn(async move {
            while let Ok((mut client, _)) = listener.accept().await {
                if !up.load(Ordering::SeqCst) {
                    continue; // dropped: the connection closes at once
                }
                let mut cut = cuts.subscribe();
                let target = target.clone();
                tokio::spawn(async move {
                    let Ok(mut server) = TcpStream::connect(&target).await else {
                        return;
                    };
                    tokio::select! {
                        _ = tokio::io::copy_bidirectional(&mut client, &mut server) => {}
                        _ = cut.changed() => {}
                    }
                });
            }
        });
        proxy
    }

    /// A Redis URL through this proxy.
    pub(crate) fn url(&self) -> String {
        format!("redis://{}", self.address)
    }

    /// Closes every connection and refuses new ones until
    /// [`restore`](Proxy::restore).
    pub(crate) fn cut(&self) {
        self.up.store(false, Ordering::SeqCst);
        self.cuts.send_modify(|cuts| *cuts += 1);
    }

    /// Accepts connections again.
    pub(crate) fn restore(&self) {
        self.up.store(true, Ordering::SeqCst);
    }
}
