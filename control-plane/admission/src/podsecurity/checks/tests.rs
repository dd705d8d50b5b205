//! One table per check, with the reasons and details kube's `check_*_test.go` expect.

use serde_json::{Value, json};

use super::*;

/// A case: the pod (`{"metadata": .., "spec": ..}`) and the expected (reason, detail), `None`
/// when the check must pass.
type Case = (&'static str, Value, Option<(&'static str, &'static str)>);

fn run_table(check: CheckFn, cases: Vec<Case>) {
    for (name, pod, expected) in cases {
        let pod = Pod { meta: &pod["metadata"], spec: &pod["spec"] };
        let got = check(&pod);
        let got = got.as_ref().map(|v| (v.reason.as_str(), v.detail.as_str()));
        assert_eq!(got, expected, "case {name:?}");
    }
}

fn spec(spec: Value) -> Value {
    json!({ "spec": spec })
}

fn containers(containers: Value) -> Value {
    json!({ "spec": { "containers": containers } })
}

#[test]
fn allow_privilege_escalation_should_require_false_on_every_container() {
    let multiple = containers(json!([
        {"name": "a"},
        {"name": "b", "securityContext": {}},
        {"name": "c", "securityContext": {"allowPrivilegeEscalation": true}},
        {"name": "d", "securityContext": {"allowPrivilegeEscalation": false}},
    ]));
    let detail =
        r#"containers "a", "b", "c" must set securityContext.allowPrivilegeEscalation=false"#;
    let windows = spec(json!({"os": {"name": "windows"}, "containers": [{"name": "a"}]}));
    let linux = spec(json!({"os": {"name": "linux"}, "containers": [{"name": "a"}]}));
    let one = r#"container "a" must set securityContext.allowPrivilegeEscalation=false"#;
    let reason = "allowPrivilegeEscalation != false";
    run_table(
        allow_privilege_escalation_1_8,
        vec![
            ("multiple containers", multiple.clone(), Some((reason, detail))),
            ("windows pod before 1.25", windows.clone(), Some((reason, one))),
        ],
    );
    run_table(
        allow_privilege_escalation_1_25,
        vec![
            ("multiple containers", multiple, Some((reason, detail))),
            ("windows pod, admit without checking", windows, None),
            ("linux pod, reject if security context is not set", linux, Some((reason, one))),
            (
                "init and ephemeral containers count",
                spec(json!({
                    "initContainers": [{"name": "i"}],
                    "containers": [{"name": "c", "securityContext": {"allowPrivilegeEscalation": false}}],
                    "ephemeralContainers": [{"name": "e"}],
                })),
                Some((
                    reason,
                    r#"containers "i", "e" must set securityContext.allowPrivilegeEscalation=false"#,
                )),
            ),
        ],
    );
}

#[test]
fn app_armor_profile_should_refuse_unconfined_fields_and_annotations() {
    let unconfined = json!({"appArmorProfile": {"type": "Unconfined"}});
    run_table(
        app_armor_profile_1_0,
        vec![
            (
                "unconfined pod",
                spec(json!({"securityContext": unconfined, "containers": [{"name": "a"}]})),
                Some((
                    "forbidden AppArmor profile",
                    r#"pod must not set AppArmor profile type to "Unconfined""#,
                )),
            ),
            (
                "unconfined container",
                containers(json!([{"name": "foo", "securityContext": unconfined}])),
                Some((
                    "forbidden AppArmor profile",
                    r#"container "foo" must not set AppArmor profile type to "Unconfined""#,
                )),
            ),
            (
                "unconfined init container",
                spec(json!({"initContainers": [{"name": "bar", "securityContext": unconfined}]})),
                Some((
                    "forbidden AppArmor profile",
                    r#"container "bar" must not set AppArmor profile type to "Unconfined""#,
                )),
            ),
            (
                "runtime default and localhost are allowed",
                spec(json!({
                    "securityContext": {"appArmorProfile": {"type": "RuntimeDefault"}},
                    "containers": [{"name": "a", "securityContext": {"appArmorProfile": {"type": "Localhost", "localhostProfile": "p"}}}],
                })),
                None,
            ),
            (
                "multiple annotations",
                json!({"metadata": {"annotations": {
                    "container.apparmor.security.beta.kubernetes.io/": "bogus",
                    "container.apparmor.security.beta.kubernetes.io/a": "",
                    "container.apparmor.security.beta.kubernetes.io/b": "runtime/default",
                    "container.apparmor.security.beta.kubernetes.io/c": "localhost/",
                    "container.apparmor.security.beta.kubernetes.io/d": "localhost/foo",
                    "container.apparmor.security.beta.kubernetes.io/e": "unconfined",
                    "container.apparmor.security.beta.kubernetes.io/f": "unknown",
                    "other.example.com/e": "unconfined",
                }}}),
                Some((
                    "forbidden AppArmor profiles",
                    concat!(
                        r#"annotations must not set AppArmor profile type to "#,
                        r#""container.apparmor.security.beta.kubernetes.io/="bogus"", "#,
                        r#""container.apparmor.security.beta.kubernetes.io/e="unconfined"", "#,
                        r#""container.apparmor.security.beta.kubernetes.io/f="unknown"""#,
                    ),
                )),
            ),
            (
                "pod, container and annotation",
                json!({
                    "metadata": {"annotations": {"container.apparmor.security.beta.kubernetes.io/a": "unconfined"}},
                    "spec": {
                        "securityContext": unconfined,
                        "containers": [{"name": "a", "securityContext": {"appArmorProfile": {"type": "Unconfined"}}}],
                    },
                }),
                Some((
                    "forbidden AppArmor profiles",
                    r#"pod and container "a" and annotation must not set AppArmor profile type to "Unconfined", "container.apparmor.security.beta.kubernetes.io/a="unconfined"""#,
                )),
            ),
        ],
    );
}

#[test]
fn capabilities_baseline_should_refuse_non_default_capabilities() {
    run_table(
        capabilities_baseline_1_0,
        vec![
            (
                "multiple containers",
                containers(json!([
                    {"name": "a", "securityContext": {"capabilities": {"add": ["FOO", "BAR"]}}},
                    {"name": "b", "securityContext": {"capabilities": {"add": ["BAR", "BAZ"]}}},
                    {"name": "c", "securityContext": {"capabilities": {"add": ["NET_BIND_SERVICE", "CHOWN"]}}},
                ])),
                Some((
                    "non-default capabilities",
                    r#"containers "a", "b" must not include "BAR", "BAZ", "FOO" in securityContext.capabilities.add"#,
                )),
            ),
            (
                "default set and drops are allowed",
                containers(json!([{"name": "a", "securityContext": {"capabilities": {
                    "add": ["AUDIT_WRITE", "KILL", "SYS_CHROOT"], "drop": ["ALL"],
                }}}])),
                None,
            ),
            (
                "NET_RAW is not in the default set",
                containers(
                    json!([{"name": "a", "securityContext": {"capabilities": {"add": ["NET_RAW"]}}}]),
                ),
                Some((
                    "non-default capabilities",
                    r#"container "a" must not include "NET_RAW" in securityContext.capabilities.add"#,
                )),
            ),
        ],
    );
}

#[test]
fn host_namespaces_should_refuse_sharing_host_namespaces() {
    run_table(
        host_namespaces_1_0,
        vec![
            (
                "multiple host namespaces",
                spec(json!({"hostNetwork": true, "hostPID": true, "hostIPC": true})),
                Some(("host namespaces", "hostNetwork=true, hostPID=true, hostIPC=true")),
            ),
            (
                "host PID only",
                spec(json!({"hostPID": true})),
                Some(("host namespaces", "hostPID=true")),
            ),
            ("false is allowed", spec(json!({"hostNetwork": false, "hostIPC": false})), None),
        ],
    );
}

#[test]
fn host_path_volumes_should_name_every_host_path_volume() {
    run_table(
        host_path_volumes_1_0,
        vec![
            (
                "host path volumes",
                spec(json!({"volumes": [
                    {"name": "a", "hostPath": {"path": "/a"}},
                    {"name": "b", "hostPath": {}},
                    {"name": "c", "emptyDir": {}},
                ]})),
                Some(("hostPath volumes", r#"volumes "a", "b""#)),
            ),
            (
                "one volume",
                spec(json!({"volumes": [{"name": "a", "hostPath": {"path": "/"}}]})),
                Some(("hostPath volumes", r#"volume "a""#)),
            ),
            ("null is absent", spec(json!({"volumes": [{"name": "a", "hostPath": null}]})), None),
        ],
    );
}

#[test]
fn host_ports_should_list_ports_as_sorted_text() {
    run_table(
        host_ports_1_0,
        vec![
            (
                "one container, one host port",
                containers(json!([
                    {"name": "a", "ports": [{"containerPort": 10}]},
                    {"name": "b", "ports": [{"containerPort": 20, "hostPort": 20}]},
                ])),
                Some(("hostPort", r#"container "b" uses hostPort 20"#)),
            ),
            (
                "multiple containers, multiple host port",
                containers(json!([
                    {"name": "a", "ports": [{"hostPort": 0}]},
                    {"name": "b", "ports": [{"hostPort": 10}, {"hostPort": 20}]},
                    {"name": "c", "ports": [{"hostPort": 10}, {"hostPort": 30}]},
                ])),
                Some(("hostPort", r#"containers "b", "c" use hostPorts 10, 20, 30"#)),
            ),
            (
                "text order, not numeric",
                containers(
                    json!([{"name": "a", "ports": [{"hostPort": 80}, {"hostPort": 10000}]}]),
                ),
                Some(("hostPort", r#"container "a" uses hostPorts 10000, 80"#)),
            ),
        ],
    );
}

#[test]
fn host_probes_and_host_lifecycle_should_refuse_hosts_in_handlers() {
    let reason = "probe or lifecycle host";
    run_table(
        host_probes_and_host_lifecycle_1_34,
        vec![
            (
                "valid pod with unset hosts",
                containers(json!([{"name": "a",
                    "livenessProbe": {"httpGet": {"port": 80, "host": ""}},
                    "readinessProbe": {"tcpSocket": {"port": 80}},
                    "lifecycle": {"preStop": {"httpGet": {"port": 80}}},
                }])),
                None,
            ),
            (
                "local host IPs as probe hosts",
                containers(json!([{"name": "a",
                    "livenessProbe": {"httpGet": {"host": "localhost"}},
                    "readinessProbe": {"tcpSocket": {"host": "127.0.0.1"}},
                    "startupProbe": {"httpGet": {"host": "::1"}},
                }])),
                Some((
                    reason,
                    r#"container "a" uses probe or lifecycle hosts "127.0.0.1", "::1", "localhost""#,
                )),
            ),
            (
                "invalid poststart tcpsocket host",
                containers(
                    json!([{"name": "d", "lifecycle": {"postStart": {"tcpSocket": {"host": "invalid.host"}}}}]),
                ),
                Some((reason, r#"container "d" uses probe or lifecycle host "invalid.host""#)),
            ),
            (
                "invalid prestop httpget host",
                containers(
                    json!([{"name": "e", "lifecycle": {"preStop": {"httpGet": {"host": "another.invalid.host"}}}}]),
                ),
                Some((
                    reason,
                    r#"container "e" uses probe or lifecycle host "another.invalid.host""#,
                )),
            ),
            (
                "multiple containers, names sorted and hosts de-duplicated",
                containers(json!([
                    {"name": "invalid2", "livenessProbe": {"httpGet": {"host": "b.com"}}},
                    {"name": "invalid1", "readinessProbe": {"httpGet": {"host": "a.com"}},
                        "startupProbe": {"tcpSocket": {"host": "b.com"}}},
                ])),
                Some((
                    reason,
                    r#"containers "invalid1", "invalid2" use probe or lifecycle hosts "a.com", "b.com""#,
                )),
            ),
            (
                "invalid host in init container",
                spec(
                    json!({"initContainers": [{"name": "init", "livenessProbe": {"httpGet": {"host": "invalid.init.host"}}}]}),
                ),
                Some((
                    reason,
                    r#"container "init" uses probe or lifecycle host "invalid.init.host""#,
                )),
            ),
        ],
    );
}

#[test]
fn privileged_should_refuse_privileged_containers() {
    run_table(
        privileged_1_0,
        vec![
            (
                "privileged",
                containers(json!([
                    {"name": "a"},
                    {"name": "b", "securityContext": {}},
                    {"name": "c", "securityContext": {"privileged": false}},
                    {"name": "d", "securityContext": {"privileged": true}},
                    {"name": "e", "securityContext": {"privileged": true}},
                ])),
                Some((
                    "privileged",
                    r#"containers "d", "e" must not set securityContext.privileged=true"#,
                )),
            ),
            (
                "none privileged",
                containers(json!([{"name": "a", "securityContext": {"privileged": false}}])),
                None,
            ),
        ],
    );
}

#[test]
fn proc_mount_should_refuse_non_default_unless_user_namespaced_baseline() {
    let pod = |host_users: Value| {
        spec(json!({"hostUsers": host_users, "containers": [
            {"name": "a"},
            {"name": "b", "securityContext": {}},
            {"name": "c", "securityContext": {"procMount": "Default"}},
            {"name": "d", "securityContext": {"procMount": "Unmasked"}},
            {"name": "e", "securityContext": {"procMount": "other"}},
        ]}))
    };
    let refused = Some((
        "procMount",
        r#"containers "d", "e" must not set securityContext.procMount to "Unmasked", "other""#,
    ));
    run_table(
        proc_mount_1_0,
        vec![
            ("procMount", pod(Value::Null), refused),
            ("user namespace does not matter", pod(json!(false)), refused),
        ],
    );
    run_table(
        proc_mount_baseline_1_35,
        vec![
            ("procMount", pod(Value::Null), refused),
            ("host users true", pod(json!(true)), refused),
            ("procMount with userns", pod(json!(false)), None),
        ],
    );
}

#[test]
fn se_linux_options_should_limit_type_user_and_role() {
    let reason = "seLinuxOptions";
    let cases = vec![
        (
            "invalid pod and containers",
            spec(json!({
                "securityContext": {"seLinuxOptions": {"type": "foo", "user": "bar", "role": "baz"}},
                "containers": [
                    {"name": "a"},
                    {"name": "b", "securityContext": {}},
                    {"name": "c", "securityContext": {"seLinuxOptions": {}}},
                    {"name": "d", "securityContext": {"seLinuxOptions": {"type": "container_t"}}},
                    {"name": "e", "securityContext": {"seLinuxOptions": {"type": "bar"}}},
                    {"name": "f", "securityContext": {"seLinuxOptions": {"user": "bar"}}},
                    {"name": "g", "securityContext": {"seLinuxOptions": {"role": "baz"}}},
                ],
            })),
            Some((
                reason,
                r#"pod and containers "e", "f", "g" set forbidden securityContext.seLinuxOptions: types "bar", "foo"; user may not be set; role may not be set"#,
            )),
        ),
        (
            "invalid pod",
            spec(
                json!({"securityContext": {"seLinuxOptions": {"type": "foo", "user": "bar", "role": "baz"}}}),
            ),
            Some((
                reason,
                r#"pod set forbidden securityContext.seLinuxOptions: type "foo"; user may not be set; role may not be set"#,
            )),
        ),
        (
            "bad user",
            spec(
                json!({"securityContext": {"seLinuxOptions": {"type": "container_init_t", "user": "bad"}}}),
            ),
            Some((reason, "pod set forbidden securityContext.seLinuxOptions: user may not be set")),
        ),
        (
            "bad role",
            spec(json!({"securityContext": {"seLinuxOptions": {"role": "bad"}}})),
            Some((reason, "pod set forbidden securityContext.seLinuxOptions: role may not be set")),
        ),
        (
            "allowed types and level",
            spec(
                json!({"securityContext": {"seLinuxOptions": {"type": "container_kvm_t", "level": "s0:c1,c2"}}}),
            ),
            None,
        ),
    ];
    run_table(se_linux_options_1_0, cases.clone());
    run_table(se_linux_options_1_31, cases);

    let engine = containers(
        json!([{"name": "a", "securityContext": {"seLinuxOptions": {"type": "container_engine_t"}}}]),
    );
    run_table(
        se_linux_options_1_0,
        vec![(
            "container_engine_t before 1.31",
            engine.clone(),
            Some((
                reason,
                r#"container "a" set forbidden securityContext.seLinuxOptions: type "container_engine_t""#,
            )),
        )],
    );
    run_table(se_linux_options_1_31, vec![("container_engine_t from 1.31", engine, None)]);
}

#[test]
fn seccomp_profile_baseline_should_check_annotations_before_1_19_and_fields_after() {
    let reason = "seccompProfile";
    run_table(
        seccomp_profile_baseline_1_0,
        vec![
            (
                "pod seccomp invalid",
                json!({"metadata": {"annotations": {"seccomp.security.alpha.kubernetes.io/pod": "unconfined"}}}),
                Some((
                    reason,
                    r#"forbidden annotation seccomp.security.alpha.kubernetes.io/pod="unconfined""#,
                )),
            ),
            (
                "pod and containers seccomp invalid",
                json!({
                    "metadata": {"annotations": {
                        "seccomp.security.alpha.kubernetes.io/pod": "unconfined",
                        "container.seccomp.security.alpha.kubernetes.io/a": "unconfined",
                        "container.seccomp.security.alpha.kubernetes.io/b": "unknown",
                        "container.seccomp.security.alpha.kubernetes.io/c": "runtime/default",
                        "container.seccomp.security.alpha.kubernetes.io/z": "unconfined",
                    }},
                    "spec": {"containers": [{"name": "a"}, {"name": "b"}, {"name": "c"}]},
                }),
                Some((
                    reason,
                    concat!(
                        r#"forbidden annotations container.seccomp.security.alpha.kubernetes.io/a="unconfined", "#,
                        r#"container.seccomp.security.alpha.kubernetes.io/b="unknown", "#,
                        r#"seccomp.security.alpha.kubernetes.io/pod="unconfined""#,
                    ),
                )),
            ),
            (
                "empty annotation value is forbidden, allowed values pass",
                json!({
                    "metadata": {"annotations": {
                        "seccomp.security.alpha.kubernetes.io/pod": "docker/default",
                        "container.seccomp.security.alpha.kubernetes.io/a": "localhost/p.json",
                        "container.seccomp.security.alpha.kubernetes.io/b": "",
                    }},
                    "spec": {"containers": [{"name": "a"}, {"name": "b"}]},
                }),
                Some((
                    reason,
                    r#"forbidden annotation container.seccomp.security.alpha.kubernetes.io/b="""#,
                )),
            ),
            (
                "fields are not looked at",
                spec(json!({"securityContext": {"seccompProfile": {"type": "Unconfined"}}})),
                None,
            ),
        ],
    );
    run_table(
        seccomp_profile_baseline_1_19,
        vec![
            (
                "pod seccomp invalid",
                spec(json!({"securityContext": {"seccompProfile": {"type": "Unconfined"}}})),
                Some((
                    reason,
                    r#"pod must not set securityContext.seccompProfile.type to "Unconfined""#,
                )),
            ),
            (
                "containers seccomp invalid",
                containers(json!([
                    {"name": "a"},
                    {"name": "b", "securityContext": {"seccompProfile": {"type": "RuntimeDefault"}}},
                    {"name": "c", "securityContext": {"seccompProfile": {"type": "Unconfined"}}},
                    {"name": "d", "securityContext": {"seccompProfile": {"type": "Unconfined"}}},
                ])),
                Some((
                    reason,
                    r#"containers "c", "d" must not set securityContext.seccompProfile.type to "Unconfined""#,
                )),
            ),
            (
                "pod and containers seccomp invalid",
                spec(json!({
                    "securityContext": {"seccompProfile": {"type": "Unconfined"}},
                    "containers": [
                        {"name": "c", "securityContext": {"seccompProfile": {"type": "Unconfined"}}},
                        {"name": "d", "securityContext": {"seccompProfile": {"type": "Unconfined"}}},
                    ],
                })),
                Some((
                    reason,
                    r#"pod and containers "c", "d" must not set securityContext.seccompProfile.type to "Unconfined""#,
                )),
            ),
            (
                "unset is allowed at baseline",
                json!({
                    "metadata": {"annotations": {"seccomp.security.alpha.kubernetes.io/pod": "unconfined"}},
                    "spec": {"containers": [{"name": "a"}]},
                }),
                None,
            ),
        ],
    );
}

#[test]
fn seccomp_profile_restricted_should_require_a_profile_everywhere() {
    let reason = "seccompProfile";
    let must_set = r#"pod or container "a" must set securityContext.seccompProfile.type to "RuntimeDefault" or "Localhost""#;
    let cases = vec![
        ("no explicit seccomp", containers(json!([{"name": "a"}])), Some((reason, must_set))),
        (
            "no explicit seccomp, linux pod",
            spec(json!({"os": {"name": "linux"}, "containers": [{"name": "a"}]})),
            Some((reason, must_set)),
        ),
        (
            "pod seccomp invalid",
            spec(
                json!({"securityContext": {"seccompProfile": {"type": "Unconfined"}}, "containers": [{"name": "a"}]}),
            ),
            Some((
                reason,
                r#"pod must not set securityContext.seccompProfile.type to "Unconfined""#,
            )),
        ),
        (
            "containers seccomp invalid",
            spec(json!({
                "securityContext": {"seccompProfile": {"type": "RuntimeDefault"}},
                "containers": [
                    {"name": "a"},
                    {"name": "b", "securityContext": {"seccompProfile": {"type": "Localhost", "localhostProfile": "p"}}},
                    {"name": "c", "securityContext": {"seccompProfile": {"type": "Unconfined"}}},
                    {"name": "d", "securityContext": {"seccompProfile": {"type": "Unconfined"}}},
                ],
            })),
            Some((
                reason,
                r#"containers "c", "d" must not set securityContext.seccompProfile.type to "Unconfined""#,
            )),
        ),
        (
            "pod nil, container fallthrough",
            containers(json!([
                {"name": "a"},
                {"name": "b"},
                {"name": "c", "securityContext": {"seccompProfile": {"type": "RuntimeDefault"}}},
            ])),
            Some((
                reason,
                r#"pod or containers "a", "b" must set securityContext.seccompProfile.type to "RuntimeDefault" or "Localhost""#,
            )),
        ),
        (
            "pod level profile covers containers",
            spec(
                json!({"securityContext": {"seccompProfile": {"type": "RuntimeDefault"}}, "containers": [{"name": "a"}]}),
            ),
            None,
        ),
    ];
    run_table(seccomp_profile_restricted_1_19, cases.clone());
    run_table(seccomp_profile_restricted_1_25, cases);

    let windows = spec(json!({"os": {"name": "windows"}, "containers": [{"name": "a"}]}));
    run_table(
        seccomp_profile_restricted_1_19,
        vec![("windows before 1.25", windows.clone(), Some((reason, must_set)))],
    );
    run_table(
        seccomp_profile_restricted_1_25,
        vec![("no explicit seccomp, windows pod", windows, None)],
    );
}

#[test]
fn sysctls_should_allow_the_safe_set_of_each_version() {
    let with = |names: &[&str]| {
        let sysctls: Vec<Value> = names.iter().map(|n| json!({"name": n, "value": "1"})).collect();
        spec(json!({"securityContext": {"sysctls": sysctls}}))
    };
    let reason = "forbidden sysctls";
    run_table(
        sysctls_1_0,
        vec![
            (
                "forbidden sysctls",
                with(&["a", "kernel.shm_rmid_forced", "b"]),
                Some((reason, "a, b")),
            ),
            (
                "1.0 set",
                with(&["net.ipv4.ip_unprivileged_port_start", "net.ipv4.ping_group_range"]),
                None,
            ),
            (
                "net.ipv4.ip_local_reserved_ports is new in 1.27",
                with(&["net.ipv4.ip_local_reserved_ports"]),
                Some((reason, "net.ipv4.ip_local_reserved_ports")),
            ),
        ],
    );
    run_table(
        sysctls_1_27,
        vec![
            ("reserved ports", with(&["net.ipv4.ip_local_reserved_ports"]), None),
            (
                "keepalive is new in 1.29",
                with(&["net.ipv4.tcp_keepalive_time"]),
                Some((reason, "net.ipv4.tcp_keepalive_time")),
            ),
        ],
    );
    run_table(
        sysctls_1_29,
        vec![
            (
                "1.29 additions",
                with(&[
                    "net.ipv4.tcp_keepalive_time",
                    "net.ipv4.tcp_fin_timeout",
                    "net.ipv4.tcp_keepalive_intvl",
                    "net.ipv4.tcp_keepalive_probes",
                ]),
                None,
            ),
            (
                "tcp_rmem is new in 1.32",
                with(&["net.ipv4.tcp_rmem"]),
                Some((reason, "net.ipv4.tcp_rmem")),
            ),
        ],
    );
    run_table(
        sysctls_1_32,
        vec![
            ("1.32 additions", with(&["net.ipv4.tcp_rmem", "net.ipv4.tcp_wmem"]), None),
            ("spec order, repeats kept", with(&["z", "a", "z"]), Some((reason, "z, a, z"))),
        ],
    );
}

#[test]
fn windows_host_process_should_refuse_host_process_on_pod_or_containers() {
    let host_process = json!({"windowsOptions": {"hostProcess": true}});
    run_table(
        windows_host_process_1_0,
        vec![
            (
                "pod and containers",
                spec(json!({
                    "securityContext": host_process,
                    "containers": [
                        {"name": "a", "securityContext": host_process},
                        {"name": "b", "securityContext": {"windowsOptions": {"hostProcess": false}}},
                        {"name": "c", "securityContext": host_process},
                    ],
                })),
                Some((
                    "hostProcess",
                    r#"pod and containers "a", "c" must not set securityContext.windowsOptions.hostProcess=true"#,
                )),
            ),
            (
                "pod only",
                spec(json!({"securityContext": host_process})),
                Some((
                    "hostProcess",
                    "pod must not set securityContext.windowsOptions.hostProcess=true",
                )),
            ),
            (
                "not set",
                containers(json!([{"name": "a", "securityContext": {"windowsOptions": {}}}])),
                None,
            ),
        ],
    );
}

#[test]
fn restricted_volumes_should_name_volumes_and_their_types() {
    let bad = [
        ("b1", "gcePersistentDisk"),
        ("b2", "awsElasticBlockStore"),
        ("b3", "gitRepo"),
        ("b4", "nfs"),
        ("b5", "iscsi"),
        ("b6", "glusterfs"),
        ("b7", "rbd"),
        ("b8", "flexVolume"),
        ("b9", "cinder"),
        ("b10", "cephfs"),
        ("b11", "flocker"),
        ("b12", "fc"),
        ("b13", "azureFile"),
        ("b14", "vsphereVolume"),
        ("b15", "quobyte"),
        ("b16", "azureDisk"),
        ("b17", "portworxVolume"),
        ("b18", "photonPersistentDisk"),
        ("b19", "scaleIO"),
        ("b20", "storageos"),
        ("b21", "hostPath"),
    ];
    let good = [
        "configMap",
        "csi",
        "downwardAPI",
        "emptyDir",
        "ephemeral",
        "image",
        "persistentVolumeClaim",
        "projected",
        "secret",
    ];
    let mut volumes: Vec<Value> =
        good.iter().enumerate().map(|(i, s)| json!({"name": format!("a{i}"), *s: {}})).collect();
    volumes.extend(bad.iter().map(|(n, s)| json!({"name": n, *s: {}})));
    volumes.push(json!({"name": "c1"}));
    run_table(
        restricted_volumes_1_0,
        vec![
            (
                "every restricted type",
                spec(json!({"volumes": volumes})),
                Some((
                    "restricted volume types",
                    concat!(
                        r#"volumes "b1", "b2", "b3", "b4", "b5", "b6", "b7", "b8", "b9", "b10", "b11", "b12", "b13", "b14", "b15", "b16", "b17", "b18", "b19", "b20", "b21", "c1""#,
                        " use restricted volume types ",
                        r#""awsElasticBlockStore", "azureDisk", "azureFile", "cephfs", "cinder", "fc", "flexVolume", "flocker", "gcePersistentDisk", "gitRepo", "glusterfs", "#,
                        r#""hostPath", "iscsi", "nfs", "photonPersistentDisk", "portworxVolume", "quobyte", "rbd", "scaleIO", "storageos", "unknown", "vsphereVolume""#,
                    ),
                )),
            ),
            (
                "one volume",
                spec(json!({"volumes": [{"name": "h", "hostPath": {"path": "/"}}]})),
                Some((
                    "restricted volume types",
                    r#"volume "h" uses restricted volume type "hostPath""#,
                )),
            ),
            (
                "allowed types only",
                spec(json!({"volumes": [{"name": "s", "secret": {"secretName": "x"}}]})),
                None,
            ),
        ],
    );
}

#[test]
fn run_as_non_root_should_require_true_unless_user_namespaced_from_1_35() {
    let reason = "runAsNonRoot != true";
    let cases = vec![
        (
            "no explicit runAsNonRoot",
            containers(json!([{"name": "a"}])),
            Some((reason, r#"pod or container "a" must set securityContext.runAsNonRoot=true"#)),
        ),
        (
            "pod runAsNonRoot=false",
            spec(
                json!({"securityContext": {"runAsNonRoot": false}, "containers": [{"name": "a"}]}),
            ),
            Some((reason, "pod must not set securityContext.runAsNonRoot=false")),
        ),
        (
            "containers runAsNonRoot=false",
            spec(json!({"securityContext": {"runAsNonRoot": true}, "containers": [
                {"name": "a"},
                {"name": "b", "securityContext": {}},
                {"name": "c", "securityContext": {"runAsNonRoot": false}},
                {"name": "d", "securityContext": {"runAsNonRoot": false}},
            ]})),
            Some((
                reason,
                r#"containers "c", "d" must not set securityContext.runAsNonRoot=false"#,
            )),
        ),
        (
            "pod nil, container fallthrough",
            containers(json!([
                {"name": "a"},
                {"name": "b", "securityContext": {}},
                {"name": "d", "securityContext": {"runAsNonRoot": true}},
            ])),
            Some((
                reason,
                r#"pod or containers "a", "b" must set securityContext.runAsNonRoot=true"#,
            )),
        ),
        (
            "explicit false wins over implicit",
            spec(json!({"securityContext": {"runAsNonRoot": false}, "containers": [
                {"name": "a"},
                {"name": "b", "securityContext": {"runAsNonRoot": false}},
            ]})),
            Some((
                reason,
                r#"pod and container "b" must not set securityContext.runAsNonRoot=false"#,
            )),
        ),
    ];
    run_table(run_as_non_root_1_0, cases.clone());
    run_table(run_as_non_root_1_35, cases);

    let userns = spec(
        json!({"hostUsers": false, "securityContext": {"runAsNonRoot": false}, "containers": [{"name": "a"}]}),
    );
    run_table(
        run_as_non_root_1_0,
        vec![(
            "host users false before 1.35",
            userns.clone(),
            Some((reason, "pod must not set securityContext.runAsNonRoot=false")),
        )],
    );
    run_table(run_as_non_root_1_35, vec![("host users false allowed", userns, None)]);
}

#[test]
fn run_as_user_should_refuse_root_unless_user_namespaced_from_1_35() {
    let cases = vec![
        (
            "pod runAsUser=0",
            spec(json!({"securityContext": {"runAsUser": 0}, "containers": [{"name": "a"}]})),
            Some(("runAsUser=0", "pod must not set runAsUser=0")),
        ),
        (
            "pod runAsUser=non-zero",
            spec(json!({"securityContext": {"runAsUser": 1000}, "containers": [{"name": "a"}]})),
            None,
        ),
        ("pod runAsUser=nil", containers(json!([{"name": "a"}])), None),
        (
            "containers runAsUser=0",
            spec(json!({"securityContext": {"runAsUser": 1000}, "containers": [
                {"name": "a"},
                {"name": "b", "securityContext": {}},
                {"name": "c", "securityContext": {"runAsUser": 0}},
                {"name": "d", "securityContext": {"runAsUser": 0}},
                {"name": "e", "securityContext": {"runAsUser": 1}},
            ]})),
            Some(("runAsUser=0", r#"containers "c", "d" must not set runAsUser=0"#)),
        ),
        (
            "pod and container",
            spec(
                json!({"securityContext": {"runAsUser": 0}, "containers": [{"name": "a", "securityContext": {"runAsUser": 0}}]}),
            ),
            Some(("runAsUser=0", r#"pod and container "a" must not set runAsUser=0"#)),
        ),
    ];
    run_table(run_as_user_1_23, cases.clone());
    run_table(run_as_user_1_35, cases);

    let userns = spec(json!({"hostUsers": false, "securityContext": {"runAsUser": 0}}));
    run_table(
        run_as_user_1_23,
        vec![(
            "host users false before 1.35",
            userns.clone(),
            Some(("runAsUser=0", "pod must not set runAsUser=0")),
        )],
    );
    run_table(run_as_user_1_35, vec![("host users false allowed", userns, None)]);
}

#[test]
fn capabilities_restricted_should_require_drop_all_and_only_net_bind_service() {
    let reason = "unrestricted capabilities";
    let multiple = containers(json!([
        {"name": "a", "securityContext": {"capabilities": {"add": ["FOO", "BAR"]}}},
        {"name": "b", "securityContext": {"capabilities": {"add": ["BAR", "BAZ"], "drop": ["NET_RAW"]}}},
        {"name": "c", "securityContext": {"capabilities": {"add": ["NET_BIND_SERVICE", "CHOWN"], "drop": ["ALL", "FOO"]}}},
        {"name": "d", "securityContext": {"capabilities": {"add": ["NET_BIND_SERVICE"], "drop": ["ALL"]}}},
    ]));
    let multiple_detail = concat!(
        r#"containers "a", "b" must set securityContext.capabilities.drop=["ALL"]; "#,
        r#"containers "a", "b", "c" must not include "BAR", "BAZ", "CHOWN", "FOO" in securityContext.capabilities.add"#,
    );
    let windows = spec(json!({"os": {"name": "windows"}, "containers": [{"name": "a"}]}));
    let linux = spec(json!({"os": {"name": "linux"}, "containers": [{"name": "a"}]}));
    let drop_all = r#"container "a" must set securityContext.capabilities.drop=["ALL"]"#;
    run_table(
        capabilities_restricted_1_22,
        vec![
            ("multiple containers", multiple.clone(), Some((reason, multiple_detail))),
            ("windows before 1.25", windows.clone(), Some((reason, drop_all))),
            (
                "lowercase all is not ALL",
                containers(
                    json!([{"name": "a", "securityContext": {"capabilities": {"drop": ["all"]}}}]),
                ),
                Some((reason, drop_all)),
            ),
        ],
    );
    run_table(
        capabilities_restricted_1_25,
        vec![
            ("multiple containers", multiple, Some((reason, multiple_detail))),
            ("windows pod, admit without checking capabilities", windows, None),
            ("linux pod, reject if security context is not set", linux, Some((reason, drop_all))),
        ],
    );
}

#[test]
fn registry_should_list_checks_sorted_by_id_baseline_first() {
    let ids: Vec<(&str, Level)> = CHECKS.iter().map(|c| (c.id, c.level)).collect();
    let mut sorted = ids.clone();
    sorted.sort_by(|a, b| a.1.cmp(&b.1).then(a.0.cmp(b.0)));
    assert_eq!(ids, sorted);
    for def in CHECKS {
        assert!(def.revisions.windows(2).all(|w| w[0].min_minor < w[1].min_minor), "{}", def.id);
        assert!(def.revisions.iter().all(|r| r.min_minor <= MAX_POLICY_MINOR), "{}", def.id);
    }
}

#[test]
fn registry_should_pick_checks_by_level_and_version() {
    let lv = |level, version| LevelVersion { level, version };
    let cases: Vec<(LevelVersion, Vec<&str>)> = vec![
        (lv(Level::Privileged, None), vec![]),
        (lv(Level::Restricted, Some((0, 9))), vec![]),
        (
            lv(Level::Baseline, None),
            vec![
                "appArmorProfile",
                "capabilities_baseline",
                "hostNamespaces",
                "hostPathVolumes",
                "hostPorts",
                "hostProbesAndHostLifecycle",
                "privileged",
                "procMount",
                "seLinuxOptions",
                "seccompProfile_baseline",
                "sysctls",
                "windowsHostProcess",
            ],
        ),
        (
            lv(Level::Baseline, Some((1, 33))),
            vec![
                "appArmorProfile",
                "capabilities_baseline",
                "hostNamespaces",
                "hostPathVolumes",
                "hostPorts",
                "privileged",
                "procMount",
                "seLinuxOptions",
                "seccompProfile_baseline",
                "sysctls",
                "windowsHostProcess",
            ],
        ),
        (
            lv(Level::Restricted, None),
            vec![
                "appArmorProfile",
                "hostNamespaces",
                "hostPorts",
                "hostProbesAndHostLifecycle",
                "privileged",
                "seLinuxOptions",
                "sysctls",
                "windowsHostProcess",
                "allowPrivilegeEscalation",
                "capabilities_restricted",
                "procMount_restricted",
                "restrictedVolumes",
                "runAsNonRoot",
                "runAsUser",
                "seccompProfile_restricted",
            ],
        ),
        (
            lv(Level::Restricted, Some((1, 0))),
            vec![
                "appArmorProfile",
                "capabilities_baseline",
                "hostNamespaces",
                "hostPorts",
                "privileged",
                "procMount",
                "seLinuxOptions",
                "seccompProfile_baseline",
                "sysctls",
                "windowsHostProcess",
                "restrictedVolumes",
                "runAsNonRoot",
            ],
        ),
        (
            lv(Level::Restricted, Some((1, 22))),
            vec![
                "appArmorProfile",
                "hostNamespaces",
                "hostPorts",
                "privileged",
                "procMount",
                "seLinuxOptions",
                "sysctls",
                "windowsHostProcess",
                "allowPrivilegeEscalation",
                "capabilities_restricted",
                "restrictedVolumes",
                "runAsNonRoot",
                "seccompProfile_restricted",
            ],
        ),
    ];
    for (lv, expected) in cases {
        assert_eq!(check_ids(&lv), expected, "{}", lv.label());
    }
    // Future versions evaluate as the newest one kube knows.
    assert_eq!(
        check_ids(&lv(Level::Restricted, Some((1, 99)))),
        check_ids(&lv(Level::Restricted, None))
    );
    assert_eq!(
        check_ids(&lv(Level::Baseline, Some((2, 0)))),
        check_ids(&lv(Level::Baseline, None))
    );
}

#[test]
fn evaluate_should_apply_the_revision_in_force_at_the_version() {
    let lv = |version| LevelVersion { level: Level::Restricted, version };
    // Seccomp: annotations up to 1.18, fields from 1.19.
    let meta = json!({"annotations": {"seccomp.security.alpha.kubernetes.io/pod": "unconfined"}});
    let spec = json!({"securityContext": {"runAsNonRoot": true}, "volumes": []});
    let reasons = |version| -> Vec<String> {
        evaluate(&lv(version), &meta, &spec).into_iter().map(|v| v.reason).collect()
    };
    assert_eq!(reasons(Some((1, 18))), vec!["seccompProfile"]);
    assert_eq!(reasons(Some((1, 19))), Vec::<String>::new());
    // The procMount override only exists from 1.35: a user-namespaced pod passes baseline but
    // not restricted.
    let spec = json!({"hostUsers": false, "containers": [{"name": "a", "securityContext": {"procMount": "Unmasked"}}]});
    let baseline = LevelVersion::latest(Level::Baseline);
    assert!(evaluate(&baseline, &Value::Null, &spec).is_empty());
    let restricted: Vec<String> =
        evaluate(&lv(None), &Value::Null, &spec).into_iter().map(|v| v.reason).collect();
    assert!(restricted.contains(&"procMount".to_string()), "{restricted:?}");
}

#[test]
fn go_quote_should_escape_like_go() {
    assert_eq!(go_quote("plain"), r#""plain""#);
    assert_eq!(go_quote(r#"a"b\c"#), r#""a\"b\\c""#);
    assert_eq!(go_quote("tab\tnl\n\u{1}"), r#""tab\tnl\n\x01""#);
    assert_eq!(go_quote("héllo"), "\"héllo\"");
}
