//! Rough speed of the protobuf codec: microseconds to encode and decode one Pod.
//!
//! `cargo run --release -p skiff-api --example protobuf_bench`

use std::time::Instant;

fn main() {
    let pod: serde_json::Value =
        serde_json::from_str(include_str!("../src/protobuf/testdata/pod.json")).expect("pod");
    let rounds = 20_000u32;
    let bytes = skiff_api::protobuf::encode(&pod).expect("encode");
    let json_len = serde_json::to_vec(&pod).map(|v| v.len()).unwrap_or(0);

    let started = Instant::now();
    for _ in 0..rounds {
        std::hint::black_box(skiff_api::protobuf::encode(std::hint::black_box(&pod)).ok());
    }
    let encode = started.elapsed() / rounds;

    let started = Instant::now();
    for _ in 0..rounds {
        std::hint::black_box(skiff_api::protobuf::decode(std::hint::black_box(&bytes)).ok());
    }
    let decode = started.elapsed() / rounds;

    let started = Instant::now();
    for _ in 0..rounds {
        let v: serde_json::Value = serde_json::from_slice(std::hint::black_box(
            &serde_json::to_vec(&pod).unwrap_or_default(),
        ))
        .unwrap_or_default();
        std::hint::black_box(v);
    }
    let json = started.elapsed() / rounds;

    println!(
        "pod: {} protobuf bytes ({json_len} as JSON); encode {:.1} µs, decode {:.1} µs; \
         JSON serialize+parse for comparison {:.1} µs",
        bytes.len(),
        encode.as_secs_f64() * 1e6,
        decode.as_secs_f64() * 1e6,
        json.as_secs_f64() * 1e6,
    );
}
