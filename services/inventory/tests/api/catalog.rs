//! The local catalog cache and its broadcast invalidation.

use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use testkit::{Ask as _, World};
use uuid::Uuid;

use crate::support::{Steps as _, start, with_concert};

#[tokio::test]
async fn two_instances_agree_within_a_second_of_a_change() {
    let world = World::start().await;
    // A long TTL: only the broadcast can make the second instance see the change.
    let settings = [("CATALOG_TTL", "1h")];
    let a = start(&world, &settings).await;
    let b = start(&world, &settings).await;
    let concert = world.concert(&a, 1).await;
    let path = format!("/events/{concert}");

    // B caches the concert (and the list).
    let before = b.get(&path).answer().await;
    assert_eq!(before.body["name"], "Night Shift");
    let list = b.get("/events").answer().await;
    assert_eq!(list.body["events"][0]["name"], "Night Shift");

    let changed = a
        .request(Method::PATCH, &path)
        .bearer_auth(world.operator())
        .json(&json!({ "name": "Night Shift (moved)" }))
        .answer()
        .await;
    assert_eq!(changed.status, StatusCode::OK);

    testkit::eventually(Duration::from_secs(1), "B sees the new name", || async {
        let now = b.get(&path).answer().await;
        let list = b.get("/events").answer().await;
        now.body["name"] == "Night Shift (moved)"
            && list.body["events"][0]["name"] == "Night Shift (moved)"
    })
    .await;
}

#[tokio::test]
async fn bad_input_is_a_problem_naming_the_field_and_changes_nothing() {
    let world = World::start().await;
    let inventory = start(&world, &[]).await;
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
        let refused = inventory
            .post_as("/events", world.operator())
            .json(&body)
            .answer()
            .await;
        assert_eq!(refused.status, StatusCode::UNPROCESSABLE_ENTITY, "{field}");
        assert_eq!(refused.body["field"], field);
    }
    let concerts: i64 = sqlx::query_scalar("select count(*) from events")
        .fetch_one(inventory.db())
        .await
        .unwrap();
    assert_eq!(concerts, 0);

    let concert = world.concert(&inventory, 1).await;
    let change = |body: Value| {
        inventory
            .request(Method::PATCH, &format!("/events/{concert}"))
            .bearer_auth(world.operator())
            .json(&body)
            .answer()
    };
    let refused = change(json!({ "sale_opens_at": now + chrono::Duration::days(365) })).await;
    assert_eq!(refused.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(refused.body["field"], "sale_opens_at");
    // A venue of one NUL: 500 before, from Postgres's 22021.
    let refused = change(json!({ "venue": "\u{0}" })).await;
    assert_eq!(refused.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(refused.body["field"], "venue");
    let venue: String = sqlx::query_scalar("select venue from events where id = $1")
        .bind(concert)
        .fetch_one(inventory.db())
        .await
        .unwrap();
    assert_eq!(venue, "Hall 1", "nothing changed");
    let bad_id = inventory.get("/events/nope/seats").answer().await;
    assert_eq!(bad_id.status, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn concert_management_and_warmup_need_the_operator_role() {
    let (world, inventory, concert) = with_concert(1).await;
    let now = chrono::Utc::now();
    let create = json!({
        "name": "Sneaky", "venue": "Hall 9",
        "starts_at": now + chrono::Duration::days(1), "sale_opens_at": now,
        "seats": [{ "seat_id": "A-1", "price_cents": 1 }],
    });
    let customer = world.customer(Uuid::new_v4());
    let calls = [
        (Method::POST, "/events".to_owned(), Some(create)),
        (
            Method::PATCH,
            format!("/events/{concert}"),
            Some(json!({ "name": "Renamed" })),
        ),
        (Method::POST, "/ops/warmup".to_owned(), None),
    ];
    for (method, path, body) in calls {
        let name = format!("{method} {path}");
        let send = |token: Option<&str>| {
            let mut request = inventory.request(method.clone(), &path);
            if let Some(token) = token {
                request = request.bearer_auth(token);
            }
            if let Some(body) = &body {
                request = request.json(body);
            }
            request.answer()
        };
        let anonymous = send(None).await;
        assert_eq!(anonymous.status, StatusCode::UNAUTHORIZED, "{name}");
        assert!(anonymous.headers.contains_key("www-authenticate"), "{name}");
        let as_customer = send(Some(&customer)).await;
        assert_eq!(as_customer.status, StatusCode::FORBIDDEN, "{name}");
        assert_eq!(as_customer.problem_type(), "/problems/forbidden", "{name}");
    }
    // Nothing changed: one concert, with its name.
    let concerts: Vec<String> = sqlx::query_scalar("select name from events")
        .fetch_all(inventory.db())
        .await
        .unwrap();
    assert_eq!(concerts, ["Night Shift"]);
}

#[tokio::test]
async fn one_concert_per_id_a_retry_gets_it_back_and_other_content_is_a_conflict() {
    let world = World::start().await;
    let inventory = start(&world, &[]).await;
    // Nanoseconds in the body: Postgres keeps microseconds, and a retry of
    // this very body must still count as the same concert.
    let opens = chrono::Utc::now() + chrono::Duration::nanoseconds(123);
    let body = json!({
        "id": Uuid::new_v4(), "name": "Night Shift", "venue": "Hall 1",
        "starts_at": opens + chrono::Duration::days(7), "sale_opens_at": opens,
        "seats": [{ "seat_id": "A-2", "price_cents": 4500 }, { "seat_id": "A-1", "price_cents": 4500 }],
    });
    let post = |body: Value| {
        inventory
            .post_as("/events", world.operator())
            .json(&body)
            .answer()
    };
    assert_eq!(post(body.clone()).await.status, StatusCode::CREATED);

    let retry = post(body.clone()).await;
    assert_eq!(retry.status, StatusCode::OK);
    assert_eq!(retry.body["name"], "Night Shift");

    let mut renamed = body.clone();
    renamed["name"] = json!("Day Shift");
    let mut repriced = body.clone();
    repriced["seats"][0]["price_cents"] = json!(9900);
    for other in [renamed, repriced] {
        let conflict = post(other).await;
        assert_eq!(conflict.status, StatusCode::CONFLICT);
        assert_eq!(conflict.problem_type(), "/problems/event-exists");
        assert_eq!(conflict.body["field"], "id");
    }
    let (name, prices): (String, Vec<i32>) = sqlx::query_as(
        "select e.name, array_agg(s.price_cents) from events e join seats s on s.event_id = e.id \
         where e.id = $1 group by e.name",
    )
    .bind(body["id"].as_str().unwrap().parse::<Uuid>().unwrap())
    .fetch_one(inventory.db())
    .await
    .unwrap();
    assert_eq!((name.as_str(), prices), ("Night Shift", vec![4500, 4500]));
}

#[tokio::test]
async fn the_catalog_comes_in_pages_that_list_every_concert_once_in_order() {
    let world = World::start().await;
    let inventory = start(&world, &[]).await;
    let mut created = Vec::new();
    for days in [5, 1, 3, 2, 4] {
        created.push(
            world
                .concert_with_sale_in(&inventory, 1, chrono::Duration::days(days))
                .await,
        );
    }
    let page = |query: String| inventory.get(&format!("/events{query}")).answer();

    let mut seen: Vec<Uuid> = Vec::new();
    let mut query = "?limit=2".to_owned();
    let mut pages = 0;
    loop {
        let answer = page(query.clone()).await;
        assert_eq!(answer.status, StatusCode::OK, "{}", answer.text);
        pages += 1;
        let events = answer.body["events"].as_array().unwrap();
        assert!(events.len() <= 2);
        seen.extend(
            events
                .iter()
                .map(|e| e["id"].as_str().unwrap().parse::<Uuid>().unwrap()),
        );
        match answer.body["next"].as_str() {
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
        let refused = page(query.to_owned()).await;
        assert_eq!(refused.status, StatusCode::BAD_REQUEST, "{query}");
        assert_eq!(refused.body["field"], field, "{query}");
    }
}
