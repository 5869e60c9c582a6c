//! Holds: exclusive, expiring, limited per customer, released only by their
//! owner, and fenced so that Postgres sells a seat to its current holder only.

use std::time::Duration;

use futures::future::join_all;
use reqwest::StatusCode;
use serde_json::{Value, json};
use uuid::Uuid;

use crate::app::{Servers, TestApp, retry_after};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn customers_racing_for_one_seat_get_exactly_one_hold() {
    let servers = Servers::start().await;
    let app = TestApp::spawn(&servers, &[]).await;
    let concert = app.concert(1).await;

    let responses = join_all((0..20).map(|_| app.hold(concert, "A-1", Uuid::new_v4()))).await;

    let created = responses
        .iter()
        .filter(|r| r.status() == StatusCode::CREATED)
        .count();
    assert_eq!(created, 1, "exactly one customer holds the seat");
    for refused in responses
        .iter()
        .filter(|r| r.status() != StatusCode::CREATED)
    {
        assert_eq!(refused.status(), StatusCode::CONFLICT);
        assert!(retry_after(refused) >= 1);
    }
    app.stop().await;
}

#[tokio::test]
async fn a_hold_lapses_by_itself_and_frees_the_seat() {
    let servers = Servers::start().await;
    let app = TestApp::spawn(&servers, &[("HOLD_TTL", "1s")]).await;
    let concert = app.concert(1).await;
    app.held(concert, "A-1", Uuid::new_v4()).await;
    let other = Uuid::new_v4();
    let refused = app.hold(concert, "A-1", other).await;
    assert_eq!(refused.status(), StatusCode::CONFLICT);
    let problem: Value = refused.json().await.unwrap();
    assert_eq!(problem["type"], "/problems/seat-held");

    testkit::eventually(Duration::from_secs(3), "the hold lapses", || async {
        app.hold(concert, "A-1", other).await.status() == StatusCode::CREATED
    })
    .await;
    app.stop().await;
}

#[tokio::test]
async fn a_paused_client_whose_hold_lapsed_cannot_take_the_seat_from_the_new_holder() {
    let servers = Servers::start().await;
    let app = TestApp::spawn(&servers, &[("HOLD_TTL", "1s")]).await;
    let concert = app.concert(1).await;

    // Ada holds the seat and orders it (her order carries her token)…
    let (_, ada_fence) = app.held(concert, "A-1", Uuid::new_v4()).await;
    // …then pauses (GC, network) past her hold's expiry; Bob holds it now.
    let bob = Uuid::new_v4();
    let bob_fence = app
        .hold_once_free(concert, "A-1", bob, Duration::from_secs(3))
        .await;
    assert!(bob_fence > ada_fence, "fencing tokens only grow");

    // Ada's payment arrives first: the token decides, not the order of arrival.
    let (ada_order, ada_answer) = app.sell(concert, &[("A-1", Some(ada_fence))]).await;
    assert_eq!(ada_answer, "SeatAllocationRejected");
    let (bob_order, bob_answer) = app.sell(concert, &[("A-1", Some(bob_fence))]).await;
    assert_eq!(bob_answer, "SeatsConfirmed");
    assert_eq!(app.owner_of(concert, "A-1").await, Some(bob_order));
    assert_ne!(Some(ada_order), app.owner_of(concert, "A-1").await);
    app.stop().await;
}

#[tokio::test]
async fn an_order_without_a_token_cannot_buy_a_held_seat_but_can_buy_a_never_held_one() {
    let servers = Servers::start().await;
    let app = TestApp::spawn(&servers, &[]).await;
    let concert = app.concert(2).await;
    app.held(concert, "A-1", Uuid::new_v4()).await;
    let (_, answer) = app.sell(concert, &[("A-1", None)]).await;
    assert_eq!(answer, "SeatAllocationRejected");
    let (_, answer) = app.sell(concert, &[("A-2", None)]).await;
    assert_eq!(answer, "SeatsConfirmed");
    app.stop().await;
}

#[tokio::test]
async fn only_the_owner_releases_a_hold() {
    let servers = Servers::start().await;
    let app = TestApp::spawn(&servers, &[]).await;
    let concert = app.concert(1).await;
    let (owner, stranger) = (Uuid::new_v4(), Uuid::new_v4());
    let (token, _) = app.held(concert, "A-1", owner).await;
    let release = |customer: Uuid, token: String| {
        app.http
            .delete(app.url(&format!("/events/{concert}/seats/A-1/hold")))
            .bearer_auth(app.token(customer))
            .header("hold-token", token)
            .send()
    };

    let wrong = release(owner, Uuid::new_v4().to_string()).await.unwrap();
    assert_eq!(wrong.status(), StatusCode::NOT_FOUND);
    let malformed = release(owner, "nope".into()).await.unwrap();
    assert_eq!(malformed.status(), StatusCode::BAD_REQUEST);
    // The right hold token is not enough: it is in the owner's order, and
    // whoever saw it must not free the seat.
    let foreign = release(stranger, token.to_string()).await.unwrap();
    assert_eq!(foreign.status(), StatusCode::NOT_FOUND);
    let anonymous = app
        .http
        .delete(app.url(&format!("/events/{concert}/seats/A-1/hold")))
        .header("hold-token", token.to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(anonymous.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(
        app.hold(concert, "A-1", Uuid::new_v4()).await.status(),
        StatusCode::CONFLICT,
        "still held after a wrong token"
    );
    assert_eq!(
        release(owner, token.to_string()).await.unwrap().status(),
        StatusCode::NO_CONTENT
    );
    assert_eq!(
        app.hold(concert, "A-1", Uuid::new_v4()).await.status(),
        StatusCode::CREATED
    );
    app.stop().await;
}

#[tokio::test]
async fn a_customer_may_hold_only_so_many_seats() {
    let servers = Servers::start().await;
    let app = TestApp::spawn(&servers, &[("HOLD_LIMIT", "2")]).await;
    let concert = app.concert(4).await;
    let ada = Uuid::new_v4();
    let (first, _) = app.held(concert, "A-1", ada).await;
    app.held(concert, "A-2", ada).await;

    let third = app.hold(concert, "A-3", ada).await;
    assert_eq!(third.status(), StatusCode::TOO_MANY_REQUESTS);
    assert!(retry_after(&third) >= 1);
    let problem: Value = third.json().await.unwrap();
    assert_eq!(problem["type"], "/problems/hold-limit-reached");
    // Naming a fresh customer in the body or a header does not make a new
    // customer: the hold is the token's `sub`'s, and so is the limit.
    let forged = app
        .http
        .post(app.url(&format!("/events/{concert}/seats/A-3/hold")))
        .bearer_auth(app.token(ada))
        .header("x-customer-id", Uuid::new_v4().to_string())
        .json(&json!({ "customer_id": Uuid::new_v4() }))
        .send()
        .await
        .unwrap();
    assert_eq!(forged.status(), StatusCode::TOO_MANY_REQUESTS);
    // Another customer is not affected.
    app.held(concert, "A-3", Uuid::new_v4()).await;
    // Releasing one makes room at once.
    let released = app
        .http
        .delete(app.url(&format!("/events/{concert}/seats/A-1/hold")))
        .bearer_auth(app.token(ada))
        .header("hold-token", first.to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(released.status(), StatusCode::NO_CONTENT);
    app.held(concert, "A-4", ada).await;
    app.stop().await;
}

#[tokio::test]
async fn sold_and_unknown_seats_cannot_be_held() {
    let servers = Servers::start().await;
    let app = TestApp::spawn(&servers, &[]).await;
    let concert = app.concert(1).await;
    app.sell(concert, &[("A-1", None)]).await;
    let sold = app.hold(concert, "A-1", Uuid::new_v4()).await;
    assert_eq!(sold.status(), StatusCode::CONFLICT);
    assert_eq!(
        sold.json::<Value>().await.unwrap()["type"],
        "/problems/seat-sold"
    );
    let unknown = app.hold(concert, "Z-9", Uuid::new_v4()).await;
    assert_eq!(unknown.status(), StatusCode::NOT_FOUND);
    app.stop().await;
}

#[tokio::test]
async fn a_hold_needs_a_customers_token() {
    let servers = Servers::start().await;
    let app = TestApp::spawn(&servers, &[]).await;
    let concert = app.concert(1).await;
    let url = app.url(&format!("/events/{concert}/seats/A-1/hold"));

    let anonymous = app.http.post(&url).send().await.unwrap();
    assert_eq!(anonymous.status(), StatusCode::UNAUTHORIZED);
    assert!(
        anonymous.headers()["www-authenticate"]
            .to_str()
            .unwrap()
            .starts_with("Bearer")
    );
    assert_eq!(
        anonymous.json::<Value>().await.unwrap()["type"],
        "/problems/unauthenticated"
    );
    // An operator is not a customer: the hold would have no owner.
    let operator = app.ops.post(&url).send().await.unwrap();
    assert_eq!(operator.status(), StatusCode::FORBIDDEN);
    assert_eq!(
        operator.json::<Value>().await.unwrap()["type"],
        "/problems/forbidden"
    );
    // A token from an issuer this instance does not trust.
    let stranger = testkit::TestIdentity::new();
    let forged = app
        .http
        .post(&url)
        .bearer_auth(stranger.customer(Uuid::new_v4()))
        .send()
        .await
        .unwrap();
    assert_eq!(forged.status(), StatusCode::UNAUTHORIZED);
    app.stop().await;
}

#[tokio::test]
async fn verify_returns_the_fencing_tokens_of_live_holds_only() {
    let servers = Servers::start().await;
    let app = TestApp::spawn(&servers, &[]).await;
    let concert = app.concert(2).await;
    let customer = Uuid::new_v4();
    let (t1, f1) = app.held(concert, "A-1", customer).await;
    let (t2, f2) = app.held(concert, "A-2", customer).await;
    let verify_as = |who: Uuid, seats: Value| {
        app.http
            .post(app.url("/holds/verify"))
            .bearer_auth(app.token(who))
            .json(&json!({ "event_id": concert, "seats": seats }))
            .send()
    };
    let verify = |seats: Value| verify_as(customer, seats);

    let ok = verify(
        json!([{ "seat_id": "A-1", "hold_token": t1 }, { "seat_id": "A-2", "hold_token": t2 }]),
    )
    .await
    .unwrap();
    assert_eq!(ok.status(), StatusCode::OK);
    let body: Value = ok.json().await.unwrap();
    assert_eq!(body["seats"][0]["fencing_token"], f1);
    assert_eq!(body["seats"][1]["fencing_token"], f2);

    // The same live holds are not another customer's to order.
    let foreign = verify_as(
        Uuid::new_v4(),
        json!([{ "seat_id": "A-1", "hold_token": t1 }]),
    )
    .await
    .unwrap();
    assert_eq!(foreign.status(), StatusCode::CONFLICT);

    let swapped = verify(
        json!([{ "seat_id": "A-1", "hold_token": t1 }, { "seat_id": "A-2", "hold_token": t1 }]),
    )
    .await
    .unwrap();
    assert_eq!(swapped.status(), StatusCode::CONFLICT);
    let problem: Value = swapped.json().await.unwrap();
    assert_eq!(problem["type"], "/problems/hold-not-valid");
    assert_eq!(problem["field"], "seats[1].hold_token");

    let twice = verify(
        json!([{ "seat_id": "A-1", "hold_token": t1 }, { "seat_id": "A-1", "hold_token": t1 }]),
    )
    .await
    .unwrap();
    assert_eq!(twice.status(), StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(
        twice.json::<Value>().await.unwrap()["field"],
        "seats[1].seat_id"
    );
    app.stop().await;
}

#[tokio::test]
async fn seats_are_held_only_inside_the_sale_window() {
    let servers = Servers::start().await;
    let app = TestApp::spawn(&servers, &[]).await;
    let customer = Uuid::new_v4();

    // Opens in an hour (found by hand: a hold on a 2030 sale got 201).
    let later = app
        .concert_with_sale_in(1, chrono::Duration::hours(1))
        .await;
    let early = app.hold(later, "A-1", customer).await;
    assert_eq!(early.status(), StatusCode::CONFLICT);
    let wait = retry_after(&early);
    assert!((3500..=3600).contains(&wait), "Retry-After {wait}");
    let problem: Value = early.json().await.unwrap();
    assert_eq!(problem["type"], "/problems/sale-not-open");
    assert!(
        problem["detail"].as_str().unwrap().contains("runs from"),
        "{problem}"
    );

    // Started an hour ago.
    let now = chrono::Utc::now();
    let started = app
        .ops
        .post(app.url("/events"))
        .json(&json!({
            "name": "Yesterday", "venue": "Hall 1",
            "starts_at": now - chrono::Duration::hours(1),
            "sale_opens_at": now - chrono::Duration::days(1),
            "seats": [{ "seat_id": "A-1", "price_cents": 100 }],
        }))
        .send()
        .await
        .unwrap();
    assert_eq!(started.status(), StatusCode::CREATED);
    let started: Uuid = started.json::<Value>().await.unwrap()["id"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    let late = app.hold(started, "A-1", customer).await;
    assert_eq!(late.status(), StatusCode::CONFLICT);
    assert_eq!(
        late.json::<Value>().await.unwrap()["type"],
        "/problems/sale-closed"
    );
    let verify = app
        .http
        .post(app.url("/holds/verify"))
        .bearer_auth(app.token(customer))
        .json(&json!({ "event_id": started, "seats": [{ "seat_id": "A-1", "hold_token": Uuid::new_v4() }] }))
        .send()
        .await
        .unwrap();
    assert_eq!(verify.status(), StatusCode::CONFLICT);
    assert_eq!(
        verify.json::<Value>().await.unwrap()["type"],
        "/problems/sale-closed"
    );

    // Neither left a hold behind.
    for concert in [later, started] {
        let map: Value = app.seat_map(concert).await.json().await.unwrap();
        assert_eq!(map["seats"][0]["status"], "AVAILABLE", "{map}");
    }
    app.stop().await;
}
