//! `script "CMD ARGS; CMD ARGS; …"`: run several small commands in one guest, in order, so a
//! test pod can say what its container does in one line. Commands: `echo TEXT…`, `env`,
//! `cat PATH`, `write PATH TEXT…`, `rm PATH`, `exists PATH` (stops with 1 when absent),
//! `await PATH` (waits until PATH exists), `sleep SECONDS`, `exit CODE`, `trap` (crashes).

use std::io::Write;
use std::time::Duration;

/// Run `script`; returns the exit code.
pub fn run(script: &str) -> i32 {
    for step in script.split(';').map(str::trim).filter(|s| !s.is_empty()) {
        let mut words = step.split_whitespace();
        let cmd = words.next().unwrap_or("");
        let rest: Vec<&str> = words.collect();
        let arg = |i: usize| rest.get(i).copied().unwrap_or("");
        let code = match cmd {
            "echo" => {
                println!("{}", rest.join(" "));
                0
            }
            "env" => {
                let mut vars: Vec<(String, String)> = std::env::vars().collect();
                vars.sort();
                for (k, v) in vars {
                    println!("{k}={v}");
                }
                0
            }
            "cat" => match std::fs::read_to_string(arg(0)) {
                Ok(text) => {
                    println!("{}", text.trim_end());
                    0
                }
                Err(e) => {
                    eprintln!("cat {}: {e}", arg(0));
                    1
                }
            },
            "write" => match std::fs::write(arg(0), rest[1.min(rest.len())..].join(" ")) {
                Ok(()) => 0,
                Err(e) => {
                    eprintln!("write {}: {e}", arg(0));
                    1
                }
            },
            "rm" => match std::fs::remove_file(arg(0)) {
                Ok(()) => 0,
                Err(e) => {
                    eprintln!("rm {}: {e}", arg(0));
                    1
                }
            },
            "exists" => {
                if std::fs::metadata(arg(0)).is_ok() {
                    0
                } else {
                    return 1;
                }
            }
            "sleep" => {
                let secs: f64 = arg(0).parse().unwrap_or(1.0);
                let _ = std::io::stdout().flush();
                std::thread::sleep(Duration::from_secs_f64(secs));
                0
            }
            "await" => {
                while std::fs::metadata(arg(0)).is_err() {
                    std::thread::sleep(Duration::from_millis(50));
                }
                0
            }
            "exit" => return arg(0).parse().unwrap_or(1),
            "trap" => {
                let _ = std::io::stdout().flush();
                crate::trap_here()
            }
            other => {
                eprintln!("script: unknown command {other:?}");
                return 2;
            }
        };
        let _ = std::io::stdout().flush();
        if code != 0 {
            return code;
        }
    }
    0
}
