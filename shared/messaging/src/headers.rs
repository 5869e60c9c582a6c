//! Header names every message carries (`docs/design.md` §5, Contracts), and the helpers that
//! put the W3C trace context into NATS headers and take it out again.

use async_nats::HeaderMap;
use telemetry::propagation::TraceContext;

/// JetStream's deduplication key: the envelope's `event_id`.
pub const MSG_ID: &str = "Nats-Msg-Id";
/// The envelope's `event_type`, so routing needs no payload parsing.
pub const EVENT_TYPE: &str = "Event-Type";
/// The envelope's `schema_version`.
pub const SCHEMA_VERSION: &str = "Schema-Version";
/// Always `application/json`.
pub const CONTENT_TYPE: &str = "Content-Type";
/// W3C trace context.
pub const TRACEPARENT: &str = "traceparent";
/// W3C trace state.
pub const TRACESTATE: &str = "tracestate";

/// Adds `trace` to `headers`.
pub fn insert_trace(headers: &mut HeaderMap, trace: &TraceContext) {
    if let Some(tp) = &trace.traceparent {
        headers.insert(TRACEPARENT, tp.as_str());
    }
    if let Some(ts) = &trace.tracestate {
        headers.insert(TRACESTATE, ts.as_str());
    }
}

/// Reads the trace context from `headers`.
pub fn trace_of(headers: Option<&HeaderMap>) -> TraceContext {
    let get = |name: &str| {
        headers
            .and_then(|h| h.get(name))
            .map(|v| v.as_str().to_owned())
    };
    TraceContext {
        traceparent: get(TRACEPARENT),
        tracestate: get(TRACESTATE),
    }
}
