//! The OpenAPI 3.0 document of the HTTP API (`GET /openapi.json`), kept
//! next to the routes. Tests check that it parses, that every operation it
//! lists is served, and that its patterns for amounts and keys accept
//! what the server accepts (an amount's maximum is given in words).

use neighborbid_core::{Currency, Page};
use serde_json::{json, Value};

use crate::ApiConfig;

/// The OpenAPI document of an API with this `config` over an engine with
/// this `currency` (the amounts' patterns follow its decimal places), with
/// paths relative to where the router is nested (set `servers` to your
/// mount point when you publish it).
pub fn openapi(currency: &Currency, config: &ApiConfig) -> Value {
    let id = json!({"name": "id", "in": "path", "required": true, "schema": {"type": "integer", "format": "int64"}});
    let idem = json!({"name": "Idempotency-Key", "in": "header", "required": false,
        "description": "Makes the request safe to retry: the same key and body return the first response; the same key with another body is 422 idempotency_conflict (a retry while the first is in flight waits for its answer). Keys are kept as long as the host chooses (Engine::forget_idempotency; the example server keeps them a day), then are new again.",
        "schema": {"type": "string", "minLength": 1, "maxLength": 255, "pattern": KEY_PATTERN}});
    // The server clamps a count rather than refuse it.
    let count = |default: u32, what: &str| {
        json!({"type": "integer", "minimum": 0, "maximum": u32::MAX, "default": default,
            "description": format!("{what}, taken as 1 to {}", Page::MAX_LIMIT)})
    };
    let offset = json!({"name": "offset", "in": "query",
        "schema": {"type": "integer", "minimum": 0, "maximum": u32::MAX}});
    let limit = json!({"name": "limit", "in": "query", "schema": count(Page::default().limit, "Items per page (the answer's `limit` is the one used)")});
    let price_filter = json!({"type": "string", "pattern": "^[0-9]+(\\.[0-9]+)?$"});
    let errors = json!({
        "400": {"$ref": "#/components/responses/Error"},
        "401": {"$ref": "#/components/responses/Error"},
        "403": {"$ref": "#/components/responses/Error"},
        "404": {"$ref": "#/components/responses/Error"},
        "413": {"$ref": "#/components/responses/Error"},
        "415": {"$ref": "#/components/responses/Error"},
        "422": {"$ref": "#/components/responses/Error"},
        "429": {"$ref": "#/components/responses/Error"},
        "500": {"$ref": "#/components/responses/Error"},
        "503": {"$ref": "#/components/responses/Error"}
    });
    let ok = |status: &str, schema: &str, description: &str| {
        let mut responses = errors.clone();
        responses[status] = json!({"description": description,
            "content": {"application/json": {"schema": {"$ref": format!("#/components/schemas/{schema}")}}}});
        responses
    };
    let body = |schema: &str| json!({"required": true, "content": {"application/json": {"schema": {"$ref": format!("#/components/schemas/{schema}")}}}});
    let bearer = json!([{"bearer": []}]);
    json!({
        "openapi": "3.0.3",
        "info": {
            "title": "NeighborBid API",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "Auctions with escrow. Amounts are decimal strings, times RFC 3339 UTC. Every error is a JSON body with a stable `code`.",
            "x-currency": {
                "code": currency.code().map(|code| code.to_string()),
                "decimal_places": currency.scale(),
                "max": currency.max()
            }
        },
        "paths": {
            "/auctions": {
                "get": {"operationId": "listAuctions", "summary": "Browse auctions: every filter given must match; newest first unless sorted",
                    "parameters": [
                        {"name": "scope", "in": "query", "schema": {"type": "string", "enum": ["national", "local"]}},
                        {"name": "region", "in": "query", "description": "Local auctions of this region or any region inside it (`seoul/mapo` holds `seoul/mapo/mangwon`); not with `scope=national`", "schema": {"type": "string"}},
                        {"name": "status", "in": "query", "schema": {"$ref": "#/components/schemas/AuctionStatus"}},
                        {"name": "seller", "in": "query", "schema": {"type": "integer", "format": "int64"}},
                        {"name": "q", "in": "query", "description": "Text in the title or description, ignoring case", "schema": {"type": "string", "maxLength": 200}},
                        {"name": "category", "in": "query", "schema": {"type": "string"}},
                        {"name": "min_price", "in": "query", "description": "Current price at least this (any number of decimal places)", "schema": price_filter.clone()},
                        {"name": "max_price", "in": "query", "description": "Current price at most this, not below `min_price`", "schema": price_filter},
                        {"name": "phase", "in": "query", "description": "scheduled: not started; open: taking bids; ended: past its end or closed", "schema": {"type": "string", "enum": ["scheduled", "open", "ended"]}},
                        {"name": "sort", "in": "query", "schema": {"type": "string", "enum": ["newest", "price_asc", "price_desc", "ending_soonest"], "default": "newest"}},
                        offset, limit],
                    "responses": ok("200", "AuctionPage", "A page of auctions")},
                "post": {"operationId": "createAuction", "summary": "Put an item up for auction", "security": bearer,
                    "parameters": [idem], "requestBody": body("CreateAuction"),
                    "responses": ok("201", "Auction", "The auction as created")}
            },
            "/auctions/{id}": {
                "get": {"operationId": "getAuction", "summary": "An auction with its latest bids; ETag/If-None-Match on its sequence number",
                    "parameters": [id, {"name": "bids", "in": "query", "schema": count(config.recent_bids, "How many of the latest bids")},
                        {"name": "If-None-Match", "in": "header", "schema": {"type": "string"}}],
                    "responses": {
                        "200": {"description": "The auction", "headers": {"ETag": {"schema": {"type": "string"}}},
                            "content": {"application/json": {"schema": {"$ref": "#/components/schemas/AuctionDetail"}}}},
                        "304": {"description": "Unchanged since the ETag sent"},
                        "400": {"$ref": "#/components/responses/Error"},
                        "404": {"$ref": "#/components/responses/Error"}}}
            },
            "/auctions/{id}/bids": {
                "get": {"operationId": "listBids", "summary": "An auction's bids, newest first",
                    "parameters": [id, offset, limit], "responses": ok("200", "BidPage", "A page of bids")},
                "post": {"operationId": "placeBid", "summary": "Bid (with an optional maximum)", "security": bearer,
                    "parameters": [id, idem], "requestBody": body("BidRequest"),
                    "responses": ok("201", "BidResult", "You lead")}
            },
            "/auctions/{id}/buy-now": {
                "post": {"operationId": "buyNow", "summary": "Buy at the buy-now price", "security": bearer,
                    "parameters": [id, idem], "responses": ok("200", "Auction", "Bought")}
            },
            "/auctions/{id}/cancel": {
                "post": {"operationId": "cancelAuction", "summary": "Withdraw your auction before any bid", "security": bearer,
                    "parameters": [id, idem], "responses": ok("200", "Auction", "Cancelled")}
            },
            "/auctions/{id}/end": {
                "post": {"operationId": "endEarly", "summary": "End your running auction now: it settles with the leader, or ends unsold (403 end_early_disabled where the site turns it off)", "security": bearer,
                    "parameters": [id, idem], "responses": ok("200", "Auction", "Ended")}
            },
            "/auctions/{id}/live": {
                "get": {"operationId": "liveAuction", "summary": "WebSocket room: a snapshot, then events; send {\"type\":\"bid\",\"amount\":\"...\",\"request_id\":\"...\"}",
                    "parameters": [id], "responses": {
                        "101": {"description": "Switching to the WebSocket protocol"},
                        "400": {"$ref": "#/components/responses/Error"},
                        "404": {"$ref": "#/components/responses/Error"}}}
            },
            "/me/wallet": {
                "get": {"operationId": "myWallet", "summary": "Your balances, holds and history", "security": bearer,
                    "parameters": [offset, limit], "responses": ok("200", "WalletView", "Your wallet")}
            },
            "/me/wallet/deposits": {
                "post": {"operationId": "deposit", "summary": "Add money", "security": bearer,
                    "parameters": [idem], "requestBody": body("AmountRequest"),
                    "responses": ok("201", "LedgerEntry", "The history entry")}
            },
            "/me/wallet/withdrawals": {
                "post": {"operationId": "withdraw", "summary": "Take available money out", "security": bearer,
                    "parameters": [idem], "requestBody": body("AmountRequest"),
                    "responses": ok("201", "LedgerEntry", "The history entry")}
            },
            "/me/bids": {
                "get": {"operationId": "myBids", "summary": "Your bids, newest first", "security": bearer,
                    "parameters": [offset, limit], "responses": ok("200", "BidPage", "A page of bids")}
            },
            "/me/bids/live": {
                "get": {"operationId": "bidderSocket", "summary": "WebSocket for your bids on any auction: send {\"type\":\"bid\",\"auction_id\":1,\"amount\":\"...\",\"request_id\":\"...\"}; answers only (bid_result, error, pong), no room events", "security": bearer,
                    "responses": {
                        "101": {"description": "Switching to the WebSocket protocol"},
                        "400": {"$ref": "#/components/responses/Error"},
                        "401": {"$ref": "#/components/responses/Error"}}}
            },
            "/me/auctions": {
                "get": {"operationId": "myAuctions", "summary": "Your auctions, newest first", "security": bearer,
                    "parameters": [offset, limit], "responses": ok("200", "AuctionPage", "A page of auctions")}
            }
        },
        "components": {
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer",
                "description": "Whatever the host's identity provider accepts"}},
            "responses": {"Error": {"description": "A failure with a stable code",
                "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}}},
            "schemas": schemas(currency)
        }
    })
}

/// What an `Idempotency-Key` (and a WebSocket bid's `request_id`) may hold:
/// visible ASCII.
const KEY_PATTERN: &str = "^[!-~]+$";

/// The control characters (`char::is_control`), as a class's ranges.
macro_rules! controls {
    () => {
        "\\u0000-\\u001F\\u007F-\\u009F"
    };
}

/// The Unicode white space that `str::trim` takes off, as a class.
macro_rules! white_space {
    () => {
        "[\\t-\\r \\u0085\\u00A0\\u1680\\u2000-\\u200A\\u2028\\u2029\\u202F\\u205F\\u3000]"
    };
}

/// Text without control characters (`rules::plain_text`).
const ONE_LINE: &str = concat!("^[^", controls!(), "]*$");

/// A title: [`ONE_LINE`] once trimmed, as the rules trim it (white space
/// at either end may be a control character, a line break say).
const TITLE: &str = concat!(
    "^",
    white_space!(),
    "*[^",
    controls!(),
    "]*",
    white_space!(),
    "*$"
);

/// Text whose only control characters are tabs and line breaks
/// (`rules::LAYOUT`).
const LINES: &str = "^[^\\u0000-\\u0008\\u000B\\u000C\\u000E-\\u001F\\u007F-\\u009F]*$";

/// A plain decimal with at most `scale` decimal places, not counting
/// trailing zeros (the server drops them: `1.50` is `1.5`).
fn money_pattern(scale: u32) -> String {
    format!("^[0-9]+{}$", fraction(scale))
}

/// Like [`money_pattern`], and not zero: either the whole part has a digit
/// other than 0, or the fraction has, at one of its `scale` places.
fn positive_money_pattern(scale: u32) -> String {
    let whole = format!("0*[1-9][0-9]*{}", fraction(scale));
    let fractions: Vec<String> = (0..scale)
        .map(|zeros| format!("0{{{zeros}}}[1-9][0-9]{{0,{}}}", scale - 1 - zeros))
        .collect();
    match scale {
        0 => format!("^{whole}$"),
        _ => format!("^({whole}|0+\\.({})0*)$", fractions.join("|")),
    }
}

/// An optional fraction of at most `scale` places, then any zeros.
fn fraction(scale: u32) -> String {
    match scale {
        0 => "(\\.0+)?".to_owned(),
        _ => format!("(\\.[0-9]{{1,{scale}}}0*)?"),
    }
}

/// ` in KRW` for a currency with a code, nothing otherwise.
fn in_code(currency: &Currency) -> String {
    currency
        .code()
        .map(|code| format!(" in {code}"))
        .unwrap_or_default()
}

fn schemas(currency: &Currency) -> Value {
    let money = json!({"$ref": "#/components/schemas/Money"});
    let positive = json!({"$ref": "#/components/schemas/PositiveMoney"});
    let time = json!({"type": "string", "format": "date-time"});
    let id = json!({"type": "integer", "format": "int64"});
    let page = |item: &str| {
        json!({"type": "object", "required": ["items", "offset", "limit"], "properties": {
            "items": {"type": "array", "items": {"$ref": format!("#/components/schemas/{item}")}},
            "offset": {"type": "integer"}, "limit": {"type": "integer"},
            "next_offset": {"type": "integer", "nullable": true},
            "total": {"type": "integer", "description": "How many items the whole list holds, where counted"}}})
    };
    json!({
        "Money": {"type": "string", "pattern": money_pattern(currency.scale()), "example": "12",
            "description": format!("A decimal string{} with at most {} decimal places (trailing zeros aside), at most {}", in_code(currency), currency.scale(), currency.max())},
        "PositiveMoney": {"type": "string", "pattern": positive_money_pattern(currency.scale()), "example": "12",
            "description": format!("An amount greater than zero, with at most {} decimal places (trailing zeros aside), at most {}", currency.scale(), currency.max())},
        "Error": {"type": "object", "required": ["code", "message"], "additionalProperties": true,
            "properties": {"code": {"type": "string", "example": "bid_too_low"}, "message": {"type": "string"},
                "min_next_bid": money, "ended_at": time}},
        "AuctionStatus": {"type": "string", "enum": ["open", "sold", "unsold", "bought_now", "cancelled"]},
        "Scope": {"oneOf": [
            {"type": "object", "required": ["kind"], "properties": {"kind": {"type": "string", "enum": ["national"]}}},
            {"type": "object", "required": ["kind", "region"], "properties": {"kind": {"type": "string", "enum": ["local"]}, "region": {"type": "string"}}}]},
        "ScopeRequest": {"oneOf": [
            {"type": "object", "required": ["kind"], "properties": {"kind": {"type": "string", "enum": ["national"]}}},
            {"type": "object", "required": ["kind"], "properties": {"kind": {"type": "string", "enum": ["local"]},
                "region": {"type": "string", "description": "Default: the seller's"}}}]},
        "Attributes": {"type": "object", "additionalProperties": {"type": "string", "pattern": ONE_LINE}, "maxProperties": 20,
            "description": "Item details the site defines (condition, shipping, ...)"},
        "Increment": {"oneOf": [
            {"type": "object", "required": ["kind", "unit"], "properties": {"kind": {"type": "string", "enum": ["fixed"]}, "unit": positive}},
            {"type": "object", "required": ["kind", "bands"], "properties": {"kind": {"type": "string", "enum": ["ladder"]},
                "bands": {"type": "array", "minItems": 1, "description": "Rising strictly by `from`, the first from 0",
                    "items": {"type": "object", "required": ["from", "step"], "properties": {"from": money, "step": positive}}}}},
            {"type": "object", "required": ["kind", "percent"], "properties": {"kind": {"type": "string", "enum": ["percent"]}, "percent": {"type": "string", "description": "A decimal above 0 and at most 100"}}}]},
        "AuctionPolicy": {"type": "object", "required": ["increment"], "properties": {
            "increment": {"$ref": "#/components/schemas/Increment"},
            "reserve_price": {"allOf": [positive], "nullable": true, "description": "Hidden: shown to the seller only"},
            "close": {"oneOf": [
                {"type": "object", "required": ["kind"], "properties": {"kind": {"type": "string", "enum": ["hard"]}}},
                {"type": "object", "required": ["kind", "window_secs", "extend_by_secs", "max_extensions"], "properties": {
                    "kind": {"type": "string", "enum": ["soft"]}, "window_secs": {"type": "integer"},
                    "extend_by_secs": {"type": "integer"}, "max_extensions": {"type": "integer"}}}]},
            "buy_now": {"type": "string", "enum": ["always", "until_first_bid", "until_reserve_met"]}}},
        "CreateAuction": {"type": "object", "additionalProperties": false,
            "required": ["title", "scope", "start_price", "policy", "ends_at"], "properties": {
            "title": {"type": "string", "minLength": 1, "maxLength": 200, "pattern": TITLE, "description": "Not blank; trimmed"},
            "description": {"type": "string", "maxLength": 10000, "pattern": LINES},
            "category": {"type": "string", "nullable": true, "maxLength": 100, "pattern": ONE_LINE},
            "attributes": {"$ref": "#/components/schemas/Attributes"},
            "scope": {"$ref": "#/components/schemas/ScopeRequest"}, "start_price": positive,
            "policy": {"$ref": "#/components/schemas/AuctionPolicy"},
            "buy_now_price": {"allOf": [positive], "nullable": true},
            "starts_at": {"type": "string", "format": "date-time", "nullable": true}, "ends_at": time}},
        "Auction": {"type": "object", "properties": {
            "id": id, "seller": id, "title": {"type": "string"}, "description": {"type": "string"},
            "category": {"type": "string", "nullable": true},
            "attributes": {"$ref": "#/components/schemas/Attributes"},
            "scope": {"$ref": "#/components/schemas/Scope"}, "start_price": money,
            "policy": {"$ref": "#/components/schemas/AuctionPolicy"},
            "buy_now_price": {"allOf": [money], "nullable": true},
            "starts_at": time, "ends_at": {"type": "string", "format": "date-time", "description": "The current end, after extensions"},
            "status": {"$ref": "#/components/schemas/AuctionStatus"},
            "current_price": money, "leader": {"type": "integer", "format": "int64", "nullable": true},
            "max_bid": {"allOf": [money], "nullable": true, "description": "Your maximum, when you lead"},
            "reserve_met": {"type": "boolean"}, "extensions": {"type": "integer"},
            "bid_count": {"type": "integer"}, "seq": {"type": "integer"},
            "created_at": time, "closed_at": {"type": "string", "format": "date-time", "nullable": true},
            "min_next_bid": money, "buy_now_available": {"type": "boolean"},
            "has_reserve": {"type": "boolean", "description": "A hidden reserve exists; reserve_met says whether bids reached it"}}},
        "Bid": {"type": "object", "properties": {"id": id, "auction_id": id, "bidder": id, "amount": money,
            "placed_at": time, "seq": {"type": "integer"}, "auto": {"type": "boolean"}}},
        "AuctionDetail": {"type": "object", "properties": {"auction": {"$ref": "#/components/schemas/Auction"},
            "bids": {"type": "array", "items": {"$ref": "#/components/schemas/Bid"}}, "server_now": time}},
        "BidRequest": {"type": "object", "additionalProperties": false, "required": ["amount"],
            "properties": {"amount": positive, "max_amount": {"allOf": [positive], "nullable": true}}},
        "BidResult": {"type": "object", "properties": {
            "bid": {"allOf": [{"$ref": "#/components/schemas/Bid"}], "nullable": true},
            "auction": {"$ref": "#/components/schemas/Auction"}}},
        "AmountRequest": {"type": "object", "additionalProperties": false, "required": ["amount"], "properties": {"amount": positive}},
        "LedgerEntry": {"type": "object", "properties": {"user": id,
            "kind": {"type": "string", "enum": ["deposit", "withdrawal", "bid_hold", "hold_release", "settlement_debit", "sale_credit", "buy_now_debit", "buy_now_credit"]},
            "amount": money, "auction_id": {"type": "integer", "format": "int64", "nullable": true},
            "balance_after": money, "locked_after": money, "at": time}},
        "WalletView": {"type": "object", "properties": {
            "wallet": {"type": "object", "properties": {"user": id, "balance": money, "locked": money}},
            "holds": {"type": "array", "items": {"type": "object", "properties": {"auction_id": id, "user": id, "amount": money}}},
            "history": {"$ref": "#/components/schemas/LedgerPage"}}},
        "AuctionPage": page("Auction"),
        "BidPage": page("Bid"),
        "LedgerPage": page("LedgerEntry")
    })
}
