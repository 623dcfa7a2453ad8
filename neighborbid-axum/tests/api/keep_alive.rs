//! One keep-alive connection across refusals: an answer sent before the
//! request's body was read says `Connection: close` (RFC 9112 9.6), so a
//! client never sends its next request into a connection being closed;
//! one whose body was read keeps the connection.

use std::time::Duration;

use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::support::TestServer;

/// One HTTP/1.1 request on `stream`; returns the answer's head (status
/// line and headers, lowercased) after reading its whole body.
async fn exchange(stream: &mut TcpStream, head: &str, body: &str) -> Option<String> {
    // The head first, the body a moment later: as a client on a real
    // network, whose body may not have arrived when the answer is decided.
    let request = format!("{head}\r\nContent-Length: {}\r\n\r\n", body.len());
    stream.write_all(request.as_bytes()).await.ok()?;
    if !body.is_empty() {
        tokio::time::sleep(Duration::from_millis(50)).await;
        stream.write_all(body.as_bytes()).await.ok()?;
    }
    let mut received = Vec::new();
    let mut buffer = [0u8; 4096];
    loop {
        let read = tokio::time::timeout(Duration::from_secs(10), stream.read(&mut buffer))
            .await
            .expect("an answer in time")
            .ok()?;
        if read == 0 {
            return None;
        }
        received.extend_from_slice(&buffer[..read]);
        let text = String::from_utf8_lossy(&received).to_string();
        let Some(end) = text.find("\r\n\r\n") else {
            continue;
        };
        let head = text[..end].to_lowercase();
        let length: usize = head
            .lines()
            .find_map(|line| line.strip_prefix("content-length: "))
            .and_then(|n| n.trim().parse().ok())
            .unwrap_or(0);
        if received.len() >= end + 4 + length {
            return Some(head);
        }
    }
}

#[tokio::test]
async fn refusals_before_the_body_is_read_announce_the_close() {
    let server = TestServer::start().await;
    server.deposit("alice", "1000").await;
    let auction = server.create(json!({})).await;
    let address = server.base.trim_start_matches("http://");
    let host = address.split('/').next().expect("host");
    let bid = format!("POST /api/auctions/{auction}/bids HTTP/1.1\r\nHost: {host}");
    let big = format!(
        "{{\"amount\":\"120\",\"pad\":\"{}\"}}",
        "x".repeat(64 * 1024)
    );

    // Unread bodies: no credentials (401), a wrong media type (415), a
    // body over the limit (413).
    let refusals = [
        (
            format!("{bid}\r\nContent-Type: application/json"),
            "{\"amount\":\"120\"}".to_owned(),
            "401",
        ),
        (
            format!("{bid}\r\nAuthorization: Bearer alice\r\nContent-Type: text/plain"),
            "{\"amount\":\"120\"}".to_owned(),
            "415",
        ),
        (
            format!("{bid}\r\nAuthorization: Bearer alice\r\nContent-Type: application/json"),
            big,
            "413",
        ),
    ];
    for (head, body, status) in refusals {
        let mut stream = TcpStream::connect(host).await.expect("connect");
        let answer = exchange(&mut stream, &head, &body)
            .await
            .expect("an answer");
        assert!(
            answer.starts_with(&format!("http/1.1 {status}")),
            "{answer}"
        );
        let follow_up = exchange(
            &mut stream,
            &format!("GET /api/auctions/{auction} HTTP/1.1\r\nHost: {host}"),
            "",
        )
        .await;
        let kept = follow_up.is_some_and(|head| head.starts_with("http/1.1 200"));
        let announced = answer.contains("connection: close");
        assert!(
            kept || announced,
            "closed without notice after {status}: {answer}"
        );
    }

    // A body read, then refused by a rule: the connection stays.
    let mut stream = TcpStream::connect(host).await.expect("connect");
    let head = format!("{bid}\r\nAuthorization: Bearer alice\r\nContent-Type: application/json");
    let answer = exchange(&mut stream, &head, "{\"amount\":\"50\"}")
        .await
        .expect("an answer");
    assert!(answer.starts_with("http/1.1 422"), "{answer}");
    assert!(!answer.contains("connection: close"), "{answer}");
    let again = exchange(&mut stream, &head, "{\"amount\":\"50\"}").await;
    assert!(
        again.is_some_and(|head| head.starts_with("http/1.1 422")),
        "kept alive"
    );
}
