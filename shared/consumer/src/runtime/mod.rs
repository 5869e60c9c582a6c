//! The consumer loop and the decision taken for each message.
//!
//! Processing is split in two so that each half can be tested on its own:
//! [`Consumer::decide`] does the database work (inbox, position, handler,
//! commit) and returns a [`Decision`]; [`Consumer::settle`] tells JetStream
//! (ack, nak with a delay, or dead-letter and terminate). A process that
//! dies between the two has committed without acking, the case the inbox
//! exists for.
//!
//! The files follow that split, and are private: everything public is
//! re-exported here, so `consumer::runtime::X` (and `consumer::X` for most)
//! is the one path to each item whichever file holds it.
//!
//! | file | holds |
//! |---|---|
//! | `spec.rs` | what a service declares: [`ConsumerSpec`], [`Handler`], [`Delivery`], [`HandlerError`] |
//! | `decode.rs` | how a handler reads a payload: [`Delivery::decode`], any committed version as the current one |
//! | `decision.rs` | the database half: [`Decision`], [`Outcome`], the retry backoff |
//! | `delivery_loop.rs` | [`Consumer`], its loop, the broker half and the consumer span |
//! | `lanes.rs` | parallel lanes with per-aggregate order: how the loop processes several messages at once |
//! | `metrics.rs` | [`ConsumerMetrics`], [`Counts`], [`Lag`], [`lag`] |

mod decision;
mod decode;
mod delivery_loop;
mod lanes;
mod metrics;
mod spec;

pub use decision::{Decision, Outcome};
pub use delivery_loop::Consumer;
pub use metrics::{ConsumerMetrics, Counts, Lag, lag};
pub use spec::{ConsumerSpec, Delivery, Handler, HandlerError};
