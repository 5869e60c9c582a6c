//! W3C trace-context propagation across process boundaries.
//!
//! A trace crosses three kinds of boundary in this system: HTTP requests
//! (the `traceparent` header), the outbox table (two text columns written in
//! the same transaction as the business change) and NATS messages (headers).
//! All three use the same two strings, so this module speaks in terms of
//! [`TraceContext`] and leaves the carrier to the caller.

use std::collections::HashMap;

use opentelemetry::Context;
use opentelemetry::propagation::{Extractor, Injector};
use opentelemetry::trace::TraceContextExt as _;
use tracing_opentelemetry::OpenTelemetrySpanExt as _;

/// The serialized W3C trace context of a span.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TraceContext {
    /// `00-<trace-id>-<span-id>-<flags>`; `None` when there is no active trace.
    pub traceparent: Option<String>,
    /// Vendor-specific state, rarely set.
    pub tracestate: Option<String>,
}

impl TraceContext {
    /// The context of the current `tracing` span.
    pub fn current() -> Self {
        Self::of(&tracing::Span::current())
    }

    /// The context of `span`.
    pub fn of(span: &tracing::Span) -> Self {
        let mut carrier = HashMap::new();
        opentelemetry::global::get_text_map_propagator(|p| {
            p.inject_context(&span.context(), &mut MapCarrier(&mut carrier));
        });
        Self {
            traceparent: carrier.remove("traceparent"),
            tracestate: carrier.remove("tracestate"),
        }
    }

    /// The OpenTelemetry context this trace context describes, to be used
    /// as the parent of a span that continues the trace.
    pub fn to_context(&self) -> Context {
        let mut carrier = HashMap::new();
        if let Some(tp) = &self.traceparent {
            carrier.insert("traceparent".to_owned(), tp.clone());
        }
        if let Some(ts) = &self.tracestate {
            carrier.insert("tracestate".to_owned(), ts.clone());
        }
        opentelemetry::global::get_text_map_propagator(|p| p.extract(&MapCarrier(&mut carrier)))
    }

    /// The 32-hex-digit trace id, if there is one.
    pub fn trace_id(&self) -> Option<&str> {
        self.traceparent.as_deref()?.split('-').nth(1)
    }
}

/// Makes `parent` the parent of `span`, continuing a trace that crossed an
/// asynchronous boundary (an outbox row, a NATS message). Without a
/// `traceparent`, `span` keeps its own new trace.
pub fn set_parent(span: &tracing::Span, parent: &TraceContext) {
    if parent.traceparent.is_some() {
        // Only fails if the span is disabled, in which case there is nothing to parent.
        let _ = span.set_parent(parent.to_context());
    }
}

/// The trace id of the current span as 32 hex digits, if it is sampled.
pub fn current_trace_id() -> Option<String> {
    let cx = tracing::Span::current().context();
    let span_context = cx.span().span_context().clone();
    span_context
        .is_valid()
        .then(|| span_context.trace_id().to_string())
}

/// Makes the context carried by incoming HTTP `headers` the parent of `span`.
///
/// Without a `traceparent` header nothing changes and `span` starts a new
/// trace.
pub fn continue_from_http(span: &tracing::Span, headers: &http::HeaderMap) {
    let parent =
        opentelemetry::global::get_text_map_propagator(|p| p.extract(&HeaderCarrier(headers)));
    if parent.span().span_context().is_valid() {
        // Only fails if the span is disabled, in which case there is nothing to parent.
        let _ = span.set_parent(parent);
    }
}

/// Writes the current span's context into outgoing HTTP `headers`.
pub fn inject_into_http(headers: &mut http::HeaderMap) {
    let cx = tracing::Span::current().context();
    opentelemetry::global::get_text_map_propagator(|p| {
        p.inject_context(&cx, &mut HeaderInjector(headers));
    });
}

struct MapCarrier<'a>(&'a mut HashMap<String, String>);

impl Injector for MapCarrier<'_> {
    fn set(&mut self, key: &str, value: String) {
        self.0.insert(key.to_owned(), value);
    }
}

impl Extractor for MapCarrier<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).map(String::as_str)
    }

    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(String::as_str).collect()
    }
}

struct HeaderCarrier<'a>(&'a http::HeaderMap);

impl Extractor for HeaderCarrier<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(|v| v.to_str().ok())
    }

    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(http::HeaderName::as_str).collect()
    }
}

struct HeaderInjector<'a>(&'a mut http::HeaderMap);

impl Injector for HeaderInjector<'_> {
    fn set(&mut self, key: &str, value: String) {
        if let (Ok(name), Ok(value)) = (
            http::HeaderName::from_bytes(key.as_bytes()),
            http::HeaderValue::from_str(&value),
        ) {
            self.0.insert(name, value);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_span_continues_the_trace_of_an_incoming_traceparent() {
        crate::init_for_tests();
        let incoming = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        let mut headers = http::HeaderMap::new();
        headers.insert("traceparent", incoming.parse().unwrap());

        let span = tracing::info_span!("handler");
        continue_from_http(&span, &headers);
        let ours = TraceContext::of(&span);

        assert_eq!(ours.trace_id(), Some("4bf92f3577b34da6a3ce929d0e0e4736"));
        assert_ne!(
            ours.traceparent.as_deref(),
            Some(incoming),
            "a new span id is expected"
        );
    }

    #[test]
    fn a_stored_context_round_trips() {
        crate::init_for_tests();
        let span = tracing::info_span!("writer");
        let stored = TraceContext::of(&span);
        assert!(
            stored.traceparent.is_some(),
            "test telemetry must create real spans"
        );

        let reader = tracing::info_span!("reader");
        let _ = reader.set_parent(stored.to_context());
        assert_eq!(TraceContext::of(&reader).trace_id(), stored.trace_id());
    }
}
