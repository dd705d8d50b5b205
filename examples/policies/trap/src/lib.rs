//! A fault-injection policy for tests: `validate` panics, which on wasm32-wasip2 (panic
//! strategy "abort") ends in an `unreachable` instruction, so the host sees a trap. The SDK
//! logs the panic message through `host::log` first.

use skiff_policy_sdk::{Policy, Request, Value, Verdict};

struct Trap;

impl Policy for Trap {
    fn validate(request: &Request, _settings: &Value) -> Verdict {
        panic!("trap policy: refusing to decide on {} {}", request.operation, request.name);
    }
}

skiff_policy_sdk::export_policy!(Trap);
