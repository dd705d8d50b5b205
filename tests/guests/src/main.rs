//! A guest with one behaviour per first argument, for the runtime's tests:
//! `sleep SECONDS`, `exit CODE`, `trap`, `oom`, `spin`, `print N [sleep SECONDS]`,
//! `connect HOST:PORT` (a TCP connection through WASI sockets: exit 0 when it opens, 1 when
//! refused; wasip2 only), `stdin` (read standard input to its end, then print how much came
//! and what it was, upper-cased), `ticks` (print a numbered line every 200 ms), `kube-get
//! PATH` (call the api server in-cluster as the pod's service account; wasip2 and native
//! builds only, see kube.rs).

mod kube;
mod script;

use std::hint::black_box;
use std::io::Write;
use std::process::ExitCode;
use std::time::Duration;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().collect();
    let mode = args.get(1).map(String::as_str).unwrap_or("");
    let arg = |what: &str| -> u64 {
        match args.get(2).map(|s| s.parse::<u64>()) {
            Some(Ok(n)) => n,
            _ => {
                eprintln!("usage: {mode} {what}");
                std::process::exit(2);
            }
        }
    };
    match mode {
        "sleep" => {
            let secs = arg("SECONDS");
            println!("sleeping {secs}");
            std::thread::sleep(Duration::from_secs(secs));
            println!("done");
        }
        "exit" => {
            let code = arg("CODE");
            println!("exiting with {code}");
            std::process::exit(code as i32);
        }
        "trap" => {
            println!("about to trap");
            trap_here();
        }
        "oom" => oom(),
        "spin" => {
            println!("spinning");
            let _ = std::io::stdout().flush();
            let mut n: u64 = 0;
            loop {
                n = black_box(n.wrapping_add(1));
            }
        }
        "print" => {
            let n = arg("N");
            for i in 1..=n {
                println!("line {i}");
            }
            // `print N sleep S`: stay alive afterwards, e.g. to follow the logs of a running guest.
            if args.get(3).map(String::as_str) == Some("sleep") {
                let secs = args.get(4).and_then(|s| s.parse().ok()).unwrap_or(3600);
                std::thread::sleep(Duration::from_secs(secs));
            }
        }
        // `script "CMD ARGS; CMD ARGS"` (see script.rs); `exists PATH` exits 0 iff PATH exists.
        "script" => {
            return ExitCode::from(script::run(args.get(2).map(String::as_str).unwrap_or("")) as u8);
        }
        "exists" => {
            return if std::fs::metadata(args.get(2).map(String::as_str).unwrap_or("")).is_ok() {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            };
        }
        // `ticks`: print "tick N" every 200 ms, for ever (for attach).
        "ticks" => {
            for i in 1.. {
                println!("tick {i}");
                let _ = std::io::stdout().flush();
                std::thread::sleep(Duration::from_millis(200));
            }
        }
        "stdin" => {
            let mut input = String::new();
            if let Err(e) = std::io::Read::read_to_string(&mut std::io::stdin(), &mut input) {
                eprintln!("reading stdin: {e}");
                return ExitCode::from(1);
            }
            println!("read {} bytes: {}", input.len(), input.to_uppercase());
        }
        "kube-get" => return kube::run(args.get(2).map(String::as_str).unwrap_or("/api")),
        "connect" => {
            let to = args.get(2).map(String::as_str).unwrap_or("");
            return match std::net::TcpStream::connect(to) {
                Ok(_) => {
                    println!("connected to {to}");
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    println!("cannot connect to {to}: {e}");
                    ExitCode::from(1)
                }
            };
        }
        other => {
            eprintln!(
                "unknown mode {other:?}; want sleep|exit|trap|oom|spin|print|script|exists|connect|stdin|ticks|kube-get"
            );
            return ExitCode::from(2);
        }
    }
    ExitCode::SUCCESS
}

#[inline(never)]
fn trap_here() -> ! {
    #[cfg(target_arch = "wasm32")]
    core::arch::wasm32::unreachable();
    #[cfg(not(target_arch = "wasm32"))]
    std::process::abort();
}

fn oom() -> ! {
    const MIB: usize = 1 << 20;
    let mut hoard: Vec<Vec<u8>> = Vec::new();
    loop {
        let mut chunk = vec![0u8; MIB];
        // Touch every page so the memory is really used, not just reserved.
        for i in (0..MIB).step_by(4096) {
            chunk[i] = black_box(1);
        }
        hoard.push(chunk);
        if hoard.len() % 16 == 0 {
            println!("allocated {} MiB", hoard.len());
        }
    }
}
