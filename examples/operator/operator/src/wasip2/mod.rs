//! What the operator needs to run on wasm32-wasip2 that kube and tokio do not bring: a
//! runtime driven by `wasi:io` pollables ([`reactor`]) and a `wasi:http` transport for
//! kube's `Client` ([`transport`]).

pub mod reactor;
pub mod transport;
