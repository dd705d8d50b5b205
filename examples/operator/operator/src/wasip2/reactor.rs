//! `wasi:io` pollables as tokio wake-ups, for a current-thread tokio runtime on wasm32-wasip2.
//!
//! Tokio's runtime on WASI has timers but no I/O driver that knows `wasi:io/poll`; a
//! `wasi:http` response or body is only ready when its pollable says so. A future awaiting a
//! pollable registers it here ([`Readiness`]); the runtime's park hook ([`park`], installed
//! with `on_thread_park`) blocks in `wasi:io/poll.poll` on every registered pollable plus a
//! clock pollable of [`MAX_PARK`], wakes the futures whose pollables are ready, and wakes the
//! [`ticker`] task so tokio never blocks on its own (its own park cannot see pollables).
//! Tokio's timers therefore fire up to [`MAX_PARK`] late. I/O readiness is not delayed: the
//! poll returns as soon as a pollable is ready.
//!
//! Single-threaded by construction (wasip2 has no threads); the mutex only satisfies `Sync`.

use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Mutex, MutexGuard};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use wasi::io::poll::Pollable;

/// The longest the runtime sleeps in one park: how late a tokio timer may fire (the
/// operator's are requeues and backoffs of seconds), and how often an idle operator wakes.
/// At 50 ms an idle operator cost its node about 1% of a core; at 250 ms a fifth of that.
pub const MAX_PARK: Duration = Duration::from_millis(250);

struct Waiting {
    pollable: Pollable,
    waker: Waker,
    ready: bool,
}

#[derive(Default)]
struct Registry {
    next_id: u64,
    waiting: BTreeMap<u64, Waiting>,
    ticker: Option<Waker>,
}

static REGISTRY: Mutex<Registry> =
    Mutex::new(Registry { next_id: 0, waiting: BTreeMap::new(), ticker: None });

fn registry() -> MutexGuard<'static, Registry> {
    // A panic while holding it cannot leave the map inconsistent (plain inserts and removes).
    REGISTRY.lock().unwrap_or_else(|e| e.into_inner())
}

/// A future ready when its pollable is. Dropping it unregisters (and drops) the pollable, so a
/// pollable never outlives the future, and the stream it watches can be dropped right after.
pub struct Readiness {
    state: State,
}

enum State {
    New(Pollable),
    Registered(u64),
    Done,
}

impl Readiness {
    pub fn new(pollable: Pollable) -> Readiness {
        Readiness { state: State::New(pollable) }
    }
}

impl Future for Readiness {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        match std::mem::replace(&mut self.state, State::Done) {
            State::Done => Poll::Ready(()),
            State::New(pollable) => {
                if pollable.ready() {
                    return Poll::Ready(());
                }
                let mut registry = registry();
                let id = registry.next_id;
                registry.next_id += 1;
                registry
                    .waiting
                    .insert(id, Waiting { pollable, waker: cx.waker().clone(), ready: false });
                self.state = State::Registered(id);
                Poll::Pending
            }
            State::Registered(id) => {
                let mut registry = registry();
                match registry.waiting.get_mut(&id) {
                    Some(w) if !w.ready => {
                        w.waker.clone_from(cx.waker());
                        self.state = State::Registered(id);
                        Poll::Pending
                    }
                    _ => {
                        registry.waiting.remove(&id);
                        Poll::Ready(())
                    }
                }
            }
        }
    }
}

impl Drop for Readiness {
    fn drop(&mut self) {
        if let State::Registered(id) = self.state {
            // Dropped outside the lock: a pollable's drop is a host call.
            let removed = registry().waiting.remove(&id);
            drop(removed);
        }
    }
}

/// The runtime's park hook: block until a registered pollable is ready or [`MAX_PARK`]
/// passes, then wake the waiting futures and the ticker.
pub fn park() {
    let mut registry = registry();
    let timer = wasi::clocks::monotonic_clock::subscribe_duration(MAX_PARK.as_nanos() as u64);
    let (ids, mut pollables): (Vec<u64>, Vec<&Pollable>) =
        registry.waiting.iter().filter(|(_, w)| !w.ready).map(|(id, w)| (*id, &w.pollable)).unzip();
    pollables.push(&timer);
    let ready = wasi::io::poll::poll(&pollables);
    drop(pollables);
    let mut wakers = Vec::new();
    for index in ready {
        let Some(id) = ids.get(index as usize) else { continue };
        if let Some(w) = registry.waiting.get_mut(id) {
            w.ready = true;
            wakers.push(w.waker.clone());
        }
    }
    wakers.extend(registry.ticker.clone());
    drop(registry);
    drop(timer);
    for waker in wakers {
        waker.wake();
    }
}

/// A task that never finishes: [`park`] wakes it every time so tokio's own park is always a
/// non-blocking one (it runs due timers and returns). Spawn it once on the runtime.
pub async fn ticker() {
    std::future::poll_fn(|cx: &mut Context<'_>| {
        registry().ticker = Some(cx.waker().clone());
        Poll::<()>::Pending
    })
    .await
}

/// A current-thread runtime with timers, driven by [`park`]. Spawn [`ticker`] on it.
pub fn runtime() -> std::io::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread().enable_time().on_thread_park(park).build()
}
