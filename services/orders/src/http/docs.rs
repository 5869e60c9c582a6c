//! The orders API's `OpenAPI` document: its title, description and tag
//! here; the router adds each path as it mounts it (`routes!` over the
//! handlers' `#[utoipa::path]` annotations), and `service` adds the
//! operational routes and serves it at `/openapi.json` and `/docs`.
//!
//! What several operations share lives here, so that the same error or
//! parameter reads the same everywhere: texts as constants, the responses
//! that groups of routes give as [`IntoResponses`] types ([`CustomerRoute`],
//! [`OrderCommand`]), and the parameters as [`IntoParams`] types.

use std::collections::BTreeMap;

use httpkit::auth::{BearerScheme, NOT_CUSTOMER, UNAUTHENTICATED};
use utoipa::openapi::header::{Header, HeaderBuilder};
use utoipa::openapi::path::{Parameter, ParameterBuilder, ParameterIn};
use utoipa::openapi::response::{Response, ResponseBuilder};
use utoipa::openapi::{
    ContentBuilder, KnownFormat, ObjectBuilder, Ref, RefOr, Required, Schema, SchemaFormat, Type,
};
use utoipa::{IntoParams, IntoResponses, OpenApi, PartialSchema};

/// The orders API.
#[derive(OpenApi)]
#[openapi(
    modifiers(&BearerScheme),
    info(
        title = "Orders API",
        description = "Create, read, pay and cancel orders for concert seats.\n\n\
            An order is created from seats the customer holds in inventory: orders verifies each \
            hold there and keeps its fencing token, which decides the sale after payment. Each \
            state change and its event commit together (transactional outbox); inventory's \
            answer to a payment then moves the order to `CONFIRMED` or `REFUNDED`.\n\n\
            Every order route needs the customer's bearer token (the customer is its `sub`); \
            an order is visible only to the customer who created it. \
            Every POST needs an `Idempotency-Key` header, scoped to the customer. Every error is \
            `application/problem+json` with a stable `type` to branch on.",
    ),
    // The shared responses below refer to it by name.
    components(schemas(httpkit::Problem)),
    tags(
        (name = "orders", description = "Orders and their state machine: \
            `PENDING → PAID → CONFIRMED`, `PENDING → CANCELLED`, `PAID → REFUNDED`."),
    ),
)]
pub struct ApiDoc;

/// Content type of every error.
pub(super) const PROBLEM_JSON: &str = "application/problem+json";

/// The `Idempotency-Key` request header.
const IDEMPOTENCY_KEY: &str = "Required on every POST: 1 to 255 visible ASCII \
    characters, typically a fresh UUID per logical request, sent again unchanged on each retry. \
    A retry of a request that succeeded is answered from storage; a failed request stored \
    nothing and runs again. Keys expire after `IDEMPOTENCY_KEY_TTL`.";

/// 400 for a malformed `{id}`.
pub(super) const BAD_ORDER_ID: &str = "`/problems/invalid-field` naming `id`: not a UUID.";

/// 404 for an order that is not the caller's.
pub(super) const ORDER_NOT_FOUND: &str =
    "`/problems/order-not-found`: no such order, or another customer's.";

/// 422 for a key used with another request.
const KEY_REUSED: &str = "`/problems/idempotency-key-reused`: the key came with a \
    different request before; use a new key.";

/// 500, on every route.
const INTERNAL: &str = "`/problems/internal`: logged with the `correlation_id` the \
    problem carries (also the trace id); nothing else about the cause is sent.";

/// What every order route may answer besides its own: it is a customer's
/// (401 without a valid token, 403 for an operator's), and 500.
pub(super) struct CustomerRoute;

impl IntoResponses for CustomerRoute {
    fn responses() -> BTreeMap<String, RefOr<Response>> {
        let challenge = header::<String>("`Bearer`, with the reason when a token was refused.");
        responses([
            (
                "401",
                problem(UNAUTHENTICATED).header("WWW-Authenticate", challenge),
            ),
            ("403", problem(NOT_CUSTOMER)),
            ("500", problem(INTERNAL)),
        ])
    }
}

/// What pay and cancel may answer besides their own 200 and 409: a
/// missing or bad key or id, another customer's order, a reused key, and
/// Postgres being away.
pub(super) struct OrderCommand;

impl IntoResponses for OrderCommand {
    fn responses() -> BTreeMap<String, RefOr<Response>> {
        responses([
            (
                "400",
                problem(
                    "`/problems/idempotency-key-missing`, or `/problems/invalid-field` naming \
                     `Idempotency-Key` or `id`.",
                ),
            ),
            ("404", problem(ORDER_NOT_FOUND)),
            ("422", problem(KEY_REUSED)),
            (
                "503",
                problem(
                    "`/problems/dependency-unavailable` naming `postgres`, or \
                     `/problems/timeout`. Retry with the same `Idempotency-Key` after \
                     `Retry-After`.",
                )
                .header(
                    "Retry-After",
                    header::<u64>("Seconds after which a retry may succeed."),
                ),
            ),
        ])
    }
}

/// The parameters of pay and cancel: the order's `{id}` and the
/// `Idempotency-Key` header.
pub(super) struct OrderCommandParams;

impl IntoParams for OrderCommandParams {
    fn into_params(_: impl Fn() -> Option<ParameterIn>) -> Vec<Parameter> {
        vec![ORDER_ID.param(), IDEMPOTENCY_KEY_HEADER.param()]
    }
}

/// The `Idempotency-Key` header alone: what create takes.
pub(super) struct CreateOrderParams;

impl IntoParams for CreateOrderParams {
    fn into_params(_: impl Fn() -> Option<ParameterIn>) -> Vec<Parameter> {
        vec![IDEMPOTENCY_KEY_HEADER.param()]
    }
}

/// The order's `{id}` alone: what a read takes.
pub(super) struct OrderIdParams;

impl IntoParams for OrderIdParams {
    fn into_params(_: impl Fn() -> Option<ParameterIn>) -> Vec<Parameter> {
        vec![ORDER_ID.param()]
    }
}

/// A required parameter, described once.
struct Param {
    name: &'static str,
    place: ParameterIn,
    description: &'static str,
    schema: fn() -> RefOr<Schema>,
}

const ORDER_ID: Param = Param {
    name: "id",
    place: ParameterIn::Path,
    description: "The order's id.",
    schema: uuid,
};

const IDEMPOTENCY_KEY_HEADER: Param = Param {
    name: "Idempotency-Key",
    place: ParameterIn::Header,
    description: IDEMPOTENCY_KEY,
    schema: idempotency_key,
};

impl Param {
    fn param(&self) -> Parameter {
        ParameterBuilder::new()
            .name(self.name)
            .parameter_in(self.place.clone())
            .description(Some(self.description))
            .required(Required::True)
            .schema(Some((self.schema)()))
            .build()
    }
}

fn uuid() -> RefOr<Schema> {
    ObjectBuilder::new()
        .schema_type(Type::String)
        .format(Some(SchemaFormat::KnownFormat(KnownFormat::Uuid)))
        .into()
}

/// 1 to 255 visible ASCII characters, as `IdempotencyKey::parse` checks.
fn idempotency_key() -> RefOr<Schema> {
    ObjectBuilder::new()
        .schema_type(Type::String)
        .pattern(Some("^[!-~]{1,255}$"))
        .into()
}

/// A problem+json response described by `description`.
fn problem(description: &str) -> ResponseBuilder {
    let body = ContentBuilder::new()
        .schema(Some(Ref::from_schema_name("Problem")))
        .build();
    ResponseBuilder::new()
        .description(description)
        .content(PROBLEM_JSON, body)
}

/// A response header of type `T`.
fn header<T: PartialSchema>(description: &str) -> Header {
    HeaderBuilder::new()
        .schema(T::schema())
        .description(Some(description))
        .build()
}

fn responses<const N: usize>(
    entries: [(&str, ResponseBuilder); N],
) -> BTreeMap<String, RefOr<Response>> {
    entries
        .into_iter()
        .map(|(status, response)| (status.to_owned(), response.build().into()))
        .collect()
}
