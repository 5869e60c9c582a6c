//! Runs the inventory service; configuration from the environment (see `inventory::config`).

service::main!(inventory::Inventory);
