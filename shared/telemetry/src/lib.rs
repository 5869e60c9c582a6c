//! Telemetry for every service: structured logs, OpenTelemetry spans and
//! W3C trace-context propagation.
//!
//! One call to [`init`] at start installs
//! - a `tracing` subscriber that logs for humans (`LOG_FORMAT=pretty`, the
//!   default) or as JSON lines (`LOG_FORMAT=json`), filtered by `RUST_LOG`;
//! - an OpenTelemetry tracer provider bridged to `tracing`, so every span
//!   has a real trace id. Spans are exported over OTLP/gRPC only when
//!   `OTEL_EXPORTER_OTLP_ENDPOINT` is set; without it they are still
//!   created, which keeps trace ids in the outbox and in NATS headers
//!   meaningful in local runs and tests;
//! - the W3C `traceparent`/`tracestate` propagator, used by [`propagation`]
//!   to continue a trace across HTTP, the outbox table and NATS.
//!
//! The returned [`Telemetry`] must be shut down before the process exits:
//! the batch exporter holds spans in memory, and the last seconds of a
//! trace are exactly the ones you want after an incident.

#![warn(missing_docs)]

pub mod propagation;

use opentelemetry::KeyValue;
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::SdkTracerProvider;
use settings::{ConfigError, Env};
use tracing_subscriber::EnvFilter;
use tracing_subscriber::Layer as _;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    /// Coloured, multi-field lines for a terminal.
    Pretty,
    /// One JSON object per line, for log shippers.
    Json,
}

/// What [`init`] needs; see [`TelemetryConfig::from_env`].
#[derive(Debug, Clone)]
pub struct TelemetryConfig {
    /// `service.name` on every span, e.g. `orders`.
    pub service_name: &'static str,
    /// Log line format (`LOG_FORMAT`).
    pub log_format: LogFormat,
    /// `RUST_LOG`-style filter.
    pub log_filter: String,
    /// OTLP/gRPC collector, e.g. `http://jaeger:4317`; `None` exports nothing.
    pub otlp_endpoint: Option<String>,
}

impl TelemetryConfig {
    /// Reads `LOG_FORMAT`, `RUST_LOG` and `OTEL_EXPORTER_OTLP_ENDPOINT`.
    pub fn from_env(service_name: &'static str, env: &Env) -> Result<Self, ConfigError> {
        let log_format = match env.string_or("LOG_FORMAT", "pretty").as_str() {
            "pretty" => LogFormat::Pretty,
            "json" => LogFormat::Json,
            other => {
                return Err(ConfigError::Invalid {
                    name: "LOG_FORMAT".into(),
                    value: other.into(),
                    reason: "expected pretty or json".into(),
                });
            }
        };
        let log_filter = env.string_or("RUST_LOG", "info");
        // Validate the filter now so a typo fails the start, not silently.
        EnvFilter::try_new(&log_filter).map_err(|e| ConfigError::Invalid {
            name: "RUST_LOG".into(),
            value: log_filter.clone(),
            reason: e.to_string(),
        })?;
        Ok(Self {
            service_name,
            log_format,
            log_filter,
            otlp_endpoint: env.get("OTEL_EXPORTER_OTLP_ENDPOINT").map(str::to_owned),
        })
    }
}

/// Telemetry could not be installed.
#[derive(Debug, thiserror::Error)]
pub enum TelemetryError {
    /// The OTLP exporter could not be built (bad endpoint URL).
    #[error("cannot build the OTLP exporter for {endpoint}")]
    Exporter {
        /// The configured endpoint.
        endpoint: String,
        /// Why.
        #[source]
        source: opentelemetry_otlp::ExporterBuildError,
    },
    /// A global subscriber was already installed in this process.
    #[error("a tracing subscriber is already installed")]
    AlreadyInstalled(#[source] tracing_subscriber::util::TryInitError),
}

/// The installed telemetry; call [`Telemetry::shutdown`] before exiting.
#[must_use = "dropping Telemetry without shutdown() loses the last spans"]
pub struct Telemetry {
    provider: SdkTracerProvider,
}

impl Telemetry {
    /// Flushes buffered spans to the collector and stops the exporter.
    pub fn shutdown(self) {
        if let Err(e) = self.provider.shutdown() {
            // Logging is the only channel left; the process is exiting anyway.
            tracing::warn!(error = %e, "tracer provider did not shut down cleanly");
        }
    }
}

/// Installs logging, tracing and the W3C propagator for this process.
pub fn init(config: &TelemetryConfig) -> Result<Telemetry, TelemetryError> {
    let provider = tracer_provider(config)?;
    let otel_layer = tracing_opentelemetry::layer()
        .with_tracer(provider.tracer(config.service_name))
        .with_filter(span_filter());
    // RUST_LOG filters log lines only: turning logs down to `warn` must not
    // turn the `info` spans that make up a trace off.
    let log_filter = EnvFilter::new(&config.log_filter);
    let registry = tracing_subscriber::registry().with(otel_layer);
    match config.log_format {
        LogFormat::Pretty => registry
            .with(tracing_subscriber::fmt::layer().with_filter(log_filter))
            .try_init(),
        LogFormat::Json => registry
            .with(
                tracing_subscriber::fmt::layer()
                    .json()
                    .with_current_span(true)
                    .with_span_list(false)
                    .with_filter(log_filter),
            )
            .try_init(),
    }
    .map_err(TelemetryError::AlreadyInstalled)?;
    install_globals(&provider);
    Ok(Telemetry { provider })
}

/// Installs telemetry for a test process, once; later calls do nothing.
///
/// Spans get real trace ids (so propagation can be asserted) but nothing is
/// exported, and logs go to the test harness's captured output at `warn`
/// unless `RUST_LOG` says otherwise.
pub fn init_for_tests() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let provider = SdkTracerProvider::builder()
            .with_resource(Resource::builder().with_service_name("test").build())
            .build();
        let otel_layer = tracing_opentelemetry::layer()
            .with_tracer(provider.tracer("test"))
            .with_filter(span_filter());
        let log_filter =
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("warn"));
        // Another test framework may have installed a subscriber; the
        // propagator below is what the tests rely on, so ignore that case.
        let _ = tracing_subscriber::registry()
            .with(otel_layer)
            .with(
                tracing_subscriber::fmt::layer()
                    .with_test_writer()
                    .with_filter(log_filter),
            )
            .try_init();
        install_globals(&provider);
    });
}

/// Which spans become OpenTelemetry spans: ours and the libraries' at
/// `info`, without the transport internals of the exporter itself (whose
/// spans would otherwise describe their own export, forever).
fn span_filter() -> EnvFilter {
    EnvFilter::new("info,h2=off,tonic=off,hyper=off,tower=off,opentelemetry=off")
}

fn tracer_provider(config: &TelemetryConfig) -> Result<SdkTracerProvider, TelemetryError> {
    let resource = Resource::builder()
        .with_service_name(config.service_name)
        .with_attribute(KeyValue::new("service.version", env!("CARGO_PKG_VERSION")))
        .build();
    let mut builder = SdkTracerProvider::builder().with_resource(resource);
    if let Some(endpoint) = &config.otlp_endpoint {
        use opentelemetry_otlp::WithExportConfig as _;
        let exporter = opentelemetry_otlp::SpanExporter::builder()
            .with_tonic()
            .with_endpoint(endpoint)
            .build()
            .map_err(|source| TelemetryError::Exporter {
                endpoint: endpoint.clone(),
                source,
            })?;
        builder = builder.with_batch_exporter(exporter);
    }
    Ok(builder.build())
}

fn install_globals(provider: &SdkTracerProvider) {
    opentelemetry::global::set_tracer_provider(provider.clone());
    opentelemetry::global::set_text_map_propagator(TraceContextPropagator::new());
}
