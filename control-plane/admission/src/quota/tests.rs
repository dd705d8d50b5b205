use serde_json::json;

use super::*;

fn texts(list: &ResourceList) -> BTreeMap<String, String> {
    list.iter().map(|(k, q)| (k.clone(), q.to_string())).collect()
}

fn expect(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs.iter().map(|(k, v)| ((*k).to_string(), (*v).to_string())).collect()
}

fn at(text: &str) -> Timestamp {
    text.parse().expect("timestamp")
}

fn pod(spec: Value) -> Value {
    json!({"metadata": {"name": "p", "namespace": "ns"}, "spec": spec})
}

fn container(name: &str, requests: Value, limits: Value) -> Value {
    json!({"name": name, "resources": {"requests": requests, "limits": limits}})
}

fn quota(name: &str, hard: Value, used: Value) -> Value {
    json!({
        "metadata": {"name": name, "namespace": "ns"},
        "spec": {"hard": hard.clone()},
        "status": {"hard": hard, "used": used},
    })
}

#[test]
fn usage_should_count_pods_as_the_pod_evaluator() {
    let now = at("2024-01-01T00:00:10Z");
    let cases: Vec<(&str, Value, BTreeMap<String, String>)> = vec![
        (
            "containers add up, limits only where set",
            pod(json!({"containers": [
                container("a", json!({"cpu": "100m", "memory": "1Gi"}), json!({"cpu": "200m", "memory": "1Gi"})),
                container("b", json!({"cpu": "200m", "memory": "512Mi"}), json!({"memory": "512Mi"})),
            ]})),
            expect(&[
                ("count/pods", "1"),
                ("pods", "1"),
                ("cpu", "300m"),
                ("requests.cpu", "300m"),
                ("memory", "1536Mi"),
                ("requests.memory", "1536Mi"),
                ("limits.cpu", "200m"),
                ("limits.memory", "1536Mi"),
            ]),
        ),
        (
            "init containers count by their largest, not their sum",
            pod(json!({
                "containers": [container("app", json!({"cpu": "1"}), json!({}))],
                "initContainers": [
                    container("one", json!({"cpu": "2"}), json!({})),
                    container("two", json!({"cpu": "500m"}), json!({})),
                ],
            })),
            expect(&[("count/pods", "1"), ("pods", "1"), ("cpu", "2"), ("requests.cpu", "2")]),
        ),
        (
            "a sidecar runs beside the app and beside later init containers",
            pod(json!({
                "containers": [container("app", json!({"cpu": "1"}), json!({}))],
                "initContainers": [
                    {"name": "sidecar", "restartPolicy": "Always", "resources": {"requests": {"cpu": "500m"}}},
                    container("job", json!({"cpu": "1200m"}), json!({})),
                ],
            })),
            expect(&[
                ("count/pods", "1"),
                ("pods", "1"),
                ("cpu", "1700m"),
                ("requests.cpu", "1700m"),
            ]),
        ),
        (
            "overhead adds to requests, and to limits that are set",
            pod(json!({
                "containers": [container("app", json!({"cpu": "1", "memory": "1Gi"}), json!({"memory": "2Gi"}))],
                "overhead": {"cpu": "250m", "memory": "128Mi"},
            })),
            expect(&[
                ("count/pods", "1"),
                ("pods", "1"),
                ("cpu", "1250m"),
                ("requests.cpu", "1250m"),
                ("memory", "1152Mi"),
                ("requests.memory", "1152Mi"),
                ("limits.memory", "2176Mi"),
            ]),
        ),
        (
            "pod-level resources override the containers' sum",
            pod(json!({
                "resources": {"requests": {"cpu": "2"}, "limits": {"memory": "4Gi"}},
                "containers": [container("app", json!({"cpu": "1"}), json!({}))],
            })),
            expect(&[
                ("count/pods", "1"),
                ("pods", "1"),
                ("cpu", "2"),
                ("requests.cpu", "2"),
                ("limits.memory", "4Gi"),
            ]),
        ),
        (
            "hugepages, extended resources and ephemeral storage",
            pod(json!({"containers": [container(
                "app",
                json!({"hugepages-2Mi": "4Mi", "example.com/gpu": "1", "ephemeral-storage": "1Gi", "memory": "1Gi"}),
                json!({"hugepages-2Mi": "4Mi", "example.com/gpu": "1", "ephemeral-storage": "2Gi"}),
            )]})),
            expect(&[
                ("count/pods", "1"),
                ("pods", "1"),
                ("hugepages-2Mi", "4Mi"),
                ("requests.hugepages-2Mi", "4Mi"),
                ("requests.example.com/gpu", "1"),
                ("ephemeral-storage", "1Gi"),
                ("requests.ephemeral-storage", "1Gi"),
                ("limits.ephemeral-storage", "2Gi"),
                ("memory", "1Gi"),
                ("requests.memory", "1Gi"),
            ]),
        ),
        (
            "an in-place resize counts the larger of spec, allocated and actual",
            json!({
                "metadata": {"name": "p"},
                "spec": {"containers": [container("app", json!({"cpu": "1"}), json!({}))]},
                "status": {"containerStatuses": [
                    {"name": "app", "allocatedResources": {"cpu": "2"}, "resources": {"requests": {"cpu": "1500m"}}},
                ]},
            }),
            expect(&[("count/pods", "1"), ("pods", "1"), ("cpu", "2"), ("requests.cpu", "2")]),
        ),
        (
            "a finished pod only counts as a stored object",
            json!({
                "metadata": {"name": "p"},
                "spec": {"containers": [container("app", json!({"cpu": "1"}), json!({}))]},
                "status": {"phase": "Succeeded"},
            }),
            expect(&[("count/pods", "1")]),
        ),
        (
            "a pod deleted past its grace period is not charged",
            json!({
                "metadata": {"name": "p", "deletionTimestamp": "2024-01-01T00:00:00Z", "deletionGracePeriodSeconds": 5},
                "spec": {"containers": [container("app", json!({"cpu": "1"}), json!({}))]},
            }),
            expect(&[("count/pods", "1")]),
        ),
        (
            "a pod still within its grace period is charged",
            json!({
                "metadata": {"name": "p", "deletionTimestamp": "2024-01-01T00:00:00Z", "deletionGracePeriodSeconds": 30},
                "spec": {"containers": [container("app", json!({"cpu": "1"}), json!({}))]},
            }),
            expect(&[("count/pods", "1"), ("pods", "1"), ("cpu", "1"), ("requests.cpu", "1")]),
        ),
    ];
    for (name, object, want) in cases {
        assert_eq!(texts(&usage_at("", "pods", &object, now)), want, "{name}");
    }
}

#[test]
fn usage_should_count_services_node_ports_and_load_balancers() {
    let service = |spec: Value| json!({"metadata": {"name": "s"}, "spec": spec});
    let ports = json!([{"port": 80}, {"port": 443}, {"port": 8080, "nodePort": 30080}]);
    let cases = [
        ("cluster IP", service(json!({"ports": ports})), "0", "0"),
        ("node port: one per port", service(json!({"type": "NodePort", "ports": ports})), "3", "0"),
        ("load balancer", service(json!({"type": "LoadBalancer", "ports": ports})), "3", "1"),
        (
            "load balancer without node ports counts explicit ones",
            service(
                json!({"type": "LoadBalancer", "allocateLoadBalancerNodePorts": false, "ports": ports}),
            ),
            "1",
            "1",
        ),
    ];
    for (name, object, node_ports, load_balancers) in cases {
        let want = expect(&[
            ("count/services", "1"),
            ("services", "1"),
            ("services.nodeports", node_ports),
            ("services.loadbalancers", load_balancers),
        ]);
        assert_eq!(texts(&usage("", "services", &object)), want, "{name}");
    }
}

#[test]
fn usage_should_count_claims_by_storage_class() {
    let gold = "gold.storageclass.storage.k8s.io";
    let cases = [
        (
            "no class",
            json!({"metadata": {"name": "c"}, "spec": {"resources": {"requests": {"storage": "1.5Gi"}}}}),
            expect(&[
                ("persistentvolumeclaims", "1"),
                ("count/persistentvolumeclaims", "1"),
                ("requests.storage", "1536Mi"),
            ]),
        ),
        (
            "class from the spec",
            json!({"metadata": {"name": "c"}, "spec": {"storageClassName": "gold", "resources": {"requests": {"storage": "10Gi"}}}}),
            expect(&[
                ("persistentvolumeclaims", "1"),
                ("count/persistentvolumeclaims", "1"),
                ("requests.storage", "10Gi"),
                (&format!("{gold}/persistentvolumeclaims"), "1"),
                (&format!("{gold}/requests.storage"), "10Gi"),
            ]),
        ),
        (
            "the beta annotation wins, allocated storage counts when larger, bytes round up",
            json!({
                "metadata": {"name": "c", "annotations": {"volume.beta.kubernetes.io/storage-class": "gold"}},
                "spec": {"storageClassName": "silver", "resources": {"requests": {"storage": "1500m"}}},
                "status": {"allocatedResources": {"storage": "3"}},
            }),
            expect(&[
                ("persistentvolumeclaims", "1"),
                ("count/persistentvolumeclaims", "1"),
                ("requests.storage", "3"),
                (&format!("{gold}/persistentvolumeclaims"), "1"),
                (&format!("{gold}/requests.storage"), "3"),
            ]),
        ),
        (
            "a fractional byte request is charged whole",
            json!({"metadata": {"name": "c"}, "spec": {"resources": {"requests": {"storage": "1500m"}}}}),
            expect(&[
                ("persistentvolumeclaims", "1"),
                ("count/persistentvolumeclaims", "1"),
                ("requests.storage", "2"),
            ]),
        ),
    ];
    for (name, object, want) in cases {
        assert_eq!(texts(&usage("", "persistentvolumeclaims", &object)), want, "{name}");
    }
}

#[test]
fn usage_should_count_other_objects_by_name() {
    let object = json!({"metadata": {"name": "x"}});
    assert_eq!(
        texts(&usage("", "configmaps", &object)),
        expect(&[("count/configmaps", "1"), ("configmaps", "1")])
    );
    assert_eq!(
        texts(&usage("apps", "deployments", &object)),
        expect(&[("count/deployments.apps", "1")])
    );
    assert_eq!(
        texts(&usage("", "serviceaccounts", &object)),
        expect(&[("count/serviceaccounts", "1")])
    );
}

#[test]
fn matches_should_apply_scopes_and_scope_selectors() {
    let scoped = |scopes: Value, expressions: Value| {
        json!({"metadata": {"name": "q"}, "spec": {"hard": {"pods": "1"}, "scopes": scopes,
            "scopeSelector": {"matchExpressions": expressions}}})
    };
    let by_scope = |scope: &str| scoped(json!([scope]), json!([]));
    let by_class = |operator: &str, values: Value| {
        scoped(
            json!([]),
            json!([{"scopeName": "PriorityClass", "operator": operator, "values": values}]),
        )
    };
    let best_effort = pod(json!({"containers": [{"name": "a"}]}));
    let burstable = pod(json!({"containers": [container("a", json!({"cpu": "1"}), json!({}))]}));
    let zero_request = pod(json!({"containers": [container("a", json!({"cpu": "0"}), json!({}))]}));
    let terminating = pod(json!({"activeDeadlineSeconds": 30, "containers": [{"name": "a"}]}));
    let high = pod(json!({"priorityClassName": "high", "containers": [{"name": "a"}]}));
    let low = pod(json!({"priorityClassName": "low", "containers": [{"name": "a"}]}));
    let cross = pod(json!({"containers": [{"name": "a"}], "affinity": {"podAffinity": {
        "requiredDuringSchedulingIgnoredDuringExecution": [{"topologyKey": "zone", "namespaces": ["other"]}]}}}));
    let cross_preferred = pod(
        json!({"containers": [{"name": "a"}], "affinity": {"podAntiAffinity": {
        "preferredDuringSchedulingIgnoredDuringExecution": [
            {"weight": 1, "podAffinityTerm": {"topologyKey": "zone", "namespaceSelector": {}}}]}}}),
    );
    let cases = [
        ("no scopes", scoped(json!([]), json!([])), &burstable, true),
        ("BestEffort", by_scope("BestEffort"), &best_effort, true),
        ("BestEffort, burstable pod", by_scope("BestEffort"), &burstable, false),
        ("BestEffort, zero request", by_scope("BestEffort"), &zero_request, true),
        ("NotBestEffort", by_scope("NotBestEffort"), &burstable, true),
        ("Terminating", by_scope("Terminating"), &terminating, true),
        ("Terminating, no deadline", by_scope("Terminating"), &best_effort, false),
        ("NotTerminating", by_scope("NotTerminating"), &best_effort, true),
        ("PriorityClass In", by_class("In", json!(["high"])), &high, true),
        ("PriorityClass In, other class", by_class("In", json!(["high"])), &low, false),
        ("PriorityClass In, no class", by_class("In", json!(["high"])), &best_effort, false),
        ("PriorityClass NotIn, no class", by_class("NotIn", json!(["high"])), &best_effort, true),
        ("PriorityClass NotIn, other class", by_class("NotIn", json!(["high"])), &low, true),
        ("PriorityClass NotIn, that class", by_class("NotIn", json!(["high"])), &high, false),
        ("PriorityClass Exists", by_class("Exists", json!([])), &low, true),
        ("PriorityClass Exists, no class", by_class("Exists", json!([])), &best_effort, false),
        ("PriorityClass DoesNotExist", by_class("DoesNotExist", json!([])), &best_effort, true),
        ("PriorityClass in scopes", by_scope("PriorityClass"), &high, true),
        ("CrossNamespacePodAffinity", by_scope("CrossNamespacePodAffinity"), &cross, true),
        (
            "CrossNamespacePodAffinity, preferred",
            by_scope("CrossNamespacePodAffinity"),
            &cross_preferred,
            true,
        ),
        (
            "CrossNamespacePodAffinity, none",
            by_scope("CrossNamespacePodAffinity"),
            &best_effort,
            false,
        ),
        (
            "all scopes must match",
            scoped(json!(["BestEffort", "Terminating"]), json!([])),
            &best_effort,
            false,
        ),
    ];
    for (name, q, object, want) in cases {
        assert_eq!(matches(&q, "", "pods", object), want, "{name}");
    }

    let service = json!({"metadata": {"name": "s"}, "spec": {}});
    assert!(matches(&scoped(json!([]), json!([])), "", "services", &service));
    assert!(!matches(&by_scope("BestEffort"), "", "services", &service), "scopes select only pods");
    let claim = |class: Option<&str>| json!({"metadata": {"name": "c"}, "spec": {"volumeAttributesClassName": class}});
    let vac = scoped(
        json!([]),
        json!([{"scopeName": "VolumeAttributesClass", "operator": "In", "values": ["gold"]}]),
    );
    assert!(matches(&vac, "", "persistentvolumeclaims", &claim(Some("gold"))));
    assert!(!matches(&vac, "", "persistentvolumeclaims", &claim(Some("silver"))));
    assert!(!matches(&vac, "", "persistentvolumeclaims", &claim(None)));
}

#[test]
fn charge_should_add_the_usage_to_status_used() {
    let q = quota(
        "compute",
        json!({"pods": "10", "requests.cpu": "2", "requests.memory": "1Gi"}),
        json!({"pods": "1", "requests.cpu": "500m", "requests.memory": "0"}),
    );
    let p = pod(
        json!({"containers": [container("app", json!({"cpu": "250m", "memory": "512Mi"}), json!({}))]}),
    );
    let used = charge(&q, "", "pods", &p, None).expect("admitted");
    assert_eq!(
        used,
        Some(json!({"pods": "2", "requests.cpu": "750m", "requests.memory": "512Mi"}))
    );
}

#[test]
fn charge_should_refuse_as_kube_does() {
    let nginx = pod(json!({"containers": [{"name": "nginx"}]}));
    let two = pod(
        json!({"containers": [{"name": "web"}, {"name": "app"}], "initContainers": [{"name": "init"}]}),
    );
    let big = pod(
        json!({"containers": [container("app", json!({"cpu": "600m", "memory": "600Mi"}), json!({}))]}),
    );
    let cases = [
        (
            "one resource exceeded",
            quota("compute", json!({"pods": "3"}), json!({"pods": "3"})),
            &nginx,
            "exceeded quota: compute, requested: pods=1, used: pods=3, limited: pods=3",
        ),
        (
            "several resources exceeded, in name order",
            quota(
                "compute",
                json!({"pods": "10", "requests.memory": "1Gi", "requests.cpu": "1"}),
                json!({"pods": "1", "requests.memory": "512Mi", "requests.cpu": "500m"}),
            ),
            &big,
            "exceeded quota: compute, requested: requests.cpu=600m,requests.memory=600Mi, used: \
             requests.cpu=500m,requests.memory=512Mi, limited: requests.cpu=1,requests.memory=1Gi",
        ),
        (
            "tracked cpu and memory must be named by every container",
            quota(
                "compute",
                json!({"limits.cpu": "2", "limits.memory": "2Gi"}),
                json!({"limits.cpu": "0", "limits.memory": "0"}),
            ),
            &nginx,
            "failed quota: compute: must specify limits.cpu for: nginx; limits.memory for: nginx",
        ),
        (
            "containers listed in name order, init containers too",
            quota(
                "mem",
                json!({"requests.memory": "2Gi", "pods": "5"}),
                json!({"requests.memory": "0", "pods": "0"}),
            ),
            &two,
            "failed quota: mem: must specify requests.memory for: app,init,web",
        ),
        (
            "usage not yet observed",
            quota("compute", json!({"pods": "3", "count/pods": "3"}), json!({"count/pods": "0"})),
            &nginx,
            "status unknown for quota: compute, resources: count/pods,pods",
        ),
    ];
    for (name, q, object, want) in cases {
        assert_eq!(charge(&q, "", "pods", object, None), Err(want.to_string()), "{name}");
    }
    let negative = pod(json!({"containers": [container("app", json!({"cpu": "-1"}), json!({}))]}));
    let q = quota("compute", json!({"pods": "3"}), json!({"pods": "0"}));
    assert_eq!(
        charge(&q, "", "pods", &negative, None),
        Err("quota usage is negative for resource(s): cpu,requests.cpu".to_string())
    );
}

#[test]
fn charge_should_skip_quotas_that_do_not_apply() {
    let p = pod(json!({"containers": [container("app", json!({"cpu": "1"}), json!({}))]}));
    let unsynced = json!({"metadata": {"name": "new"}, "spec": {"hard": {"pods": "0"}}});
    assert_eq!(
        charge(&unsynced, "", "pods", &p, None),
        Ok(None),
        "the controller has not set status.hard yet"
    );
    let services_only = quota("svc", json!({"services": "0"}), json!({"services": "0"}));
    assert_eq!(charge(&services_only, "", "pods", &p, None), Ok(None));
    let mut best_effort = quota("be", json!({"pods": "0"}), json!({"pods": "0"}));
    best_effort["spec"]["scopes"] = json!(["BestEffort"]);
    assert_eq!(
        charge(&best_effort, "", "pods", &p, None),
        Ok(None),
        "the scope does not select it"
    );
}

#[test]
fn charge_should_charge_updates_by_their_increase() {
    let q = quota(
        "svc",
        json!({"services.nodeports": "2", "services": "5"}),
        json!({"services.nodeports": "1", "services": "2"}),
    );
    let old = json!({"metadata": {"name": "s", "resourceVersion": "7"}, "spec": {"type": "ClusterIP", "ports": [{"port": 80}]}});
    let new = json!({"metadata": {"name": "s", "resourceVersion": "7"}, "spec": {"type": "NodePort", "ports": [{"port": 80}]}});
    assert_eq!(
        charge(&q, "", "services", &new, Some(&old)),
        Ok(Some(json!({"services.nodeports": "2", "services": "2"})))
    );
    assert_eq!(charge(&q, "", "services", &new, Some(&new)), Ok(None), "nothing changed");
    assert_eq!(
        charge(&q, "", "services", &old, Some(&new)),
        Ok(None),
        "a decrease is not refunded"
    );
    let unstored =
        json!({"metadata": {"name": "s"}, "spec": {"type": "NodePort", "ports": [{"port": 80}]}});
    assert_eq!(
        charge(&q, "", "services", &new, Some(&unstored)),
        Ok(Some(json!({"services.nodeports": "2", "services": "3"}))),
        "an old object without resourceVersion is a create"
    );
    let full = quota("svc", json!({"services.nodeports": "1"}), json!({"services.nodeports": "1"}));
    assert_eq!(
        charge(&full, "", "services", &new, Some(&old)),
        Err("exceeded quota: svc, requested: services.nodeports=1, used: services.nodeports=1, limited: services.nodeports=1".to_string())
    );
}

#[test]
fn charge_all_should_stop_at_the_first_quota_refusing() {
    let p =
        pod(json!({"containers": [container("app", json!({"cpu": "1"}), json!({"cpu": "1"}))]}));
    let quotas = [
        quota("roomy", json!({"pods": "10"}), json!({"pods": "1"})),
        quota("ignored", json!({"services": "1"}), json!({"services": "0"})),
        quota("tight", json!({"limits.cpu": "1"}), json!({"limits.cpu": "500m"})),
    ];
    assert_eq!(
        charge_all(&quotas, &[], "", "pods", &p, None),
        Err(Refusal::Forbidden(
            "exceeded quota: tight, requested: limits.cpu=1, used: limits.cpu=500m, limited: limits.cpu=1".to_string()
        ))
    );
    let quotas = [quotas[0].clone(), quotas[1].clone()];
    assert_eq!(
        charge_all(&quotas, &[], "", "pods", &p, None),
        Ok(vec![Some(json!({"pods": "2"})), None])
    );
}

#[test]
fn charge_all_should_require_covering_quotas_for_limited_resources() {
    let p = pod(json!({"priorityClassName": "cluster-services",
        "containers": [container("app", json!({"cpu": "100m"}), json!({}))]}));
    let cpu = LimitedResource {
        resource: "pods".to_string(),
        match_contains: vec!["requests.cpu".to_string()],
        ..LimitedResource::default()
    };
    assert_eq!(
        charge_all(&[], std::slice::from_ref(&cpu), "", "pods", &p, None),
        Err(Refusal::Forbidden("insufficient quota to consume: requests.cpu".to_string()))
    );
    let covering = quota("cpu", json!({"requests.cpu": "1"}), json!({"requests.cpu": "0"}));
    assert_eq!(
        charge_all(std::slice::from_ref(&covering), &[cpu], "", "pods", &p, None),
        Ok(vec![Some(json!({"requests.cpu": "100m"}))])
    );

    let critical = LimitedResource {
        resource: "pods".to_string(),
        match_scopes: vec![ScopeRequirement {
            scope_name: "PriorityClass".to_string(),
            operator: "In".to_string(),
            values: vec!["cluster-services".to_string()],
        }],
        ..LimitedResource::default()
    };
    let unscoped = quota("pods", json!({"pods": "10"}), json!({"pods": "0"}));
    assert_eq!(
        charge_all(
            std::slice::from_ref(&unscoped),
            std::slice::from_ref(&critical),
            "",
            "pods",
            &p,
            None
        ),
        Err(Refusal::Unknown(
            "insufficient quota to match these scopes: [{PriorityClass In [cluster-services]}]"
                .to_string()
        ))
    );
    let mut scoped = unscoped.clone();
    scoped["spec"]["scopeSelector"] = json!({"matchExpressions": [
        {"scopeName": "PriorityClass", "operator": "In", "values": ["cluster-services"]}]});
    assert_eq!(
        charge_all(&[scoped], &[critical], "", "pods", &p, None),
        Ok(vec![Some(json!({"pods": "1"}))])
    );
}

#[test]
fn handles_should_pick_the_requests_kube_evaluates() {
    let plain = pod(json!({"containers": [{"name": "a"}]}));
    let deadline = pod(json!({"activeDeadlineSeconds": 10, "containers": [{"name": "a"}]}));
    let object = json!({"metadata": {"name": "x"}});
    let cases = [
        ("pod create", "", "pods", "", &plain, None, true),
        ("pod update", "", "pods", "", &plain, Some(&plain), false),
        (
            "pod update changing the Terminating scope",
            "",
            "pods",
            "",
            &deadline,
            Some(&plain),
            true,
        ),
        ("pod resize", "", "pods", "resize", &plain, Some(&plain), true),
        ("pod binding", "", "pods", "binding", &plain, None, false),
        ("service update", "", "services", "", &object, Some(&object), true),
        ("claim update", "", "persistentvolumeclaims", "", &object, Some(&object), true),
        (
            "claim status update",
            "",
            "persistentvolumeclaims",
            "status",
            &object,
            Some(&object),
            true,
        ),
        ("configmap create", "", "configmaps", "", &object, None, true),
        ("configmap update", "", "configmaps", "", &object, Some(&object), false),
        ("deployment create", "apps", "deployments", "", &object, None, true),
        ("events are ignored", "", "events", "", &object, None, false),
    ];
    for (name, group, plural, sub, obj, old, want) in cases {
        assert_eq!(handles(group, plural, sub, obj, old), want, "{name}");
    }
}

#[test]
fn recompute_should_sum_what_the_quota_tracks() {
    let q = json!({
        "metadata": {"name": "q"},
        "spec": {"hard": {"pods": "10", "requests.cpu": "4", "services.nodeports": "3",
            "configmaps": "5", "count/deployments.apps": "5", "example.com/unknown": "1"}},
        "status": {"used": {"pods": "7", "example.com/unknown": "1", "secrets": "2"}},
    });
    let running = pod(json!({"containers": [container("a", json!({"cpu": "1"}), json!({}))]}));
    let mut finished =
        pod(json!({"containers": [container("b", json!({"cpu": "500m"}), json!({}))]}));
    finished["status"] = json!({"phase": "Succeeded"});
    let service = json!({"metadata": {"name": "s"}, "spec": {"type": "NodePort", "ports": [{"port": 1}, {"port": 2}]}});
    let deployment = json!({"metadata": {"name": "d"}});
    let objects = [
        ("", "pods", &running),
        ("", "pods", &finished),
        ("", "services", &service),
        ("apps", "deployments", &deployment),
    ];
    let status = recompute_at(&q, objects, at("2024-01-01T00:00:00Z"));
    assert_eq!(
        status,
        json!({
            "hard": {"pods": "10", "requests.cpu": "4", "services.nodeports": "3", "configmaps": "5",
                "count/deployments.apps": "5", "example.com/unknown": "1"},
            "used": {"pods": "1", "requests.cpu": "1", "services.nodeports": "2", "configmaps": "0",
                "count/deployments.apps": "1", "example.com/unknown": "1"},
        })
    );

    let scoped = json!({"metadata": {"name": "be"}, "spec": {"hard": {"pods": "5"}, "scopes": ["BestEffort"]}});
    let idle = pod(json!({"containers": [{"name": "idle"}]}));
    let objects = [("", "pods", &running), ("", "pods", &idle)];
    assert_eq!(recompute(&scoped, objects), json!({"hard": {"pods": "5"}, "used": {"pods": "1"}}));

    let services_scoped = json!({"metadata": {"name": "s"}, "spec": {"hard": {"services": "5"}, "scopes": ["BestEffort"]}});
    assert_eq!(
        recompute(&services_scoped, [("", "services", &service)]),
        json!({"hard": {"services": "5"}, "used": {"services": "0"}}),
        "a scoped quota counts no services"
    );
}

#[test]
fn tracked_resources_should_name_what_to_read() {
    let q = json!({"spec": {"hard": {
        "pods": "1", "services": "1", "requests.storage": "1Gi",
        "gold.storageclass.storage.k8s.io/persistentvolumeclaims": "1", "configmaps": "1",
        "count/deployments.apps": "1", "count/secrets": "1", "requests.example.com/gpu": "1",
        "count/widgets.example.com": "1", "hugepages-2Mi": "1Gi",
    }}});
    let want: Vec<(String, String)> = [
        ("", "configmaps"),
        ("", "persistentvolumeclaims"),
        ("", "pods"),
        ("", "secrets"),
        ("", "services"),
        ("apps", "deployments"),
        ("example.com", "widgets"),
    ]
    .iter()
    .map(|(g, p)| ((*g).to_string(), (*p).to_string()))
    .collect();
    assert_eq!(tracked_resources(&q), want);
}

#[test]
fn validate_quota_should_report_kube_messages() {
    let spec = |spec: Value| json!({"metadata": {"name": "q"}, "spec": spec});
    let pairs = |list: &[(&str, &str)]| -> Vec<(String, String)> {
        list.iter().map(|(p, m)| ((*p).to_string(), (*m).to_string())).collect()
    };
    let cases = [
        (
            "valid",
            spec(
                json!({"hard": {"pods": "10", "count/deployments.apps": "2", "requests.example.com/gpu": "1"}}),
            ),
            vec![],
        ),
        (
            "unknown resource",
            spec(json!({"hard": {"foo": "1"}})),
            pairs(&[
                (
                    "spec.hard[foo]",
                    "Invalid value: \"foo\": must be a standard resource type or fully qualified",
                ),
                ("spec.hard[foo]", "Invalid value: \"foo\": must be a standard resource for quota"),
            ]),
        ),
        (
            "a resource that is not a quota resource",
            spec(json!({"hard": {"storage": "1Gi"}})),
            pairs(&[(
                "spec.hard[storage]",
                "Invalid value: \"storage\": must be a standard resource for quota",
            )]),
        ),
        (
            "negative and fractional counts",
            spec(json!({"hard": {"cpu": "-1", "pods": "1500m"}})),
            pairs(&[
                ("spec.hard[cpu]", "Invalid value: \"-1\": must be greater than or equal to 0"),
                ("spec.hard[pods]", "Invalid value: \"1500m\": must be an integer"),
            ]),
        ),
        (
            "not a qualified name",
            spec(json!({"hard": {"a/b/c": "1"}})),
            pairs(&[(
                "spec.hard[a/b/c]",
                "Invalid value: \"a/b/c\": a valid label key must consist of alphanumeric characters, '-', '_' \
                 or '.', and must start and end with an alphanumeric character (e.g. 'MyName',  or \
                 'my.name',  or '123-abc', regex used for validation is \
                 '([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]') with an optional DNS subdomain prefix and \
                 '/' (e.g. 'example.com/MyName')",
            )]),
        ),
        (
            "scopes: unsupported, misapplied, conflicting",
            spec(
                json!({"hard": {"cpu": "1", "pods": "1"}, "scopes": ["BestEffort", "NotBestEffort", "Foo"]}),
            ),
            pairs(&[
                (
                    "spec.scopes",
                    "Invalid value: [\"BestEffort\",\"NotBestEffort\",\"Foo\"]: unsupported scope applied to resource",
                ),
                (
                    "spec.scopes",
                    "Invalid value: [\"BestEffort\",\"NotBestEffort\",\"Foo\"]: unsupported scope",
                ),
                (
                    "spec.scopes",
                    "Invalid value: [\"BestEffort\",\"NotBestEffort\",\"Foo\"]: conflicting scopes",
                ),
            ]),
        ),
        (
            "scope selector",
            spec(json!({"hard": {"pods": "1"}, "scopeSelector": {"matchExpressions": [
                {"scopeName": "BestEffort", "operator": "DoesNotExist"},
                {"scopeName": "PriorityClass", "operator": "In"},
                {"scopeName": "PriorityClass", "operator": "Exists", "values": ["x"]},
                {"scopeName": "PriorityClass", "operator": "Gt", "values": ["1"]},
                {"scopeName": "Bar", "operator": "Exists"},
            ]}})),
            pairs(&[
                (
                    "spec.scopeSelector.matchExpressions.operator",
                    "Invalid value: \"DoesNotExist\": must be 'Exists' when scope is any of \
                     ResourceQuotaScopeTerminating, ResourceQuotaScopeNotTerminating, \
                     ResourceQuotaScopeBestEffort, ResourceQuotaScopeNotBestEffort or \
                     ResourceQuotaScopeCrossNamespacePodAffinity",
                ),
                (
                    "spec.scopeSelector.matchExpressions.values",
                    "Required value: must be at least one value when `operator` is 'In' or 'NotIn' for scope selector",
                ),
                (
                    "spec.scopeSelector.matchExpressions.values",
                    "Invalid value: [\"x\"]: must be no value when `operator` is 'Exist' or 'DoesNotExist' for scope selector",
                ),
                (
                    "spec.scopeSelector.matchExpressions.operator",
                    "Invalid value: \"Gt\": not a valid selector operator",
                ),
                (
                    "spec.scopeSelector.matchExpressions.scopeName",
                    "Invalid value: \"Bar\": unsupported scope",
                ),
            ]),
        ),
        (
            "scope selector misapplied to a resource",
            spec(json!({"hard": {"services": "1"}, "scopeSelector": {"matchExpressions": [
                {"scopeName": "PriorityClass", "operator": "In", "values": ["high"]}]}})),
            pairs(&[(
                "spec.scopeSelector.matchExpressions",
                "Invalid value: {\"matchExpressions\":[{\"scopeName\":\"PriorityClass\",\"operator\":\"In\",\
                 \"values\":[\"high\"]}]}: unsupported scope applied to resource",
            )]),
        ),
        (
            "status is validated too",
            json!({"metadata": {"name": "q"}, "spec": {"hard": {"pods": "1"}}, "status": {"used": {"pods": "-1"}}}),
            pairs(&[(
                "status.used[pods]",
                "Invalid value: \"-1\": must be greater than or equal to 0",
            )]),
        ),
    ];
    for (name, q, want) in cases {
        assert_eq!(validate_quota(&q), want, "{name}");
    }
}

#[test]
fn validate_quota_update_should_keep_scopes() {
    let old = json!({"metadata": {"name": "q"}, "spec": {"hard": {"pods": "1"}, "scopes": ["BestEffort"]}});
    let new = json!({"metadata": {"name": "q"}, "spec": {"hard": {"pods": "1"}, "scopes": ["NotBestEffort"]}});
    assert_eq!(validate_quota_update(&old, &old), vec![]);
    assert_eq!(
        validate_quota_update(&new, &old),
        vec![(
            "spec.scopes".to_string(),
            "Invalid value: [\"NotBestEffort\"]: field is immutable".to_string()
        )]
    );
}
