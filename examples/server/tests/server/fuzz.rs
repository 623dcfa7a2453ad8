//! Random input on the site's own routes (sign-up, log-in, questions,
//! answers, profiles, search), on SQLite and on Postgres, which refuses
//! some characters in text outright: nothing answers 5xx, and every
//! refusal is JSON with a `code`. Case counts are sized for CI.

use proptest::prelude::*;
use proptest::strategy::ValueTree;
use proptest::test_runner::TestRunner;
use reqwest::Method;
use serde_json::{json, Value};

use crate::{config, start, Browser, Config, StatusCode, HOUR};

/// Text with the characters databases and validators trip on.
fn text() -> impl Strategy<Value = String> {
    prop_oneof![
        any::<String>(),
        "[a-z0-9_\\-]{0,40}",
        "[\\x00-\\x1f\\x7f a-z/]{0,12}",
        Just("seoul/mapo/mangwon\0".to_owned()),
        Just("ｍｉｎａ".to_owned()),
        Just("\u{feff}mina".to_owned()),
        Just("a".repeat(600)),
    ]
}

/// What a form's body is made of: its fields' text, whether an unknown
/// field joins them, or (sometimes) any text at all instead.
type Fill = ((String, String, String), bool, Option<String>);

/// Mostly near misses of a form's shape.
fn fill() -> impl Strategy<Value = Fill> {
    let raw = prop_oneof![4 => Just(None), 1 => any::<String>().prop_map(Some)];
    ((text(), text(), text()), prop::bool::weighted(0.2), raw)
}

/// `form`'s body from `fill`: a near miss of its shape.
fn body(form: &str, ((a, b, c), extra, raw): &Fill) -> String {
    if let Some(raw) = raw {
        return raw.clone();
    }
    let mut body = match form {
        "/auth/signup" => json!({"username": a, "password": b, "region": c}),
        "/auth/login" => json!({"username": a, "password": b}),
        _ => json!({ "body": a }),
    };
    if *extra {
        body["extra"] = json!(c);
    }
    body.to_string()
}

/// `text` percent-encoded, every byte of it, for a path or a query.
fn escape(text: &str) -> String {
    text.bytes().map(|byte| format!("%{byte:02X}")).collect()
}

/// `count` values drawn from `strategy`, the same on every run.
fn draw<S: Strategy>(strategy: S, count: usize) -> Vec<S::Value> {
    let mut runner = TestRunner::deterministic();
    (0..count)
        .map(|_| strategy.new_tree(&mut runner).expect("a value").current())
        .collect()
}

async fn random_input_gets_typed_answers(database: &str) {
    let dir = tempfile::tempdir().expect("a temp dir");
    let server = start(Config {
        database_url: database.to_owned(),
        rate_limit: 0,
        ..config(&dir.path().join("fuzz.db"), false)
    })
    .await
    .expect("the server starts");
    let mina = Browser::new(&server);
    mina.sign_up("mina", "seoul/mapo/mangwon").await;
    let auction = mina.sell("Radio", "100", "10", HOUR).await;
    let (status, question) = mina
        .post(
            &format!("/site/auctions/{auction}/questions"),
            json!({"body": "Does it work?"}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{question}");
    let question = &question["id"];

    let forms = [
        "/auth/signup".to_owned(),
        "/auth/login".to_owned(),
        format!("/site/auctions/{auction}/questions"),
        format!("/site/questions/{question}/answer"),
    ];
    let mut answered = std::collections::BTreeSet::new();
    for (n, (fill, word)) in draw((fill(), text()), 240).into_iter().enumerate() {
        let form = &forms[n % forms.len()];
        let body = body(form, &fill);
        let requests = [
            mina.client
                .request(Method::POST, format!("{}{form}", mina.base))
                .header("content-type", "application/json")
                .body(body.clone()),
            mina.client
                .get(format!("{}/api/auctions?q={}", mina.base, escape(&word))),
            mina.client
                .get(format!("{}/site/users/{}", mina.base, escape(&word))),
        ];
        for request in requests {
            let response = request.send().await.expect("an answer");
            let (status, url) = (response.status(), response.url().clone());
            let text = response.text().await.expect("a body");
            let answer: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
            assert!(
                !status.is_server_error(),
                "{status} at {url} for {body:?}: {text}"
            );
            if status.is_client_error() {
                let code = answer["code"].as_str().unwrap_or_default();
                assert!(!code.is_empty(), "{status} at {url} for {body:?}: {text}");
                answered.insert(code.to_owned());
            }
        }
    }
    // The draws reach the forms' own refusals, not only malformed JSON.
    for code in [
        "invalid_username",
        "invalid_credentials",
        "invalid_question",
    ] {
        assert!(
            answered.contains(code),
            "{code} never answered: {answered:?}"
        );
    }
    server.stop().await;
}

#[tokio::test]
async fn random_input_on_the_site_gets_typed_answers() {
    let dir = tempfile::tempdir().expect("a temp dir");
    let database = format!("sqlite://{}", dir.path().join("fuzz.db").display());
    random_input_gets_typed_answers(&database).await;
}

#[tokio::test]
async fn on_postgres_random_input_on_the_site_gets_typed_answers() {
    let database = neighborbid_sqlx::testing::TestDatabase::create().await;
    random_input_gets_typed_answers(database.url()).await;
}
