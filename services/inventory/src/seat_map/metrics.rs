//! The seat-map cache's counters, registered in the service's metrics
//! registry and read directly by the tests and the benchmark that count
//! database loads (`metrics().db_loads.get()`).

use prometheus_client::metrics::counter::Counter;
use prometheus_client::registry::Registry;

/// Counters of the seat-map cache; each `x` is exposed as `seatmap_…_total`.
#[derive(Debug, Default)]
pub struct SeatMapMetrics {
    /// Seat maps read from Postgres (`seatmap_db_loads_total`).
    pub db_loads: Counter,
    /// Requests answered from the Redis cache (`seatmap_cache_hits_total`).
    pub hits: Counter,
    /// Requests answered from Redis with a body this instance had already
    /// rendered for the same version and holds (`seatmap_rendered_hits_total`;
    /// also counted in `hits`).
    pub rendered_hits: Counter,
    /// Requests that found no map in Redis (`seatmap_cache_misses_total`).
    pub misses: Counter,
    /// Requests answered by a cached "no such concert"
    /// (`seatmap_null_hits_total`).
    pub null_hits: Counter,
    /// Requests served without Redis (`seatmap_redis_unavailable_total`).
    pub redis_unavailable: Counter,
    /// Maps refreshed ahead of and during a sale's opening
    /// (`seatmap_opening_refreshes_total`).
    pub refreshes: Counter,
}

impl SeatMapMetrics {
    /// Registers the counters in `registry` (which adds `_total` to each
    /// name). The registry shares them: counting here shows at `/metrics`.
    pub fn register(&self, registry: &mut Registry) {
        for (name, help, counter) in [
            (
                "seatmap_db_loads",
                "Seat maps loaded from Postgres.",
                &self.db_loads,
            ),
            (
                "seatmap_cache_hits",
                "Seat maps served from Redis.",
                &self.hits,
            ),
            (
                "seatmap_rendered_hits",
                "Seat maps sent as bodies already rendered for their version and holds.",
                &self.rendered_hits,
            ),
            (
                "seatmap_cache_misses",
                "Seat-map requests that missed Redis.",
                &self.misses,
            ),
            (
                "seatmap_null_hits",
                "Unknown concerts answered from the null cache.",
                &self.null_hits,
            ),
            (
                "seatmap_redis_unavailable",
                "Seat-map requests served without Redis.",
                &self.redis_unavailable,
            ),
            (
                "seatmap_opening_refreshes",
                "Seat maps kept hot around a sale's opening.",
                &self.refreshes,
            ),
        ] {
            registry.register(name, help, counter.clone());
        }
    }
}
