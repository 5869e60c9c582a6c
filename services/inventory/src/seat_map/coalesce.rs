//! Request coalescing ("single flight"): concurrent callers asking for the
//! same key share one execution of the work.
//!
//! When a popular seat map falls out of the cache, a thousand requests miss
//! at once; without coalescing each would query Postgres for the same rows
//! (a cache stampede). Here the first caller starts the work and every
//! caller that arrives while it runs awaits the same result.
//!
//! The work runs on its own task, so it finishes (and fills the cache) even
//! if the caller that started it goes away, e.g. on a client timeout. The
//! entry is removed when the work ends; a caller arriving after that starts
//! a new flight, which is why the seat map's flight re-reads the cache
//! before touching the database.

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::{Arc, Mutex};

use futures::FutureExt as _;
use futures::future::{BoxFuture, Shared};

/// In-flight work per key, shared by everyone who asks meanwhile.
pub struct Coalescer<K, V> {
    flights: Arc<Mutex<HashMap<K, Shared<BoxFuture<'static, V>>>>>,
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
                let task = tokio::spawn(work());
                let map = Arc::clone(&self.flights);
                let done_key = key.clone();
                let flight = async move {
                    let value = match task.await {
                        Ok(value) => value,
                        // The work panicked: let the callers see the panic
                        // rather than an invented value.
                        Err(e) => std::panic::resume_unwind(e.into_panic()),
                    };
                    map.lock()
                        .unwrap_or_else(std::sync::PoisonError::into_inner)
                        .remove(&done_key);
                    value
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
}
