//! `ticketctl keygen` and `ticketctl token`: the development identity
//! provider, and the tokens the other commands send.
//!
//! ```text
//! ticketctl keygen --dir .keys            # .keys/signing.pem (0600) + .keys/jwks.json
//! ticketctl token --customer <uuid>       # a customer's bearer token
//! ticketctl token --operator              # an operator's (role: operator)
//! ```
//!
//! The services trust `jwks.json` (`AUTH_JWKS_PATH`); the commands that
//! call them (`seed`, `demo`, `token`) sign with `signing.pem`
//! (`AUTH_SIGNING_KEY`). In compose a one-shot `keygen` step writes both
//! into a volume on first start; nothing private is ever committed. A real
//! deployment replaces all of this with its identity provider
//! (`AUTH_JWKS_URL`) and never lets a tool hold its private key.

use std::path::PathBuf;

use anyhow::Context as _;
use clap::Args;
use httpkit::auth::dev::{Issuer, JWKS_FILE, SIGNING_KEY_FILE, TempKeys, TokenRequest};
use uuid::Uuid;

/// Options of `keygen`.
#[derive(Debug, Args)]
pub(crate) struct KeygenArgs {
    /// Where to write `signing.pem` and `jwks.json`. An existing key is
    /// kept (its `jwks.json` is rewritten), so tokens stay valid.
    #[arg(long, default_value = ".keys")]
    dir: PathBuf,
}

/// The private key the commands sign with.
#[derive(Debug, Args)]
pub(crate) struct SigningKey {
    /// The development issuer's private key, as `keygen` wrote it.
    #[arg(
        long = "signing-key",
        env = "AUTH_SIGNING_KEY",
        default_value = ".keys/signing.pem"
    )]
    path: PathBuf,
}

impl SigningKey {
    /// The issuer, or an error that says how to make one.
    pub(crate) fn issuer(&self) -> anyhow::Result<Issuer> {
        Issuer::from_file(&self.path).with_context(|| {
            format!(
                "cannot read the signing key {}: run `ticketctl keygen` first \
                 (or set AUTH_SIGNING_KEY)",
                self.path.display()
            )
        })
    }

    /// An operator's token.
    pub(crate) fn operator_token(&self) -> anyhow::Result<String> {
        Ok(self.issuer()?.mint(&TokenRequest::operator("ticketctl"))?)
    }

    /// `customer`'s token.
    pub(crate) fn customer_token(&self, customer: Uuid) -> anyhow::Result<String> {
        Ok(self.issuer()?.mint(&TokenRequest::customer(customer))?)
    }
}

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

/// Writes a key pair, or keeps the one there.
pub(crate) fn keygen(args: &KeygenArgs) -> anyhow::Result<()> {
    let (issuer, created) = Issuer::load_or_create(&args.dir)
        .with_context(|| format!("cannot write keys into {}", args.dir.display()))?;
    let verb = if created { "created" } else { "kept" };
    println!(
        "{verb} {} (key id {})",
        args.dir.join(SIGNING_KEY_FILE).display(),
        issuer.kid()
    );
    println!("wrote   {}", args.dir.join(JWKS_FILE).display());
    Ok(())
}

/// Prints a signed token.
pub(crate) fn token(args: &TokenArgs) -> anyhow::Result<()> {
    let mut request = match args.customer {
        Some(customer) => TokenRequest::customer(customer),
        None => TokenRequest::operator("ticketctl"),
    };
    request.ttl_secs = args.ttl_secs;
    println!("{}", args.key.issuer()?.mint(&request)?);
    Ok(())
}

/// A throwaway key pair for the benchmarks' in-process services.
pub(crate) struct ScratchKeys(TempKeys);

impl ScratchKeys {
    pub(crate) fn new() -> anyhow::Result<Self> {
        Ok(Self(TempKeys::new()?))
    }

    /// `AUTH_JWKS_PATH` for a service that trusts these keys.
    pub(crate) fn jwks_path(&self) -> String {
        self.0.jwks_path().display().to_string()
    }

    pub(crate) fn operator_token(&self) -> anyhow::Result<String> {
        Ok(self.0.issuer().mint(&TokenRequest::operator("bench"))?)
    }

    pub(crate) fn customer_token(&self, customer: Uuid) -> anyhow::Result<String> {
        Ok(self.0.issuer().mint(&TokenRequest::customer(customer))?)
    }
}
