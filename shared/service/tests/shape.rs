//! The service shape without any dependency: a tiny API on a [`Builder`],
//! served for real, shows what every service gets: the operational routes,
//! readiness from declared checks, RED metrics, a 404 problem for unknown
//! paths, and a route report that catches a route mounted around the
//! document.

// Helpers outside #[test] functions unwrap too: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used)]

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use axum::Json;
use reqwest::StatusCode;
use service::{Builder, HttpConfig};
use tokio_util::sync::CancellationToken;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

/// `GET /greeting`.
#[utoipa::path(get, path = "/greeting", responses((status = 200, body = String)))]
async fn greeting() -> Json<&'static str> {
    Json("hello")
}

fn http() -> HttpConfig {
    HttpConfig::from_env(
        &settings::Env::from_pairs([("HTTP_ADDR", "127.0.0.1:0")]),
        0,
        1024,
    )
    .unwrap()
}

/// A service with one documented route, a required check that passes and
/// an optional one that fails.
async fn started() -> (String, CancellationToken) {
    let mut builder = Builder::new("greeter", http());
    builder.check("always", || async { Ok(()) });
    builder.degraded("cache", || async { Err("connection refused".to_owned()) });
    let app = builder
        .serve(OpenApiRouter::new().routes(routes!(greeting)))
        .await
        .unwrap();
    let base = format!("http://127.0.0.1:{}", app.port());
    let stop = CancellationToken::new();
    tokio::spawn(app.run_until_stopped(stop.clone()));
    (base, stop)
}

async fn get_text(url: String) -> (StatusCode, String) {
    let response = reqwest::get(url).await.unwrap();
    (response.status(), response.text().await.unwrap())
}

#[tokio::test]
async fn every_service_gets_the_operational_routes_documented() {
    let (base, stop) = started().await;

    let (status, document) = get_text(format!("{base}/openapi.json")).await;
    assert_eq!(status, StatusCode::OK);
    let document: utoipa::openapi::OpenApi = serde_json::from_str(&document).unwrap();
    let operations = httpkit::docs::operations(&document);
    for path in [
        "/greeting",
        "/healthz",
        "/readyz",
        "/metrics",
        "/openapi.json",
        "/docs",
    ] {
        assert!(
            operations.contains(&("GET".to_owned(), path.to_owned())),
            "{path}: {operations:?}"
        );
    }
    let readyz = document.paths.paths["/readyz"].get.as_ref().unwrap();
    let description = readyz.description.as_deref().unwrap_or_default();
    assert!(
        description.contains("`always` (required)") && description.contains("`cache` (optional"),
        "the declared checks are documented: {description}"
    );
    stop.cancel();
}

#[tokio::test]
async fn readiness_answers_from_the_declared_checks() {
    let (base, stop) = started().await;

    let (status, body) = get_text(format!("{base}/readyz")).await;

    assert_eq!(status, StatusCode::OK);
    let body: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(body["status"], "degraded");
    assert_eq!(body["checks"]["always"], "ok");
    assert_eq!(body["checks"]["cache"], "degraded: connection refused");
    stop.cancel();
}

#[tokio::test]
async fn every_route_gets_red_metrics_and_unknown_paths_a_problem() {
    let (base, stop) = started().await;
    get_text(format!("{base}/greeting")).await;

    let (status, unknown) = get_text(format!("{base}/no/such/path")).await;
    let (_, metrics) = get_text(format!("{base}/metrics")).await;

    assert_eq!(status, StatusCode::NOT_FOUND);
    assert!(unknown.contains("/problems/no-such-route"), "{unknown}");
    assert!(
        metrics.contains(r#"http_requests_total{method="GET",route="/greeting",status="200"} 1"#),
        "{metrics}"
    );
    assert!(
        metrics.contains(r#"http_requests_total{method="GET",route="unmatched",status="404"} 1"#),
        "{metrics}"
    );
    assert!(
        metrics
            .contains(r#"http_request_duration_seconds_count{method="GET",route="/greeting"} 1"#),
        "{metrics}"
    );
    stop.cancel();
}

#[tokio::test]
async fn the_route_report_finds_a_route_mounted_around_the_document() {
    // What clippy.toml forbids in the services, done here on purpose: a
    // method mounted with plain axum next to a documented one.
    #[allow(clippy::disallowed_methods)]
    let api = OpenApiRouter::new()
        .routes(routes!(greeting))
        .route("/greeting", axum::routing::delete(|| async { "gone" }));

    let app = Builder::new("greeter", http()).serve(api).await.unwrap();
    let report = app.route_report().await;

    assert_eq!(
        report.undocumented.into_iter().collect::<Vec<_>>(),
        ["DELETE /greeting"],
        "an undocumented method on a documented path is found"
    );
    assert!(report.unmounted.is_empty());
}

#[tokio::test]
async fn a_service_that_documents_only_what_it_mounts_has_a_clean_report() {
    let app = Builder::new("greeter", http())
        .serve(OpenApiRouter::new().routes(routes!(greeting)))
        .await
        .unwrap();

    let report = app.route_report().await;

    assert_eq!(report, service::ops::RouteReport::default());
}

#[tokio::test]
async fn a_stop_waits_for_the_tasks_then_closes_the_pools() {
    let mut builder = Builder::new("greeter", http());
    // Never connected: closing it needs no server.
    let db = sqlx::postgres::PgPoolOptions::new()
        .connect_lazy("postgres://nobody@127.0.0.1:1/none")
        .unwrap();
    builder.close_at_stop(db.clone());
    let finished = Arc::new(AtomicBool::new(false));
    let (task_finished, pool) = (finished.clone(), db.clone());
    builder.task(move |stop| async move {
        stop.cancelled().await;
        // Work in hand at the signal, finishing after it.
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert!(!pool.is_closed(), "the pool outlives the task");
        task_finished.store(true, Ordering::SeqCst);
    });
    let mut serving = builder
        .serve(OpenApiRouter::new().routes(routes!(greeting)))
        .await
        .unwrap()
        .spawn();

    serving.stop().await.unwrap();

    assert!(
        finished.load(Ordering::SeqCst),
        "the stop waited for the task"
    );
    assert!(db.is_closed(), "then the pool was closed");
}
