//! Fixtures of the crate's tests: pods, namespaces and policies in a line each, and a
//! network namespace of the test's own for the tests that change nftables and addresses.

use std::net::SocketAddr;
use std::time::Duration;

use k8s_openapi::api::core::v1::{Namespace, Pod};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use serde_json::json;

/// A running pod `ns/name` at `ip` on `node`, labelled `pod=<name>`, with the named ports
/// `(name, port)` (TCP).
pub fn pod(ns: &str, name: &str, ip: &str, node: &str, ports: &[(&str, u16)]) -> Pod {
    let ports: Vec<serde_json::Value> =
        ports.iter().map(|(n, p)| json!({"name": n, "containerPort": p})).collect();
    serde_json::from_value(json!({
        "metadata": {"namespace": ns, "name": name, "labels": {"pod": name}},
        "spec": {"nodeName": node, "containers": [{"name": "c", "ports": ports}]},
        "status": {"phase": "Running", "podIP": ip, "podIPs": [{"ip": ip}]},
    }))
    .expect("pod")
}

/// The namespace `name`, labelled `ns=<name>`.
pub fn namespace(name: &str) -> Namespace {
    serde_json::from_value(json!({"metadata": {"name": name, "labels": {"ns": name}}}))
        .expect("namespace")
}

/// The policy `ns/name` with `spec`.
pub fn policy(ns: &str, name: &str, spec: serde_json::Value) -> NetworkPolicy {
    serde_json::from_value(json!({"metadata": {"namespace": ns, "name": name}, "spec": spec}))
        .expect("policy")
}

pub use skiff_nft::testing::{in_netns, run};

/// Whether a TCP connection from `from` (bound as a Wasm pod's socket is) to `to` opens
/// within 300 ms. A packet dropped in the output hook fails the connect at once (EPERM).
pub fn connects(from: &str, to: SocketAddr) -> bool {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
    rt.block_on(async {
        let socket = tokio::net::TcpSocket::new_v4().expect("socket");
        socket.bind(SocketAddr::new(from.parse().expect("from"), 0)).expect("bind");
        matches!(
            tokio::time::timeout(Duration::from_millis(300), socket.connect(to)).await,
            Ok(Ok(_))
        )
    })
}

type Job = Box<dyn FnOnce() + Send>;

/// A thread in a network namespace of its own (a pod's, for the routed tests): jobs sent to
/// it run there. Created from inside [`in_netns`], so nothing reaches the host.
pub struct PodNetns {
    jobs: Option<std::sync::mpsc::Sender<Job>>,
    /// The thread's id: `ip link set DEV netns TID` moves a device into its namespace.
    pub tid: i32,
    handle: Option<std::thread::JoinHandle<()>>,
}

impl PodNetns {
    pub fn new() -> PodNetns {
        let (jobs, rx) = std::sync::mpsc::channel::<Job>();
        let (tid_tx, tid_rx) = std::sync::mpsc::channel();
        let handle = std::thread::spawn(move || {
            // SAFETY: unshare and gettid only concern this thread; no memory is involved.
            #[allow(unsafe_code)]
            let (rc, tid) = unsafe { (libc::unshare(libc::CLONE_NEWNET), libc::gettid()) };
            assert_eq!(rc, 0, "unshare: {}", std::io::Error::last_os_error());
            run("ip", &["link", "set", "lo", "up"]);
            tid_tx.send(tid).expect("send tid");
            for job in rx {
                job();
            }
        });
        let tid = tid_rx.recv().expect("pod namespace thread");
        PodNetns { jobs: Some(jobs), tid, handle: Some(handle) }
    }

    /// Run `f` in the namespace and return what it returns.
    pub fn exec<T: Send + 'static>(&self, f: impl FnOnce() -> T + Send + 'static) -> T {
        let (tx, rx) = std::sync::mpsc::channel();
        let job: Job = Box::new(move || {
            let _ = tx.send(f());
        });
        self.jobs.as_ref().expect("running").send(job).expect("send job");
        rx.recv().expect("the job panicked")
    }
}

impl Drop for PodNetns {
    fn drop(&mut self) {
        self.jobs.take();
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}

/// Wire `pod` to the calling thread's namespace (the node) as a CNI plugin would: a veth
/// pair, `ip/24` inside with the node's end `gateway/24` as default route.
pub fn wire_pod(pod: &PodNetns, name: &str, ip: &str, gateway: &str) {
    let node_end = format!("{name}-host");
    run("ip", &["link", "add", &node_end, "type", "veth", "peer", "name", name]);
    run("ip", &["link", "set", name, "netns", &pod.tid.to_string()]);
    run("ip", &["addr", "add", &format!("{gateway}/24"), "dev", &node_end]);
    run("ip", &["link", "set", &node_end, "up"]);
    let (name, ip, gateway) = (name.to_string(), ip.to_string(), gateway.to_string());
    pod.exec(move || {
        run("ip", &["addr", "add", &format!("{ip}/24"), "dev", &name]);
        run("ip", &["link", "set", &name, "up"]);
        run("ip", &["route", "add", "default", "via", &gateway]);
    });
}

/// A fake API server for [`kube::Client::new`]: lists answer with the objects given at
/// start, and every watch stays open, streaming what [`FakeApi::send`] pushes.
#[derive(Clone, Default)]
pub struct FakeApi {
    state: std::sync::Arc<std::sync::Mutex<FakeState>>,
}

type Watchers = Vec<futures::channel::mpsc::UnboundedSender<bytes::Bytes>>;

#[derive(Default)]
struct FakeState {
    /// Objects by resource (plural).
    lists: std::collections::HashMap<String, Vec<serde_json::Value>>,
    watchers: std::collections::HashMap<String, Watchers>,
}

type FakeBody = http_body_util::combinators::UnsyncBoxBody<bytes::Bytes, std::convert::Infallible>;

impl FakeApi {
    /// Serve `objects` in the lists of `resource` (`pods`, `namespaces`, `networkpolicies`).
    pub fn with(self, resource: &str, objects: Vec<serde_json::Value>) -> FakeApi {
        self.state.lock().expect("fake api").lists.insert(resource.into(), objects);
        self
    }

    /// Tell every open watch of `resource` the event `kind` (`ADDED`, `DELETED` …) of `object`.
    pub fn send(&self, resource: &str, kind: &str, object: serde_json::Value) {
        let line = format!("{}\n", json!({"type": kind, "object": object}));
        let mut state = self.state.lock().expect("fake api");
        for w in state.watchers.entry(resource.into()).or_default() {
            let _ = w.unbounded_send(bytes::Bytes::from(line.clone()));
        }
    }

    /// How many watches of `resource` are open.
    pub fn watches(&self, resource: &str) -> usize {
        let state = self.state.lock().expect("fake api");
        state.watchers.get(resource).map_or(0, |w| w.iter().filter(|w| !w.is_closed()).count())
    }

    pub fn client(&self) -> kube::Client {
        use futures::StreamExt;
        use http_body_util::BodyExt;
        let api = self.clone();
        let service = tower::service_fn(move |req: http::Request<kube::client::Body>| {
            let api = api.clone();
            async move {
                let resource = req.uri().path().rsplit('/').next().unwrap_or_default().to_string();
                let watch = req.uri().query().is_some_and(|q| q.contains("watch=true"));
                let body: FakeBody = if watch {
                    let (tx, rx) = futures::channel::mpsc::unbounded();
                    api.state
                        .lock()
                        .expect("fake api")
                        .watchers
                        .entry(resource)
                        .or_default()
                        .push(tx);
                    let frames = rx.map(|b| Ok(hyper::body::Frame::data(b)));
                    http_body_util::StreamBody::new(frames).boxed_unsync()
                } else {
                    let items = api.state.lock().expect("fake api").lists.get(&resource).cloned();
                    let list = json!({"apiVersion": "v1", "kind": "List",
                                      "metadata": {"resourceVersion": "1"},
                                      "items": items.unwrap_or_default()});
                    http_body_util::Full::new(bytes::Bytes::from(list.to_string())).boxed_unsync()
                };
                let resp = http::Response::builder()
                    .status(200)
                    .header("content-type", "application/json")
                    .body(body)
                    .expect("response");
                Ok::<_, std::convert::Infallible>(resp)
            }
        });
        kube::Client::new(service, "default")
    }
}
