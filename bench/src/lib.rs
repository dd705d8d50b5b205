//! The harness Skiff's benchmark programs share: a `skiff server` launcher ([`server`]),
//! latency percentiles and targets ([`stats`]), readers of a process's figures in `/proc`
//! ([`procfs`]) and guards for the child processes a benchmark starts ([`process`]).
//!
//! The programs themselves are the `skiff-bench-*` binaries in `src/bin`; each starts what it
//! measures, prints a table and cleans up after itself. Errors are `anyhow`: this library only
//! serves those binaries (and the end-to-end tests' `/proc` readings), which print them.

pub mod containerd;
pub mod netns;
pub mod oci;
pub mod pods;
pub mod process;
pub mod procfs;
pub mod requests;
pub mod server;
pub mod stats;

pub use server::{NodeWait, Server, ServerBuilder};
pub use stats::{Goal, Latencies, ms, percentile};
