//! nftables transactions through the `nft` binary (Debian's `nftables` package): one
//! `nft -f -` per transaction, so all of it applies or none. The node proxy and the
//! NetworkPolicy engine each keep one table and send only what changed.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::Write as _;
use std::process::{Command, Stdio};

#[cfg(feature = "test-util")]
pub mod testing;

/// The `nft` program.
pub const NFT: &str = "nft";

#[derive(Debug, thiserror::Error)]
pub enum NftError {
    /// The `nft` binary is not installed: permanent until it is.
    #[error("nft not found ({program}): {source}")]
    Missing {
        program: String,
        #[source]
        source: std::io::Error,
    },
    /// Starting nft or talking to it failed; retrying may work.
    #[error("running nft: {0}")]
    Run(#[source] std::io::Error),
    /// The kernel or nft refused the transaction (no privilege, no nf_tables, a bug in the
    /// rules); nothing of it was applied.
    #[error("nft refused the transaction: {stderr}")]
    Rejected { stderr: String },
}

impl NftError {
    /// Whether retrying the same transaction may succeed.
    pub fn is_retryable(&self) -> bool {
        matches!(self, NftError::Run(_))
    }
}

/// Run one transaction through `nft -f -`: all of it applies, or none.
pub fn apply(text: &str) -> Result<(), NftError> {
    let mut child = Command::new(NFT)
        .args(["-f", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => NftError::Missing { program: NFT.into(), source: e },
            _ => NftError::Run(e),
        })?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin.write_all(text.as_bytes()).map_err(NftError::Run)?;
    }
    let out = child.wait_with_output().map_err(NftError::Run)?;
    if out.status.success() {
        Ok(())
    } else {
        Err(NftError::Rejected { stderr: String::from_utf8_lossy(&out.stderr).trim().to_string() })
    }
}

/// Delete table `family table` (`ip`, `inet`, …); absent is fine.
pub fn delete_table(family: &str, table: &str) -> Result<(), NftError> {
    apply(&format!("add table {family} {table}\ndelete table {family} {table}\n"))
}

/// The commands that turn table `t`'s chains `old` into `new` (name → rules), appended to the
/// parts of a transaction that must run in that order: flushes, then deletions (after the
/// elements that jump to them are gone), then new chains, then their rules.
pub fn diff_chains(
    t: &str,
    old: &BTreeMap<String, Vec<String>>,
    new: &BTreeMap<String, Vec<String>>,
    flush: &mut String,
    delete: &mut String,
    add_chains: &mut String,
    add_rules: &mut String,
) {
    for (name, rules) in old {
        match new.get(name) {
            None => {
                let _ = writeln!(flush, "flush chain {t} {name}");
                let _ = writeln!(delete, "delete chain {t} {name}");
            }
            Some(now) if now != rules => {
                let _ = writeln!(flush, "flush chain {t} {name}");
                for rule in now {
                    let _ = writeln!(add_rules, "add rule {t} {name} {rule}");
                }
            }
            Some(_) => {}
        }
    }
    for (name, rules) in new {
        if !old.contains_key(name) {
            let _ = writeln!(add_chains, "add chain {t} {name}");
            for rule in rules {
                let _ = writeln!(add_rules, "add rule {t} {name} {rule}");
            }
        }
    }
}
