//! `ticketctl token`: a bearer token from the development issuer, for
//! calling the services by hand (`curl`, the operator routes).
//!
//! ```text
//! ticketctl token --customer <uuid>       # a customer's bearer token
//! ticketctl token --operator              # an operator's (role: operator)
//! ```
//!
//! It signs with the key `keygen` wrote (see [`super::keygen`]).

use clap::Args;
use httpkit::auth::dev::TokenRequest;
use uuid::Uuid;

use super::support::SigningKey;

/// Options of `token`.
#[derive(Debug, Args)]
pub(crate) struct TokenArgs {
    /// A customer's token: `sub` is this customer id.
    #[arg(
        long,
        required_unless_present = "operator",
        conflicts_with = "operator"
    )]
    customer: Option<Uuid>,
    /// An operator's token (`role: operator`).
    #[arg(long)]
    operator: bool,
    /// Seconds until it expires.
    #[arg(long, default_value_t = 3600)]
    ttl_secs: i64,
    #[command(flatten)]
    key: SigningKey,
}

/// Prints a signed token.
pub(crate) fn run(args: &TokenArgs) -> anyhow::Result<()> {
    let mut request = match args.customer {
        Some(customer) => TokenRequest::customer(customer),
        None => TokenRequest::operator("ticketctl"),
    };
    request.ttl_secs = args.ttl_secs;
    println!("{}", args.key.issuer()?.mint(&request)?);
    Ok(())
}
