//! The headers that keep the page from being framed, sniffed or leaking
//! its address: a strict Content-Security-Policy whose only script and
//! style are the page's own (allowed by their SHA-256), no framing by any
//! site (clickjacking a buy-now), and no referrer sent elsewhere.

use std::sync::OnceLock;

use axum::http::header::{
    CONTENT_SECURITY_POLICY, REFERRER_POLICY, X_CONTENT_TYPE_OPTIONS, X_FRAME_OPTIONS,
};
use axum::http::HeaderValue;
use axum::response::Response;
use base64::Engine as _;
use sha2::{Digest, Sha256};

/// The page: one inline `<style>` and one inline `<script>`.
pub(crate) const PAGE: &str = include_str!("page.html");

/// Adds the headers to a response of the site, keeping any it set itself.
pub(crate) async fn headers(mut response: Response) -> Response {
    let headers = response.headers_mut();
    let policy = HeaderValue::from_str(policy()).unwrap_or(HeaderValue::from_static(
        "default-src 'none'; frame-ancestors 'none'",
    ));
    let wanted = [
        (CONTENT_SECURITY_POLICY, policy),
        (X_FRAME_OPTIONS, HeaderValue::from_static("DENY")),
        (REFERRER_POLICY, HeaderValue::from_static("same-origin")),
        (X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff")),
    ];
    for (name, value) in wanted {
        headers.entry(name).or_insert(value);
    }
    response
}

/// The Content-Security-Policy of the site, built once.
pub(crate) fn policy() -> &'static str {
    static POLICY: OnceLock<String> = OnceLock::new();
    POLICY.get_or_init(|| {
        let script = hash(between(PAGE, "<script>", "</script>"));
        let style = hash(between(PAGE, "<style>", "</style>"));
        format!(
            "default-src 'none'; script-src '{script}'; style-src '{style}'; \
             img-src 'self'; connect-src 'self'; form-action 'self'; \
             base-uri 'none'; frame-ancestors 'none'"
        )
    })
}

/// The text between the first `open` tag and the next `close` tag.
fn between<'a>(page: &'a str, open: &str, close: &str) -> &'a str {
    let start = page.find(open).map_or(0, |at| at + open.len());
    let end = page[start..]
        .find(close)
        .map_or(page.len(), |at| start + at);
    &page[start..end]
}

/// A CSP source for inline content: `sha256-` and its base64 digest.
fn hash(content: &str) -> String {
    let digest = Sha256::digest(content.as_bytes());
    format!(
        "sha256-{}",
        base64::engine::general_purpose::STANDARD.encode(digest)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_policy_allows_exactly_the_pages_own_script_and_style() {
        assert!(policy().contains("frame-ancestors 'none'"));
        assert!(policy().contains("default-src 'none'"));
        assert!(!policy().contains("unsafe"));
        let script = between(PAGE, "<script>", "</script>");
        assert!(script.contains("fetch("), "the page's script");
        assert!(policy().contains(&hash(script)));
        // One inline script and style only: another would be blocked.
        assert_eq!(PAGE.matches("<script").count(), 1);
        assert_eq!(PAGE.matches("<style").count(), 1);
        assert!(!PAGE.contains(" style=\""), "no inline style attribute");
        // An inline event handler would be blocked too.
        let handler = regex_free_handler(PAGE);
        assert_eq!(handler, None, "inline handler {handler:?}");
    }

    /// The first ` onsomething=` attribute in the page's markup, if any.
    fn regex_free_handler(page: &str) -> Option<&str> {
        let markup = &page[..page.find("<script>").unwrap_or(page.len())];
        markup.split(" on").skip(1).find(|rest| {
            let name: String = rest.chars().take_while(char::is_ascii_lowercase).collect();
            !name.is_empty() && rest[name.len()..].starts_with('=')
        })
    }
}
