//! The web page in headless Chromium (Debian's `chromium` and
//! `chromium-driver`; `.ci/install-browser` installs them): three people
//! sign up, top up and sell from the page, two of them bid against each
//! other on a national auction and see each other's bids live. Screenshots
//! land in `target/tmp/browser/`.

mod webdriver;

use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;
use neighborbid_server::{start, Config};
use serde_json::json;
use webdriver::{Driver, Session};

/// How long a live update may take to show, as the issue asks.
const LIVE: Duration = Duration::from_secs(2);
/// How long ordinary page actions may take on a busy machine.
const PATIENCE: Duration = Duration::from_secs(10);

async fn sign_up(page: &Session, site: &str, username: &str, region: &str) {
    page.open(site).await;
    page.fill("#auth-form [name=username]", username).await;
    page.fill("#auth-form [name=password]", "correct horse battery")
        .await;
    page.select("#auth-form [name=region]", region).await;
    page.click("#auth-form button[value=signup]").await;
    page.wait_for_text("#who", PATIENCE, |who| who.starts_with(username))
        .await;
}

/// Deposits `amount` and waits for the balance to show as `shown`.
async fn top_up(page: &Session, amount: &str, shown: &str) {
    page.click("#my-link").await;
    page.fill("#topup-form [name=amount]", amount).await;
    page.click("#topup-form button[value=deposits]").await;
    page.wait_for_text("#w-balance", PATIENCE, |balance| balance == shown)
        .await;
}

/// Clicks the card titled `title` in the grid `grid`, once it shows.
async fn click_card(page: &Session, grid: &str, title: &str) {
    let click = "for (const card of document.querySelectorAll(arguments[0] + ' .card')) \
         if (card.querySelector('strong').textContent === arguments[1]) { card.click(); return true; } \
         return false;";
    let deadline = std::time::Instant::now() + PATIENCE;
    while page.run(click, json!([grid, title])).await != true {
        assert!(
            std::time::Instant::now() < deadline,
            "{title} is not listed in {grid}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    page.wait_for_text("#a-title", PATIENCE, |shown| shown == title)
        .await;
}

/// From the list, opens the national auction titled `title`.
async fn open_auction(page: &Session, title: &str) {
    page.click("header [data-go=list]").await;
    click_card(page, "#national", title).await;
    page.wait_for_text("#a-live", PATIENCE, |live| live == "live")
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_bidders_see_each_other_live_in_the_page() {
    let dir = tempfile::tempdir().expect("a temp dir");
    let database = format!("sqlite://{}", dir.path().join("site.db").display());
    let config = Config::parse_from([
        "neighborbid-server",
        "--listen",
        "127.0.0.1:0",
        "--database-url",
        &database,
    ]);
    let server = start(config).await.expect("the site starts");
    let site = format!("http://{}/", server.address);
    let artifacts = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("browser");
    std::fs::create_dir_all(&artifacts).expect("artifacts directory");

    let driver = Driver::start().await;
    let seller = driver.session().await;
    let alice = driver.session().await;
    let bob = driver.session().await;
    sign_up(&seller, &site, "mina", "seoul/mapo/mangwon").await;
    sign_up(&alice, &site, "alice", "seoul/mapo/hapjeong").await;
    sign_up(&bob, &site, "bob", "seoul/mapo/yeonnam").await;

    // Mina sells from her page.
    seller.click("#my-link").await;
    seller
        .fill("#create-form [name=title]", "Film camera")
        .await;
    seller
        .fill("#create-form [name=description]", "Works, with a strap")
        .await;
    seller
        .fill("#create-form [name=start_price]", "10000")
        .await;
    seller.fill("#create-form [name=step]", "1000").await;
    seller.click("#create-form button").await;
    seller
        .wait_for_text("#a-title", PATIENCE, |title| title == "Film camera")
        .await;

    for bidder in [&alice, &bob] {
        top_up(bidder, "50000", "50,000").await;
        open_auction(bidder, "Film camera").await;
    }
    // Mina looks at the list of national auctions meanwhile.
    seller.click("header [data-go=list]").await;
    seller
        .wait_for_text("#national .card .price", PATIENCE, |price| {
            price == "10,000"
        })
        .await;

    // Alice bids the minimum the page filled in.
    let prefilled = alice
        .run(
            "return document.querySelector('#bid-form [name=amount]').value;",
            json!([]),
        )
        .await;
    assert_eq!(prefilled, "10000");
    alice.click("#bid-form button:not([type])").await;
    alice
        .wait_for_text("#bid-notice", PATIENCE, |notice| {
            notice == "You lead at 10,000."
        })
        .await;
    // Bob's page shows her price without a reload, and offers the next
    // minimum.
    bob.wait_for_text("#a-price", LIVE, |price| price == "10,000")
        .await;
    let badges = bob
        .run(
            "return [...document.querySelectorAll('#a-badges .badge')].map((b) => b.textContent);",
            json!([]),
        )
        .await;
    assert_eq!(badges, json!(["open", "1 bid"]));
    // The bid is shown by its bidder's name, as the first NeighborBid's room did.
    bob.wait_for_text("#a-bids tr td", PATIENCE, |bidder| bidder == "alice")
        .await;
    bob.screenshot(&artifacts.join("bob-sees-alice-bid.png"))
        .await;
    let next = bob
        .run(
            "return document.querySelector('#bid-form [name=amount]').value;",
            json!([]),
        )
        .await;
    assert_eq!(next, "11000");

    // Bob outbids; Alice is told at once.
    bob.click("#bid-form button:not([type])").await;
    bob.wait_for_text("#bid-notice", PATIENCE, |notice| {
        notice == "You lead at 11,000."
    })
    .await;
    alice
        .wait_for_text("#bid-notice", LIVE, |notice| {
            notice == "You were outbid: the price is 11,000."
        })
        .await;
    alice
        .wait_for_text("#a-price", LIVE, |price| price == "11,000")
        .await;
    alice.screenshot(&artifacts.join("alice-outbid.png")).await;
    // Her escrow came back to her balance.
    alice.click("#my-link").await;
    alice
        .wait_for_text("#w-locked", PATIENCE, |locked| locked == "0")
        .await;
    assert_eq!(alice.text("#w-balance").await, "50,000");
    // Mina's list caught up by itself (it refreshes every 5 s).
    seller
        .wait_for_text("#national .card .price", PATIENCE, |price| {
            price == "11,000"
        })
        .await;

    // Mina sells a rice cooker in her neighbourhood, Mangwon.
    seller.click("#my-link").await;
    seller
        .fill("#create-form [name=title]", "Rice cooker")
        .await;
    seller
        .fill("#create-form [name=description]", "Cooks rice")
        .await;
    seller.select("#create-form [name=category]", "home").await;
    seller.select("#create-form [name=condition]", "s").await;
    seller.select("#create-form [name=scope]", "local").await;
    seller.fill("#create-form [name=start_price]", "5000").await;
    seller.click("#create-form button").await;
    seller
        .wait_for_text("#a-title", PATIENCE, |title| title == "Rice cooker")
        .await;
    seller
        .wait_for_text("#a-details", PATIENCE, |details| {
            details.contains("Used: S") && details.contains("Mangwon-dong")
        })
        .await;

    // Bob (Yeonnam, also in Mapo-gu) browses his district and finds it.
    bob.click("header [data-go=list]").await;
    bob.select("#browse-form [name=region]", "seoul/mapo").await;
    bob.select("#browse-form [name=category]", "home").await;
    bob.click("#browse-form button").await;
    bob.wait_for_text("#browse-count", PATIENCE, |count| count == "1 found")
        .await;
    click_card(&bob, "#results", "Rice cooker").await;
    bob.wait_for_text("#watch", PATIENCE, |watch| watch == "Watch")
        .await;
    bob.click("#watch").await;
    bob.wait_for_text("#watch", PATIENCE, |watch| watch.starts_with("Watching"))
        .await;
    let question = "<script>window.pwned = true</script>Does it work?";
    bob.fill("#ask-form [name=body]", question).await;
    bob.click("#ask-form button").await;
    bob.wait_for_text("#questions", PATIENCE, |shown| shown.contains(question))
        .await;
    let injected = bob
        .run(
            "return [window.pwned === undefined, document.querySelectorAll('#questions script').length];",
            json!([]),
        )
        .await;
    assert_eq!(
        injected,
        json!([true, 0]),
        "the question is text, not markup"
    );
    bob.click("#my-link").await;
    bob.wait_for_text("#watchlist", PATIENCE, |list| list.contains("Rice cooker"))
        .await;

    // Mina answers on her auction's page; Bob sees the answer.
    seller.click("#my-link").await;
    click_card(&seller, "#my-auctions", "Rice cooker").await;
    seller
        .wait_for_text("#questions", PATIENCE, |shown| {
            shown.contains("Does it work?")
        })
        .await;
    seller
        .fill("#questions .answer-form [name=body]", "Yes, like new.")
        .await;
    seller.click("#questions .answer-form button").await;
    seller
        .wait_for_text("#questions", PATIENCE, |shown| {
            shown.contains("Seller: Yes, like new.")
        })
        .await;
    bob.click("#watchlist .card").await;
    bob.wait_for_text("#questions", PATIENCE, |shown| {
        shown.contains("Seller: Yes, like new.")
    })
    .await;
    bob.screenshot(&artifacts.join("bob-sees-the-answer.png"))
        .await;
    println!("screenshots in {}", artifacts.display());

    // Everything above ran under the page's Content-Security-Policy.
    for page in [&seller, &alice, &bob] {
        let blocked = page.run("return window.cspViolations;", json!([])).await;
        assert_eq!(blocked, json!([]), "the policy blocked something");
    }
    for page in [seller, alice, bob] {
        page.close().await;
    }
    server.stop().await;
}
