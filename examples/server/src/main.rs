//! `cargo run -p neighborbid-server` starts the site on an embedded SQLite
//! file; `--help` lists the flags.

use std::io::IsTerminal;

use clap::Parser;
use neighborbid_server::{start, Config};
use tracing_subscriber::EnvFilter;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    let config = Config::parse();
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    if config.log_json {
        tracing_subscriber::fmt()
            .with_env_filter(filter)
            .json()
            .init();
    } else {
        // Colours for a person at a terminal; plain text for a log file.
        tracing_subscriber::fmt()
            .with_env_filter(filter)
            .with_ansi(std::io::stdout().is_terminal())
            .init();
    }
    // Listening for the signals before starting: one sent as soon as the
    // server says it runs (a service manager's SIGTERM) then stops it
    // gracefully instead of killing it by the default action.
    let stopping = shutdown_signal()?;
    let server = start(config).await?;
    println!(
        "NeighborBid is running at http://{}/ (Ctrl-C stops it)",
        server.address
    );
    stopping.await;
    tracing::info!("shutting down");
    server.stop().await;
    Ok(())
}

/// Ctrl-C, or SIGTERM on Unix, from the moment this is called.
fn shutdown_signal() -> std::io::Result<impl std::future::Future<Output = ()>> {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        let mut interrupt = signal(SignalKind::interrupt())?;
        let mut terminate = signal(SignalKind::terminate())?;
        Ok(async move {
            tokio::select! {
                _ = interrupt.recv() => {}
                _ = terminate.recv() => {}
            }
        })
    }
    #[cfg(not(unix))]
    {
        Ok(async {
            let _ = tokio::signal::ctrl_c().await;
        })
    }
}
