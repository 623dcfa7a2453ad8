//! A TCP proxy in front of a server (Postgres, Redis) whose connections a
//! test can cut, as an outage, a restart or a network failure would,
//! without stopping the server other tests share.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

/// Forwards connections to a target until [`cut`](TcpProxy::cut).
pub struct TcpProxy {
    address: std::net::SocketAddr,
    up: Arc<AtomicBool>,
    /// Bumped by every cut: open connections end.
    cuts: watch::Sender<u64>,
}

impl TcpProxy {
    /// A proxy on a free local port to `target` (`host:port`).
    pub async fn start(target: String) -> TcpProxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let address = listener.local_addr().expect("address");
        let up = Arc::new(AtomicBool::new(true));
        let (cuts, _) = watch::channel(0);
        let proxy = TcpProxy {
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

    /// Where it listens: connect here instead of to the target.
    pub fn address(&self) -> std::net::SocketAddr {
        self.address
    }

    /// Closes every connection and refuses new ones until
    /// [`restore`](TcpProxy::restore).
    pub fn cut(&self) {
        self.up.store(false, Ordering::SeqCst);
        self.cuts.send_modify(|cuts| *cuts += 1);
    }

    /// Accepts connections again.
    pub fn restore(&self) {
        self.up.store(true, Ordering::SeqCst);
    }
}
