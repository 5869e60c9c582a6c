//! Runs the orders service; configuration from the environment (see `orders::config`).

service::main!(orders::Orders);
