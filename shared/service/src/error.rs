//! Why a service could not start: one type for every service, each
//! variant naming the dependency or the setting at fault.

use std::net::SocketAddr;

/// Why a service could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartupError {
    /// Postgres is unreachable or its URL is wrong.
    #[error(transparent)]
    Postgres(#[from] pgkit::ConnectError),
    /// A migration failed.
    #[error("cannot migrate the {service} database")]
    Migrate {
        /// The service whose database it is.
        service: &'static str,
        /// What Postgres or sqlx said.
        #[source]
        source: sqlx::migrate::MigrateError,
    },
    /// `NATS_URL` is unusable or NATS refused the client.
    #[error(transparent)]
    Nats(#[from] messaging::MessagingError),
    /// The keys that bearer tokens are checked against cannot be loaded.
    #[error(transparent)]
    Keys(#[from] httpkit::auth::KeysError),
    /// Another dependency or setting of the service's own.
    #[error("{what}")]
    Dependency {
        /// What failed, e.g. "`REDIS_URL` is invalid".
        what: &'static str,
        /// Why.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// The listen address is taken or not ours.
    #[error("cannot listen on {addr}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// Why.
        #[source]
        source: std::io::Error,
    },
}

impl StartupError {
    /// A failure of a dependency this crate does not know, with its cause.
    pub fn dependency(
        what: &'static str,
        source: impl Into<Box<dyn std::error::Error + Send + Sync>>,
    ) -> Self {
        Self::Dependency {
            what,
            source: source.into(),
        }
    }
}
