//! The API documents itself and the service reports on itself: the router
//! and its `OpenAPI` document agree, exactly the routes that declare the
//! bearer scheme refuse anonymous calls, the docs stay outside admission
//! control, and `/readyz` and `/metrics` carry inventory's own checks and
//! counters.

use reqwest::{Method, StatusCode};
use testkit::{Ask as _, Running, World};
use utoipa::openapi::OpenApi;
use uuid::Uuid;

use inventory::Inventory;

use crate::support::{start, start_rate_limited, with_concert};

#[tokio::test]
async fn the_router_documents_every_route_it_mounts_and_mounts_every_route_it_documents() {
    let world = World::start().await;
    let app = Running::<Inventory>::build(&world.settings("inventory").await).await;
    let (title, operations) =
        Running::<Inventory>::documented(&world.settings("inventory").await).await;

    assert_eq!(title, "Inventory API");
    let doc = app.openapi();
    assert_eq!(doc.info.version, env!("CARGO_PKG_VERSION"));
    for (method, path) in [
        ("GET", "/events"),
        ("POST", "/events"),
        ("GET", "/events/{id}"),
        ("PATCH", "/events/{id}"),
        ("GET", "/events/{id}/seats"),
        ("POST", "/events/{id}/seats/{seat}/hold"),
        ("DELETE", "/events/{id}/seats/{seat}/hold"),
        ("POST", "/holds/verify"),
        ("POST", "/ops/warmup"),
        ("GET", "/readyz"),
        ("GET", "/docs"),
    ] {
        assert!(
            operations.contains(&(method.to_owned(), path.to_owned())),
            "{method} {path} in {operations:?}"
        );
    }
    let schemas = &doc.components.as_ref().expect("components").schemas;
    for schema in ["Problem", "Concert", "SeatMap", "Hold", "CreateEvent"] {
        assert!(schemas.contains_key(schema), "schema {schema} missing");
    }
}

#[tokio::test]
async fn exactly_the_routes_that_declare_the_bearer_scheme_refuse_anonymous_calls() {
    let world = World::start().await;
    let inventory = start(&world, &[]).await;
    let doc: OpenApi = serde_json::from_value(inventory.get("/openapi.json").answer().await.body)
        .expect("an OpenAPI document");
    let secured = httpkit::docs::secured_operations(&doc);
    assert!(
        doc.components
            .as_ref()
            .is_some_and(|c| c.security_schemes.contains_key("bearer")),
        "the bearer scheme is declared"
    );

    for (method, path) in httpkit::docs::operations(&doc) {
        // Requests that change nothing: no bodies, an unknown concert.
        let concrete = path
            .replace("{id}", &Uuid::new_v4().to_string())
            .replace("{seat}", "A-1");
        let method = Method::from_bytes(method.as_bytes()).unwrap();
        let answer = inventory.request(method.clone(), &concrete).answer().await;
        let refused = answer.status == StatusCode::UNAUTHORIZED;
        let declared = secured.contains(&(method.to_string(), path.clone()));
        assert_eq!(
            refused, declared,
            "{method} {path}: answered {} anonymously, bearer declared: {declared}",
            answer.status
        );
    }
}

#[tokio::test]
async fn the_docs_answer_while_the_api_is_rate_limited() {
    let world = World::start().await;
    let inventory = start_rate_limited(&world, "1").await;
    assert_eq!(
        inventory.get("/events").answer().await.status,
        StatusCode::OK
    );
    assert_eq!(
        inventory.get("/events").answer().await.status,
        StatusCode::TOO_MANY_REQUESTS
    );

    let document = inventory.get("/openapi.json").answer().await;

    assert_eq!(document.status, StatusCode::OK);
    assert_eq!(document.body["info"]["title"], "Inventory API");
    inventory.assert_serves_its_docs_page().await;
}

#[tokio::test]
async fn readiness_and_metrics_report_inventorys_own_checks_and_counters() {
    let (_world, mut inventory, concert) = with_concert(1).await;
    inventory
        .get(&format!("/events/{concert}/seats"))
        .answer()
        .await;

    let ready = inventory.get("/readyz").answer().await;
    let metrics = inventory.get("/metrics").answer().await;

    assert_eq!(ready.status, StatusCode::OK, "{}", ready.text);
    for check in ["postgres", "nats", "redis"] {
        assert_eq!(ready.body["checks"][check], "ok", "{}", ready.text);
    }
    assert_eq!(metrics.status, StatusCode::OK);
    for sample in [
        // Created then read once: a miss, one load from Postgres.
        "seatmap_db_loads_total 1",
        "seatmap_cache_misses_total 1",
        "seatmap_cache_hits_total 0",
        "seatmap_null_hits_total 0",
        "seatmap_redis_unavailable_total 0",
        r#"http_admission_rejected_total{reason="rate_limited"} 0"#,
        r#"http_admission_rejected_total{reason="shed"} 0"#,
        r#"consumer_applied_total{consumer="inventory"} 0"#,
        r#"http_requests_total{method="GET",route="/events/{id}/seats",status="200"} 1"#,
    ] {
        metrics.assert_contains(sample);
    }
    // Stops cleanly: the consumer, the catalog listener and the warmup end.
    inventory.stop().await;
}
