//! `ticketctl trace <id>`: a trace as a tree, from Jaeger's query API:
//! service, operation, duration, parent → child. `demo` prints the id of
//! its trace; the consumers' spans arrive within seconds of the request.

use std::collections::HashMap;
use std::fmt::Write as _;

use anyhow::{Context as _, bail};
use clap::Args;
use serde::Deserialize;

use super::support::defaults;

/// Options of `trace`.
#[derive(Debug, Args)]
pub(crate) struct TraceArgs {
    /// The trace id (32 hex digits), as `demo` prints it.
    trace_id: String,
    /// Jaeger's UI and query API.
    #[arg(long, env = "JAEGER_URL", default_value = defaults::JAEGER)]
    jaeger_url: String,
}

/// Jaeger's `GET /api/traces/{id}` answer (the parts we print).
#[derive(Debug, Deserialize)]
struct JaegerAnswer {
    data: Vec<JaegerTrace>,
}

#[derive(Debug, Deserialize)]
struct JaegerTrace {
    spans: Vec<JaegerSpan>,
    processes: HashMap<String, JaegerProcess>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct JaegerSpan {
    #[serde(rename = "spanID")]
    span_id: String,
    operation_name: String,
    #[serde(default)]
    references: Vec<JaegerReference>,
    start_time: u64,
    duration: u64,
    #[serde(rename = "processID")]
    process_id: String,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct JaegerReference {
    ref_type: String,
    #[serde(rename = "spanID")]
    span_id: String,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct JaegerProcess {
    service_name: String,
}

/// Prints a trace as a tree.
pub(crate) async fn run(args: TraceArgs) -> anyhow::Result<()> {
    let url = format!("{}/api/traces/{}", args.jaeger_url, args.trace_id);
    let response = reqwest::get(&url)
        .await
        .with_context(|| format!("Jaeger is not reachable at {}", args.jaeger_url))?;
    if !response.status().is_success() {
        bail!(
            "Jaeger answered {} for trace {} (spans arrive a few seconds after the request)",
            response.status(),
            args.trace_id
        );
    }
    let answer: JaegerAnswer = response.json().await.context("unexpected Jaeger answer")?;
    let trace = answer.data.into_iter().next().context("no such trace")?;
    print!("{}", render_tree(&trace));
    Ok(())
}

/// The tree, children in start order; spans whose parent is not in the
/// trace (not exported, or still in flight) are shown as roots.
fn render_tree<'a>(trace: &'a JaegerTrace) -> String {
    let ids: std::collections::HashSet<&str> =
        trace.spans.iter().map(|s| s.span_id.as_str()).collect();
    let parent_of = |span: &'a JaegerSpan| -> Option<&'a str> {
        span.references
            .iter()
            .find(|r| r.ref_type == "CHILD_OF" && ids.contains(r.span_id.as_str()))
            .map(|r| r.span_id.as_str())
    };
    let mut children: HashMap<Option<&str>, Vec<&JaegerSpan>> = HashMap::new();
    for span in &trace.spans {
        children.entry(parent_of(span)).or_default().push(span);
    }
    for list in children.values_mut() {
        list.sort_by_key(|s| s.start_time);
    }
    let mut services: Vec<&str> = trace
        .processes
        .values()
        .map(|p| p.service_name.as_str())
        .collect();
    services.sort_unstable();
    services.dedup();
    let mut out = format!(
        "{} spans from {} services: {}\n",
        trace.spans.len(),
        services.len(),
        services.join(", ")
    );
    let mut stack: Vec<(&JaegerSpan, usize)> = children
        .get(&None)
        .map(|roots| roots.iter().rev().map(|s| (*s, 0)).collect())
        .unwrap_or_default();
    while let Some((span, depth)) = stack.pop() {
        let service = trace
            .processes
            .get(&span.process_id)
            .map_or("?", |p| p.service_name.as_str());
        #[allow(clippy::cast_precision_loss)] // microseconds, far below 2^52
        let millis = span.duration as f64 / 1000.0;
        let _ = writeln!(
            out,
            "{:indent$}{service:<13} {:<40} {millis:>9.2} ms",
            "",
            span.operation_name,
            indent = depth * 2
        );
        if let Some(kids) = children.get(&Some(span.span_id.as_str())) {
            stack.extend(kids.iter().rev().map(|k| (*k, depth + 1)));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn a_trace_prints_as_a_tree_in_start_order() {
        let answer: JaegerAnswer = serde_json::from_value(json!({ "data": [{
            "spans": [
                { "spanID": "b", "operationName": "POST /orders/{id}/pay", "references": [{ "refType": "CHILD_OF", "spanID": "a" }], "startTime": 2, "duration": 1500, "processID": "p2" },
                { "spanID": "a", "operationName": "ticketctl.demo", "references": [], "startTime": 1, "duration": 90000, "processID": "p1" },
                { "spanID": "c", "operationName": "relay.publish", "references": [{ "refType": "CHILD_OF", "spanID": "b" }], "startTime": 3, "duration": 800, "processID": "p3" },
                { "spanID": "d", "operationName": "orphan", "references": [{ "refType": "CHILD_OF", "spanID": "zz" }], "startTime": 4, "duration": 10, "processID": "p3" }
            ],
            "processes": { "p1": { "serviceName": "ticketctl" }, "p2": { "serviceName": "orders" }, "p3": { "serviceName": "relay" } }
        }]}))
        .unwrap();
        let tree = render_tree(&answer.data[0]);
        let lines: Vec<&str> = tree.lines().collect();
        assert_eq!(
            lines[0],
            "4 spans from 3 services: orders, relay, ticketctl"
        );
        assert!(lines[1].starts_with("ticketctl     ticketctl.demo"));
        assert!(lines[2].starts_with("  orders        POST /orders/{id}/pay"));
        assert!(lines[3].starts_with("    relay         relay.publish"));
        assert!(lines[4].starts_with("relay         orphan"), "{tree}");
    }
}
