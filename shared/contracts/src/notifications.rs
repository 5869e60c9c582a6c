//! Commands for the notification workers.
//!
//! A command is not an event: an event says what happened, to anyone who
//! listens, and stays in a replayable log; a command asks one worker to do
//! one thing, travels on a work queue (`NOTIFY_COMMANDS`) and is gone once
//! done. It still travels in the versioned [`crate::Envelope`].

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::Event;
use crate::versioned::{DecodeError, Versioned, parse};

/// Which e-mail; at most one of each per order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum EmailKind {
    /// After `OrderPaid`.
    PaymentReceived,
    /// After `OrderConfirmed`.
    OrderConfirmed,
    /// After `OrderRefunded`.
    OrderRefunded,
}

impl EmailKind {
    /// The value stored in `notifications.kind`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::PaymentReceived => "payment_received",
            Self::OrderConfirmed => "order_confirmed",
            Self::OrderRefunded => "order_refunded",
        }
    }
}

/// Send one e-mail about an order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct SendEmail {
    /// The order it is about.
    pub order_id: Uuid,
    /// Which e-mail.
    pub kind: EmailKind,
    /// The recipient.
    pub to: String,
    /// Subject line.
    pub subject: String,
    /// Plain-text body.
    pub body: String,
}

impl Event for SendEmail {
    const EVENT_TYPE: &'static str = "SendEmail";
    const SCHEMA_VERSION: u32 = 1;
    const AGGREGATE_TYPE: &'static str = "email";
    const SUBJECT: &'static str = "notify.commands.send_email";
}

impl Versioned for SendEmail {
    fn from_version(version: u32, data: serde_json::Value) -> Result<Self, DecodeError> {
        match version {
            1 => parse(data),
            _ => Err(DecodeError::unknown_version::<Self>(version)),
        }
    }
}
