//! The OpenAPI documents (`GET /openapi.json`) and the Swagger UI (`GET
//! /docs`) of both listeners: each document is OpenAPI 3.1, lists exactly
//! the routes its listener serves, and has the bearer scheme and the error
//! schema; the Swagger UI uses only assets served by hookrelay itself.

use std::collections::BTreeSet;

use awc::http::Method;
use serde_json::Value;

use crate::helpers::*;

/// The routes the public listener serves.
const PUBLIC_ROUTES: &[(&str, &str)] = &[
    ("get", "/v1/subscription/events"),
    ("get", "/v1/subscription"),
    ("post", "/v1/subscription"),
    ("get", "/v1/subscription/{id}"),
    ("delete", "/v1/subscription/{id}"),
    ("patch", "/v1/subscription/{id}"),
    ("put", "/v1/subscription/{id}/secret"),
    ("post", "/v1/subscription/{id}/test"),
    ("get", "/v1/subscription/{id}/deliveries"),
    ("get", "/v1/subscription/{id}/deliveries/{deliveryId}"),
    (
        "post",
        "/v1/subscription/{id}/deliveries/{deliveryId}/resend",
    ),
    ("get", "/v1/subscription/{id}/events"),
    ("get", "/openapi.json"),
    ("get", "/docs"),
    ("get", "/docs/{file}"),
];

/// The routes the internal listener serves.
const INTERNAL_ROUTES: &[(&str, &str)] = &[
    ("get", "/health"),
    ("get", "/metrics"),
    ("post", "/internal/v1/events"),
    ("post", "/internal/v1/events/batch"),
    ("post", "/internal/v1/tokens"),
    ("get", "/internal/v1/event-types"),
    ("put", "/internal/v1/event-types/{name}"),
    ("get", "/internal/v1/endpoints"),
    ("patch", "/internal/v1/endpoints/{id}"),
    ("get", "/internal/v1/dead-letters"),
    ("post", "/internal/v1/dead-letters/{id}/replay"),
    ("get", "/internal/v1/subscriptions"),
    ("get", "/internal/v1/notices"),
    ("get", "/internal/v1/events/{eventId}"),
    ("post", "/internal/v1/erasure"),
    ("get", "/internal/v1/erasure/{erasureId}"),
    ("get", "/openapi.json"),
    ("get", "/docs"),
    ("get", "/docs/{file}"),
];

/// The `(method, path)` pairs a document lists.
fn documented(doc: &Value) -> BTreeSet<(String, String)> {
    let mut found = BTreeSet::new();
    for (path, item) in doc["paths"].as_object().into_iter().flatten() {
        for method in item.as_object().into_iter().flatten().map(|(m, _)| m) {
            found.insert((method.clone(), path.clone()));
        }
    }
    found
}

fn expected(routes: &[(&str, &str)]) -> BTreeSet<(String, String)> {
    routes
        .iter()
        .map(|(m, p)| (m.to_string(), p.to_string()))
        .collect()
}

async fn document(app: &TestApp, listener: Listener) -> Value {
    let (status, doc) = app.openapi_document(listener).await;
    assert_eq!(status, 200, "{listener:?} /openapi.json: {doc}");
    assert!(
        doc.is_object(),
        "{listener:?} /openapi.json is no JSON object: {doc}"
    );
    doc
}

#[actix_rt::test]
async fn each_listener_documents_exactly_its_own_routes_in_openapi_3_1() {
    let app = TestApp::spawn().await;
    for (listener, routes) in [
        (Listener::Public, PUBLIC_ROUTES),
        (Listener::Internal, INTERNAL_ROUTES),
    ] {
        let doc = document(&app, listener).await;
        let version = doc["openapi"].as_str().unwrap_or_default();
        assert!(
            version.starts_with("3.1."),
            "{listener:?}: openapi {version}"
        );
        assert_eq!(documented(&doc), expected(routes), "{listener:?}");
    }
}

#[actix_rt::test]
async fn the_endpoint_policy_patch_documents_its_fields_and_answers_the_listed_endpoint() {
    let app = TestApp::spawn().await;
    let doc = document(&app, Listener::Internal).await;
    let patch = &doc["paths"]["/internal/v1/endpoints/{id}"]["patch"];
    let body = text_of(&patch["requestBody"]);
    assert!(body.contains("PolicyChange"), "{body}");
    let schema = text_of(&doc["components"]["schemas"]["PolicyChange"]);
    for field in ["paused", "maxInFlight", "maxPerSecond", "timeout"] {
        assert!(schema.contains(field), "{field} in {schema}");
    }
    let ok = text_of(&patch["responses"]["200"]);
    assert!(ok.contains("EndpointView"), "{ok}");
}

#[actix_rt::test]
async fn every_documented_route_is_served_on_its_listener() {
    let app = TestApp::spawn().await;
    for (listener, routes) in [
        (Listener::Public, PUBLIC_ROUTES),
        (Listener::Internal, INTERNAL_ROUTES),
    ] {
        for (method, path) in routes {
            let concrete = path
                .replace("{id}", "1")
                .replace("{name}", "some_type")
                .replace("{file}", "index.css");
            let url = match listener {
                Listener::Public => app.public(&concrete),
                Listener::Internal => app.internal(&concrete),
            };
            let method = Method::from_bytes(method.to_uppercase().as_bytes()).unwrap_or_default();
            let (status, body) = app.call(method.clone(), &url, None, &[], Body::Empty).await;
            let no_route = body["message"]
                .as_str()
                .is_some_and(|m| m.starts_with("there is no route"));
            assert!(
                !(status == 404 && no_route) && status != 405,
                "{listener:?} {method} {concrete} is documented but not served: {status} {body}"
            );
        }
    }
}

#[actix_rt::test]
async fn both_documents_have_the_bearer_scheme_and_every_error_answers_the_error_body() {
    let app = TestApp::spawn().await;
    for listener in [Listener::Public, Listener::Internal] {
        let doc = document(&app, listener).await;
        let bearer = &doc["components"]["securitySchemes"]["bearer"];
        assert_eq!(bearer["type"], "http", "{listener:?}: {bearer}");
        assert_eq!(bearer["scheme"], "bearer", "{listener:?}: {bearer}");
        let error = &doc["components"]["schemas"]["ErrorBody"];
        let required: Vec<&str> = error["required"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .collect();
        assert_eq!(required, ["error", "message"], "{listener:?}: {error}");
        for (path, item) in doc["paths"].as_object().into_iter().flatten() {
            for (method, operation) in item.as_object().into_iter().flatten() {
                for (status, response) in operation["responses"].as_object().into_iter().flatten() {
                    // `/health` answers 503 with its own report when not ready.
                    if status.as_str() >= "400" && path != "/health" {
                        let schema = &response["content"]["application/json"]["schema"]["$ref"];
                        assert_eq!(
                            schema, "#/components/schemas/ErrorBody",
                            "{listener:?} {method} {path} {status}"
                        );
                    }
                }
            }
        }
    }
}

#[actix_rt::test]
async fn every_route_but_health_and_the_documentation_asks_for_the_bearer_token() {
    let app = TestApp::spawn().await;
    let open = ["/health", "/openapi.json", "/docs", "/docs/{file}"];
    for listener in [Listener::Public, Listener::Internal] {
        let doc = document(&app, listener).await;
        for (path, item) in doc["paths"].as_object().into_iter().flatten() {
            for (method, operation) in item.as_object().into_iter().flatten() {
                let secured = operation["security"]
                    .as_array()
                    .is_some_and(|s| s.iter().any(|r| r.get("bearer").is_some()));
                assert_eq!(
                    secured,
                    !open.contains(&path.as_str()),
                    "{listener:?} {method} {path}: security {}",
                    operation["security"]
                );
            }
        }
    }
}

#[actix_rt::test]
async fn the_swagger_ui_is_served_from_local_assets_only() {
    let app = TestApp::spawn().await;
    for listener in [Listener::Public, Listener::Internal] {
        let (status, content_type, page) = app.docs(listener, "/docs").await;
        assert_eq!(status, 200, "{listener:?} /docs: {page}");
        assert!(content_type.starts_with("text/html"), "{content_type}");
        let assets = asset_links(&page);
        assert!(!assets.is_empty(), "{listener:?}: no assets in {page}");
        for asset in assets {
            assert!(
                asset.starts_with("/docs/"),
                "{listener:?}: {asset} is not local"
            );
            let (status, _, _) = app.docs(listener, &asset).await;
            assert_eq!(status, 200, "{listener:?}: {asset}");
        }
        let (_, _, init) = app.docs(listener, "/docs/swagger-initializer.js").await;
        assert!(init.contains("\"/openapi.json\""), "{init}");
        assert!(
            !init.contains("https://"),
            "the initializer names a remote URL: {init}"
        );
    }
}

/// The values of every `src="…"` and `href="…"` of a page.
fn asset_links(page: &str) -> Vec<String> {
    let mut links = Vec::new();
    for attr in ["src=\"", "href=\""] {
        for piece in page.split(attr).skip(1) {
            if let Some(end) = piece.find('"') {
                links.push(piece[..end].to_string());
            }
        }
    }
    links
}
