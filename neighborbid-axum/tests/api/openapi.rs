//! The served OpenAPI document parses, every operation it lists is
//! routed, and its patterns accept what the server accepts.

use neighborbid_axum::ApiConfig;
use neighborbid_core::{Currency, Money};
use regex::Regex;
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

use crate::support::TestServer;

#[tokio::test]
async fn the_document_parses_and_every_operation_is_served() {
    let server = TestServer::with_config(ApiConfig {
        rate_limit: None,
        recent_bids: 7,
        ..ApiConfig::default()
    })
    .await;
    let auction = server.create(json!({})).await;
    let served = server.get("/openapi.json", None).await;
    assert_eq!(served.status, StatusCode::OK);
    assert_eq!(served.headers["content-type"], "application/json");
    let recent_bids = &served.body["paths"]["/auctions/{id}"]["get"]["parameters"][1];
    assert_eq!(recent_bids["name"], "bids");
    assert_eq!(recent_bids["schema"]["default"], 7, "the host's setting");
    let document: openapiv3::OpenAPI =
        serde_json::from_value(served.body).expect("valid OpenAPI 3.0");
    let mut operations = 0;
    for (path, item) in document.paths.iter() {
        let item = item.as_item().expect("inline path items");
        let path = path.replace("{id}", &auction.to_string());
        for (method, _) in item.iter() {
            let method: Method = method.to_uppercase().parse().expect("a method");
            let got = server.call(method.clone(), &path, None, None, None).await;
            assert!(
                !matches!(got.code(), "not_found" | "method_not_allowed"),
                "{method} {path} is documented but not routed: {:?}",
                got.body
            );
            operations += 1;
        }
    }
    assert_eq!(operations, 15);
}

/// Amounts as clients might write them, all at most the currency's maximum
/// (the document gives the maximum in words, not in the pattern).
const AMOUNTS: [&str; 31] = [
    "1",
    "12",
    "0012",
    "999999999999",
    "12.0",
    "12.000",
    "0",
    "00",
    "0.0",
    "0.00",
    "0.000",
    "0.5",
    "0.05",
    "0.50",
    "0.500",
    "0.005",
    "0.0050",
    "1.5",
    "1.50",
    "1.500",
    "1.505",
    "10.",
    ".5",
    "-1",
    "1e3",
    " 1",
    "1,000",
    "+1",
    "abc",
    "",
    "\u{661}",
];

/// The pattern of a schema in the document.
fn pattern(schema: &Value) -> Regex {
    let text = schema["pattern"]
        .as_str()
        .unwrap_or_else(|| panic!("{schema} has a pattern"));
    Regex::new(text).expect("a pattern the regex crate reads")
}

#[tokio::test]
async fn amount_patterns_follow_the_currency_and_match_the_server() {
    let no_minor_units = Currency::new(0, Currency::default().max());
    for currency in [Currency::default(), no_minor_units] {
        let server = TestServer::with_currency(currency).await;
        let document = server.get("/openapi.json", None).await.body;
        let schemas = &document["components"]["schemas"];
        let (money, positive) = (
            pattern(&schemas["Money"]),
            pattern(&schemas["PositiveMoney"]),
        );
        for amount in AMOUNTS {
            let deposit = server
                .post("/me/wallet/deposits", "alice", json!({ "amount": amount }))
                .await;
            assert_eq!(
                positive.is_match(amount),
                deposit.status == StatusCode::CREATED,
                "PositiveMoney and a deposit of {amount:?} at scale {}: {:?}",
                currency.scale(),
                deposit.body
            );
            assert_eq!(
                money.is_match(amount),
                currency.parse(amount).is_ok(),
                "Money and {amount:?} at scale {}",
                currency.scale()
            );
        }
    }
    // "0.5" is the sample the two currencies disagree on, so the patterns
    // above really followed the currency.
    assert!(Currency::default().parse("0.5").is_ok());
    assert!(no_minor_units.parse("0.5").is_err());
    // The server also reads "-0" as zero (for Money, where zero is allowed);
    // the pattern leaves that spelling out on purpose.
    assert_eq!(
        Money::ZERO,
        "-0".parse::<Money>().expect("-0 reads as zero")
    );
}

#[tokio::test]
async fn the_idempotency_key_pattern_matches_the_server() {
    let server = TestServer::start().await;
    let document = server.get("/openapi.json", None).await.body;
    let header = &document["paths"]["/me/wallet/deposits"]["post"]["parameters"][0];
    assert_eq!(header["name"], "Idempotency-Key");
    let schema = &header["schema"];
    let key = pattern(schema);
    let longest = schema["maxLength"].as_u64().expect("a maximum") as usize;
    let keys = [
        "k".to_owned(),
        "a-UUID_or.anything~!{}".to_owned(),
        "with space".to_owned(),
        "tab\there".to_owned(),
        "x".repeat(longest),
        "x".repeat(longest + 1),
    ];
    let mut taken = 0;
    for text in &keys {
        let answer = server
            .call(
                Method::POST,
                "/me/wallet/deposits",
                Some("alice"),
                Some(text),
                Some(json!({ "amount": "1" })),
            )
            .await;
        let documented = key.is_match(text) && text.len() <= longest;
        assert_eq!(
            documented,
            answer.status == StatusCode::CREATED,
            "key {text:?}: {:?}",
            answer.body
        );
        taken += usize::from(documented);
    }
    assert_eq!(taken, 3, "three of the keys are valid");
}

#[tokio::test]
async fn text_patterns_match_the_server() {
    let server = TestServer::start().await;
    let document = server.get("/openapi.json", None).await.body;
    let fields = &document["components"]["schemas"]["CreateAuction"]["properties"];
    let (title, description) = (pattern(&fields["title"]), pattern(&fields["description"]));
    // Not blank: the document says "Not blank" in words, so no sample is.
    let samples = [
        "Lamp",
        "Café, 2 cups",
        "tab\there",
        "line\nbreak",
        "crlf\r\n",
        "\n\u{a0}\tpadded\u{3000}\u{85}",
        "nul\0",
        "bell\u{7}",
        "del\u{7f}",
        "next line\u{85}",
        "zero width\u{200b}",
    ];
    let mut taken = 0;
    for (name, pattern) in [("title", &title), ("description", &description)] {
        for sample in samples {
            let mut body = json!({"title": "Lamp", "scope": {"kind": "national"}, "start_price": "5",
                "policy": {"increment": {"kind": "fixed", "unit": "1"}},
                "ends_at": server.clock_now() + chrono::TimeDelta::hours(1)});
            body[name] = json!(sample);
            let answer = server.post("/auctions", "seller", body).await;
            let created = answer.status == StatusCode::CREATED;
            assert_eq!(
                pattern.is_match(sample),
                created,
                "{name} {sample:?}: {:?}",
                answer.body
            );
            taken += usize::from(created);
        }
    }
    // Titles are trimmed, so white space at either end passes there even
    // when it is a control character (U+0085 too): six samples pass as
    // titles; six as descriptions, which keep tabs and line breaks anywhere.
    assert_eq!(taken, 6 + 6);
}

#[tokio::test]
async fn the_document_names_the_currency() {
    use neighborbid_core::{CurrencyCode, Money};
    let won = Currency::new(0, Money::units(1_000_000_000))
        .with_code(CurrencyCode::new("KRW").expect("a code"));
    let server = TestServer::with_currency(won).await;
    let document = server.get("/openapi.json", None).await.body;
    let currency = &document["info"]["x-currency"];
    assert_eq!(currency["code"], "KRW", "{currency}");
    assert_eq!(currency["decimal_places"], 0);
    assert_eq!(currency["max"], "1000000000");
    let money = document["components"]["schemas"]["Money"]["description"]
        .as_str()
        .expect("a description");
    assert!(money.contains("in KRW"), "{money}");
    let plain = TestServer::with_currency(Currency::default()).await;
    let document = plain.get("/openapi.json", None).await.body;
    assert_eq!(
        document["info"]["x-currency"]["code"],
        serde_json::Value::Null
    );
}
