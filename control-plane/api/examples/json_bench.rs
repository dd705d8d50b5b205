//! What writing JSON as kube-apiserver does costs: microseconds to encode one Pod and one
//! Deployment with serde_json (sorted keys) and with `gojson` (Go's field order), and to
//! normalize them on the way in.
//!
//! `cargo run --release -p skiff-api --example json_bench`

use std::hint::black_box as bb;
use std::time::{Duration, Instant};

fn time(rounds: u32, mut f: impl FnMut()) -> Duration {
    let started = Instant::now();
    for _ in 0..rounds {
        f();
    }
    started.elapsed() / rounds
}

fn main() {
    let pod: serde_json::Value =
        serde_json::from_str(include_str!("../src/protobuf/testdata/pod.json")).expect("pod");
    let deployment: serde_json::Value = serde_json::from_str(include_str!(
        "../src/protobuf/testdata/kube-v1.35/apps.v1.Deployment.json"
    ))
    .expect("deployment");
    let rounds = 20_000u32;
    println!(
        "{:<12} {:>10} {:>10} {:>10} {:>10} {:>8}",
        "object", "serde_json", "gojson", "stored", "normalize", "bytes"
    );
    for (name, obj) in [("Pod", &pod), ("Deployment", &deployment)] {
        let serde = time(rounds, || {
            bb(serde_json::to_vec(bb(obj)).ok());
        });
        let go = time(rounds, || {
            bb(skiff_api::gojson::to_vec(bb(obj)));
        });
        let stored = time(rounds, || {
            bb(skiff_api::gojson::to_vec_stored(bb(obj)));
        });
        let normalize = time(rounds, || {
            let mut o = obj.clone();
            bb(skiff_api::protobuf::normalize(&mut o).ok());
        }) - time(rounds, || {
            bb(obj.clone());
        });
        println!(
            "{name:<12} {:>8.2}µs {:>8.2}µs {:>8.2}µs {:>8.2}µs {:>8}",
            serde.as_secs_f64() * 1e6,
            go.as_secs_f64() * 1e6,
            stored.as_secs_f64() * 1e6,
            normalize.as_secs_f64() * 1e6,
            skiff_api::gojson::to_vec(obj).len()
        );
    }
}
