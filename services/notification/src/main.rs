//! Runs the notification service; configuration from the environment (see `notification::config`).

service::main!(notification::Notification);
