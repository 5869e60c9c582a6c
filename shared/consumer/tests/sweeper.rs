//! The consumer tables' sweeper against a real Postgres: old inbox and
//! position rows go, recent ones and other consumers' stay, and the
//! sweeper task does it by itself until it is stopped.

// Helpers outside #[test] functions unwrap too: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used)]

use std::time::Duration;

use consumer::sweeper::{self, Retention, Swept};
use sqlx::PgPool;
use testkit::{TestPostgres, eventually};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("../../migrations/orders");

const DAY: Duration = Duration::from_hours(24);

struct Tables {
    db: PgPool,
    _postgres: TestPostgres,
}

impl Tables {
    async fn new() -> Self {
        let postgres = TestPostgres::start().await;
        let db = PgPool::connect(postgres.url()).await.unwrap();
        MIGRATOR.run(&db).await.unwrap();
        Self {
            db,
            _postgres: postgres,
        }
    }

    /// An inbox row of `consumer` processed `age` ago; its event id.
    async fn inbox_row(&self, consumer: &str, age: Duration) -> Uuid {
        let event_id = Uuid::new_v4();
        sqlx::query(
            "insert into inbox (consumer, event_id, processed_at) \
             values ($1, $2, now() - make_interval(secs => $3))",
        )
        .bind(consumer)
        .bind(event_id)
        .bind(age.as_secs_f64())
        .execute(&self.db)
        .await
        .unwrap();
        event_id
    }

    /// A position of `consumer` last moved `age` ago; its aggregate id.
    async fn position(&self, consumer: &str, age: Duration) -> Uuid {
        let aggregate_id = Uuid::new_v4();
        sqlx::query(
            "insert into consumer_positions \
             (consumer, aggregate_type, aggregate_id, version, updated_at) \
             values ($1, 'order', $2, 3, now() - make_interval(secs => $3))",
        )
        .bind(consumer)
        .bind(aggregate_id)
        .bind(age.as_secs_f64())
        .execute(&self.db)
        .await
        .unwrap();
        aggregate_id
    }

    async fn inbox_has(&self, event_id: Uuid) -> bool {
        sqlx::query_scalar("select exists(select 1 from inbox where event_id = $1)")
            .bind(event_id)
            .fetch_one(&self.db)
            .await
            .unwrap()
    }

    async fn position_exists(&self, aggregate_id: Uuid) -> bool {
        sqlx::query_scalar(
            "select exists(select 1 from consumer_positions where aggregate_id = $1)",
        )
        .bind(aggregate_id)
        .fetch_one(&self.db)
        .await
        .unwrap()
    }
}

#[tokio::test]
async fn a_sweep_deletes_inbox_rows_past_their_retention_and_keeps_recent_ones() {
    let tables = Tables::new().await;
    let retention = Retention::default();
    let old = tables.inbox_row("recorder", retention.inbox + DAY).await;
    let recent = tables
        .inbox_row("recorder", retention.inbox.checked_sub(DAY).unwrap())
        .await;
    let others = tables
        .inbox_row("someone-else", retention.inbox + DAY)
        .await;

    let swept = sweeper::sweep(&tables.db, "recorder", &retention)
        .await
        .unwrap();

    assert_eq!(
        swept,
        Swept {
            inbox: 1,
            positions: 0
        }
    );
    assert!(!tables.inbox_has(old).await, "past the retention: swept");
    assert!(tables.inbox_has(recent).await, "within it: kept");
    assert!(
        tables.inbox_has(others).await,
        "another consumer's rows are its own sweeper's"
    );
}

#[tokio::test]
async fn positions_outlive_the_inbox_and_go_only_after_their_own_retention() {
    let tables = Tables::new().await;
    let retention = Retention::default();
    // Past the inbox's retention but not the positions': still guarding.
    let quiet = tables.position("recorder", retention.inbox + DAY).await;
    let forgotten = tables.position("recorder", retention.positions + DAY).await;

    let swept = sweeper::sweep(&tables.db, "recorder", &retention)
        .await
        .unwrap();

    assert_eq!(swept.positions, 1);
    assert!(tables.position_exists(quiet).await);
    assert!(!tables.position_exists(forgotten).await);
}

#[tokio::test]
async fn a_sweep_goes_through_every_batch() {
    let tables = Tables::new().await;
    let retention = Retention {
        batch: 2,
        ..Retention::default()
    };
    for _ in 0..5 {
        tables.inbox_row("recorder", retention.inbox + DAY).await;
    }

    let swept = sweeper::sweep(&tables.db, "recorder", &retention)
        .await
        .unwrap();

    assert_eq!(swept.inbox, 5, "three batches of at most two");
}

#[tokio::test]
async fn the_sweeper_task_sweeps_on_its_interval_until_it_is_stopped() {
    let tables = Tables::new().await;
    let retention = Retention {
        interval: Duration::from_millis(100),
        ..Retention::default()
    };
    let stop = CancellationToken::new();
    let task = tokio::spawn(sweeper::run(
        tables.db.clone(),
        "recorder".to_owned(),
        retention,
        stop.clone(),
    ));
    let old = tables.inbox_row("recorder", retention.inbox + DAY).await;
    let recent = tables.inbox_row("recorder", Duration::ZERO).await;

    eventually(
        Duration::from_secs(10),
        "the old inbox row is swept",
        || async { !tables.inbox_has(old).await },
    )
    .await;
    stop.cancel();
    tokio::time::timeout(Duration::from_secs(5), task)
        .await
        .expect("the sweeper stops when cancelled")
        .unwrap();

    assert!(tables.inbox_has(recent).await);
}

/// Applies nothing: the group's sweeper is what is under test.
struct Idle;

impl consumer::Handler for Idle {
    async fn handle(
        &self,
        _: &mut sqlx::PgConnection,
        _: &consumer::Delivery,
    ) -> Result<(), consumer::HandlerError> {
        Ok(())
    }
}

#[tokio::test]
async fn a_group_installed_in_a_service_sweeps_its_consumers_tables() {
    let tables = Tables::new().await;
    let nats = testkit::TestNats::start().await;
    let js = nats.jetstream().await;
    let topology = messaging::Topology::new(nats.prefix()).unwrap();
    let mut group = consumer::Group::new(js.clone(), topology.clone());
    let retention = Retention {
        interval: Duration::from_millis(100),
        ..Retention::default()
    };
    group.retention(retention);
    group.add(consumer::Consumer::new(
        consumer::ConsumerSpec::new("idle", messaging::StreamKind::OrderEvents),
        tables.db.clone(),
        js,
        topology,
        Idle,
    ));
    let http = service::HttpConfig::from_env(
        &settings::Env::from_pairs([("HTTP_ADDR", "127.0.0.1:0")]),
        0,
        1024,
    )
    .unwrap();
    let mut builder = service::Builder::new("sweeping", http);
    group.install(&mut builder);
    let mut app = builder
        .serve(utoipa_axum::router::OpenApiRouter::new())
        .await
        .unwrap()
        .spawn();
    let old = tables.inbox_row("idle", retention.inbox + DAY).await;
    let recent = tables.inbox_row("idle", Duration::ZERO).await;

    eventually(
        Duration::from_secs(10),
        "the group's sweeper sweeps the old inbox row",
        || async { !tables.inbox_has(old).await },
    )
    .await;
    assert!(tables.inbox_has(recent).await);
    app.stop().await.unwrap();
}
