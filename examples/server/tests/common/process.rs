//! A `neighborbid-server` process for tests that need a real one: to stop
//! it with SIGTERM as a service manager does, or kill it with SIGKILL as a
//! crash would.

// Each test binary that includes this module uses only part of it.
#![allow(dead_code)]

use std::time::Duration;

/// A `neighborbid-server` process, as an operator starts it.
pub(crate) struct Process {
    child: tokio::process::Child,
    /// Where it listens.
    pub(crate) address: std::net::SocketAddr,
    /// Everything it printed (its log), collected until it exits.
    output: tokio::task::JoinHandle<String>,
}

impl Process {
    /// Starts the binary with these environment variables, logging
    /// warnings.
    pub(crate) async fn spawn(env: &[(&str, &str)]) -> Process {
        Process::spawn_logging(env, "warn").await
    }

    /// Starts the binary with these environment variables and `RUST_LOG`.
    pub(crate) async fn spawn_logging(env: &[(&str, &str)], log: &str) -> Process {
        Process::spawn_with(&[], env, log).await
    }

    /// Starts the binary with these flags, environment variables and
    /// `RUST_LOG`, on a free port.
    pub(crate) async fn spawn_with(args: &[&str], env: &[(&str, &str)], log: &str) -> Process {
        use tokio::io::AsyncBufReadExt;

        let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_neighborbid-server"))
            .args(["--listen", "127.0.0.1:0"])
            .args(args)
            .envs(env.iter().copied())
            .env("RUST_LOG", log)
            .stdout(std::process::Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("the server binary starts");
        let stdout = child.stdout.take().expect("stdout");
        let mut lines = tokio::io::BufReader::new(stdout).lines();
        let mut printed = String::new();
        let address = loop {
            let line = tokio::time::timeout(Duration::from_secs(30), lines.next_line())
                .await
                .expect("the server says where it listens")
                .expect("stdout")
                .unwrap_or_else(|| panic!("the server exited: {printed}"));
            printed.push_str(&line);
            printed.push('\n');
            let address = line
                .split_once("running at http://")
                .and_then(|(_, rest)| rest.split('/').next())
                .and_then(|address| address.parse().ok());
            if let Some(address) = address {
                break address;
            }
        };
        // Keep reading, so a chatty log never fills the pipe and blocks it.
        let output = tokio::spawn(async move {
            while let Ok(Some(line)) = lines.next_line().await {
                printed.push_str(&line);
                printed.push('\n');
            }
            printed
        });
        Process {
            child,
            address,
            output,
        }
    }

    /// SIGTERM, as a service manager stops it; it must exit cleanly.
    pub(crate) async fn terminate(self) {
        self.terminate_with_logs().await;
    }

    /// [`terminate`](Self::terminate), returning everything it printed.
    pub(crate) async fn terminate_with_logs(mut self) -> String {
        let pid = self.child.id().expect("running").to_string();
        let sent = std::process::Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .expect("kill");
        assert!(sent.success());
        let status = tokio::time::timeout(Duration::from_secs(30), self.child.wait())
            .await
            .expect("exits after SIGTERM")
            .expect("status");
        assert!(status.success(), "exit status {status}");
        self.output.await.expect("the output")
    }

    /// SIGKILL, as a crash or the OOM killer would: no shutdown code runs.
    /// Returns everything it printed.
    pub(crate) async fn kill(mut self) -> String {
        self.child.kill().await.expect("SIGKILL");
        self.output.await.expect("the output")
    }
}
