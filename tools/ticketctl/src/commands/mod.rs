//! One module per top-level command of `ticketctl`, named as the command
//! is (`ticketctl dlq …` is [`dlq`]); a command with subcommands of its
//! own that differ enough to want a file each is a folder ([`bench`]).
//! Each module holds its command's clap options and a `run` that
//! `main` dispatches to; what two or more commands share is in
//! [`support`].
//!
//! A command ends `Ok` (exit status 0) or with an error (1), except one
//! that looks for trouble and finds some: it ends with [`NeedsAttention`]
//! (3), so a script can tell a finding from a failure to look.

pub(crate) mod bench;
pub(crate) mod consumers;
pub(crate) mod demo;
pub(crate) mod dlq;
pub(crate) mod keygen;
pub(crate) mod load;
pub(crate) mod orders;
pub(crate) mod outbox;
pub(crate) mod reporting;
pub(crate) mod seed;
pub(crate) mod token;
pub(crate) mod trace;

mod support;

/// What a checking command found that an operator must act on (stuck
/// orders): the command worked, the system needs a human. `main` exits
/// with [`NeedsAttention::EXIT_CODE`] for it instead of 1.
#[derive(Debug)]
pub(crate) struct NeedsAttention(pub(crate) String);

impl NeedsAttention {
    /// Not 1 (the command failed) nor 2 (clap's usage errors).
    pub(crate) const EXIT_CODE: u8 = 3;
}

impl std::fmt::Display for NeedsAttention {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for NeedsAttention {}
