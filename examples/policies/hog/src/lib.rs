//! A fault-injection policy for tests: `validate` allocates (and touches) memory until an
//! allocation fails, so only the host's memory limit ends the call; a failed allocation
//! aborts, which the host sees as a trap.

use skiff_policy_sdk::{Policy, Request, Value, Verdict};

struct Hog;

impl Policy for Hog {
    fn validate(_request: &Request, _settings: &Value) -> Verdict {
        let mut held: Vec<Vec<u8>> = Vec::new();
        loop {
            // 1 MiB at a time, each byte written, so every page is really committed.
            held.push(std::hint::black_box(vec![0xa5; 1 << 20]));
        }
    }
}

skiff_policy_sdk::export_policy!(Hog);
