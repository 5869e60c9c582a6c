//! End-to-end tests of the ticketing system, in `tests/`.
//!
//! They drive the services only through their public HTTP APIs, the way a
//! client or the curl walk-through in `docs/api.md` does, with every service and server
//! real. Per-crate tests (e.g. `services/orders/tests/`) prove one pattern
//! each; these prove the story still holds when the pieces are put together.
//! As services join the system (relay, consumers), their steps join here.
