//! The HTTP server's settings, the same variables in every service.
//!
//! | variable | default | meaning |
//! |---|---|---|
//! | `HTTP_ADDR` | `0.0.0.0:<the service's port>` | listen address; port 0 picks a free one (tests) |
//! | `REQUEST_TIMEOUT` | `10s` | answer 503 after this long (`httpkit::layers`) |
//! | `BODY_LIMIT_BYTES` | the service's (64 KiB for orders, 1 MiB for inventory, 1 KiB for the others) | largest accepted request body |
//! | `HTTP_HEADER_READ_TIMEOUT`, `HTTP_MAX_CONNECTIONS` | `5s`, `1024` | time to send request headers (also the idle keep-alive limit), open connections at most (`httpkit::serve`) |

use std::net::SocketAddr;
use std::time::Duration;

use httpkit::layers::HttpLimits;
use httpkit::serve::ServeLimits;
use settings::{ConfigError, Env};

/// Where and how a service serves HTTP.
#[derive(Debug, Clone, Copy)]
pub struct HttpConfig {
    /// Where to listen.
    pub addr: SocketAddr,
    /// Request timeout and body size limit.
    pub limits: HttpLimits,
    /// Header-read timeout and connection cap.
    pub serve: ServeLimits,
}

impl HttpConfig {
    /// Reads the variables in the module docs; `port` and `body_limit` are
    /// the service's defaults.
    pub fn from_env(env: &Env, port: u16, body_limit: usize) -> Result<Self, ConfigError> {
        Ok(Self {
            addr: env.parse_or("HTTP_ADDR", SocketAddr::from(([0, 0, 0, 0], port)))?,
            limits: HttpLimits {
                request_timeout: env.duration_or("REQUEST_TIMEOUT", Duration::from_secs(10))?,
                body_limit: env.parse_or("BODY_LIMIT_BYTES", body_limit)?,
            },
            serve: ServeLimits::from_env(env)?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_the_services_own() {
        let http = HttpConfig::from_env(&Env::default(), 8083, 1024).unwrap();
        assert_eq!(http.addr.port(), 8083);
        assert_eq!(http.limits.body_limit, 1024);
        assert_eq!(http.limits.request_timeout, Duration::from_secs(10));
    }

    #[test]
    fn every_service_reads_the_same_variables() {
        let env = Env::from_pairs([
            ("HTTP_ADDR", "127.0.0.1:0"),
            ("REQUEST_TIMEOUT", "2s"),
            ("BODY_LIMIT_BYTES", "10"),
            ("HTTP_MAX_CONNECTIONS", "7"),
        ]);
        let http = HttpConfig::from_env(&env, 8083, 1024).unwrap();
        assert_eq!(http.addr.port(), 0);
        assert_eq!(http.limits.request_timeout, Duration::from_secs(2));
        assert_eq!(http.limits.body_limit, 10);
        assert_eq!(http.serve.max_connections, 7);
    }

    #[test]
    fn a_bad_value_names_its_variable() {
        let env = Env::from_pairs([("BODY_LIMIT_BYTES", "lots")]);
        let err = HttpConfig::from_env(&env, 8083, 1024)
            .unwrap_err()
            .to_string();
        assert!(err.contains("BODY_LIMIT_BYTES"), "{err}");
    }
}
