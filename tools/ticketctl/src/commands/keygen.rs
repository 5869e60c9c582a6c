//! `ticketctl keygen`: the development identity provider's key pair.
//!
//! ```text
//! ticketctl keygen --dir .keys            # .keys/signing.pem (0600) + .keys/jwks.json
//! ```
//!
//! The services trust `jwks.json` (`AUTH_JWKS_PATH`); the commands that
//! call them (`seed`, `demo`, `token`) sign with `signing.pem`
//! (`AUTH_SIGNING_KEY`, [`super::support::SigningKey`]). In compose a
//! one-shot `keygen` step writes both into a volume on first start;
//! nothing private is ever committed. A real deployment replaces all of
//! this with its identity provider (`AUTH_JWKS_URL`) and never lets a tool
//! hold its private key.

use std::path::PathBuf;

use anyhow::Context as _;
use clap::Args;
use httpkit::auth::dev::{Issuer, JWKS_FILE, SIGNING_KEY_FILE};

/// Options of `keygen`.
#[derive(Debug, Args)]
pub(crate) struct KeygenArgs {
    /// Where to write `signing.pem` and `jwks.json`. An existing key is
    /// kept (its `jwks.json` is rewritten), so tokens stay valid.
    #[arg(long, default_value = ".keys")]
    dir: PathBuf,
}

/// Writes a key pair, or keeps the one there.
pub(crate) fn run(args: &KeygenArgs) -> anyhow::Result<()> {
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
