use serde_json::json;

use super::*;

fn limit_range(items: Value) -> Value {
    json!({"metadata": {"name": "limits", "namespace": "ns"}, "spec": {"limits": items}})
}

fn pod_with(containers: Value) -> Value {
    json!({"metadata": {"name": "p", "namespace": "ns"}, "spec": {"containers": containers}})
}

fn container(name: &str, requests: Value, limits: Value) -> Value {
    json!({"name": name, "resources": {"requests": requests, "limits": limits}})
}

fn strings(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| (*s).to_string()).collect()
}

#[test]
fn default_pod_should_fill_missing_values_and_annotate() {
    let lr = limit_range(json!([
        {"type": "Container", "default": {"cpu": "500m", "memory": "256Mi"}, "defaultRequest": {"cpu": "100m"}},
        {"type": "Pod", "max": {"cpu": "4"}},
    ]));
    let mut pod = json!({
        "metadata": {"name": "p"},
        "spec": {
            "containers": [
                {"name": "nginx"},
                {"name": "sidecar", "resources": {"limits": {"cpu": "1"}, "requests": {"cpu": "1"}}},
            ],
            "initContainers": [{"name": "init", "resources": {}}],
        },
    });
    default_pod(&[lr], &mut pod);
    assert_eq!(
        pod["spec"]["containers"][0]["resources"],
        json!({"limits": {"cpu": "500m", "memory": "256Mi"}, "requests": {"cpu": "100m"}})
    );
    assert_eq!(
        pod["spec"]["containers"][1]["resources"],
        json!({"limits": {"cpu": "1", "memory": "256Mi"}, "requests": {"cpu": "1"}}),
        "values already set are kept"
    );
    assert_eq!(
        pod["spec"]["initContainers"][0]["resources"],
        json!({"limits": {"cpu": "500m", "memory": "256Mi"}, "requests": {"cpu": "100m"}})
    );
    assert_eq!(
        pod["metadata"]["annotations"][ANNOTATION],
        json!(
            "LimitRanger plugin set: cpu request for container nginx; cpu, memory limit for container \
             nginx; memory limit for container sidecar; cpu request for init container init; cpu, \
             memory limit for init container init"
        )
    );
}

#[test]
fn default_pod_should_let_the_first_limit_range_win_and_the_last_annotate() {
    let first = limit_range(json!([{"type": "Container", "default": {"cpu": "1"}}]));
    let second =
        limit_range(json!([{"type": "Container", "default": {"cpu": "2", "memory": "1024Mi"}}]));
    let mut pod = pod_with(json!([{"name": "app"}]));
    default_pod(&[first, second], &mut pod);
    assert_eq!(
        pod["spec"]["containers"][0]["resources"]["limits"],
        json!({"cpu": "1", "memory": "1Gi"})
    );
    assert_eq!(
        pod["metadata"]["annotations"][ANNOTATION],
        json!("LimitRanger plugin set: memory limit for container app")
    );

    let mut untouched =
        pod_with(json!([container("app", json!({"cpu": "1"}), json!({"cpu": "1"}))]));
    let before = untouched.clone();
    default_pod(
        &[limit_range(json!([{"type": "Container", "default": {"cpu": "2"}}]))],
        &mut untouched,
    );
    assert_eq!(untouched, before, "nothing to set: no annotation either");
}

#[test]
fn default_limit_range_should_fill_defaults_from_max_and_min() {
    let mut lr = limit_range(json!([
        {"type": "Container", "max": {"cpu": "2", "memory": "1Gi"}, "min": {"cpu": "100m", "ephemeral-storage": "1.5Gi"},
         "default": {"memory": "512Mi"}},
        {"type": "Pod", "max": {"cpu": "4"}},
    ]));
    default_limit_range(&mut lr);
    assert_eq!(lr["spec"]["limits"][0]["default"], json!({"cpu": "2", "memory": "512Mi"}));
    assert_eq!(
        lr["spec"]["limits"][0]["defaultRequest"],
        json!({"cpu": "2", "memory": "512Mi", "ephemeral-storage": "1536Mi"}),
        "copies are written as kube prints quantities"
    );
    assert_eq!(
        lr["spec"]["limits"][1],
        json!({"type": "Pod", "max": {"cpu": "4"}}),
        "only Container items"
    );
}

#[test]
fn validate_should_report_every_limit_ranger_message() {
    let item = |bounds: Value| limit_range(json!([bounds]));
    let one =
        |requests: Value, limits: Value| pod_with(json!([container("app", requests, limits)]));
    let cases = [
        (
            "min without a request",
            item(json!({"type": "Container", "min": {"cpu": "100m"}})),
            one(json!({}), json!({})),
            "minimum cpu usage per Container is 100m.  No request is specified",
        ),
        (
            "min above the request",
            item(json!({"type": "Container", "min": {"cpu": "100m"}})),
            one(json!({"cpu": "50m"}), json!({})),
            "minimum cpu usage per Container is 100m, but request is 50m",
        ),
        (
            "min above the limit",
            item(json!({"type": "Container", "min": {"cpu": "100m"}})),
            one(json!({"cpu": "200m"}), json!({"cpu": "50m"})),
            "minimum cpu usage per Container is 100m, but limit is 50m",
        ),
        (
            "max without a limit",
            item(json!({"type": "Container", "max": {"cpu": "1"}})),
            one(json!({"cpu": "1"}), json!({})),
            "maximum cpu usage per Container is 1.  No limit is specified",
        ),
        (
            "max below the limit",
            item(json!({"type": "Container", "max": {"cpu": "1"}})),
            one(json!({}), json!({"cpu": "2"})),
            "maximum cpu usage per Container is 1, but limit is 2",
        ),
        (
            "max below the request",
            item(json!({"type": "Container", "max": {"memory": "1Gi"}})),
            one(json!({"memory": "2Gi"}), json!({"memory": "1Gi"})),
            "maximum memory usage per Container is 1Gi, but request is 2Gi",
        ),
        (
            "ratio without a request",
            item(json!({"type": "Container", "maxLimitRequestRatio": {"cpu": "2"}})),
            one(json!({"cpu": "0"}), json!({"cpu": "1"})),
            "cpu max limit to request ratio per Container is 2, but no request is specified or request is 0",
        ),
        (
            "ratio without a limit",
            item(json!({"type": "Container", "maxLimitRequestRatio": {"cpu": "2"}})),
            one(json!({"cpu": "1"}), json!({})),
            "cpu max limit to request ratio per Container is 2, but no limit is specified or limit is 0",
        ),
        (
            "ratio exceeded",
            item(json!({"type": "Container", "maxLimitRequestRatio": {"cpu": "2"}})),
            one(json!({"cpu": "250m"}), json!({"cpu": "1"})),
            "cpu max limit to request ratio per Container is 2, but provided ratio is 4.000000",
        ),
        (
            "ratio exceeded by a fraction",
            item(json!({"type": "Container", "maxLimitRequestRatio": {"memory": "1500m"}})),
            one(json!({"memory": "300Mi"}), json!({"memory": "500Mi"})),
            "memory max limit to request ratio per Container is 1500m, but provided ratio is 1.666667",
        ),
        (
            "the pod's sum above a Pod max",
            item(json!({"type": "Pod", "max": {"memory": "1Gi"}})),
            pod_with(json!([
                container("a", json!({}), json!({"memory": "1Gi"})),
                container("b", json!({}), json!({"memory": "512Mi"})),
            ])),
            "maximum memory usage per Pod is 1Gi, but limit is 1536Mi",
        ),
        (
            "the pod's sum below a Pod min",
            item(json!({"type": "Pod", "min": {"cpu": "1"}})),
            pod_with(json!([
                container("a", json!({"cpu": "250m"}), json!({})),
                container("b", json!({"cpu": "500m"}), json!({})),
            ])),
            "minimum cpu usage per Pod is 1, but request is 750m",
        ),
    ];
    for (name, lr, pod, want) in cases {
        assert_eq!(validate(&[lr], "Pod", &pod), Err(strings(&[want])), "{name}");
    }
}

#[test]
fn validate_should_check_init_containers_and_pass_pods_within_bounds() {
    let lr =
        limit_range(json!([{"type": "Container", "min": {"cpu": "100m"}, "max": {"cpu": "1"}}]));
    let good = pod_with(json!([container("app", json!({"cpu": "500m"}), json!({"cpu": "1"}))]));
    assert_eq!(validate(std::slice::from_ref(&lr), "Pod", &good), Ok(()));
    let mut with_init = good.clone();
    with_init["spec"]["initContainers"] =
        json!([container("init", json!({"cpu": "10m"}), json!({"cpu": "2"}))]);
    assert_eq!(
        validate(std::slice::from_ref(&lr), "Pod", &with_init),
        Err(strings(&[
            "minimum cpu usage per Container is 100m, but request is 10m",
            "maximum cpu usage per Container is 1, but limit is 2",
        ]))
    );
    assert_eq!(validate(&[lr], "Service", &with_init), Ok(()), "other kinds are not limited");
}

#[test]
fn validate_should_report_the_first_limit_range_that_refuses() {
    let loose = limit_range(json!([{"type": "Container", "max": {"cpu": "8"}}]));
    let tight = limit_range(json!([{"type": "Container", "max": {"cpu": "1", "memory": "1Gi"}}]));
    let tighter = limit_range(json!([{"type": "Container", "max": {"cpu": "500m"}}]));
    let pod = pod_with(json!([container("app", json!({}), json!({"cpu": "2", "memory": "2Gi"}))]));
    assert_eq!(
        validate(&[loose, tight, tighter], "Pod", &pod),
        Err(strings(&[
            "maximum cpu usage per Container is 1, but limit is 2",
            "maximum memory usage per Container is 1Gi, but limit is 2Gi",
        ]))
    );
}

#[test]
fn validate_should_bound_claim_storage_requests() {
    let lr = limit_range(
        json!([{"type": "PersistentVolumeClaim", "min": {"storage": "1Gi"}, "max": {"storage": "10Gi"}}]),
    );
    let claim = |storage: Option<&str>| {
        let requests = storage.map_or(json!({}), |s| json!({"storage": s}));
        json!({"metadata": {"name": "c"}, "spec": {"resources": {"requests": requests}}})
    };
    let cases = [
        (Some("5Gi"), vec![]),
        (
            Some("500Mi"),
            vec!["minimum storage usage per PersistentVolumeClaim is 1Gi, but request is 500Mi"],
        ),
        (
            Some("20Gi"),
            vec!["maximum storage usage per PersistentVolumeClaim is 10Gi, but request is 20Gi"],
        ),
        (
            None,
            vec![
                "minimum storage usage per PersistentVolumeClaim is 1Gi.  No request is specified",
                "maximum storage usage per PersistentVolumeClaim is 10Gi.  No request is specified",
            ],
        ),
    ];
    for (storage, want) in cases {
        let got = validate(std::slice::from_ref(&lr), "PersistentVolumeClaim", &claim(storage));
        let want = if want.is_empty() { Ok(()) } else { Err(strings(&want)) };
        assert_eq!(got, want, "{storage:?}");
    }
}

#[test]
fn forbidden_message_should_print_like_kube_aggregates() {
    assert_eq!(forbidden_message(&strings(&["a"])), "a");
    assert_eq!(forbidden_message(&strings(&["a", "b"])), "[a, b]");
    assert_eq!(forbidden_message(&strings(&["a", "b", "a"])), "[a, b]", "repeats are dropped");
    assert_eq!(forbidden_message(&strings(&["a", "a"])), "a");
    assert_eq!(forbidden_message(&[]), "");
}

#[test]
fn validate_limit_range_should_report_kube_messages() {
    let pairs = |list: &[(&str, &str)]| -> Vec<(String, String)> {
        list.iter().map(|(p, m)| ((*p).to_string(), (*m).to_string())).collect()
    };
    let cases = [
        (
            "valid",
            limit_range(json!([
                {"type": "Container", "min": {"cpu": "100m"}, "max": {"cpu": "2"}, "default": {"cpu": "1"},
                 "defaultRequest": {"cpu": "500m"}, "maxLimitRequestRatio": {"cpu": "4"}},
                {"type": "PersistentVolumeClaim", "max": {"storage": "10Gi"}},
            ])),
            vec![],
        ),
        (
            "order of min, defaultRequest, default and max",
            limit_range(json!([{"type": "Container", "min": {"cpu": "2"}, "max": {"cpu": "1"},
                "default": {"cpu": "3"}, "defaultRequest": {"cpu": "4"}}])),
            pairs(&[
                (
                    "spec.limits[0].min[cpu]",
                    "Invalid value: \"2\": min value 2 is greater than max value 1",
                ),
                (
                    "spec.limits[0].defaultRequest[cpu]",
                    "Invalid value: \"4\": default request value 4 is greater than max value 1",
                ),
                (
                    "spec.limits[0].defaultRequest[cpu]",
                    "Invalid value: \"4\": default request value 4 is greater than default limit value 3",
                ),
                (
                    "spec.limits[0].default[cpu]",
                    "Invalid value: \"1\": default value 3 is greater than max value 1",
                ),
            ]),
        ),
        (
            "min above the defaults",
            limit_range(json!([{"type": "Container", "min": {"memory": "1Gi"},
                "default": {"memory": "512Mi"}, "defaultRequest": {"memory": "256Mi"}}])),
            pairs(&[
                (
                    "spec.limits[0].defaultRequest[memory]",
                    "Invalid value: \"256Mi\": min value 1Gi is greater than default request value 256Mi",
                ),
                (
                    "spec.limits[0].default[memory]",
                    "Invalid value: \"1Gi\": min value 1Gi is greater than default value 512Mi",
                ),
            ]),
        ),
        (
            "ratios",
            limit_range(json!([{"type": "Container", "min": {"cpu": "100m"}, "max": {"cpu": "1"},
                "maxLimitRequestRatio": {"cpu": "20", "memory": "500m"}}])),
            pairs(&[
                (
                    "spec.limits[0].maxLimitRequestRatio[cpu]",
                    "Invalid value: \"20\": ratio 20 is greater than max/min = 10.000000",
                ),
                (
                    "spec.limits[0].maxLimitRequestRatio[memory]",
                    "Invalid value: \"500m\": ratio 500m is less than 1",
                ),
            ]),
        ),
        (
            "defaults on a Pod item, storage-less claim item, duplicate and unknown types",
            limit_range(json!([
                {"type": "Pod", "default": {"cpu": "1"}, "defaultRequest": {"cpu": "1"}},
                {"type": "PersistentVolumeClaim", "min": {"cpu": "1"}},
                {"type": "Pod"},
                {"type": "Foo"},
            ])),
            pairs(&[
                ("spec.limits[0].default", "Forbidden: may not be specified when `type` is 'Pod'"),
                (
                    "spec.limits[0].defaultRequest",
                    "Forbidden: may not be specified when `type` is 'Pod'",
                ),
                (
                    "spec.limits[1].limits",
                    "Required value: either minimum or maximum storage value is required, but neither was provided",
                ),
                ("spec.limits[2].type", "Duplicate value: \"Pod\""),
                (
                    "spec.limits[3].type",
                    "Invalid value: \"Foo\": must be a standard limit type or fully qualified",
                ),
            ]),
        ),
        (
            "resource names",
            limit_range(json!([
                {"type": "Container", "max": {"foo": "1", "storage": "1Gi", "example.com/gpu": "1"}},
                {"type": "PersistentVolumeClaim", "max": {"storage": "1Gi", "bar": "1"}},
            ])),
            pairs(&[
                (
                    "spec.limits[0].max[foo]",
                    "Invalid value: \"foo\": must be a standard resource type or fully qualified",
                ),
                (
                    "spec.limits[0].max[foo]",
                    "Invalid value: \"foo\": must be a standard resource for containers",
                ),
                (
                    "spec.limits[0].max[storage]",
                    "Invalid value: \"storage\": must be a standard resource for containers",
                ),
                (
                    "spec.limits[1].max[bar]",
                    "Invalid value: \"bar\": must be a standard resource type or fully qualified",
                ),
            ]),
        ),
        (
            "resources that cannot be overcommitted",
            limit_range(
                json!([{"type": "Container", "default": {"hugepages-2Mi": "4Mi", "example.com/gpu": "1"},
                "defaultRequest": {"hugepages-2Mi": "2Mi", "example.com/gpu": "1"}}]),
            ),
            pairs(&[(
                "spec.limits[0].defaultRequest[hugepages-2Mi]",
                "Invalid value: \"2Mi\": default value 4Mi must equal to defaultRequest value 2Mi in hugepages-2Mi",
            )]),
        ),
    ];
    for (name, lr, want) in cases {
        assert_eq!(validate_limit_range(&lr), want, "{name}");
    }
}
