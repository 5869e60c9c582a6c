//! Runs the relay for one source database; configuration from the environment (see `relay::config`).

service::main!(relay::Relay);
