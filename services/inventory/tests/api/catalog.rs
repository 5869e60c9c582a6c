//! The local catalog cache and its broadcast invalidation.

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{Value, json};
use uuid::Uuid;

use crate::app::{Servers, TestApp};

#[tokio::test]
async fn two_instances_agree_within_a_second_of_a_change() {
    let servers = Servers::start().await;
    // A long TTL: only the broadcast can make the second instance see the change.
    let settings = [("CATALOG_TTL", "1h")];
    let a = TestApp::spawn(&servers, &settings).await;
    let b = TestApp::spawn(&servers, &settings).await;
    let concert = a.concert(1).await;
    let url = |app: &TestApp| app.url(&format!("/events/{concert}"));

    // B caches the concert (and the list).
    let before: Value = b
        .http
        .get(url(&b))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(before["name"], "Night Shift");
    let list: Value = b
        .http
        .get(b.url("/events"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(list["events"][0]["name"], "Night Shift");

    let changed = a
        .ops
        .patch(url(&a))
        .json(&json!({ "name": "Night Shift (moved)" }))
        .send()
        .await
        .unwrap();
    assert_eq!(changed.status(), StatusCode::OK);

    testkit::eventually(Duration::from_secs(1), "B sees the new name", || async {
        let now: Value = b
            .http
            .get(url(&b))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let list: Value = b
            .http
            .get(b.url("/events"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        now["name"] == "Night Shift (moved)" && list["events"][0]["name"] == "Night Shift (moved)"
    })
    .await;
    a.stop().await;
    b.stop().await;
}

#[tokio::test]
async fn bad_input_is_a_problem_naming_the_field_and_changes_nothing() {
    let servers = Servers::start().await;
    let app = TestApp::spawn(&servers, &[]).await;
    let now = chrono::Utc::now();
    let cases = [
        (
            json!({ "name": "", "venue": "v", "starts_at": now, "sale_opens_at": now, "seats": [{ "seat_id": "A-1", "price_cents": 1 }] }),
            "name",
        ),
        // A NUL reached Postgres (22021) and came back as a 500.
        (
            json!({ "name": "Night\u{0}Shift", "venue": "v", "starts_at": now, "sale_opens_at": now, "seats": [{ "seat_id": "A-1", "price_cents": 1 }] }),
            "name",
        ),
        (
            json!({ "name": "n", "venue": "Hall\n1", "starts_at": now, "sale_opens_at": now, "seats": [{ "seat_id": "A-1", "price_cents": 1 }] }),
            "venue",
        ),
        (
            json!({ "name": "n", "venue": "v", "starts_at": now, "sale_opens_at": now + chrono::Duration::days(1), "seats": [{ "seat_id": "A-1", "price_cents": 1 }] }),
            "sale_opens_at",
        ),
        (
            json!({ "name": "n", "venue": "v", "starts_at": now, "sale_opens_at": now, "seats": [{ "seat_id": "A 1", "price_cents": 1 }] }),
            "seats[0].seat_id",
        ),
        (
            json!({ "name": "n", "venue": "v", "starts_at": now, "sale_opens_at": now, "seats": [{ "seat_id": "A-1", "price_cents": 1 }, { "seat_id": "A-1", "price_cents": 1 }] }),
            "seats[1].seat_id",
        ),
        (
            json!({ "name": "n", "venue": "v", "starts_at": now, "sale_opens_at": now, "seats": [{ "seat_id": "A-1", "price_cents": -1 }] }),
            "seats[0].price_cents",
        ),
    ];
    for (body, field) in cases {
        let response = app
            .ops
            .post(app.url("/events"))
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(
            response.status(),
            StatusCode::UNPROCESSABLE_ENTITY,
            "{field}"
        );
        let problem: Value = response.json().await.unwrap();
        assert_eq!(problem["field"], field);
    }
    let concerts: i64 = sqlx::query_scalar("select count(*) from events")
        .fetch_one(&app.db)
        .await
        .unwrap();
    assert_eq!(concerts, 0);

    let concert = app.concert(1).await;
    let response = app
        .ops
        .patch(app.url(&format!("/events/{concert}")))
        .json(&json!({ "sale_opens_at": now + chrono::Duration::days(365) }))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let problem: Value = response.json().await.unwrap();
    assert_eq!(problem["field"], "sale_opens_at");
    // A venue of one NUL: 500 before, from Postgres's 22021.
    let response = app
        .ops
        .patch(app.url(&format!("/events/{concert}")))
        .json(&json!({ "venue": "\u{0}" }))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let problem: Value = response.json().await.unwrap();
    assert_eq!(problem["field"], "venue");
    let venue: String = sqlx::query_scalar("select venue from events where id = $1")
        .bind(concert)
        .fetch_one(&app.db)
        .await
        .unwrap();
    assert_eq!(venue, "Hall 1", "nothing changed");
    let bad_id = app
        .http
        .get(app.url("/events/nope/seats"))
        .send()
        .await
        .unwrap();
    assert_eq!(bad_id.status(), StatusCode::BAD_REQUEST);
    app.stop().await;
}

#[tokio::test]
async fn concert_management_and_warmup_need_the_operator_role() {
    let servers = Servers::start().await;
    let app = TestApp::spawn(&servers, &[]).await;
    let concert = app.concert(1).await;
    let now = chrono::Utc::now();
    let create = json!({
        "name": "Sneaky", "venue": "Hall 9",
        "starts_at": now + chrono::Duration::days(1), "sale_opens_at": now,
        "seats": [{ "seat_id": "A-1", "price_cents": 1 }],
    });
    let customer = app.token(Uuid::new_v4());
    let calls = [
        (
            "POST /events",
            app.url("/events"),
            Some(create.clone()),
            reqwest::Method::POST,
        ),
        (
            "PATCH /events/{id}",
            app.url(&format!("/events/{concert}")),
            Some(json!({ "name": "Renamed" })),
            reqwest::Method::PATCH,
        ),
        (
            "POST /ops/warmup",
            app.url("/ops/warmup"),
            None,
            reqwest::Method::POST,
        ),
    ];
    for (name, url, body, method) in calls {
        let send = |token: Option<&str>| {
            let mut request = app.http.request(method.clone(), &url);
            if let Some(token) = token {
                request = request.bearer_auth(token);
            }
            if let Some(body) = &body {
                request = request.json(body);
            }
            request.send()
        };
        let anonymous = send(None).await.unwrap();
        assert_eq!(anonymous.status(), StatusCode::UNAUTHORIZED, "{name}");
        assert!(
            anonymous.headers().contains_key("www-authenticate"),
            "{name}"
        );
        let as_customer = send(Some(&customer)).await.unwrap();
        assert_eq!(as_customer.status(), StatusCode::FORBIDDEN, "{name}");
        assert_eq!(
            as_customer.json::<Value>().await.unwrap()["type"],
            "/problems/forbidden",
            "{name}"
        );
    }
    // Nothing changed: one concert, with its name.
    let concerts: Vec<String> = sqlx::query_scalar("select name from events")
        .fetch_all(&app.db)
        .await
        .unwrap();
    assert_eq!(concerts, ["Night Shift"]);
    app.stop().await;
}

#[tokio::test]
async fn one_concert_per_id_a_retry_gets_it_back_and_other_content_is_a_conflict() {
    let servers = Servers::start().await;
    let app = TestApp::spawn(&servers, &[]).await;
    // Nanoseconds in the body: Postgres keeps microseconds, and a retry of
    // this very body must still count as the same concert.
    let opens = chrono::Utc::now() + chrono::Duration::nanoseconds(123);
    let body = json!({
        "id": Uuid::new_v4(), "name": "Night Shift", "venue": "Hall 1",
        "starts_at": opens + chrono::Duration::days(7), "sale_opens_at": opens,
        "seats": [{ "seat_id": "A-2", "price_cents": 4500 }, { "seat_id": "A-1", "price_cents": 4500 }],
    });
    let post = |body: Value| app.ops.post(app.url("/events")).json(&body).send();
    assert_eq!(
        post(body.clone()).await.unwrap().status(),
        StatusCode::CREATED
    );

    let retry = post(body.clone()).await.unwrap();
    assert_eq!(retry.status(), StatusCode::OK);
    assert_eq!(retry.json::<Value>().await.unwrap()["name"], "Night Shift");

    let mut renamed = body.clone();
    renamed["name"] = json!("Day Shift");
    let mut repriced = body.clone();
    repriced["seats"][0]["price_cents"] = json!(9900);
    for other in [renamed, repriced] {
        let conflict = post(other).await.unwrap();
        assert_eq!(conflict.status(), StatusCode::CONFLICT);
        let problem: Value = conflict.json().await.unwrap();
        assert_eq!(problem["type"], "/problems/event-exists");
        assert_eq!(problem["field"], "id");
    }
    let (name, prices): (String, Vec<i32>) = sqlx::query_as(
        "select e.name, array_agg(s.price_cents) from events e join seats s on s.event_id = e.id \
         where e.id = $1 group by e.name",
    )
    .bind(body["id"].as_str().unwrap().parse::<Uuid>().unwrap())
    .fetch_one(&app.db)
    .await
    .unwrap();
    assert_eq!((name.as_str(), prices), ("Night Shift", vec![4500, 4500]));
    app.stop().await;
}

#[tokio::test]
async fn the_catalog_comes_in_pages_that_list_every_concert_once_in_order() {
    let servers = Servers::start().await;
    let app = TestApp::spawn(&servers, &[]).await;
    let mut created = Vec::new();
    for days in [5, 1, 3, 2, 4] {
        created.push(
            app.concert_with_sale_in(1, chrono::Duration::days(days))
                .await,
        );
    }
    let events_url = app.url("/events");
    let (http, base) = (&app.http, &events_url);
    let page = |query: String| async move {
        let response = http.get(format!("{base}{query}")).send().await.unwrap();
        (response.status(), response.json::<Value>().await.unwrap())
    };

    let mut seen: Vec<Uuid> = Vec::new();
    let mut query = "?limit=2".to_owned();
    let mut pages = 0;
    loop {
        let (status, body) = page(query.clone()).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        pages += 1;
        let events = body["events"].as_array().unwrap();
        assert!(events.len() <= 2);
        seen.extend(
            events
                .iter()
                .map(|e| e["id"].as_str().unwrap().parse::<Uuid>().unwrap()),
        );
        match body["next"].as_str() {
            Some(next) => query = format!("?limit=2&after={next}"),
            None => break,
        }
    }
    assert_eq!(pages, 3);
    // Soonest first: the concerts in order of their sale (and start) days.
    let by_day = [created[1], created[3], created[2], created[4], created[0]];
    assert_eq!(seen, by_day);

    for (query, field) in [
        ("?limit=0", "limit"),
        ("?limit=201", "limit"),
        ("?limit=ten", "limit"),
        ("?after=not-a-cursor", "after"),
    ] {
        let (status, body) = page(query.to_owned()).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{query}");
        assert_eq!(body["field"], field, "{query}");
    }
    app.stop().await;
}
