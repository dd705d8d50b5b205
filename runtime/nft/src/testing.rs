//! Tests that change nftables, addresses or routes run in a network namespace of their own,
//! so the host's are never touched.

/// Run `f` in a new network namespace (its thread's own: processes it starts and threads it
/// spawns inherit it) with `lo` up. `None` (with the reason printed) when this machine cannot:
/// no `nft`, or no right to create a namespace; under CI=true that is a failure instead.
pub fn in_netns<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> Option<T> {
    let skip = |why: String| {
        if std::env::var("CI").as_deref() == Ok("true") {
            panic!("{why}");
        }
        eprintln!("skipped: {why}");
    };
    match std::process::Command::new(crate::NFT).arg("--version").output() {
        Ok(o) if o.status.success() => {}
        _ => {
            skip("nft is not installed".into());
            return None;
        }
    }
    let handle = std::thread::spawn(move || {
        // SAFETY: unshare only changes this thread's namespaces; no memory is involved.
        #[allow(unsafe_code)]
        let rc = unsafe { libc::unshare(libc::CLONE_NEWNET) };
        if rc != 0 {
            return Err(format!(
                "cannot create a network namespace: {}",
                std::io::Error::last_os_error()
            ));
        }
        let up = std::process::Command::new("ip").args(["link", "set", "lo", "up"]).status();
        if !up.is_ok_and(|s| s.success()) {
            return Err("cannot bring lo up in the test namespace".into());
        }
        Ok(f())
    });
    match handle.join() {
        Ok(Ok(v)) => Some(v),
        Ok(Err(why)) => {
            skip(why);
            None
        }
        Err(panic) => std::panic::resume_unwind(panic),
    }
}

/// `cmd args`, which must succeed; its stdout.
pub fn run(cmd: &str, args: &[&str]) -> String {
    let out = std::process::Command::new(cmd).args(args).output().expect("spawn");
    assert!(out.status.success(), "{cmd} {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}
