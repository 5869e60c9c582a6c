//! Holds: exclusive, expiring, limited per customer, released only by their
//! owner, and fenced so that Postgres sells a seat to its current holder only.

use std::time::Duration;

use futures::future::join_all;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use testkit::{Ask as _, World};
use uuid::Uuid;

use crate::support::{Steps as _, retry_after, start, with_concert};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn customers_racing_for_one_seat_get_exactly_one_hold() {
    let (world, inventory, concert) = with_concert(1).await;

    let answers =
        join_all((0..20).map(|_| inventory.hold(&world, concert, "A-1", Uuid::new_v4()))).await;

    let created = answers
        .iter()
        .filter(|a| a.status == StatusCode::CREATED)
        .count();
    let seen: Vec<_> = answers
        .iter()
        .map(|a| (a.status.as_u16(), a.problem_type()))
        .collect();
    assert_eq!(created, 1, "exactly one customer holds the seat: {seen:?}");
    for refused in answers.iter().filter(|a| a.status != StatusCode::CREATED) {
        assert_eq!(refused.status, StatusCode::CONFLICT);
        assert!(retry_after(refused) >= 1);
    }
}

#[tokio::test]
async fn a_hold_lapses_by_itself_and_frees_the_seat() {
    let world = World::start().await;
    let inventory = start(&world, &[("HOLD_TTL", "1s")]).await;
    let concert = world.concert(&inventory, 1).await;
    inventory.held(&world, concert, "A-1", Uuid::new_v4()).await;
    let other = Uuid::new_v4();
    let refused = inventory.hold(&world, concert, "A-1", other).await;
    assert_eq!(refused.status, StatusCode::CONFLICT);
    assert_eq!(refused.problem_type(), "/problems/seat-held");

    testkit::eventually(Duration::from_secs(3), "the hold lapses", || async {
        inventory.hold(&world, concert, "A-1", other).await.status == StatusCode::CREATED
    })
    .await;
}

#[tokio::test]
async fn a_paused_client_whose_hold_lapsed_cannot_take_the_seat_from_the_new_holder() {
    let world = World::start().await;
    let inventory = start(&world, &[("HOLD_TTL", "1s")]).await;
    let concert = world.concert(&inventory, 1).await;

    // Ada holds the seat and orders it (her order carries her token)…
    let (_, ada_fence) = inventory.held(&world, concert, "A-1", Uuid::new_v4()).await;
    // …then pauses (GC, network) past her hold's expiry; Bob holds it now.
    let bob = Uuid::new_v4();
    let bob_fence = inventory
        .hold_once_free(&world, concert, "A-1", bob, Duration::from_secs(3))
        .await;
    assert!(bob_fence > ada_fence, "fencing tokens only grow");

    // Ada's payment arrives first: the token decides, not the order of arrival.
    let (ada_order, ada_answer) = inventory.sell(concert, &[("A-1", Some(ada_fence))]).await;
    assert_eq!(ada_answer, "SeatAllocationRejected");
    let (bob_order, bob_answer) = inventory.sell(concert, &[("A-1", Some(bob_fence))]).await;
    assert_eq!(bob_answer, "SeatsConfirmed");
    assert_eq!(inventory.owner_of(concert, "A-1").await, Some(bob_order));
    assert_ne!(Some(ada_order), inventory.owner_of(concert, "A-1").await);
}

#[tokio::test]
async fn an_order_without_a_token_cannot_buy_a_held_seat_but_can_buy_a_never_held_one() {
    let (world, inventory, concert) = with_concert(2).await;
    inventory.held(&world, concert, "A-1", Uuid::new_v4()).await;
    let (_, answer) = inventory.sell(concert, &[("A-1", None)]).await;
    assert_eq!(answer, "SeatAllocationRejected");
    let (_, answer) = inventory.sell(concert, &[("A-2", None)]).await;
    assert_eq!(answer, "SeatsConfirmed");
}

#[tokio::test]
async fn only_the_owner_releases_a_hold() {
    let (world, inventory, concert) = with_concert(1).await;
    let (owner, stranger) = (Uuid::new_v4(), Uuid::new_v4());
    let (token, _) = inventory.held(&world, concert, "A-1", owner).await;
    let path = format!("/events/{concert}/seats/A-1/hold");
    let release = |customer: Uuid, token: String| {
        inventory
            .request(Method::DELETE, &path)
            .bearer_auth(world.customer(customer))
            .header("hold-token", token)
            .answer()
    };

    let wrong = release(owner, Uuid::new_v4().to_string()).await;
    assert_eq!(wrong.status, StatusCode::NOT_FOUND);
    let malformed = release(owner, "nope".into()).await;
    assert_eq!(malformed.status, StatusCode::BAD_REQUEST);
    // The right hold token is not enough: it is in the owner's order, and
    // whoever saw it must not free the seat.
    let foreign = release(stranger, token.to_string()).await;
    assert_eq!(foreign.status, StatusCode::NOT_FOUND);
    let anonymous = inventory
        .request(Method::DELETE, &path)
        .header("hold-token", token.to_string())
        .answer()
        .await;
    assert_eq!(anonymous.status, StatusCode::UNAUTHORIZED);
    assert_eq!(
        inventory
            .hold(&world, concert, "A-1", Uuid::new_v4())
            .await
            .status,
        StatusCode::CONFLICT,
        "still held after a wrong token"
    );
    assert_eq!(
        release(owner, token.to_string()).await.status,
        StatusCode::NO_CONTENT
    );
    assert_eq!(
        inventory
            .hold(&world, concert, "A-1", Uuid::new_v4())
            .await
            .status,
        StatusCode::CREATED
    );
}

#[tokio::test]
async fn a_customer_may_hold_only_so_many_seats() {
    let world = World::start().await;
    let inventory = start(&world, &[("HOLD_LIMIT", "2")]).await;
    let concert = world.concert(&inventory, 4).await;
    let ada = Uuid::new_v4();
    let (first, _) = inventory.held(&world, concert, "A-1", ada).await;
    inventory.held(&world, concert, "A-2", ada).await;

    let third = inventory.hold(&world, concert, "A-3", ada).await;
    assert_eq!(third.status, StatusCode::TOO_MANY_REQUESTS);
    assert!(retry_after(&third) >= 1);
    assert_eq!(third.problem_type(), "/problems/hold-limit-reached");
    // Naming a fresh customer in the body or a header does not make a new
    // customer: the hold is the token's `sub`'s, and so is the limit.
    let forged = inventory
        .post_as(
            &format!("/events/{concert}/seats/A-3/hold"),
            world.customer(ada),
        )
        .header("x-customer-id", Uuid::new_v4().to_string())
        .json(&json!({ "customer_id": Uuid::new_v4() }))
        .answer()
        .await;
    assert_eq!(forged.status, StatusCode::TOO_MANY_REQUESTS);
    // Another customer is not affected.
    inventory.held(&world, concert, "A-3", Uuid::new_v4()).await;
    // The limit counts per concert: its count is a key under the concert's
    // hash tag, so the hold script runs on Redis Cluster (`cluster.rs`).
    let other = world.concert(&inventory, 1).await;
    inventory.held(&world, other, "A-1", ada).await;
    // Releasing one makes room at once.
    let released = inventory
        .request(Method::DELETE, &format!("/events/{concert}/seats/A-1/hold"))
        .bearer_auth(world.customer(ada))
        .header("hold-token", first.to_string())
        .answer()
        .await;
    assert_eq!(released.status, StatusCode::NO_CONTENT);
    inventory.held(&world, concert, "A-4", ada).await;
}

#[tokio::test]
async fn sold_and_unknown_seats_cannot_be_held() {
    let (world, inventory, concert) = with_concert(1).await;
    inventory.sell(concert, &[("A-1", None)]).await;
    let sold = inventory.hold(&world, concert, "A-1", Uuid::new_v4()).await;
    assert_eq!(sold.status, StatusCode::CONFLICT);
    assert_eq!(sold.problem_type(), "/problems/seat-sold");
    let unknown = inventory.hold(&world, concert, "Z-9", Uuid::new_v4()).await;
    assert_eq!(unknown.status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn a_hold_needs_a_customers_token() {
    let (world, inventory, concert) = with_concert(1).await;
    let path = format!("/events/{concert}/seats/A-1/hold");

    let anonymous = inventory.post(&path).answer().await;
    assert_eq!(anonymous.status, StatusCode::UNAUTHORIZED);
    assert!(
        anonymous.headers["www-authenticate"]
            .to_str()
            .unwrap()
            .starts_with("Bearer")
    );
    assert_eq!(anonymous.problem_type(), "/problems/unauthenticated");
    // An operator is not a customer: the hold would have no owner.
    let operator = inventory.post_as(&path, world.operator()).answer().await;
    assert_eq!(operator.status, StatusCode::FORBIDDEN);
    assert_eq!(operator.problem_type(), "/problems/forbidden");
    // A token from an issuer this instance does not trust.
    let stranger = testkit::TestIdentity::new();
    let forged = inventory
        .post_as(&path, stranger.customer(Uuid::new_v4()))
        .answer()
        .await;
    assert_eq!(forged.status, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn verify_returns_the_fencing_tokens_of_live_holds_only() {
    let (world, inventory, concert) = with_concert(2).await;
    let customer = Uuid::new_v4();
    let (t1, f1) = inventory.held(&world, concert, "A-1", customer).await;
    let (t2, f2) = inventory.held(&world, concert, "A-2", customer).await;
    let verify_as = |who: Uuid, seats: Value| {
        inventory
            .post_as("/holds/verify", world.customer(who))
            .json(&json!({ "event_id": concert, "seats": seats }))
            .answer()
    };
    let verify = |seats: Value| verify_as(customer, seats);

    let ok = verify(
        json!([{ "seat_id": "A-1", "hold_token": t1 }, { "seat_id": "A-2", "hold_token": t2 }]),
    )
    .await;
    assert_eq!(ok.status, StatusCode::OK);
    assert_eq!(ok.body["seats"][0]["fencing_token"], f1);
    assert_eq!(ok.body["seats"][1]["fencing_token"], f2);

    // The same live holds are not another customer's to order.
    let foreign = verify_as(
        Uuid::new_v4(),
        json!([{ "seat_id": "A-1", "hold_token": t1 }]),
    )
    .await;
    assert_eq!(foreign.status, StatusCode::CONFLICT);

    let swapped = verify(
        json!([{ "seat_id": "A-1", "hold_token": t1 }, { "seat_id": "A-2", "hold_token": t1 }]),
    )
    .await;
    assert_eq!(swapped.status, StatusCode::CONFLICT);
    assert_eq!(swapped.problem_type(), "/problems/hold-not-valid");
    assert_eq!(swapped.body["field"], "seats[1].hold_token");

    let twice = verify(
        json!([{ "seat_id": "A-1", "hold_token": t1 }, { "seat_id": "A-1", "hold_token": t1 }]),
    )
    .await;
    assert_eq!(twice.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(twice.body["field"], "seats[1].seat_id");
}

#[tokio::test]
async fn seats_are_held_only_inside_the_sale_window() {
    let world = World::start().await;
    let inventory = start(&world, &[]).await;
    let customer = Uuid::new_v4();

    // Opens in an hour (found by hand: a hold on a 2030 sale got 201).
    let later = world
        .concert_with_sale_in(&inventory, 1, chrono::Duration::hours(1))
        .await;
    let early = inventory.hold(&world, later, "A-1", customer).await;
    assert_eq!(early.status, StatusCode::CONFLICT);
    let wait = retry_after(&early);
    assert!((3500..=3600).contains(&wait), "Retry-After {wait}");
    assert_eq!(early.problem_type(), "/problems/sale-not-open");
    assert!(
        early.body["detail"].as_str().unwrap().contains("runs from"),
        "{}",
        early.text
    );

    // Started an hour ago (its sale opened a week before that).
    let started = world
        .concert_with_sale_in(
            &inventory,
            1,
            -(chrono::Duration::days(7) + chrono::Duration::hours(1)),
        )
        .await;
    let late = inventory.hold(&world, started, "A-1", customer).await;
    assert_eq!(late.status, StatusCode::CONFLICT);
    assert_eq!(late.problem_type(), "/problems/sale-closed");
    let verify = inventory
        .post_as("/holds/verify", world.customer(customer))
        .json(&json!({ "event_id": started, "seats": [{ "seat_id": "A-1", "hold_token": Uuid::new_v4() }] }))
        .answer()
        .await;
    assert_eq!(verify.status, StatusCode::CONFLICT);
    assert_eq!(verify.problem_type(), "/problems/sale-closed");

    // Neither left a hold behind.
    for concert in [later, started] {
        let map = inventory.seat_map(concert).await;
        assert_eq!(map.body["seats"][0]["status"], "AVAILABLE", "{}", map.text);
    }
}

#[tokio::test]
async fn a_hold_outrun_by_a_newer_one_is_told_to_retry_not_that_the_seat_is_sold() {
    let (world, inventory, concert) = with_concert(1).await;
    // A newer hold was granted (and has lapsed) while this request was on
    // its way: the seat's latest token is the very one the request draws.
    sqlx::query("update seats set hold_fence = nextval('hold_fences') + 1 where event_id = $1")
        .bind(concert)
        .execute(inventory.db())
        .await
        .unwrap();

    let outrun = inventory.hold(&world, concert, "A-1", Uuid::new_v4()).await;

    assert_eq!(outrun.status, StatusCode::CONFLICT);
    assert_eq!(outrun.problem_type(), "/problems/hold-superseded");
    assert_eq!(outrun.headers["retry-after"], "1");
    // The seat is free: a retry draws a newer token and gets it.
    let retried = inventory.hold(&world, concert, "A-1", Uuid::new_v4()).await;
    assert_eq!(retried.status, StatusCode::CREATED, "{}", retried.text);
}
