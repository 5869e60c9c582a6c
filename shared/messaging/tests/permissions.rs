//! Compose's NATS users and permissions (`docker/nats/nats.conf`, `docs/design.md`
//! §11, Identity and trust), enforced by a real server: only a service's relay publishes its
//! events, a consumer reads and acks through its own durable and no other,
//! and nobody connects without the right password.
//!
//! Each test starts a `nats-server` of its own with that very file (port
//! and JetStream store given as flags) and passwords of its own in the
//! server's environment, so it can use the plain stream and subject names
//! compose uses. A refused publish is never answered (the server drops it
//! and tells the client `Permissions Violation`), so its PubAck times out:
//! the JetStream contexts here wait one second, not the default five.

use std::path::Path;
use std::time::Duration;

use async_nats::HeaderMap;
use async_nats::jetstream::{self, consumer::AckPolicy, consumer::pull};
use futures::StreamExt as _;
use messaging::{StreamKind, Topology};
use testkit::nats::ConfiguredNats;

/// The file compose mounts into the NATS container.
const CONFIG: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../docker/nats/nats.conf");

/// Every user in the file, and the variable that holds its password.
const USERS: [(&str, &str); 8] = [
    ("orders", "NATS_ORDERS_PASSWORD"),
    ("inventory", "NATS_INVENTORY_PASSWORD"),
    ("notification", "NATS_NOTIFICATION_PASSWORD"),
    ("reporting", "NATS_REPORTING_PASSWORD"),
    ("orders-relay", "NATS_ORDERS_RELAY_PASSWORD"),
    ("inventory-relay", "NATS_INVENTORY_RELAY_PASSWORD"),
    ("notification-relay", "NATS_NOTIFICATION_RELAY_PASSWORD"),
    ("ticketctl", "NATS_TICKETCTL_PASSWORD"),
];

/// A stream and a subject of it, as the relays publish them.
const SUBJECTS: [(StreamKind, &str); 3] = [
    (StreamKind::OrderEvents, "orders.events.order_paid"),
    (
        StreamKind::InventoryEvents,
        "inventory.events.seats_confirmed",
    ),
    (StreamKind::NotifyCommands, "notify.commands.send_email"),
];

/// This test's password for `user` (letters and digits, as the file asks).
fn password(user: &str) -> String {
    format!("test{}pw", user.replace('-', ""))
}

async fn start_server() -> ConfiguredNats {
    let passwords: Vec<(&str, String)> = USERS
        .iter()
        .map(|(user, var)| (*var, password(user)))
        .collect();
    let env: Vec<(&str, &str)> = passwords
        .iter()
        .map(|(var, pw)| (*var, pw.as_str()))
        .collect();
    ConfiguredNats::start(Path::new(CONFIG), &env).await
}

async fn connect_as(server: &ConfiguredNats, user: &str) -> async_nats::Client {
    async_nats::ConnectOptions::with_user_and_password(user.to_owned(), password(user))
        .connection_timeout(Duration::from_secs(2))
        .connect(server.url())
        .await
        .unwrap_or_else(|e| panic!("{user} cannot connect with its password: {e}"))
}

/// JetStream for `user`, with a one-second answer timeout.
async fn jetstream_as(server: &ConfiguredNats, user: &str) -> jetstream::Context {
    jetstream::ContextBuilder::new()
        .timeout(Duration::from_secs(1))
        .build(connect_as(server, user).await)
}

/// The four streams, provisioned as a relay does at start (which also
/// proves a relay's permissions suffice for it); the relay's context.
async fn provisioned(server: &ConfiguredNats) -> jetstream::Context {
    let relay = jetstream_as(server, "orders-relay").await;
    messaging::provision(&relay, &Topology::default(), Duration::from_mins(2))
        .await
        .expect("the orders relay provisions the streams");
    relay
}

/// Publishes an event-like message as JetStream does; true if it was acked.
async fn acked(js: &jetstream::Context, subject: &str, msg_id: &str) -> bool {
    let mut headers = HeaderMap::new();
    headers.insert(messaging::headers::MSG_ID, msg_id);
    headers.insert(messaging::headers::EVENT_TYPE, "OrderPaid");
    let payload = format!(r#"{{"event_id":"{msg_id}","event_type":"OrderPaid","data":{{}}}}"#);
    match js
        .publish_with_headers(subject.to_owned(), headers, payload.into())
        .await
    {
        Ok(ack) => ack.await.is_ok(),
        Err(_) => false,
    }
}

/// Messages stored in a stream.
async fn stored(js: &jetstream::Context, kind: StreamKind) -> u64 {
    let name = Topology::default().stream(kind);
    js.get_stream(&name)
        .await
        .unwrap_or_else(|e| panic!("stream {name}: {e}"))
        .get_info()
        .await
        .unwrap_or_else(|e| panic!("info of stream {name}: {e}"))
        .state
        .messages
}

#[tokio::test]
async fn a_consumer_cannot_publish_order_events_and_the_orders_relay_can() {
    let server = start_server().await;
    let relay = provisioned(&server).await;
    let inventory = jetstream_as(&server, "inventory").await;

    let forged = acked(
        &inventory,
        "orders.events.order_paid",
        "forged-by-inventory",
    )
    .await;
    assert!(!forged, "the inventory user's OrderPaid was acked");
    assert_eq!(stored(&relay, StreamKind::OrderEvents).await, 0);

    // The same publish by the one user allowed to make it: the refusal
    // above is the rule, not a broken publish.
    let relayed = acked(&relay, "orders.events.order_paid", "relayed").await;
    assert!(relayed, "the orders relay's OrderPaid was not acked");
    assert_eq!(stored(&relay, StreamKind::OrderEvents).await, 1);
}

#[tokio::test]
async fn each_relay_publishes_only_its_own_services_subjects() {
    let server = start_server().await;
    let relay = provisioned(&server).await;
    // `dlq redrive` republishes a dead letter on its original subject, so
    // the operator's tool may publish on every stream.
    let may_publish = |user: &str, subject: &str| match user {
        "orders-relay" => subject.starts_with("orders.events."),
        "inventory-relay" => subject.starts_with("inventory.events."),
        "notification-relay" => subject.starts_with("notify.commands."),
        "ticketctl" => true,
        _ => false,
    };

    let attempts = USERS
        .iter()
        .flat_map(|(user, _)| SUBJECTS.iter().map(move |(_, subject)| (*user, *subject)));
    let outcomes = futures::future::join_all(attempts.map(|(user, subject)| {
        let server = &server;
        async move {
            let js = jetstream_as(server, user).await;
            (
                user,
                subject,
                acked(&js, subject, &format!("{user}-{subject}")).await,
            )
        }
    }))
    .await;

    for (user, subject, acked) in outcomes {
        assert_eq!(
            acked,
            may_publish(user, subject),
            "{user} publishing on {subject}: acked = {acked}"
        );
    }
    // Nothing refused was stored anyway (without an ack).
    for (kind, subject) in SUBJECTS {
        let allowed = USERS
            .iter()
            .filter(|(user, _)| may_publish(user, subject))
            .count();
        assert_eq!(
            stored(&relay, kind).await,
            allowed as u64,
            "messages in {kind:?}"
        );
    }
}

#[tokio::test]
async fn a_consumer_reads_acks_and_dead_letters_through_its_own_durable_only() {
    let server = start_server().await;
    let relay = provisioned(&server).await;
    assert!(acked(&relay, "orders.events.order_paid", "paid-1").await);
    let inventory = jetstream_as(&server, "inventory").await;
    // What shared/consumer's runtime asks for (Consumer::ensure), with the
    // filter a consumer of one event sets (`ConsumerSpec::only`): with a
    // filter the client creates the durable through a longer API subject,
    // `…CREATE.<stream>.<durable>.<filter>`, which the user must be allowed.
    let durable = |name: &str, filter: &str| pull::Config {
        durable_name: Some(name.to_owned()),
        ack_policy: AckPolicy::Explicit,
        max_deliver: -1,
        filter_subject: filter.to_owned(),
        ..pull::Config::default()
    };

    let stream = inventory
        .get_stream("ORDER_EVENTS")
        .await
        .expect("inventory looks up ORDER_EVENTS");
    let own = stream
        .get_or_create_consumer(
            "inventory",
            durable("inventory", "orders.events.order_paid"),
        )
        .await
        .expect("inventory creates its durable");
    let mut batch = own
        .fetch()
        .max_messages(1)
        .expires(Duration::from_secs(2))
        .messages()
        .await
        .expect("inventory pulls from its durable");
    let message = batch
        .next()
        .await
        .expect("a message within 2 s")
        .expect("a delivered message");
    assert_eq!(message.subject.as_str(), "orders.events.order_paid");
    message.double_ack().await.expect("the ack is confirmed");
    let info = stream
        .consumer_info("inventory")
        .await
        .expect("inventory reads its lag");
    assert_eq!((info.num_pending, info.num_ack_pending), (0, 0));

    // Its dead letters go to its own DLQ subject, and only there.
    assert!(acked(&inventory, "dlq.order_events.inventory", "dead-1").await);
    assert!(!acked(&inventory, "dlq.order_events.reporting", "dead-2").await);
    assert_eq!(stored(&relay, StreamKind::DeadLetters).await, 1);

    // Another service's durable is out of its reach.
    let foreign = stream
        .get_or_create_consumer("reporting", durable("reporting", ""))
        .await;
    assert!(
        foreign.is_err(),
        "inventory created or opened reporting's durable"
    );
}

#[tokio::test]
async fn inventory_hears_its_own_catalog_broadcasts() {
    let server = start_server().await;
    let client = connect_as(&server, "inventory").await;
    let mut changes = client
        .subscribe("inventory.catalog.changed")
        .await
        .expect("subscribe");
    client.flush().await.expect("flush");
    client
        .publish("inventory.catalog.changed", "0190a5e4".into())
        .await
        .expect("publish");
    let heard = tokio::time::timeout(Duration::from_secs(2), changes.next())
        .await
        .expect("the broadcast within 2 s")
        .expect("a message");
    assert_eq!(heard.payload.as_ref(), b"0190a5e4");
}

#[tokio::test]
async fn nobody_connects_without_the_right_password() {
    let server = start_server().await;
    let anonymous = async_nats::ConnectOptions::new()
        .connection_timeout(Duration::from_secs(2))
        .connect(server.url())
        .await;
    assert!(anonymous.is_err(), "an anonymous client connected");
    let wrong = async_nats::ConnectOptions::with_user_and_password(
        "inventory".to_owned(),
        "not-the-password".to_owned(),
    )
    .connection_timeout(Duration::from_secs(2))
    .connect(server.url())
    .await;
    assert!(wrong.is_err(), "a wrong password was accepted");
}

/// Compose gives each service `NATS_URL=nats://<user>:<password>@nats:4222`.
/// async-nats 0.51 parses user and password out of a URL but never sends
/// them (its CONNECT takes them from `ConnectOptions` only), so
/// `messaging::connect` hands them over itself; this proves it does.
#[tokio::test]
async fn messaging_connect_uses_the_credentials_in_the_url() {
    let server = start_server().await;
    let url = server.url().replacen(
        "nats://",
        &format!("nats://inventory:{}@", password("inventory")),
        1,
    );
    let client = messaging::connect(&settings::SecretUrl::new(url), "inventory")
        .await
        .expect("a client");
    testkit::eventually(Duration::from_secs(5), "inventory is connected", || {
        let client = client.clone();
        async move { messaging::is_connected(&client) }
    })
    .await;
}
