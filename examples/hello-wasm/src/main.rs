//! The smallest Skiff workload: greets, echoes its arguments and `GREETING`, exits 0.

fn main() {
    println!("Hello from Skiff on WebAssembly!");
    let args: Vec<String> = std::env::args().skip(1).collect();
    if !args.is_empty() {
        println!("args: {}", args.join(" "));
    }
    if let Ok(greeting) = std::env::var("GREETING") {
        println!("GREETING={greeting}");
    }
}
