//! One module per top-level command of `ticketctl`, named as the command
//! is (`ticketctl dlq …` is [`dlq`]); a command with subcommands of its
//! own that differ enough to want a file each is a folder ([`bench`]).
//! Each module holds its command's clap options and a `run` that
//! `main` dispatches to; what two or more commands share is in
//! [`support`].

pub(crate) mod bench;
pub(crate) mod consumers;
pub(crate) mod demo;
pub(crate) mod dlq;
pub(crate) mod keygen;
pub(crate) mod outbox;
pub(crate) mod reporting;
pub(crate) mod seed;
pub(crate) mod token;
pub(crate) mod trace;

mod support;
