//! Who may do what: nobody acts for another user or reads their money,
//! sellers, strangers and other neighbourhoods are refused on every path
//! (HTTP and WebSocket), sessions end, and passwords never come back out.

use serde_json::{json, Value};

use crate::{config, live, next_message, send_bid, start, Browser, Process, StatusCode, HOUR};

fn code(answer: &(StatusCode, Value)) -> (StatusCode, Option<&str>) {
    (answer.0, answer.1["code"].as_str())
}

#[tokio::test]
async fn nobody_acts_for_another_user_or_outside_their_rights() {
    let dir = tempfile::tempdir().expect("a temp dir");
    let server = start(config(&dir.path().join("access.db"), false))
        .await
        .expect("starts");
    let (mina, alice, bob) = (
        Browser::new(&server),
        Browser::new(&server),
        Browser::new(&server),
    );
    mina.sign_up("mina", "seoul/mapo/mangwon").await;
    let alice_token = alice.sign_up("alice", "seoul/mapo/hapjeong").await["token"].clone();
    let bob_id = bob.sign_up("bob", "seoul/mapo/mangwon").await["account"]["id"].clone();
    for bidder in [&alice, &bob] {
        bidder.top_up("1000").await;
    }
    let national = mina.sell("Radio", "100", "10", HOUR).await;
    let bids = format!("/api/auctions/{national}/bids");

    // A body cannot name another user: unknown fields are refused.
    let as_bob = alice
        .post(&bids, json!({"amount": "100", "bidder": bob_id}))
        .await;
    assert_eq!(
        code(&as_bob),
        (StatusCode::BAD_REQUEST, Some("invalid_body"))
    );
    let for_bob = alice
        .post(
            "/api/me/wallet/deposits",
            json!({"amount": "5", "user": bob_id}),
        )
        .await;
    assert_eq!(
        code(&for_bob),
        (StatusCode::BAD_REQUEST, Some("invalid_body"))
    );
    // Wallets and histories are only ever the caller's own.
    for path in [
        format!("/api/users/{bob_id}/wallet"),
        format!("/api/me/wallet?user={bob_id}"),
    ] {
        let answer = alice.get(&path).await;
        let own = answer.1["wallet"]["user"] != bob_id;
        assert!(answer.0 != StatusCode::OK || own, "{path}: {:?}", answer.1);
    }
    let (_, wallet) = bob.get("/api/me/wallet").await;
    assert_eq!(
        (
            wallet["wallet"]["balance"].as_str(),
            wallet["history"]["items"].as_array().map(Vec::len)
        ),
        (Some("1000"), Some(1)),
        "bob's wallet saw nothing of alice's attempts"
    );

    // Sellers do not bid on their own auctions; only they cancel them.
    let own = mina.post(&bids, json!({"amount": "100"})).await;
    assert_eq!(
        code(&own),
        (StatusCode::FORBIDDEN, Some("seller_cannot_bid"))
    );
    let cancel = format!("/api/auctions/{national}/cancel");
    let not_hers = alice.post(&cancel, json!({})).await;
    assert_eq!(code(&not_hers), (StatusCode::FORBIDDEN, Some("not_seller")));
    // Signed out, nothing changes.
    let anonymous = reqwest::Client::new()
        .post(format!("http://{}{bids}", server.address))
        .json(&json!({"amount": "100"}))
        .send()
        .await
        .expect("an answer");
    assert_eq!(anonymous.status(), StatusCode::UNAUTHORIZED);

    // A local auction of Mangwon: Bob (Mangwon) may bid, Alice (Hapjeong)
    // may not, neither over HTTP nor over the WebSocket.
    let ends_at = chrono::Utc::now() + HOUR;
    let (status, local) = mina
        .post(
            "/api/auctions",
            json!({"title": "Chair", "scope": {"kind": "local", "region": "seoul/mapo/mangwon"},
            "start_price": "100", "policy": {"increment": {"kind": "fixed", "unit": "10"}},
            "ends_at": ends_at}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{local}");
    let local = local["id"].as_i64().expect("an id");
    let local_bids = format!("/api/auctions/{local}/bids");
    let stranger = alice.post(&local_bids, json!({"amount": "100"})).await;
    assert_eq!(
        code(&stranger),
        (StatusCode::FORBIDDEN, Some("region_not_eligible"))
    );
    let buy = alice
        .post(&format!("/api/auctions/{local}/buy-now"), json!({}))
        .await;
    assert_eq!(buy.0, StatusCode::FORBIDDEN, "{:?}", buy.1);
    let alice_token = alice_token.as_str().expect("a token").to_owned();
    let mut socket = live(server.address, local, &alice_token).await;
    send_bid(&mut socket, "100", "alice-local").await;
    let refused = next_message(&mut socket, |m| m["type"] == "error").await;
    assert_eq!(refused["code"], "region_not_eligible");
    let neighbour = bob.post(&local_bids, json!({"amount": "100"})).await;
    assert_eq!(neighbour.0, StatusCode::CREATED, "{:?}", neighbour.1);

    // An anonymous socket may watch but not bid.
    let url = format!("ws://{}/api/auctions/{national}/live", server.address);
    let (mut watcher, _) = tokio_tungstenite::connect_async(url)
        .await
        .expect("connects");
    next_message(&mut watcher, |m| m["type"] == "snapshot").await;
    send_bid(&mut watcher, "200", "anonymous").await;
    let refused = next_message(&mut watcher, |m| m["type"] == "error").await;
    assert_eq!(refused["code"], "unauthorized");
    server.stop().await;
}

#[tokio::test]
async fn expired_sessions_are_refused() {
    let dir = tempfile::tempdir().expect("a temp dir");
    let path = dir.path().join("sessions.db");
    let server = start(config(&path, false)).await.expect("starts");
    let alice = Browser::new(&server);
    alice.sign_up("alice", "seoul/mapo/hapjeong").await;
    assert_eq!(alice.get("/api/me/wallet").await.0, StatusCode::OK);
    // The session's time runs out (as if a day had passed).
    let db = sqlx::SqlitePool::connect(&format!("sqlite://{}", path.display()))
        .await
        .expect("the database");
    sqlx::query("UPDATE sessions SET expires_at = 0")
        .execute(&db)
        .await
        .expect("expire");
    let answer = alice.get("/api/me/wallet").await;
    assert_eq!(
        code(&answer),
        (StatusCode::UNAUTHORIZED, Some("session_expired"))
    );
    assert_eq!(alice.get("/auth/me").await.0, StatusCode::UNAUTHORIZED);
    server.stop().await;
}

#[tokio::test]
async fn passwords_are_never_returned_or_logged() {
    const PASSWORD: &str = "a very particular secret";
    let dir = tempfile::tempdir().expect("a temp dir");
    let url = format!("sqlite://{}", dir.path().join("secrets.db").display());
    let server = Process::spawn_logging(&[("NEIGHBORBID_DATABASE_URL", &url)], "trace").await;
    let browser = Browser::at(server.address);
    let mut answers = Vec::new();
    for (path, password) in [
        ("/auth/signup", PASSWORD),
        ("/auth/login", PASSWORD),
        ("/auth/login", "a wrong secret"),
    ] {
        let body =
            json!({"username": "mina", "password": password, "region": "seoul/mapo/mangwon"});
        answers.push(browser.post(path, body).await.1.to_string());
    }
    answers.push(browser.get("/auth/me").await.1.to_string());
    let logs = server.terminate_with_logs().await;
    for secret in [PASSWORD, "a wrong secret"] {
        for answer in &answers {
            assert!(
                !answer.contains(secret),
                "an answer holds the password: {answer}"
            );
        }
        assert!(!logs.contains(secret), "the log holds the password");
    }
    assert!(logs.contains("signed up"), "the log was captured: {logs}");
}
