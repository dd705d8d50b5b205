//! The wasmtime container runtime: runs pods' containers as WebAssembly guests (WASI p1 core
//! modules and p2 components) in-process, from a node-local image store.
//!
//! - [`images`]: the image store `skiff images import` fills (no registry).
//! - [`WasmRuntime`]: the [`skiff_runtime_core::ContainerRuntime`] implementation — one
//!   engine, programs compiled once per digest, a store per container with memory and CPU
//!   interruption limits, stdout/stderr into CRI log files.

mod engine;
mod http;
pub mod images;
mod log;
mod lookup;
mod mounts;
mod runtime;

pub use engine::{EngineOptions, EpochTicker};
pub use images::{ImageError, ImageStore, ImageSummary, ImportedImage, ResolvedImage};
pub use runtime::{
    EXIT_CANNOT_RUN, EXIT_KILLED, EXIT_TRAP, HANDLER, WasmRuntime, WasmRuntimeOptions,
};

#[cfg(test)]
mod tests;
