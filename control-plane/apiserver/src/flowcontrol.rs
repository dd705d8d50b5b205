//! API Priority and Fairness (flowcontrol.apiserver.k8s.io/v1), as kube-apiserver runs it in
//! outline: every request is classified by the FlowSchemas (lowest `matchingPrecedence`, then
//! name; the first that matches) to a PriorityLevelConfiguration. An Exempt level runs at once;
//! a Limited one gets its share of the server's 600 seats (`ceil(600 × shares / Σ shares)`)
//! and waits at most 15 s in a bounded queue (`queues × queueLengthLimit`; none for `Reject`).
//! A request that cannot wait gets kube's plain-text 429 with `Retry-After`. The answer carries
//! `X-Kubernetes-PF-FlowSchema-UID` and `X-Kubernetes-PF-PriorityLevel-UID`.
//!
//! Not done: fair queuing between flows (shuffle sharding), borrowing between levels, the
//! dynamic Retry-After. The bootstrap configuration (mandatory and suggested objects) is kept
//! as kube's config producer keeps it, and each FlowSchema's `Dangling` condition as its
//! consumer writes it.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use skiff_auth::{Attributes, UserInfo};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::State;

/// The server's total seats: kube's `--max-requests-inflight` 400 + mutating 200.
const SERVER_SEATS: usize = 600;
/// How long a request may wait for a seat (kube: request timeout / 4).
const QUEUE_WAIT: Duration = Duration::from_secs(15);
/// How often the configuration is re-read.
const RESYNC: Duration = Duration::from_secs(2);
/// Every how many re-reads the bootstrap objects are ensured (kube: once a minute).
const ENSURE_EVERY: u32 = 30;
const AUTOUPDATE: &str = "apf.kubernetes.io/autoupdate-spec";
const MANDATORY: &[(&str, &str)] = &[
    ("PriorityLevelConfiguration", "exempt"),
    ("PriorityLevelConfiguration", "catch-all"),
    ("FlowSchema", "exempt"),
    ("FlowSchema", "catch-all"),
];

/// kube's bootstrap configuration: mandatory and suggested levels and schemas.
fn bootstrap_objects() -> Vec<Value> {
    serde_json::from_str(include_str!("flowcontrol-bootstrap.json"))
        .expect("flowcontrol-bootstrap.json is JSON")
}

/// One level's seats and queue.
struct Level {
    uid: String,
    exempt: bool,
    /// How many seats `seats` was made with.
    seat_count: usize,
    seats: Arc<Semaphore>,
    queue_cap: usize,
    waiting: AtomicUsize,
}

/// A request waiting in a level's queue; leaving (however) frees its place.
struct Queued<'a>(&'a Level);

impl<'a> Queued<'a> {
    /// A place in `level`'s queue, if one is free.
    fn join(level: &'a Level) -> Option<Queued<'a>> {
        let mut n = level.waiting.load(Ordering::SeqCst);
        loop {
            if n >= level.queue_cap {
                return None;
            }
            match level.waiting.compare_exchange(n, n + 1, Ordering::SeqCst, Ordering::SeqCst) {
                Ok(_) => return Some(Queued(level)),
                Err(now) => n = now,
            }
        }
    }
}

impl Drop for Queued<'_> {
    fn drop(&mut self) {
        self.0.waiting.fetch_sub(1, Ordering::SeqCst);
    }
}

struct Schema {
    name: String,
    uid: String,
    precedence: i64,
    level: String,
    rules: Vec<Value>,
}

/// The configuration requests are classified by, rebuilt when the objects change.
#[derive(Default)]
struct Snapshot {
    schemas: Vec<Schema>,
    levels: HashMap<String, Arc<Level>>,
    /// The objects' resourceVersions the snapshot was built from.
    version: String,
}

/// The APF state of one api server.
#[derive(Default)]
pub struct Apf {
    snapshot: RwLock<Arc<Snapshot>>,
}

/// A request let through: holds its seat until dropped; its headers go on the answer.
pub struct Ticket {
    _seat: Option<OwnedSemaphorePermit>,
    schema_uid: String,
    level_uid: String,
}

impl Ticket {
    pub fn stamp(&self, resp: &mut Response) {
        let h = resp.headers_mut();
        for (name, v) in [
            ("x-kubernetes-pf-flowschema-uid", &self.schema_uid),
            ("x-kubernetes-pf-prioritylevel-uid", &self.level_uid),
        ] {
            if let Ok(v) = HeaderValue::from_str(v) {
                h.insert(name, v);
            }
        }
    }
}

/// kube's 429: plain text, not a Status.
fn too_many(schema_uid: &str, level_uid: &str) -> Response {
    let mut resp = (
        StatusCode::TOO_MANY_REQUESTS,
        [
            (header::CONTENT_TYPE, "text/plain; charset=utf-8"),
            (header::RETRY_AFTER, "1"),
            (header::HeaderName::from_static("x-content-type-options"), "nosniff"),
        ],
        "Too many requests, please try again later.\n",
    )
        .into_response();
    Ticket { _seat: None, schema_uid: schema_uid.into(), level_uid: level_uid.into() }
        .stamp(&mut resp);
    resp
}

impl Apf {
    /// Classify a request and wait for its seat; `Err` is the 429 to send. Long-running
    /// requests (watches, exec, logs, proxies) are classified but hold no seat.
    pub async fn admit(
        &self,
        user: &UserInfo,
        attrs: &Attributes,
        long_running: bool,
    ) -> Result<Ticket, Response> {
        let snap = self.snapshot.read().unwrap_or_else(|e| e.into_inner()).clone();
        let Some(schema) = snap.schemas.iter().find(|s| matches_schema(s, user, attrs)) else {
            return Ok(Ticket { _seat: None, schema_uid: String::new(), level_uid: String::new() });
        };
        let Some(level) = snap.levels.get(&schema.level) else {
            return Ok(Ticket {
                _seat: None,
                schema_uid: schema.uid.clone(),
                level_uid: String::new(),
            });
        };
        let ticket = |seat| Ticket {
            _seat: seat,
            schema_uid: schema.uid.clone(),
            level_uid: level.uid.clone(),
        };
        if level.exempt || long_running {
            return Ok(ticket(None));
        }
        if let Ok(seat) = level.seats.clone().try_acquire_owned() {
            return Ok(ticket(Some(seat)));
        }
        // Counted while it waits; the guard uncounts it however the wait ends, a client that
        // goes away (the future dropped) included.
        let Some(_queued) = Queued::join(level) else {
            return Err(too_many(&schema.uid, &level.uid));
        };
        let seat = tokio::time::timeout(QUEUE_WAIT, level.seats.clone().acquire_owned()).await;
        match seat {
            Ok(Ok(seat)) => Ok(ticket(Some(seat))),
            _ => Err(too_many(&schema.uid, &level.uid)),
        }
    }

    /// Rebuild the snapshot from the stored objects when they changed.
    fn rebuild(&self, schemas: &[Value], levels: &[Value]) {
        let version: String = schemas
            .iter()
            .chain(levels)
            .map(|o| {
                format!(
                    "{}@{};",
                    o.pointer("/metadata/uid").and_then(Value::as_str).unwrap_or(""),
                    o.pointer("/metadata/resourceVersion").and_then(Value::as_str).unwrap_or("")
                )
            })
            .collect();
        if self.snapshot.read().unwrap_or_else(|e| e.into_inner()).version == version {
            return;
        }
        let shares: i64 = levels
            .iter()
            .map(|l| {
                l.pointer("/spec/limited/nominalConcurrencyShares")
                    .or_else(|| l.pointer("/spec/exempt/nominalConcurrencyShares"))
                    .and_then(Value::as_i64)
                    .unwrap_or(0)
            })
            .sum();
        let old = self.snapshot.read().unwrap_or_else(|e| e.into_inner()).clone();
        let mut by_name = HashMap::new();
        for l in levels {
            let name = text(l, "/metadata/name").to_string();
            let exempt = text(l, "/spec/type") == "Exempt";
            let share = l
                .pointer("/spec/limited/nominalConcurrencyShares")
                .and_then(Value::as_i64)
                .unwrap_or(0);
            let seats = if shares > 0 {
                ((SERVER_SEATS as i64 * share + shares - 1) / shares).max(1) as usize
            } else {
                1
            };
            let queue_cap =
                match l.pointer("/spec/limited/limitResponse/type").and_then(Value::as_str) {
                    Some("Queue") => {
                        let q = |k: &str| {
                            l.pointer(&format!("/spec/limited/limitResponse/queuing/{k}"))
                                .and_then(Value::as_u64)
                                .unwrap_or(0) as usize
                        };
                        q("queues") * q("queueLengthLimit")
                    }
                    _ => 0,
                };
            let uid = text(l, "/metadata/uid").to_string();
            // A level whose limits did not change keeps its seats and queue: requests holding
            // or waiting for them are still counted.
            let same = old.levels.get(&name).filter(|o| {
                o.uid == uid
                    && o.exempt == exempt
                    && o.seat_count == seats
                    && o.queue_cap == queue_cap
            });
            let level = match same {
                Some(o) => o.clone(),
                None => Arc::new(Level {
                    uid,
                    exempt,
                    seat_count: seats,
                    seats: Arc::new(Semaphore::new(seats)),
                    queue_cap,
                    waiting: AtomicUsize::new(0),
                }),
            };
            by_name.insert(name, level);
        }
        let mut list: Vec<Schema> = schemas
            .iter()
            .filter(|s| by_name.contains_key(text(s, "/spec/priorityLevelConfiguration/name")))
            .map(|s| Schema {
                name: text(s, "/metadata/name").to_string(),
                uid: text(s, "/metadata/uid").to_string(),
                precedence: s
                    .pointer("/spec/matchingPrecedence")
                    .and_then(Value::as_i64)
                    .unwrap_or(1000),
                level: text(s, "/spec/priorityLevelConfiguration/name").to_string(),
                rules: s
                    .pointer("/spec/rules")
                    .and_then(Value::as_array)
                    .cloned()
                    .unwrap_or_default(),
            })
            .collect();
        list.sort_by(|a, b| a.precedence.cmp(&b.precedence).then_with(|| a.name.cmp(&b.name)));
        *self.snapshot.write().unwrap_or_else(|e| e.into_inner()) =
            Arc::new(Snapshot { schemas: list, levels: by_name, version });
    }
}

fn text<'a>(v: &'a Value, ptr: &str) -> &'a str {
    v.pointer(ptr).and_then(Value::as_str).unwrap_or("")
}

/// kube's `containsString` for rule lists: the wildcard counts only as the sole element.
fn has(list: Option<&Value>, want: &str) -> bool {
    let Some(items) = list.and_then(Value::as_array) else { return false };
    (items.len() == 1 && items[0] == "*") || items.iter().any(|i| i == want)
}

fn matches_schema(s: &Schema, user: &UserInfo, attrs: &Attributes) -> bool {
    s.rules.iter().any(|rule| {
        let subject = rule
            .get("subjects")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .any(|sub| matches_subject(sub, user));
        subject
            && if attrs.resource_request {
                rule.get("resourceRules")
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                    .any(|r| matches_resource(r, attrs))
            } else {
                rule.get("nonResourceRules")
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                    .any(|r| matches_non_resource(r, attrs))
            }
    })
}

fn matches_subject(sub: &Value, user: &UserInfo) -> bool {
    match text(sub, "/kind") {
        "User" => matches!(text(sub, "/user/name"), "*") || text(sub, "/user/name") == user.name,
        "Group" => {
            let g = text(sub, "/group/name");
            g == "*" || user.groups.iter().any(|u| u == g)
        }
        "ServiceAccount" => {
            let (ns, name) =
                (text(sub, "/serviceAccount/namespace"), text(sub, "/serviceAccount/name"));
            if name == "*" {
                user.name.starts_with(&format!("system:serviceaccount:{ns}:"))
            } else {
                user.name == format!("system:serviceaccount:{ns}:{name}")
            }
        }
        _ => false,
    }
}

fn matches_resource(r: &Value, attrs: &Attributes) -> bool {
    let resource = if attrs.subresource.is_empty() {
        attrs.resource.clone()
    } else {
        format!("{}/{}", attrs.resource, attrs.subresource)
    };
    if !has(r.get("verbs"), &attrs.verb)
        || !has(r.get("apiGroups"), &attrs.api_group)
        || !has(r.get("resources"), &resource)
    {
        return false;
    }
    if attrs.namespace.is_empty() {
        r.get("clusterScope").and_then(Value::as_bool).unwrap_or(false)
    } else {
        has(r.get("namespaces"), &attrs.namespace)
    }
}

fn matches_non_resource(r: &Value, attrs: &Attributes) -> bool {
    if !has(r.get("verbs"), &attrs.verb) {
        return false;
    }
    // kube's `matchPathOrPrefix`: "*", the path itself, or a prefix ending in "*".
    r.get("nonResourceURLs")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .any(|u| {
            u == "*"
                || u == attrs.path
                || (u.len() > 1 && u.ends_with('*') && attrs.path.starts_with(&u[..u.len() - 1]))
        })
}

/// Keep the bootstrap configuration, the `Dangling` conditions and the snapshot current.
pub async fn start(state: &Arc<State>) {
    sync(state, true).await;
    let state = state.clone();
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(RESYNC);
        tick.tick().await;
        for n in 1u32.. {
            tick.tick().await;
            sync(&state, n % ENSURE_EVERY == 0).await;
        }
    });
}

/// Re-read the configuration; with `ensure`, first put the bootstrap objects back.
async fn sync(state: &Arc<State>, ensure: bool) {
    let reg = crate::crds::registry(state);
    let (Some(fs_res), Some(pl_res)) = (
        reg.by_plural("flowcontrol.apiserver.k8s.io", "flowschemas").cloned(),
        reg.by_plural("flowcontrol.apiserver.k8s.io", "prioritylevelconfigurations").cloned(),
    ) else {
        return;
    };
    if ensure {
        ensure_bootstrap(state, &fs_res, &pl_res).await;
    }
    let (Ok(schemas), Ok(levels)) = (load(state, &fs_res).await, load(state, &pl_res).await) else {
        return;
    };
    set_dangling(state, &fs_res, &schemas, &levels).await;
    state.apf.rebuild(&schemas, &levels);
}

async fn load(state: &State, res: &skiff_api::ResourceInfo) -> Result<Vec<Value>, ()> {
    let list = state.store.list(&skiff_api::list_prefix(res, None)).await.map_err(|_| ())?;
    Ok(list.items.iter().filter_map(|kv| crate::handlers::decode(kv).ok()).collect())
}

/// kube's config producer: missing objects are created; mandatory ones get their spec back
/// (the exempt level keeps its shares and lendable percent); suggested ones are updated while
/// their `autoupdate-spec` annotation says `"true"`.
async fn ensure_bootstrap(
    state: &State,
    fs_res: &skiff_api::ResourceInfo,
    pl_res: &skiff_api::ResourceInfo,
) {
    for want in bootstrap_objects() {
        let kind = text(&want, "/kind").to_string();
        let name = text(&want, "/metadata/name").to_string();
        let res = if kind == "FlowSchema" { fs_res } else { pl_res };
        let key = skiff_api::object_key(res, None, &name);
        let mandatory = MANDATORY.contains(&(kind.as_str(), name.as_str()));
        match state.store.get(&key).await {
            Ok(None) => {
                let mut obj = want.clone();
                if crate::objects::prepare_create(&mut obj, res, None).is_ok() {
                    let _ = state.store.create(&key, crate::handlers::encode(&obj)).await;
                }
            }
            Ok(Some(kv)) => {
                let Ok(current) = crate::handlers::decode(&kv) else { continue };
                let auto = mandatory
                    || current
                        .pointer(&format!(
                            "/metadata/annotations/{}",
                            AUTOUPDATE.replace('/', "~1")
                        ))
                        .and_then(Value::as_str)
                        .map_or_else(
                            || {
                                current.pointer("/metadata/generation").and_then(Value::as_i64)
                                    == Some(1)
                            },
                            |v| v == "true",
                        );
                if !auto {
                    continue;
                }
                let mut spec = want["spec"].clone();
                let mut probe =
                    json!({"apiVersion": want["apiVersion"], "kind": kind, "spec": spec});
                crate::kinds::default(text(&want, "/apiVersion"), &kind, &mut probe);
                spec = probe["spec"].take();
                if kind == "PriorityLevelConfiguration" && name == "exempt" {
                    for k in ["nominalConcurrencyShares", "lendablePercent"] {
                        if let Some(v) = current.pointer(&format!("/spec/exempt/{k}")) {
                            spec["exempt"][k] = v.clone();
                        }
                    }
                }
                if current.get("spec") == Some(&spec) {
                    continue;
                }
                let mut updated = current.clone();
                updated["spec"] = spec;
                if let Some(g) = updated.pointer("/metadata/generation").and_then(Value::as_i64) {
                    updated["metadata"]["generation"] = json!(g + 1);
                }
                let _ = state
                    .store
                    .update(&key, crate::handlers::encode(&updated), Some(kv.mod_revision))
                    .await;
            }
            Err(_) => {}
        }
    }
}

/// kube's config consumer: each FlowSchema says whether its level exists.
async fn set_dangling(
    state: &State,
    fs_res: &skiff_api::ResourceInfo,
    schemas: &[Value],
    levels: &[Value],
) {
    let names: Vec<&str> = levels.iter().map(|l| text(l, "/metadata/name")).collect();
    for fs in schemas {
        let level = text(fs, "/spec/priorityLevelConfiguration/name");
        let (status, reason, message) = if names.contains(&level) {
            (
                "False",
                "Found",
                format!(
                    "This FlowSchema references the PriorityLevelConfiguration object named {level:?} and it exists"
                ),
            )
        } else {
            (
                "True",
                "NotFound",
                format!(
                    "This FlowSchema references the PriorityLevelConfiguration object named {level:?} but there is no such object"
                ),
            )
        };
        let current = fs
            .pointer("/status/conditions")
            .and_then(Value::as_array)
            .and_then(|c| c.iter().find(|c| text(c, "/type") == "Dangling"));
        if current.is_some_and(|c| {
            text(c, "/status") == status
                && text(c, "/reason") == reason
                && text(c, "/message") == message
        }) {
            continue;
        }
        let name = text(fs, "/metadata/name");
        let key = skiff_api::object_key(fs_res, None, name);
        let Ok(Some(kv)) = state.store.get(&key).await else { continue };
        let Ok(mut obj) = crate::handlers::decode(&kv) else { continue };
        let mut conditions: Vec<Value> = obj
            .pointer("/status/conditions")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default()
            .into_iter()
            .filter(|c| text(c, "/type") != "Dangling")
            .collect();
        conditions.push(json!({"type": "Dangling", "status": status,
            "lastTransitionTime": crate::objects::now_rfc3339(), "reason": reason, "message": message}));
        obj["status"] = json!({"conditions": conditions});
        let _ =
            state.store.update(&key, crate::handlers::encode(&obj), Some(kv.mod_revision)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user(name: &str, groups: &[&str]) -> UserInfo {
        UserInfo {
            name: name.into(),
            groups: groups.iter().map(|g| g.to_string()).collect(),
            ..Default::default()
        }
    }

    fn apf() -> Apf {
        let objs = bootstrap_objects();
        let mut schemas = Vec::new();
        let mut levels = Vec::new();
        for (i, mut o) in objs.into_iter().enumerate() {
            o["metadata"]["uid"] = json!(format!("uid-{i}"));
            if o["kind"] == "FlowSchema" {
                schemas.push(o);
            } else {
                levels.push(o);
            }
        }
        let a = Apf::default();
        a.rebuild(&schemas, &levels);
        a
    }

    fn level_of(a: &Apf, u: &UserInfo, attrs: &Attributes) -> String {
        let snap = a.snapshot.read().expect("lock").clone();
        snap.schemas
            .iter()
            .find(|s| matches_schema(s, u, attrs))
            .map(|s| s.level.clone())
            .unwrap_or_default()
    }

    #[test]
    fn requests_should_be_classified_as_kube_classifies_them() {
        let a = apf();
        let pods = Attributes {
            verb: "list".into(),
            resource_request: true,
            namespace: "default".into(),
            resource: "pods".into(),
            ..Default::default()
        };
        assert_eq!(
            level_of(&a, &user("admin", &["system:masters", "system:authenticated"]), &pods),
            "exempt"
        );
        assert_eq!(
            level_of(&a, &user("alice", &["system:authenticated"]), &pods),
            "global-default"
        );
        assert_eq!(
            level_of(
                &a,
                &user(
                    "system:serviceaccount:ns:sa",
                    &["system:serviceaccounts", "system:authenticated"]
                ),
                &pods
            ),
            "workload-low"
        );
        assert_eq!(
            level_of(&a, &user("system:node:n1", &["system:nodes", "system:authenticated"]), &pods),
            "system"
        );
        let health = Attributes::non_resource("get", "/healthz");
        assert_eq!(
            level_of(&a, &user("system:anonymous", &["system:unauthenticated"]), &health),
            "exempt"
        );
        let snap = a.snapshot.read().expect("lock").clone();
        // ceil(600 × 20 / 245) seats for global-default; catch-all rejects without a queue.
        assert_eq!(snap.levels["global-default"].seats.available_permits(), 49);
        assert_eq!(snap.levels["catch-all"].queue_cap, 0);
        assert_eq!(snap.levels["global-default"].queue_cap, 128 * 50);
    }

    #[tokio::test]
    async fn a_full_level_with_a_full_queue_should_answer_kubes_429() {
        let a = apf();
        let u = user("x", &["system:authenticated"]);
        // An authenticated user's request goes to global-default (49 seats, a queue).
        let attrs = Attributes::non_resource("post", "/nothing");
        let snap = a.snapshot.read().expect("lock").clone();
        let level =
            snap.schemas.iter().find(|s| matches_schema(s, &u, &attrs)).map(|s| s.level.clone());
        assert_eq!(level.as_deref(), Some("global-default"));
        let gd = snap.levels["global-default"].clone();
        let held: Vec<_> =
            (0..49).map(|_| gd.seats.clone().try_acquire_owned().expect("seat")).collect();
        gd.waiting.store(gd.queue_cap, Ordering::SeqCst);
        let resp = a.admit(&u, &attrs, false).await.err().expect("rejected");
        assert_eq!(resp.status(), 429);
        assert_eq!(resp.headers()[header::RETRY_AFTER], "1");
        assert!(resp.headers().contains_key("x-kubernetes-pf-flowschema-uid"));
        drop(held);
        gd.waiting.store(0, Ordering::SeqCst);
        assert!(a.admit(&u, &attrs, false).await.is_ok());
    }

    #[tokio::test]
    async fn a_request_that_gives_up_waiting_should_free_its_place_in_the_queue() {
        let a = apf();
        let u = user("x", &["system:authenticated"]);
        let attrs = Attributes::non_resource("post", "/nothing");
        let gd = a.snapshot.read().expect("lock").levels["global-default"].clone();
        let held: Vec<_> =
            (0..49).map(|_| gd.seats.clone().try_acquire_owned().expect("seat")).collect();
        // The client goes away while its request waits: the future is dropped.
        let waiting = a.admit(&u, &attrs, false);
        let gone = tokio::time::timeout(std::time::Duration::from_millis(50), waiting).await;
        assert!(gone.is_err(), "it waited for a seat");
        assert_eq!(gd.waiting.load(Ordering::SeqCst), 0, "its place was freed");
        drop(held);
        // A config change that leaves the level's limits alone keeps its seats and queue.
        let before = Arc::as_ptr(&gd);
        let mut schemas = Vec::new();
        let mut levels = Vec::new();
        for (i, mut o) in bootstrap_objects().into_iter().enumerate() {
            o["metadata"]["uid"] = json!(format!("uid-{i}"));
            o["metadata"]["resourceVersion"] = json!("2");
            if o["kind"] == "FlowSchema" { schemas.push(o) } else { levels.push(o) }
        }
        a.rebuild(&schemas, &levels);
        let after = a.snapshot.read().expect("lock").levels["global-default"].clone();
        assert_eq!(Arc::as_ptr(&after), before);
    }

    #[test]
    fn non_resource_urls_should_match_exactly_or_by_a_star_prefix() {
        let rule = json!({"verbs": ["get"], "nonResourceURLs": ["/healthz", "/apis/*"]});
        let m = |p: &str| matches_non_resource(&rule, &Attributes::non_resource("get", p));
        assert!(m("/healthz"));
        assert!(!m("/healthz/etcd"), "no star, no prefix");
        assert!(m("/apis/x"));
        assert!(!m("/api"));
    }
}
