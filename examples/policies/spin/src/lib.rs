//! A fault-injection policy for tests: `validate` never returns, so only the host's time or
//! fuel limit (epoch interruption, fuel) ends the call.

use skiff_policy_sdk::{Policy, Request, Value, Verdict};

struct Spin;

impl Policy for Spin {
    fn validate(_request: &Request, _settings: &Value) -> Verdict {
        let mut turns: u64 = 0;
        loop {
            // Opaque to the optimiser, so the loop stays a loop doing work.
            turns = std::hint::black_box(turns.wrapping_add(1));
        }
    }
}

skiff_policy_sdk::export_policy!(Spin);
