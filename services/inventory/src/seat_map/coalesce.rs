//! Request coalescing ("single flight"): concurrent callers asking for the
//! same key share one execution of the work.
//!
//! When a popular seat map falls out of the cache, a thousand requests miss
//! at once; without coalescing each would query Postgres for the same rows
//! (a cache stampede). Here the first caller starts the work and every
//! caller that arrives while it runs awaits the same result.
//!
//! The work runs on its own task, so it finishes (and fills the cache) even
//! if the caller that started it goes away, e.g. on a client timeout. That
//! task removes the flight's entry when the work ends (or panics), whoever
//! is still waiting: an entry left to be removed by the next caller would
//! hand that caller the old result (a map from before a change, a stale
//! "no such concert"), and keep the key forever if no one asked again. A
//! caller arriving after the removal starts a new flight, which is why the
//! seat map's flight re-reads the cache before touching the database.

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::{Arc, Mutex};

use futures::FutureExt as _;
use futures::future::{BoxFuture, Shared};

/// In-flight work per key, shared by everyone who asks meanwhile.
pub struct Coalescer<K, V> {
    flights: Flights<K, V>,
}

type Flights<K, V> = Arc<Mutex<HashMap<K, Shared<BoxFuture<'static, V>>>>>;

/// Removes a flight's entry when dropped: when its work returns, and when
/// it panics.
struct Landing<K: Eq + Hash, V> {
    flights: Flights<K, V>,
    key: K,
}

impl<K: Eq + Hash, V> Drop for Landing<K, V> {
    fn drop(&mut self) {
        self.flights
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .remove(&self.key);
    }
}

impl<K, V> Default for Coalescer<K, V> {
    fn default() -> Self {
        Self {
            flights: Arc::default(),
        }
    }
}

impl<K, V> Coalescer<K, V>
where
    K: Eq + Hash + Clone + Send + 'static,
    V: Clone + Send + Sync + 'static,
{
    /// The result of `work` for `key`: started now if no flight for `key` is
    /// running, else the running flight's result.
    pub async fn run<F, Fut>(&self, key: K, work: F) -> V
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = V> + Send + 'static,
    {
        let flight = {
            // Never held across an await: the lock guards only the map.
            let mut flights = self
                .flights
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            if let Some(flight) = flights.get(&key) {
                flight.clone()
            } else {
                let landing = Landing {
                    flights: Arc::clone(&self.flights),
                    key: key.clone(),
                };
                let work = work();
                // The entry goes when the work ends, on the work's own task;
                // it cannot go before it is inserted, since inserting holds
                // the lock the landing needs.
                let task = tokio::spawn(async move {
                    let _landing = landing;
                    work.await
                });
                let flight = async move {
                    match task.await {
                        Ok(value) => value,
                        // The work panicked: let the callers see the panic
                        // rather than an invented value.
                        Err(e) => std::panic::resume_unwind(e.into_panic()),
                    }
                }
                .boxed()
                .shared();
                flights.insert(key, flight.clone());
                flight
            }
        };
        flight.await
    }

    /// How many flights are running (for tests and metrics).
    pub fn in_flight(&self) -> usize {
        self.flights
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .len()
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;

    #[tokio::test]
    async fn concurrent_callers_share_one_execution() {
        let coalescer = Coalescer::<u32, u32>::default();
        let runs = Arc::new(AtomicUsize::new(0));
        let (release, released) = tokio::sync::watch::channel(false);
        let callers = (0..100).map(|_| {
            let runs = Arc::clone(&runs);
            let mut released = released.clone();
            coalescer.run(7, move || async move {
                runs.fetch_add(1, Ordering::SeqCst);
                released.wait_for(|r| *r).await.ok();
                42
            })
        });
        // `join!` polls the callers first: all hundred join the flight
        // before the second branch lets the work finish.
        let (answers, ()) = tokio::join!(futures::future::join_all(callers), async {
            release.send(true).unwrap();
        });
        assert!(answers.iter().all(|a| *a == 42));
        assert_eq!(runs.load(Ordering::SeqCst), 1);
        assert_eq!(coalescer.in_flight(), 0, "the flight is removed when done");
    }

    #[tokio::test]
    async fn the_work_finishes_when_its_caller_goes_away() {
        let coalescer = Coalescer::<u32, u32>::default();
        let (done, mut finished) = tokio::sync::mpsc::channel(1);
        let caller = coalescer.run(1, move || async move {
            tokio::task::yield_now().await;
            done.send(()).await.ok();
            1
        });
        // Dropping the caller after it started the flight does not cancel it.
        tokio::select! {
            biased;
            _ = caller => {}
            () = std::future::ready(()) => {}
        }
        assert!(finished.recv().await.is_some());
    }

    #[tokio::test]
    async fn a_flight_whose_callers_all_left_is_gone_when_it_ends() {
        let coalescer = Coalescer::<u32, u32>::default();
        let (release, released) = tokio::sync::oneshot::channel::<()>();
        let abandoned = coalescer.run(1, move || async move {
            released.await.ok();
            1 // the map as it was when this fill read it
        });
        // The only caller goes away mid-fill (a client timeout, say)…
        tokio::select! {
            biased;
            _ = abandoned => unreachable!("the fill is still waiting"),
            () = std::future::ready(()) => {}
        }
        // …and the fill ends with nobody waiting for it.
        release.send(()).unwrap();
        for _ in 0..100 {
            if coalescer.in_flight() == 0 {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        assert_eq!(coalescer.in_flight(), 0, "an ended flight leaves no entry");

        // The map changed meanwhile: the next miss must fill anew.
        let next = coalescer.run(1, || async { 2 }).await;

        assert_eq!(next, 2, "not the abandoned flight's old result");
    }
}
