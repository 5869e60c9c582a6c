//! Stopping the relay in the middle of a backlog: the pass in hand ends
//! (its publishes awaited, its rows marked) and the stop ends within a
//! deadline. The other services' halves of graceful shutdown are in
//! `tests/tests/shutdown.rs`.

use std::time::Duration;

use testkit::eventually;
use uuid::Uuid;

use crate::Outbox;

/// As in `tests/tests/shutdown.rs`: well inside the 10 s a container
/// runtime waits between SIGTERM and SIGKILL.
const DEADLINE: Duration = Duration::from_secs(5);

#[tokio::test]
async fn a_relay_stopped_mid_backlog_ends_its_pass_and_marks_everything_it_published() {
    const BACKLOG: i64 = 4_000;
    let outbox = Outbox::start().await;
    let mut tx = outbox.db.begin().await.unwrap();
    for _ in 0..BACKLOG {
        outbox
            .write_event_in(&mut tx, Uuid::new_v4(), 1, "ada@example.com")
            .await;
    }
    tx.commit().await.unwrap();

    // Small passes, so that the stop lands while there is still a backlog.
    let mut relay = outbox.relay(&[("RELAY_BATCH_SIZE", "50")]).await;
    eventually(Duration::from_secs(10), "publishing has begun", || async {
        outbox.unpublished().await < BACKLOG
    })
    .await;
    tokio::time::timeout(DEADLINE, relay.stop())
        .await
        .expect("the relay stops within the deadline");

    let unpublished = outbox.unpublished().await;
    assert!(
        unpublished > 0,
        "the backlog drained before the stop; the test needs a larger one"
    );
    // A pass cut short would leave messages in the stream whose rows are
    // still unpublished (to be sent again, and deduplicated, later).
    let stored = outbox.stream().await;
    assert_eq!(
        i64::try_from(stored.len()).unwrap(),
        BACKLOG - unpublished,
        "the stream and the outbox disagree on what was published"
    );
}
