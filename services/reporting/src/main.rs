//! Runs the reporting service; configuration from the environment (see `reporting::config`).

service::main!(reporting::Reporting);
