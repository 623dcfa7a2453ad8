//! The served OpenAPI document parses, and every operation it lists is
//! routed.

use reqwest::{Method, StatusCode};
use serde_json::json;

use crate::support::TestServer;

#[tokio::test]
async fn the_document_parses_and_every_operation_is_served() {
    let server = TestServer::start().await;
    let auction = server.create(json!({})).await;
    let served = server.get("/openapi.json", None).await;
    assert_eq!(served.status, StatusCode::OK);
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
