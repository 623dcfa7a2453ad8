//! The catalogue over the API: browsing (search, filters with the region
//! tree, sorts, pages), item details and photos, the watchlist and its
//! notices, questions and answers, seller profiles, ending early, and the
//! bad input each of them refuses without changing anything.

use std::time::Duration;

use reqwest::header::{CACHE_CONTROL, CONTENT_TYPE, ETAG, IF_NONE_MATCH};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

use super::{config, start, Browser, Config, LocalArea, HOUR};

const MANGWON: &str = "seoul/mapo/mangwon";
const HAPJEONG: &str = "seoul/mapo/hapjeong";
const YEOKSAM: &str = "seoul/gangnam/yeoksam";

/// A listing: title, description, category, condition, scope, start price,
/// start and end from now.
struct Item<'a> {
    title: &'a str,
    description: &'a str,
    category: &'a str,
    condition: &'a str,
    scope: Value,
    start: &'a str,
    starts_in: Option<chrono::TimeDelta>,
    ends_in: chrono::TimeDelta,
}

impl Browser {
    async fn list(&self, item: Item<'_>) -> Value {
        let now = chrono::Utc::now();
        let mut body = json!({"title": item.title, "description": item.description,
            "category": item.category,
            "attributes": {"condition": item.condition, "shipping": "buyer"},
            "scope": item.scope, "start_price": item.start,
            "policy": {"increment": {"kind": "fixed", "unit": "1"}},
            "ends_at": now + item.ends_in});
        if let Some(starts_in) = item.starts_in {
            body["starts_at"] = json!(now + starts_in);
        }
        let (status, auction) = self.post("/api/auctions", body).await;
        assert_eq!(status, StatusCode::CREATED, "{auction}");
        auction
    }

    /// The ids a browse query answers, and its total.
    async fn browse(&self, query: &str) -> (Vec<i64>, u64) {
        let (status, page) = self.get(&format!("/api/auctions?{query}")).await;
        assert_eq!(status, StatusCode::OK, "{query}: {page}");
        let ids = page["items"]
            .as_array()
            .expect("items")
            .iter()
            .map(|auction| auction["id"].as_i64().expect("an id"))
            .collect();
        (ids, page["total"].as_u64().expect("a total"))
    }

    async fn upload(
        &self,
        auction: i64,
        content_type: &str,
        bytes: Vec<u8>,
    ) -> (StatusCode, Value) {
        let response = self
            .client
            .post(format!("{}/site/auctions/{auction}/images", self.base))
            .header(CONTENT_TYPE, content_type)
            .body(bytes)
            .send()
            .await
            .expect("an answer");
        let status = response.status();
        (status, response.json().await.expect("JSON"))
    }
}

/// The ids on a user's watchlist.
async fn watched(browser: &Browser) -> Vec<i64> {
    let (_, list) = browser.get("/site/watchlist").await;
    list["items"]
        .as_array()
        .expect("items")
        .iter()
        .map(id)
        .collect()
}

fn local(region: &str) -> Value {
    json!({"kind": "local", "region": region})
}

fn id(auction: &Value) -> i64 {
    auction["id"].as_i64().expect("an id")
}

/// A tiny PNG (the signature and an IHDR chunk are enough to be sniffed).
fn png() -> Vec<u8> {
    let mut bytes = b"\x89PNG\r\n\x1a\n".to_vec();
    bytes.extend_from_slice(&[
        0, 0, 0, 13, b'I', b'H', b'D', b'R', 0, 0, 0, 1, 0, 0, 0, 1, 8, 6, 0, 0, 0,
    ]);
    bytes
}

#[tokio::test]
async fn browsing_searches_filters_by_the_region_tree_sorts_and_pages() {
    let dir = tempfile::tempdir().expect("a temp dir");
    let server = start(config(&dir.path().join("site.db"), false))
        .await
        .expect("the server starts");
    let mina = Browser::new(&server);
    let gangnam = Browser::new(&server);
    mina.sign_up("mina", MANGWON).await;
    gangnam.sign_up("gangnam", YEOKSAM).await;
    let item = |title, description, category, scope, start, ends_in| Item {
        title,
        description,
        category,
        condition: "a",
        scope,
        start,
        starts_in: None,
        ends_in,
    };
    // A local auction without a region is in its seller's neighbourhood.
    let desk = mina
        .list(item(
            "Walnut desk",
            "Solid wood",
            "furniture",
            json!({"kind": "local"}),
            "9",
            HOUR * 4,
        ))
        .await;
    assert_eq!(desk["scope"]["region"], MANGWON);
    assert_eq!(desk["category"], "furniture");
    assert_eq!(
        desk["attributes"],
        json!({"condition": "a", "shipping": "buyer"})
    );
    let chair = mina
        .list(item(
            "Oak chair",
            "matches the DESK",
            "furniture",
            local(HAPJEONG),
            "10",
            HOUR,
        ))
        .await;
    let camera = gangnam
        .list(item(
            "Camera",
            "50mm lens",
            "electronics",
            json!({"kind": "local"}),
            "9.5",
            HOUR * 3,
        ))
        .await;
    let bike = mina
        .list(item(
            "Road bike",
            "",
            "sports",
            json!({"kind": "national"}),
            "100.25",
            HOUR * 2,
        ))
        .await;
    let lamp = mina
        .list(Item {
            starts_in: Some(HOUR),
            ..item(
                "Lamp",
                "",
                "furniture",
                json!({"kind": "national"}),
                "100.5",
                HOUR * 5,
            )
        })
        .await;
    let (desk, chair, camera, bike, lamp) =
        (id(&desk), id(&chair), id(&camera), id(&bike), id(&lamp));

    let everything = vec![lamp, bike, camera, chair, desk];
    for (query, expected) in [
        ("", everything.clone()),
        ("q=desk", vec![chair, desk]),
        ("q=LENS", vec![camera]),
        ("category=furniture", vec![lamp, chair, desk]),
        ("region=seoul/mapo/mangwon", vec![desk]),
        ("region=seoul/mapo", vec![chair, desk]),
        ("region=seoul", vec![camera, chair, desk]),
        ("scope=national", vec![lamp, bike]),
        ("min_price=9.5&max_price=100.25", vec![bike, camera, chair]),
        ("min_price=100", vec![lamp, bike]),
        ("max_price=9", vec![desk]),
        ("phase=scheduled", vec![lamp]),
        ("phase=open", vec![bike, camera, chair, desk]),
        ("phase=ended", vec![]),
        (
            "category=furniture&region=seoul/mapo&min_price=10",
            vec![chair],
        ),
        ("q=desk&sort=price_desc", vec![chair, desk]),
        (
            "category=furniture&phase=open&sort=ending_soonest",
            vec![chair, desk],
        ),
        ("sort=newest", everything.clone()),
        ("sort=price_asc", vec![desk, camera, chair, bike, lamp]),
        ("sort=price_desc", vec![lamp, bike, chair, camera, desk]),
        ("sort=ending_soonest", vec![chair, bike, camera, desk, lamp]),
    ] {
        let total = expected.len() as u64;
        assert_eq!(mina.browse(query).await, (expected, total), "{query}");
    }

    let (status, page) = mina
        .get("/api/auctions?sort=price_asc&offset=2&limit=2")
        .await;
    assert_eq!(status, StatusCode::OK);
    let ids: Vec<i64> = page["items"]
        .as_array()
        .expect("items")
        .iter()
        .map(id)
        .collect();
    assert_eq!(ids, [chair, bike]);
    assert_eq!(
        (page["total"].as_u64(), page["next_offset"].as_u64()),
        (Some(5), Some(4))
    );
    let (_, last) = mina
        .get("/api/auctions?sort=price_asc&offset=4&limit=2")
        .await;
    assert_eq!(last["items"].as_array().map(Vec::len), Some(1));
    assert_eq!(last["next_offset"], Value::Null, "the last page says so");

    // The scheduled auction carries what a countdown needs.
    let (_, detail) = mina.get(&format!("/api/auctions/{lamp}")).await;
    let starts_at: chrono::DateTime<chrono::Utc> =
        serde_json::from_value(detail["auction"]["starts_at"].clone()).expect("starts_at");
    let server_now: chrono::DateTime<chrono::Utc> =
        serde_json::from_value(detail["server_now"].clone()).expect("server_now");
    assert!(starts_at > server_now);

    let (status, catalogue) = mina.get("/site/catalogue").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(catalogue["regions"][0]["children"][0]["id"], "seoul/mapo");
    assert!(
        catalogue["categories"]
            .as_array()
            .expect("categories")
            .len()
            >= 5
    );
    server.stop().await;
}

#[tokio::test]
async fn bad_catalogue_input_gets_a_4xx_and_changes_nothing() {
    let dir = tempfile::tempdir().expect("a temp dir");
    let server = start(Config {
        max_image_bytes: 1024,
        ..config(&dir.path().join("site.db"), false)
    })
    .await
    .expect("the server starts");
    let mina = Browser::new(&server);
    let jun = Browser::new(&server);
    mina.sign_up("mina", MANGWON).await;
    jun.sign_up("jun", MANGWON).await;
    let auction = id(&mina
        .list(Item {
            title: "Kettle",
            description: "",
            category: "home",
            condition: "b",
            scope: json!({"kind": "national"}),
            start: "10",
            starts_in: None,
            ends_in: HOUR,
        })
        .await);
    let listing = |change: &dyn Fn(&mut Value)| {
        let mut body = json!({"title": "Thing", "category": "home",
            "attributes": {"condition": "a", "shipping": "seller"},
            "scope": {"kind": "national"}, "start_price": "1",
            "policy": {"increment": {"kind": "fixed", "unit": "1"}},
            "ends_at": chrono::Utc::now() + HOUR});
        change(&mut body);
        body
    };
    let creates = [
        (
            listing(&|b| b["category"] = json!("spaceships")),
            "unknown_category",
        ),
        (
            listing(&|b| b["attributes"]["condition"] = json!("mint")),
            "invalid_condition",
        ),
        (
            listing(&|b| b["attributes"]["shipping"] = json!("drone")),
            "invalid_shipping",
        ),
        (
            listing(&|b| b["attributes"]["colour"] = json!("red")),
            "unknown_attribute",
        ),
        (
            listing(&|b| b["scope"] = local("seoul/atlantis/x")),
            "unknown_region",
        ),
        (
            listing(&|b| b["scope"] = local("seoul/mapo")),
            "unknown_region",
        ),
    ];
    for (body, code) in creates {
        let (status, answer) = mina.post("/api/auctions", body).await;
        assert_eq!(
            (status, answer["code"].as_str()),
            (StatusCode::BAD_REQUEST, Some(code))
        );
    }
    for (query, code) in [
        ("category=spaceships", "unknown_category"),
        ("region=busan", "unknown_region"),
        ("region=seoul/map", "unknown_region"),
        ("min_price=-1", "invalid_price_range"),
        ("max_price=ten", "invalid_price_range"),
        ("min_price=10&max_price=5", "invalid_price_range"),
        ("phase=someday", "invalid_query"),
        ("sort=random", "invalid_query"),
    ] {
        let (status, answer) = mina.get(&format!("/api/auctions?{query}")).await;
        assert_eq!(
            (status, answer["code"].as_str()),
            (StatusCode::BAD_REQUEST, Some(code)),
            "{query}"
        );
    }

    let questions = format!("/site/auctions/{auction}/questions");
    for (body, code) in [
        ("x".repeat(501), "invalid_question"),
        ("   ".to_owned(), "invalid_question"),
        // Postgres cannot store NUL: refused on every database alike.
        ("nul\u{0}here".to_owned(), "invalid_question"),
    ] {
        let (status, answer) = jun.post(&questions, json!({ "body": body })).await;
        assert_eq!(
            (status, answer["code"].as_str()),
            (StatusCode::BAD_REQUEST, Some(code))
        );
    }
    let anonymous = Browser::new(&server);
    let (status, _) = anonymous.post(&questions, json!({"body": "hello?"})).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (status, _) = jun
        .post("/site/auctions/999/questions", json!({"body": "hello?"}))
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    let mut big = png();
    big.resize(2048, 0);
    for (who, content_type, bytes, status, code) in [
        (
            &mina,
            "text/plain",
            b"hello".to_vec(),
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_image",
        ),
        (
            &mina,
            "image/png",
            b"GIF89a pretending".to_vec(),
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_image",
        ),
        (
            &mina,
            "image/svg+xml",
            b"<svg onload=alert(1)>".to_vec(),
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_image",
        ),
        (
            &mina,
            "image/png",
            big,
            StatusCode::PAYLOAD_TOO_LARGE,
            "image_too_large",
        ),
        (
            &jun,
            "image/png",
            png(),
            StatusCode::FORBIDDEN,
            "not_seller",
        ),
    ] {
        let (got, answer) = who.upload(auction, content_type, bytes).await;
        assert_eq!((got, answer["code"].as_str()), (status, Some(code)));
    }

    // Nothing was written.
    assert_eq!(mina.browse("").await, (vec![auction], 1));
    assert_eq!(mina.get(&questions).await, (StatusCode::OK, json!([])));
    let (_, images) = mina.get(&format!("/site/auctions/{auction}/images")).await;
    assert_eq!(images, json!([]));
    let stored = std::fs::read_dir(dir.path().join("site.images")).map_or(0, |dir| dir.count());
    assert_eq!(stored, 0, "no file on disk");
    server.stop().await;
}

#[tokio::test]
async fn watchers_questions_photos_profiles_and_ending_early() {
    let dir = tempfile::tempdir().expect("a temp dir");
    let database = format!("sqlite://{}", dir.path().join("site.db").display());
    community_features(&dir, &database).await;
}

#[tokio::test]
async fn on_postgres_watchers_questions_photos_profiles_and_ending_early() {
    let database = neighborbid_sqlx::testing::TestDatabase::create().await;
    let dir = tempfile::tempdir().expect("a temp dir");
    community_features(&dir, database.url()).await;
}

/// Watchlist and notices, questions, photos, profiles and ending early,
/// on the site's database at `database`.
async fn community_features(dir: &tempfile::TempDir, database: &str) {
    let site = |config: Config| Config {
        database_url: database.to_owned(),
        ..config
    };
    let server = start(site(Config {
        ending_soon_secs: 3,
        local_area: LocalArea::District,
        ..config(&dir.path().join("site.db"), false)
    }))
    .await
    .expect("the server starts");
    let mina = Browser::new(&server);
    let alice = Browser::new(&server);
    let gangnam = Browser::new(&server);
    let mina_id = mina.sign_up("mina", MANGWON).await["account"]["id"].clone();
    alice.sign_up("alice", HAPJEONG).await;
    gangnam.sign_up("gangnam", YEOKSAM).await;
    alice.top_up("1000").await;
    gangnam.top_up("1000").await;
    let item = |title, ends_in| Item {
        title,
        description: "",
        category: "books",
        condition: "new",
        scope: json!({"kind": "local"}),
        start: "10",
        starts_in: None,
        ends_in,
    };
    let soon = id(&mina
        .list(item("Comics", chrono::TimeDelta::seconds(6)))
        .await);
    let desk = id(&mina.list(item("Desk", HOUR)).await);

    // District policy: Hapjeong may bid on a Mangwon auction, Yeoksam not.
    let (status, _) = alice
        .post(
            &format!("/api/auctions/{soon}/bids"),
            json!({"amount": "10"}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED);
    let (status, refused) = gangnam
        .post(
            &format!("/api/auctions/{desk}/bids"),
            json!({"amount": "10"}),
        )
        .await;
    assert_eq!(
        (status, refused["code"].as_str()),
        (StatusCode::FORBIDDEN, Some("region_not_eligible"))
    );

    // The watchlist: PUT twice is one entry; DELETE removes.
    for auction in [soon, desk, desk] {
        let (status, _) = alice
            .send(Method::PUT, &format!("/site/watchlist/{auction}"), None)
            .await;
        assert_eq!(status, StatusCode::NO_CONTENT);
    }
    let mut list = watched(&alice).await;
    list.sort();
    assert_eq!(list, [soon, desk]);
    let (status, _) = alice
        .send(Method::DELETE, &format!("/site/watchlist/{desk}"), None)
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    assert_eq!(watched(&alice).await, [soon]);
    assert_eq!(
        watched(&gangnam).await,
        Vec::<i64>::new(),
        "watchlists are per user"
    );
    let (status, _) = alice.send(Method::PUT, "/site/watchlist/999", None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    // Notices: "ending soon" within 3 s of the end, then "ended", once each.
    let mut kinds = Vec::new();
    for _ in 0..200 {
        let (_, notices) = alice.get("/site/notices").await;
        kinds = notices["items"]
            .as_array()
            .expect("items")
            .iter()
            .map(|notice| notice["kind"].as_str().unwrap_or_default().to_owned())
            .collect();
        if kinds.contains(&"ended".to_owned()) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(kinds, ["ended", "ending_soon"], "newest first, each once");
    let (_, notices) = alice.get("/site/notices").await;
    assert_eq!(notices["items"][0]["detail"], "sold for 10");
    let (_, none) = gangnam.get("/site/notices").await;
    assert_eq!(none["items"], json!([]));

    // Questions: anyone signed in asks; only the seller answers, once.
    let (status, question) = gangnam
        .post(
            &format!("/site/auctions/{desk}/questions"),
            json!({"body": "<script>alert(1)</script> Is it oak?"}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{question}");
    let answer = format!("/site/questions/{}/answer", question["id"]);
    let (status, refused) = alice.post(&answer, json!({"body": "yes"})).await;
    assert_eq!(
        (status, refused["code"].as_str()),
        (StatusCode::FORBIDDEN, Some("not_seller"))
    );
    let (status, too_long) = mina.post(&answer, json!({"body": "y".repeat(1001)})).await;
    assert_eq!(
        (status, too_long["code"].as_str()),
        (StatusCode::BAD_REQUEST, Some("invalid_answer"))
    );
    let (status, answered) = mina.post(&answer, json!({"body": "Walnut, sorry."})).await;
    assert_eq!(status, StatusCode::OK, "{answered}");
    let (status, again) = mina.post(&answer, json!({"body": "Changed my mind"})).await;
    assert_eq!(
        (status, again["code"].as_str()),
        (StatusCode::CONFLICT, Some("already_answered"))
    );
    let (_, listed) = alice.get(&format!("/site/auctions/{desk}/questions")).await;
    assert_eq!(listed.as_array().map(Vec::len), Some(1));
    assert_eq!(
        listed[0]["body"], "<script>alert(1)</script> Is it oak?",
        "stored as written; the page escapes"
    );
    assert_eq!(
        (listed[0]["asker"].as_str(), listed[0]["answer"].as_str()),
        (Some("gangnam"), Some("Walnut, sorry."))
    );

    // Photos: stored once by content, served with caching headers.
    let (status, image) = mina.upload(desk, "image/png", png()).await;
    assert_eq!(status, StatusCode::CREATED, "{image}");
    let (status, _) = mina.upload(desk, "image/png", png()).await;
    assert_eq!(
        status,
        StatusCode::CREATED,
        "the same photo again is no error"
    );
    let (_, images) = alice.get(&format!("/site/auctions/{desk}/images")).await;
    assert_eq!(images.as_array().map(Vec::len), Some(1));
    let url = format!("{}{}", alice.base, image["url"].as_str().expect("a url"));
    let served = alice.client.get(&url).send().await.expect("the photo");
    assert_eq!(served.status(), StatusCode::OK);
    assert_eq!(served.headers()[CONTENT_TYPE], "image/png");
    assert!(served.headers()[CACHE_CONTROL]
        .to_str()
        .unwrap_or_default()
        .contains("immutable"));
    let etag = served.headers()[ETAG].clone();
    assert_eq!(served.bytes().await.expect("bytes").to_vec(), png());
    let cached = alice
        .client
        .get(&url)
        .header(IF_NONE_MATCH, etag)
        .send()
        .await
        .expect("304");
    assert_eq!(cached.status(), StatusCode::NOT_MODIFIED);
    let (status, _) = alice.get("/images/..%2F..%2Fsite.db").await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    // Ending early: the seller only; it settles with the leader.
    alice
        .post(
            &format!("/api/auctions/{desk}/bids"),
            json!({"amount": "25"}),
        )
        .await;
    let (status, refused) = alice
        .post(&format!("/api/auctions/{desk}/end"), json!({}))
        .await;
    assert_eq!(
        (status, refused["code"].as_str()),
        (StatusCode::FORBIDDEN, Some("not_seller"))
    );
    let (status, ended) = mina
        .post(&format!("/api/auctions/{desk}/end"), json!({}))
        .await;
    assert_eq!(
        (status, ended["status"].as_str()),
        (StatusCode::OK, Some("sold")),
        "{ended}"
    );
    let (_, events) = mina.get(&format!("/api/auctions/{desk}")).await;
    assert_eq!(events["auction"]["current_price"], "25");

    // The seller's profile: open auctions (hers only, ending soonest
    // first, not newest), and two sold.
    let open = id(&mina.list(item("Shelf", HOUR)).await);
    let later = id(&mina.list(item("Stool", HOUR * 2)).await);
    alice.list(item("Alice's lamp", HOUR)).await;
    let (status, profile) = alice.get(&format!("/site/sellers/{mina_id}")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(profile["seller"]["username"], "mina");
    let listed: Vec<i64> = profile["open_auctions"]
        .as_array()
        .expect("list")
        .iter()
        .map(id)
        .collect();
    assert_eq!(listed, [open, later]);
    assert_eq!(profile["sold_count"], 2);
    let (status, _) = alice.get("/site/sellers/999").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    // Anyone's public name, which the page shows bidders by.
    let (status, user) = alice.get(&format!("/site/users/{mina_id}")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        (&user["id"], &user["username"]),
        (&json!(mina_id), &json!("mina"))
    );
    assert!(user.get("password").is_none() && user.get("password_hash").is_none());
    let (status, missing) = alice.get("/site/users/999").await;
    assert_eq!(
        (status, missing["code"].as_str()),
        (StatusCode::NOT_FOUND, Some("not_found"))
    );
    // A bad id gets the API's JSON answer, not axum's plain text.
    for path in [
        "/site/users/99999999999999999999",
        "/site/sellers/abc",
        "/site/auctions/abc/questions",
    ] {
        let (status, bad) = alice.get(path).await;
        assert_eq!(
            (status, bad["code"].as_str()),
            (StatusCode::BAD_REQUEST, Some("invalid_path")),
            "{path}"
        );
    }
    // So does a path that names nothing, or a method a path does not take.
    let none = (StatusCode::NOT_FOUND, "not_found");
    let wrong = (StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed");
    for (method, path, (status, code)) in [
        (Method::GET, "/nope", none),
        (Method::GET, "/site/nope", none),
        (Method::POST, "/auth/nope", none),
        (Method::GET, "/api/nope", none),
        (Method::GET, "/auth/signup", wrong),
        (Method::DELETE, "/site/notices", wrong),
        (Method::POST, "/", wrong),
    ] {
        let (got, body) = alice.send(method.clone(), path, None).await;
        let got = (got, body["code"].as_str());
        assert_eq!(got, (status, Some(code)), "{method} {path}");
    }
    server.stop().await;

    // A site may turn ending early off.
    let server = start(site(Config {
        no_end_early: true,
        ..config(&dir.path().join("site.db"), false)
    }))
    .await
    .expect("the server starts");
    let mina = Browser::new(&server);
    let (status, _) = mina
        .post(
            "/auth/login",
            json!({"username": "mina", "password": "correct horse"}),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let (status, refused) = mina
        .post(&format!("/api/auctions/{open}/end"), json!({}))
        .await;
    assert_eq!(
        (status, refused["code"].as_str()),
        (StatusCode::FORBIDDEN, Some("end_early_disabled"))
    );
    server.stop().await;
}

/// Sixteen distinct photos uploaded at once to one auction: exactly the
/// limit is stored, the rest are refused, on both databases.
async fn concurrent_uploads_stop_at_the_photo_limit(config: Config) {
    let server = start(config).await.expect("the server starts");
    let mina = Browser::new(&server);
    mina.sign_up("mina", MANGWON).await;
    let desk = id(&mina
        .list(Item {
            title: "Desk",
            description: "Oak",
            category: "home",
            condition: "b",
            scope: json!({"kind": "national"}),
            start: "100",
            starts_in: None,
            ends_in: HOUR,
        })
        .await);
    let uploads = (0..16u8).map(|n| {
        let mut photo = png();
        photo.push(n);
        mina.upload(desk, "image/png", photo)
    });
    let answers = futures_util::future::join_all(uploads).await;
    let created = answers
        .iter()
        .filter(|(status, _)| *status == StatusCode::CREATED)
        .count();
    let statuses: Vec<StatusCode> = answers.iter().map(|(status, _)| *status).collect();
    assert_eq!(created, 8, "{statuses:?}");
    for (status, body) in &answers {
        if *status != StatusCode::CREATED {
            assert_eq!(
                (*status, body["code"].as_str()),
                (StatusCode::CONFLICT, Some("too_many_images"))
            );
        }
    }
    let (_, images) = mina.get(&format!("/site/auctions/{desk}/images")).await;
    assert_eq!(images.as_array().map(Vec::len), Some(8));
    let (status, _) = mina.upload(desk, "image/png", png()).await;
    assert_eq!(status, StatusCode::CONFLICT, "still full");
    server.stop().await;
}

#[tokio::test]
async fn concurrent_uploads_stop_at_the_photo_limit_on_sqlite() {
    let dir = tempfile::tempdir().expect("a temp dir");
    concurrent_uploads_stop_at_the_photo_limit(config(&dir.path().join("site.db"), false)).await;
}

#[tokio::test]
async fn concurrent_uploads_stop_at_the_photo_limit_on_postgres() {
    let database = neighborbid_sqlx::testing::TestDatabase::create().await;
    let dir = tempfile::tempdir().expect("a temp dir");
    let config = Config {
        database_url: database.url().to_owned(),
        ..config(&dir.path().join("unused.db"), false)
    };
    concurrent_uploads_stop_at_the_photo_limit(config).await;
}
