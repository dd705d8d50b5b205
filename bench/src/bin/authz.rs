//! Benchmark of the RBAC authorizer (`skiff_auth::rbac::RbacIndex`), in this process, with no
//! api server: the index is built from the default policy plus `--roles` Roles and as many
//! RoleBindings spread over `--namespaces` namespaces, then asked `--checks` questions, each
//! timed on its own, as kube-apiserver asks one per request.
//!
//! The mix, drawn from a fixed seed: 60 % users in the bindings (by name, by group or as a
//! service account) asking in their own namespace, about half of it granted; 20 % the same
//! users in a namespace where they hold nothing; 10 % strangers; 10 % cluster-wide (discovery
//! and health paths, cluster-scoped reads, a `system:masters` member). Figures: build time,
//! then p50/p99/max per check in µs and the share allowed.
//!
//! `skiff-bench-authz [--roles 1000] [--namespaces 100] [--checks 100000]`

use std::time::{Duration, Instant};

use clap::Parser;
use serde_json::{Value, json};
use skiff_auth::rbac::{RbacIndex, RbacObjects};
use skiff_auth::{Attributes, UserInfo, policy};
use skiff_bench::{Goal, Latencies};

#[derive(Parser)]
struct Args {
    /// Roles, and as many RoleBindings (one each), over the namespaces.
    #[arg(long, default_value_t = 1000)]
    roles: usize,
    #[arg(long, default_value_t = 100)]
    namespaces: usize,
    /// Authorization checks timed.
    #[arg(long, default_value_t = 100_000)]
    checks: usize,
    /// Target: p99 of one check (µs).
    #[arg(long, default_value_t = 100.0)]
    target_p99_us: f64,
    /// Target: building the index (ms).
    #[arg(long, default_value_t = 50.0)]
    target_build_ms: f64,
}

/// A small deterministic generator (SplitMix64): the same mix on every run.
struct Mix(u64);

impl Mix {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

/// What role `i` grants: four shapes, as applications' roles commonly are.
fn role_rules(i: usize) -> Value {
    match i % 4 {
        0 => {
            json!([{"apiGroups": [""], "resources": ["pods", "pods/log", "configmaps"], "verbs": ["get", "list", "watch"]}])
        }
        1 => json!([
            {"apiGroups": ["apps"], "resources": ["deployments", "deployments/scale"], "verbs": ["get", "list", "watch", "update", "patch"]},
            {"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "list"]},
        ]),
        2 => {
            json!([{"apiGroups": [""], "resources": ["secrets"], "resourceNames": [format!("secret-{i}")], "verbs": ["get"]}])
        }
        _ => json!([
            {"apiGroups": ["batch"], "resources": ["jobs", "cronjobs"], "verbs": ["*"]},
            {"apiGroups": ["coordination.k8s.io"], "resources": ["leases"], "verbs": ["get", "update"]},
        ]),
    }
}

/// Who binding `i` names: a user, a group or a service account of its namespace.
fn subject(i: usize, ns: &str) -> (Value, UserInfo) {
    match i % 3 {
        0 => {
            let name = format!("user-{i}");
            let s = json!({"kind": "User", "apiGroup": "rbac.authorization.k8s.io", "name": name});
            (s, UserInfo::new(name, &["devs"]))
        }
        1 => {
            let group = format!("team-{i}");
            let s =
                json!({"kind": "Group", "apiGroup": "rbac.authorization.k8s.io", "name": group});
            (s, UserInfo::new(format!("member-{i}"), &[group.as_str(), "devs"]))
        }
        _ => {
            let name = format!("sa-{i}");
            let s = json!({"kind": "ServiceAccount", "name": name, "namespace": ns});
            let user = format!("system:serviceaccount:{ns}:{name}");
            let ns_group = format!("system:serviceaccounts:{ns}");
            (s, UserInfo::new(user, &["system:serviceaccounts", &ns_group]))
        }
    }
}

/// A question role `i`'s holder might ask (about half of them granted by the role).
fn question(i: usize, ns: &str, mix: &mut Mix) -> Attributes {
    let a = Attributes::resource;
    match (i % 4, mix.below(4)) {
        (0, 0) => a("list", "", "pods", ns, ""),
        (0, 1) => a("get", "", "pods", ns, "web-0").with_subresource("log"),
        (0, 2) => a("delete", "", "pods", ns, "web-0"),
        (1, 0) => a("patch", "apps", "deployments", ns, "web").with_subresource("scale"),
        (1, 1) => a("get", "", "pods", ns, "web-0"),
        (1, 2) => a("create", "apps", "deployments", ns, ""),
        (2, 0) => a("get", "", "secrets", ns, &format!("secret-{i}")),
        (2, 1) => a("get", "", "secrets", ns, "other"),
        (2, 2) => a("list", "", "secrets", ns, ""),
        (3, 0) => a("create", "batch", "jobs", ns, ""),
        (3, 1) => a("update", "coordination.k8s.io", "leases", ns, "lock"),
        (3, 2) => a("delete", "coordination.k8s.io", "leases", ns, "lock"),
        _ => a("watch", "", "configmaps", ns, ""),
    }
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    anyhow::ensure!(args.roles > 0 && args.namespaces > 1, "--roles > 0 and --namespaces > 1");
    let ns_name = |n: usize| format!("ns-{n}");
    let mut objects = policy::bootstrap_objects();
    let defaults = objects.len();
    let mut holders = Vec::with_capacity(args.roles);
    for i in 0..args.roles {
        let ns = ns_name(i % args.namespaces);
        let (subject, user) = subject(i, &ns);
        objects.push(json!({
            "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role",
            "metadata": {"name": format!("role-{i}"), "namespace": ns},
            "rules": role_rules(i),
        }));
        objects.push(json!({
            "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
            "metadata": {"name": format!("binding-{i}"), "namespace": ns},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": format!("role-{i}")},
            "subjects": [subject],
        }));
        holders.push((i, ns, user));
    }

    // Building: best of a few, as the api server rebuilds on every RBAC change.
    let mut build = Duration::MAX;
    let mut index = RbacIndex::default();
    for _ in 0..5 {
        let started = Instant::now();
        index = RbacIndex::build(&RbacObjects::from_objects(&objects));
        build = build.min(started.elapsed());
    }

    let mut mix = Mix(0x5eed);
    let admin = UserInfo::new("root", &["system:masters"]);
    let checks: Vec<(UserInfo, Attributes)> = (0..args.checks)
        .map(|_| {
            let (i, ns, user) = &holders[mix.below(holders.len())];
            match mix.below(10) {
                0..=5 => (user.clone(), question(*i, ns, &mut mix)),
                6 | 7 => {
                    let elsewhere =
                        ns_name((i + 1 + mix.below(args.namespaces - 1)) % args.namespaces);
                    (user.clone(), question(*i, &elsewhere, &mut mix))
                }
                8 => (
                    UserInfo::new(format!("stranger-{}", mix.below(1000)), &["devs"]),
                    question(*i, ns, &mut mix),
                ),
                _ => match mix.below(4) {
                    0 => (user.clone(), Attributes::non_resource("get", "/apis/apps/v1")),
                    1 => (UserInfo::anonymous(), Attributes::non_resource("get", "/healthz")),
                    2 => (user.clone(), Attributes::resource("list", "", "nodes", "", "")),
                    _ => (admin.clone(), Attributes::resource("delete", "", "namespaces", "", ns)),
                },
            }
        })
        .collect();

    // Warm up, then time each check on its own.
    for (user, attrs) in checks.iter().take(1000) {
        std::hint::black_box(index.authorize(user, attrs));
    }
    let mut allowed = 0usize;
    let started = Instant::now();
    let sample: Latencies = checks
        .iter()
        .map(|(user, attrs)| {
            let t = Instant::now();
            let decision = std::hint::black_box(index.authorize(user, attrs));
            let took = t.elapsed();
            allowed += usize::from(decision.is_allowed());
            took
        })
        .collect();
    let total = started.elapsed();

    let us = |d: Duration| d.as_secs_f64() * 1e6;
    let build_ms = build.as_secs_f64() * 1e3;
    let mode = if cfg!(debug_assertions) { "debug build" } else { "release build" };
    println!("RBAC authorizer, in process ({mode})");
    println!(
        "  index: {defaults} default objects + {} Roles + {} RoleBindings over {} namespaces",
        args.roles, args.roles, args.namespaces
    );
    println!("  build: {build_ms:.2} ms (best of 5)");
    println!(
        "  {} checks, {:.0} % allowed, {:.0} checks/s on one thread",
        sample.len(),
        100.0 * allowed as f64 / sample.len().max(1) as f64,
        sample.len() as f64 / total.as_secs_f64()
    );
    println!(
        "  per check: p50 {:.2} µs, p99 {:.2} µs, max {:.2} µs",
        us(sample.p50()),
        us(sample.p99()),
        us(sample.max())
    );
    println!();
    let p99_goal = Goal::at_most(args.target_p99_us);
    let build_goal = Goal::at_most(args.target_build_ms);
    let p99 = us(sample.p99());
    println!(
        "  check p99 {p99:.2} µs {} target {:.0} µs: {}",
        p99_goal.comparison(),
        p99_goal.target,
        p99_goal.verdict(p99)
    );
    println!(
        "  build {build_ms:.2} ms {} target {:.0} ms: {}",
        build_goal.comparison(),
        build_goal.target,
        build_goal.verdict(build_ms)
    );
    Ok(())
}
