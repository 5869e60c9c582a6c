//! The reports API (port 8083).
//!
//! | route | what |
//! |---|---|
//! | `GET /reports/events/{id}` | operator: tickets sold, revenue and refunds of a concert |
//!
//! `/healthz`, `/readyz` (Postgres, NATS), `/metrics` (RED, and the
//! projection consumer's counts and lag), `/openapi.json` and `/docs` are
//! the routes every service has (`service::ops`).
//!
//! Sales figures are the business's, not a customer's: the report needs an
//! operator's bearer token (`httpkit::auth::Operator`).

use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, State};
use http::StatusCode;
use httpkit::Problem;
use httpkit::auth::{BearerScheme, NOT_OPERATOR, Operator, UNAUTHENTICATED, Verifier};
use serde::Serialize;
use sqlx::PgPool;
use utoipa::{OpenApi, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

/// What the handlers share.
pub struct HttpState {
    pub db: PgPool,
}

/// A concert's sales.
#[derive(Debug, Serialize, ToSchema)]
pub struct SalesReport {
    /// The concert.
    pub event_id: Uuid,
    /// Seats of confirmed orders.
    pub tickets_sold: i64,
    /// What they cost together, in cents.
    pub revenue_cents: i64,
    /// Paid orders refunded because their seats were gone.
    pub refunds: i64,
    /// The read-model generation answering (changes with each rebuild).
    pub generation: i32,
}

/// The reports API's `OpenAPI` document: its title and tags; the router
/// adds the paths as it mounts them ([`api`]).
#[derive(OpenApi)]
#[openapi(
    modifiers(&BearerScheme),
    info(
        title = "Reporting API",
        description = "Sales per concert: a read model projected from the order events.\n\n\
            The numbers follow the events by a moment (eventual consistency), and the whole \
            model can be rebuilt by replaying the stream (`ticketctl reporting rebuild`), after \
            which `generation` changes. Reports need an operator's bearer token \
            (`role: operator`). Every error is `application/problem+json`.",
    ),
    tags((name = "reports", description = "Sales figures per concert.")),
)]
pub struct ApiDoc;

/// The reports API, documented as it is mounted: bearer tokens verified on
/// every route.
pub fn api(state: HttpState, verifier: Verifier) -> OpenApiRouter {
    OpenApiRouter::with_openapi(ApiDoc::openapi())
        .routes(routes!(report))
        .route_layer(axum::middleware::from_fn_with_state(
            verifier,
            httpkit::auth::authenticate,
        ))
        .with_state(Arc::new(state))
}

/// `GET /reports/events/{id}`.
#[utoipa::path(
    get,
    path = "/reports/events/{id}",
    tag = "reports",
    summary = "A concert's sales",
    description = "Tickets sold and revenue of the concert's confirmed orders, and how many \
        paid orders were refunded, from the active read-model generation.",
    params(("id" = Uuid, Path, description = "The concert's id.")),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The report.", body = SalesReport),
        (status = 401, description = UNAUTHENTICATED, body = httpkit::Problem,
            content_type = "application/problem+json",
            headers(("WWW-Authenticate" = String, description = "`Bearer`, with the reason when a token was refused."))),
        (status = 403, description = NOT_OPERATOR, body = httpkit::Problem,
            content_type = "application/problem+json"),
        (status = 400, description = "`/problems/invalid-field` naming `id`: not a UUID.",
            body = httpkit::Problem, content_type = "application/problem+json"),
        (status = 404, description = "`/problems/report-not-found`: no confirmed or refunded \
            order for this concert yet.",
            body = httpkit::Problem, content_type = "application/problem+json"),
        (status = 503, description = "`/problems/dependency-unavailable` naming `postgres`, or \
            `/problems/timeout`.",
            body = httpkit::Problem, content_type = "application/problem+json",
            headers(("Retry-After" = u64, description = "Seconds after which a retry may succeed."))),
    ),
)]
async fn report(
    State(state): State<Arc<HttpState>>,
    _: Operator,
    Path(id): Path<String>,
) -> Result<Json<SalesReport>, Problem> {
    let event_id = Uuid::parse_str(&id).map_err(|e| {
        Problem::invalid_field("id", format!("{id:?} is not a UUID: {e}"))
            .status(StatusCode::BAD_REQUEST)
    })?;
    let row = sqlx::query!(
        r#"
        select s.tickets_sold, s.revenue_cents, s.refunds, p.active_generation
        from projection_state p
        join sales s on s.generation = p.active_generation
        where s.event_id = $1
        "#,
        event_id,
    )
    .fetch_optional(&state.db)
    .await
    .map_err(|e| {
        tracing::warn!(error = %e, "reading the report failed");
        Problem::dependency_unavailable("postgres")
    })?
    .ok_or_else(|| {
        Problem::new(
            StatusCode::NOT_FOUND,
            "report-not-found",
            "No sales for this event",
        )
        .detail(format!(
            "no confirmed or refunded order for event {event_id} yet"
        ))
    })?;
    Ok(Json(SalesReport {
        event_id,
        tickets_sold: row.tickets_sold,
        revenue_cents: row.revenue_cents,
        refunds: row.refunds,
        generation: row.active_generation,
    }))
}
