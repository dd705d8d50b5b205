//! The Pod Security Standards checks, one function per revision of a check, and the registry
//! that picks which revisions run at a level and version. Counterpart:
//! `k8s.io/pod-security-admission/policy` (`check_*.go`, `registry.go`, `visitor.go`,
//! `helpers.go`) as of Kubernetes 1.35.
//!
//! Pods are JSON as the api server stores them; a `null` field is treated as absent, like Go's
//! decoder leaves a nil pointer.

use std::collections::BTreeSet;
use std::fmt::Write as _;

use serde_json::Value;

use super::{Level, LevelVersion, Violation};

/// The newest policy minor version in which any check changed. `latest`, and versions newer
/// than this, evaluate as this one (kube clamps to the registry's max version the same way).
pub const MAX_POLICY_MINOR: u32 = 35;

type CheckFn = fn(&Pod<'_>) -> Option<Violation>;

/// One revision of a check, in force from `min_minor` (v1.<min_minor>) until the next one.
struct Revision {
    min_minor: u32,
    check: CheckFn,
    /// Baseline check ids this (restricted) revision replaces at the restricted level.
    overrides: &'static [&'static str],
}

struct CheckDef {
    id: &'static str,
    level: Level,
    revisions: &'static [Revision],
}

const fn rev(min_minor: u32, check: CheckFn) -> Revision {
    Revision { min_minor, check, overrides: &[] }
}

const fn rev_over(min_minor: u32, check: CheckFn, overrides: &'static [&'static str]) -> Revision {
    Revision { min_minor, check, overrides }
}

/// Every check, baseline ids sorted then restricted ids sorted (byte order, as Go's
/// `sort.Slice` over strings): kube reports violations in exactly this order.
static CHECKS: &[CheckDef] = &[
    CheckDef {
        id: "appArmorProfile",
        level: Level::Baseline,
        revisions: &[rev(0, app_armor_profile_1_0)],
    },
    CheckDef {
        id: "capabilities_baseline",
        level: Level::Baseline,
        revisions: &[rev(0, capabilities_baseline_1_0)],
    },
    CheckDef {
        id: "hostNamespaces",
        level: Level::Baseline,
        revisions: &[rev(0, host_namespaces_1_0)],
    },
    CheckDef {
        id: "hostPathVolumes",
        level: Level::Baseline,
        revisions: &[rev(0, host_path_volumes_1_0)],
    },
    CheckDef { id: "hostPorts", level: Level::Baseline, revisions: &[rev(0, host_ports_1_0)] },
    CheckDef {
        id: "hostProbesAndHostLifecycle",
        level: Level::Baseline,
        revisions: &[rev(34, host_probes_and_host_lifecycle_1_34)],
    },
    CheckDef { id: "privileged", level: Level::Baseline, revisions: &[rev(0, privileged_1_0)] },
    CheckDef {
        id: "procMount",
        level: Level::Baseline,
        revisions: &[rev(0, proc_mount_1_0), rev(35, proc_mount_baseline_1_35)],
    },
    CheckDef {
        id: "seLinuxOptions",
        level: Level::Baseline,
        revisions: &[rev(0, se_linux_options_1_0), rev(31, se_linux_options_1_31)],
    },
    CheckDef {
        id: "seccompProfile_baseline",
        level: Level::Baseline,
        revisions: &[rev(0, seccomp_profile_baseline_1_0), rev(19, seccomp_profile_baseline_1_19)],
    },
    CheckDef {
        id: "sysctls",
        level: Level::Baseline,
        revisions: &[
            rev(0, sysctls_1_0),
            rev(27, sysctls_1_27),
            rev(29, sysctls_1_29),
            rev(32, sysctls_1_32),
        ],
    },
    CheckDef {
        id: "windowsHostProcess",
        level: Level::Baseline,
        revisions: &[rev(0, windows_host_process_1_0)],
    },
    CheckDef {
        id: "allowPrivilegeEscalation",
        level: Level::Restricted,
        revisions: &[
            rev(8, allow_privilege_escalation_1_8),
            rev(25, allow_privilege_escalation_1_25),
        ],
    },
    CheckDef {
        id: "capabilities_restricted",
        level: Level::Restricted,
        revisions: &[
            rev_over(22, capabilities_restricted_1_22, &["capabilities_baseline"]),
            rev_over(25, capabilities_restricted_1_25, &["capabilities_baseline"]),
        ],
    },
    CheckDef {
        id: "procMount_restricted",
        level: Level::Restricted,
        // Baseline relaxes procMount for user-namespace pods from 1.35; restricted keeps the
        // unconditional rule by replacing the baseline check.
        revisions: &[rev_over(35, proc_mount_1_0, &["procMount"])],
    },
    CheckDef {
        id: "restrictedVolumes",
        level: Level::Restricted,
        revisions: &[rev_over(0, restricted_volumes_1_0, &["hostPathVolumes"])],
    },
    CheckDef {
        id: "runAsNonRoot",
        level: Level::Restricted,
        revisions: &[rev(0, run_as_non_root_1_0), rev(35, run_as_non_root_1_35)],
    },
    CheckDef {
        id: "runAsUser",
        level: Level::Restricted,
        revisions: &[rev(23, run_as_user_1_23), rev(35, run_as_user_1_35)],
    },
    CheckDef {
        id: "seccompProfile_restricted",
        level: Level::Restricted,
        revisions: &[
            rev_over(19, seccomp_profile_restricted_1_19, &["seccompProfile_baseline"]),
            rev_over(25, seccomp_profile_restricted_1_25, &["seccompProfile_baseline"]),
        ],
    },
];

/// The checks that run for `lv`, in kube's order, each with its id.
fn active_checks(lv: &LevelVersion) -> Vec<(&'static str, CheckFn)> {
    let minor = match lv.version {
        _ if lv.level == Level::Privileged => return Vec::new(),
        None => MAX_POLICY_MINOR,
        Some((1, minor)) => minor.min(MAX_POLICY_MINOR),
        Some((major, _)) if major > 1 => MAX_POLICY_MINOR,
        // Older than v1.0: kube's registry has no checks for it.
        Some(_) => return Vec::new(),
    };
    let revision_of =
        |def: &'static CheckDef| def.revisions.iter().rev().find(|r| r.min_minor <= minor);

    let overridden: BTreeSet<&str> = if lv.level == Level::Restricted {
        CHECKS
            .iter()
            .filter(|def| def.level == Level::Restricted)
            .filter_map(revision_of)
            .flat_map(|r| r.overrides.iter().copied())
            .collect()
    } else {
        BTreeSet::new()
    };

    CHECKS
        .iter()
        .filter(|def| def.level <= lv.level && !overridden.contains(def.id))
        .filter_map(|def| revision_of(def).map(|r| (def.id, r.check)))
        .collect()
}

/// The ids of the checks that run for `lv`, in kube's order.
pub fn check_ids(lv: &LevelVersion) -> Vec<&'static str> {
    active_checks(lv).into_iter().map(|(id, _)| id).collect()
}

/// Every failed check of `lv` against a pod's metadata and spec, in kube's order.
pub fn evaluate(lv: &LevelVersion, metadata: &Value, spec: &Value) -> Vec<Violation> {
    let pod = Pod { meta: metadata, spec };
    active_checks(lv).into_iter().filter_map(|(_, check)| check(&pod)).collect()
}

// ---------------------------------------------------------------------------------------------
// JSON access

/// The pod (or pod template) a check looks at.
struct Pod<'a> {
    meta: &'a Value,
    spec: &'a Value,
}

impl<'a> Pod<'a> {
    /// Init containers, containers, then ephemeral containers: kube's visiting order, which is
    /// the order container names appear in details.
    fn containers(&self) -> impl Iterator<Item = &'a Value> {
        let spec = self.spec;
        ["initContainers", "containers", "ephemeralContainers"]
            .into_iter()
            .flat_map(move |key| list(spec, &[key]))
    }

    fn security_context(&self) -> Option<&'a Value> {
        field(self.spec, &["securityContext"])
    }

    fn annotations(&self) -> impl Iterator<Item = (&'a str, &'a str)> {
        field(self.meta, &["annotations"])
            .and_then(Value::as_object)
            .into_iter()
            .flatten()
            .map(|(k, v)| (k.as_str(), v.as_str().unwrap_or_default()))
    }

    fn annotation(&self, key: &str) -> Option<&'a str> {
        field(self.meta, &["annotations", key]).map(|v| v.as_str().unwrap_or_default())
    }

    fn is_windows(&self) -> bool {
        str_at(self.spec, &["os", "name"]) == "windows"
    }

    /// `hostUsers: false`: the pod runs in a user namespace, which 1.35 policies relax for.
    fn in_user_namespace(&self) -> bool {
        field(self.spec, &["hostUsers"]).and_then(Value::as_bool) == Some(false)
    }
}

/// The value at `path`, or `None` when a step is missing or `null`.
fn field<'v>(v: &'v Value, path: &[&str]) -> Option<&'v Value> {
    path.iter().try_fold(v, |v, key| v.get(*key)).filter(|v| !v.is_null())
}

fn str_at<'v>(v: &'v Value, path: &[&str]) -> &'v str {
    field(v, path).and_then(Value::as_str).unwrap_or_default()
}

fn bool_at(v: &Value, path: &[&str]) -> Option<bool> {
    field(v, path).and_then(Value::as_bool)
}

fn list<'v>(v: &'v Value, path: &[&str]) -> &'v [Value] {
    field(v, path).and_then(Value::as_array).map(Vec::as_slice).unwrap_or_default()
}

fn name(container: &Value) -> &str {
    str_at(container, &["name"])
}

// ---------------------------------------------------------------------------------------------
// Message helpers (policy/helpers.go)

fn pluralize<'s>(singular: &'s str, plural: &'s str, count: usize) -> &'s str {
    if count == 1 { singular } else { plural }
}

/// `"a", "b"`, empty for no items.
fn join_quote<S: AsRef<str>>(items: impl IntoIterator<Item = S>) -> String {
    let quoted: Vec<String> = items.into_iter().map(|s| format!("\"{}\"", s.as_ref())).collect();
    quoted.join(", ")
}

/// `container "a"` or `containers "a", "b"`.
fn containers_phrase<S: AsRef<str>>(names: &[S]) -> String {
    format!("{} {}", pluralize("container", "containers", names.len()), join_quote(names))
}

fn violation(reason: &str, detail: String) -> Option<Violation> {
    Some(Violation { reason: reason.to_string(), detail })
}

/// Go's `%q` (`strconv.Quote`) for a string: double-quoted, printable characters as they
/// are, the rest with Go's escapes.
pub fn go_quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\u{7}' => out.push_str("\\a"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{b}' => out.push_str("\\v"),
            c if (c as u32) < 0x20 || c == '\u{7f}' => {
                let _ = write!(out, "\\x{:02x}", c as u32);
            }
            c if !is_print(c) => {
                if (c as u32) < 0x10000 {
                    let _ = write!(out, "\\u{:04x}", c as u32);
                } else {
                    let _ = write!(out, "\\U{:08x}", c as u32);
                }
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// An approximation of Go's `unicode.IsPrint`: controls, format characters and the line
/// and paragraph separators are not printable.
fn is_print(c: char) -> bool {
    !(c.is_control()
        || matches!(c, '\u{ad}' | '\u{200b}'..='\u{200f}' | '\u{2028}'..='\u{202e}' | '\u{2060}'..='\u{2064}' | '\u{feff}'))
}

// ---------------------------------------------------------------------------------------------
// Baseline checks

const APPARMOR_ANNOTATION_PREFIX: &str = "container.apparmor.security.beta.kubernetes.io/";

fn app_armor_profile_1_0(pod: &Pod<'_>) -> Option<Violation> {
    let allowed_type =
        |profile: &Value| matches!(str_at(profile, &["type"]), "RuntimeDefault" | "Localhost");
    let mut setters: Vec<String> = Vec::new();
    let mut bad_values: BTreeSet<&str> = BTreeSet::new();

    if let Some(profile) = pod.security_context().and_then(|sc| field(sc, &["appArmorProfile"]))
        && !allowed_type(profile)
    {
        setters.push("pod".into());
        bad_values.insert(str_at(profile, &["type"]));
    }
    let mut bad_containers = Vec::new();
    for c in pod.containers() {
        if let Some(profile) = field(c, &["securityContext", "appArmorProfile"])
            && !allowed_type(profile)
        {
            bad_containers.push(name(c));
            bad_values.insert(str_at(profile, &["type"]));
        }
    }
    if !bad_containers.is_empty() {
        setters.push(containers_phrase(&bad_containers));
    }

    let mut annotations: Vec<String> = pod
        .annotations()
        .filter(|(k, v)| {
            k.starts_with(APPARMOR_ANNOTATION_PREFIX)
                && !(v.is_empty() || *v == "runtime/default" || v.starts_with("localhost/"))
        })
        .map(|(k, v)| format!("{k}={}", go_quote(v)))
        .collect();
    annotations.sort();

    let mut values: Vec<String> = bad_values.into_iter().map(str::to_string).collect();
    if !annotations.is_empty() {
        setters.push(pluralize("annotation", "annotations", annotations.len()).into());
        values.extend(annotations);
    }
    if setters.is_empty() {
        return None;
    }
    violation(
        pluralize("forbidden AppArmor profile", "forbidden AppArmor profiles", values.len()),
        format!(
            "{} must not set AppArmor profile type to {}",
            setters.join(" and "),
            join_quote(&values)
        ),
    )
}

const DEFAULT_CAPABILITIES: &[&str] = &[
    "AUDIT_WRITE",
    "CHOWN",
    "DAC_OVERRIDE",
    "FOWNER",
    "FSETID",
    "KILL",
    "MKNOD",
    "NET_BIND_SERVICE",
    "SETFCAP",
    "SETGID",
    "SETPCAP",
    "SETUID",
    "SYS_CHROOT",
];

fn capabilities_baseline_1_0(pod: &Pod<'_>) -> Option<Violation> {
    let mut bad_containers = Vec::new();
    let mut non_default: BTreeSet<&str> = BTreeSet::new();
    for c in pod.containers() {
        let Some(caps) = field(c, &["securityContext", "capabilities"]) else { continue };
        let mut valid = true;
        for cap in list(caps, &["add"]) {
            let cap = cap.as_str().unwrap_or_default();
            if !DEFAULT_CAPABILITIES.contains(&cap) {
                valid = false;
                non_default.insert(cap);
            }
        }
        if !valid {
            bad_containers.push(name(c));
        }
    }
    if bad_containers.is_empty() {
        return None;
    }
    violation(
        "non-default capabilities",
        format!(
            "{} must not include {} in securityContext.capabilities.add",
            containers_phrase(&bad_containers),
            join_quote(non_default)
        ),
    )
}

fn host_namespaces_1_0(pod: &Pod<'_>) -> Option<Violation> {
    let shared: Vec<&str> = [
        ("hostNetwork", "hostNetwork=true"),
        ("hostPID", "hostPID=true"),
        ("hostIPC", "hostIPC=true"),
    ]
    .into_iter()
    .filter(|(key, _)| bool_at(pod.spec, &[key]) == Some(true))
    .map(|(_, shown)| shown)
    .collect();
    if shared.is_empty() {
        return None;
    }
    violation("host namespaces", shared.join(", "))
}

fn host_path_volumes_1_0(pod: &Pod<'_>) -> Option<Violation> {
    let volumes: Vec<&str> = list(pod.spec, &["volumes"])
        .iter()
        .filter(|v| field(v, &["hostPath"]).is_some())
        .map(name)
        .collect();
    if volumes.is_empty() {
        return None;
    }
    violation(
        "hostPath volumes",
        format!("{} {}", pluralize("volume", "volumes", volumes.len()), join_quote(&volumes)),
    )
}

fn host_ports_1_0(pod: &Pod<'_>) -> Option<Violation> {
    let mut bad_containers = Vec::new();
    // A set of strings, as kube's: ports sort as text ("10000" before "80").
    let mut ports: BTreeSet<String> = BTreeSet::new();
    for c in pod.containers() {
        let mut valid = true;
        for port in list(c, &["ports"]) {
            let host_port = field(port, &["hostPort"]).and_then(Value::as_i64).unwrap_or(0);
            if host_port != 0 {
                valid = false;
                ports.insert(host_port.to_string());
            }
        }
        if !valid {
            bad_containers.push(name(c));
        }
    }
    if bad_containers.is_empty() {
        return None;
    }
    let ports: Vec<String> = ports.into_iter().collect();
    violation(
        "hostPort",
        format!(
            "{} {} {} {}",
            containers_phrase(&bad_containers),
            pluralize("uses", "use", bad_containers.len()),
            pluralize("hostPort", "hostPorts", ports.len()),
            ports.join(", ")
        ),
    )
}

fn host_probes_and_host_lifecycle_1_34(pod: &Pod<'_>) -> Option<Violation> {
    // Both are sets in kube, so container names come out sorted here, unlike other checks.
    let mut bad_containers: BTreeSet<&str> = BTreeSet::new();
    let mut hosts: BTreeSet<&str> = BTreeSet::new();
    for c in pod.containers() {
        let handlers = [
            field(c, &["livenessProbe"]),
            field(c, &["readinessProbe"]),
            field(c, &["startupProbe"]),
            field(c, &["lifecycle", "postStart"]),
            field(c, &["lifecycle", "preStop"]),
        ];
        for handler in handlers.into_iter().flatten() {
            for kind in ["httpGet", "tcpSocket"] {
                let host = str_at(handler, &[kind, "host"]);
                if !host.is_empty() {
                    bad_containers.insert(name(c));
                    hosts.insert(host);
                }
            }
        }
    }
    if bad_containers.is_empty() {
        return None;
    }
    let containers: Vec<&str> = bad_containers.into_iter().collect();
    violation(
        "probe or lifecycle host",
        format!(
            "{} {} {} {}",
            containers_phrase(&containers),
            pluralize("uses", "use", containers.len()),
            pluralize("probe or lifecycle host", "probe or lifecycle hosts", hosts.len()),
            join_quote(hosts)
        ),
    )
}

fn privileged_1_0(pod: &Pod<'_>) -> Option<Violation> {
    let bad: Vec<&str> = pod
        .containers()
        .filter(|c| bool_at(c, &["securityContext", "privileged"]) == Some(true))
        .map(name)
        .collect();
    if bad.is_empty() {
        return None;
    }
    violation(
        "privileged",
        format!("{} must not set securityContext.privileged=true", containers_phrase(&bad)),
    )
}

fn proc_mount_1_0(pod: &Pod<'_>) -> Option<Violation> {
    let mut bad_containers = Vec::new();
    let mut types: BTreeSet<&str> = BTreeSet::new();
    for c in pod.containers() {
        let Some(proc_mount) = field(c, &["securityContext", "procMount"]) else { continue };
        let proc_mount = proc_mount.as_str().unwrap_or_default();
        if proc_mount != "Default" {
            bad_containers.push(name(c));
            types.insert(proc_mount);
        }
    }
    if bad_containers.is_empty() {
        return None;
    }
    violation(
        "procMount",
        format!(
            "{} must not set securityContext.procMount to {}",
            containers_phrase(&bad_containers),
            join_quote(types)
        ),
    )
}

fn proc_mount_baseline_1_35(pod: &Pod<'_>) -> Option<Violation> {
    if pod.in_user_namespace() {
        return None;
    }
    proc_mount_1_0(pod)
}

const SELINUX_TYPES_1_0: &[&str] = &["", "container_t", "container_init_t", "container_kvm_t"];
const SELINUX_TYPES_1_31: &[&str] =
    &["", "container_t", "container_init_t", "container_kvm_t", "container_engine_t"];

fn se_linux_options_1_0(pod: &Pod<'_>) -> Option<Violation> {
    se_linux_options(pod, SELINUX_TYPES_1_0)
}

fn se_linux_options_1_31(pod: &Pod<'_>) -> Option<Violation> {
    se_linux_options(pod, SELINUX_TYPES_1_31)
}

fn se_linux_options<'a>(pod: &Pod<'a>, allowed_types: &[&str]) -> Option<Violation> {
    let mut bad_types: BTreeSet<&'a str> = BTreeSet::new();
    let (mut set_user, mut set_role) = (false, false);
    let mut valid = |opts: &'a Value| {
        let mut ok = true;
        let ty = str_at(opts, &["type"]);
        if !allowed_types.contains(&ty) {
            ok = false;
            bad_types.insert(ty);
        }
        if !str_at(opts, &["user"]).is_empty() {
            ok = false;
            set_user = true;
        }
        if !str_at(opts, &["role"]).is_empty() {
            ok = false;
            set_role = true;
        }
        ok
    };

    let mut setters = Vec::new();
    if let Some(opts) = pod.security_context().and_then(|sc| field(sc, &["seLinuxOptions"]))
        && !valid(opts)
    {
        setters.push("pod".to_string());
    }
    let mut bad_containers = Vec::new();
    for c in pod.containers() {
        if let Some(opts) = field(c, &["securityContext", "seLinuxOptions"])
            && !valid(opts)
        {
            bad_containers.push(name(c));
        }
    }
    if !bad_containers.is_empty() {
        setters.push(containers_phrase(&bad_containers));
    }
    if setters.is_empty() {
        return None;
    }

    let mut bad_data = Vec::new();
    if !bad_types.is_empty() {
        bad_data.push(format!(
            "{} {}",
            pluralize("type", "types", bad_types.len()),
            join_quote(&bad_types)
        ));
    }
    if set_user {
        bad_data.push("user may not be set".to_string());
    }
    if set_role {
        bad_data.push("role may not be set".to_string());
    }
    violation(
        "seLinuxOptions",
        format!(
            "{} set forbidden securityContext.seLinuxOptions: {}",
            setters.join(" and "),
            bad_data.join("; ")
        ),
    )
}

const SECCOMP_POD_ANNOTATION: &str = "seccomp.security.alpha.kubernetes.io/pod";
const SECCOMP_CONTAINER_ANNOTATION_PREFIX: &str = "container.seccomp.security.alpha.kubernetes.io/";

fn valid_seccomp_annotation(v: &str) -> bool {
    v == "runtime/default" || v == "docker/default" || v.starts_with("localhost/")
}

fn valid_seccomp_type(profile: &Value) -> bool {
    matches!(str_at(profile, &["type"]), "Localhost" | "RuntimeDefault")
}

/// Before 1.19 seccomp was set with the alpha annotations; an empty value is forbidden too.
fn seccomp_profile_baseline_1_0(pod: &Pod<'_>) -> Option<Violation> {
    let mut forbidden: BTreeSet<String> = BTreeSet::new();
    if let Some(v) = pod.annotation(SECCOMP_POD_ANNOTATION)
        && !valid_seccomp_annotation(v)
    {
        forbidden.insert(format!("{SECCOMP_POD_ANNOTATION}={}", go_quote(v)));
    }
    for c in pod.containers() {
        let key = format!("{SECCOMP_CONTAINER_ANNOTATION_PREFIX}{}", name(c));
        if let Some(v) = pod.annotation(&key)
            && !valid_seccomp_annotation(v)
        {
            forbidden.insert(format!("{key}={}", go_quote(v)));
        }
    }
    if forbidden.is_empty() {
        return None;
    }
    let forbidden: Vec<String> = forbidden.into_iter().collect();
    violation(
        "seccompProfile",
        format!(
            "forbidden {} {}",
            pluralize("annotation", "annotations", forbidden.len()),
            forbidden.join(", ")
        ),
    )
}

/// Pod and container seccomp profiles explicitly set to something other than RuntimeDefault or
/// Localhost: (setters, bad types, whether the pod set a valid profile).
fn explicit_bad_seccomp<'a>(pod: &Pod<'a>) -> (Vec<String>, BTreeSet<&'a str>, bool) {
    let mut setters = Vec::new();
    let mut bad_values = BTreeSet::new();
    let mut pod_valid = false;
    if let Some(profile) = pod.security_context().and_then(|sc| field(sc, &["seccompProfile"])) {
        if valid_seccomp_type(profile) {
            pod_valid = true;
        } else {
            setters.push("pod".to_string());
            bad_values.insert(str_at(profile, &["type"]));
        }
    }
    let mut bad_containers = Vec::new();
    for c in pod.containers() {
        if let Some(profile) = field(c, &["securityContext", "seccompProfile"])
            && !valid_seccomp_type(profile)
        {
            bad_containers.push(name(c));
            bad_values.insert(str_at(profile, &["type"]));
        }
    }
    if !bad_containers.is_empty() {
        setters.push(containers_phrase(&bad_containers));
    }
    (setters, bad_values, pod_valid)
}

fn seccomp_explicit_violation(
    setters: &[String],
    bad_values: &BTreeSet<&str>,
) -> Option<Violation> {
    violation(
        "seccompProfile",
        format!(
            "{} must not set securityContext.seccompProfile.type to {}",
            setters.join(" and "),
            join_quote(bad_values)
        ),
    )
}

fn seccomp_profile_baseline_1_19(pod: &Pod<'_>) -> Option<Violation> {
    let (setters, bad_values, _) = explicit_bad_seccomp(pod);
    if setters.is_empty() {
        return None;
    }
    seccomp_explicit_violation(&setters, &bad_values)
}

const SYSCTLS_1_0: &[&str] = &[
    "kernel.shm_rmid_forced",
    "net.ipv4.ip_local_port_range",
    "net.ipv4.tcp_syncookies",
    "net.ipv4.ping_group_range",
    "net.ipv4.ip_unprivileged_port_start",
];
const SYSCTLS_1_27: &[&str] = &["net.ipv4.ip_local_reserved_ports"];
const SYSCTLS_1_29: &[&str] = &[
    "net.ipv4.tcp_keepalive_time",
    "net.ipv4.tcp_fin_timeout",
    "net.ipv4.tcp_keepalive_intvl",
    "net.ipv4.tcp_keepalive_probes",
];
const SYSCTLS_1_32: &[&str] = &["net.ipv4.tcp_rmem", "net.ipv4.tcp_wmem"];

fn sysctls_1_0(pod: &Pod<'_>) -> Option<Violation> {
    sysctls(pod, &[SYSCTLS_1_0])
}

fn sysctls_1_27(pod: &Pod<'_>) -> Option<Violation> {
    sysctls(pod, &[SYSCTLS_1_0, SYSCTLS_1_27])
}

fn sysctls_1_29(pod: &Pod<'_>) -> Option<Violation> {
    sysctls(pod, &[SYSCTLS_1_0, SYSCTLS_1_27, SYSCTLS_1_29])
}

fn sysctls_1_32(pod: &Pod<'_>) -> Option<Violation> {
    sysctls(pod, &[SYSCTLS_1_0, SYSCTLS_1_27, SYSCTLS_1_29, SYSCTLS_1_32])
}

fn sysctls(pod: &Pod<'_>, allowed: &[&[&str]]) -> Option<Violation> {
    // In spec order and not de-duplicated, as kube lists them.
    let forbidden: Vec<&str> = pod
        .security_context()
        .map(|sc| list(sc, &["sysctls"]))
        .unwrap_or_default()
        .iter()
        .map(name)
        .filter(|n| !allowed.iter().any(|set| set.contains(n)))
        .collect();
    if forbidden.is_empty() {
        return None;
    }
    violation("forbidden sysctls", forbidden.join(", "))
}

fn windows_host_process_1_0(pod: &Pod<'_>) -> Option<Violation> {
    let host_process = |sc: &Value| bool_at(sc, &["windowsOptions", "hostProcess"]) == Some(true);
    let mut setters = Vec::new();
    if pod.security_context().is_some_and(host_process) {
        setters.push("pod".to_string());
    }
    let bad: Vec<&str> = pod
        .containers()
        .filter(|c| field(c, &["securityContext"]).is_some_and(host_process))
        .map(name)
        .collect();
    if !bad.is_empty() {
        setters.push(containers_phrase(&bad));
    }
    if setters.is_empty() {
        return None;
    }
    violation(
        "hostProcess",
        format!(
            "{} must not set securityContext.windowsOptions.hostProcess=true",
            setters.join(" and ")
        ),
    )
}

// ---------------------------------------------------------------------------------------------
// Restricted checks

fn allow_privilege_escalation_1_8(pod: &Pod<'_>) -> Option<Violation> {
    let bad: Vec<&str> = pod
        .containers()
        .filter(|c| bool_at(c, &["securityContext", "allowPrivilegeEscalation"]) != Some(false))
        .map(name)
        .collect();
    if bad.is_empty() {
        return None;
    }
    violation(
        "allowPrivilegeEscalation != false",
        format!(
            "{} must set securityContext.allowPrivilegeEscalation=false",
            containers_phrase(&bad)
        ),
    )
}

/// Windows pods cannot set the field (API validation refuses it), so they pass from 1.25.
fn allow_privilege_escalation_1_25(pod: &Pod<'_>) -> Option<Violation> {
    if pod.is_windows() {
        return None;
    }
    allow_privilege_escalation_1_8(pod)
}

fn capabilities_restricted_1_22(pod: &Pod<'_>) -> Option<Violation> {
    let mut missing_drop_all = Vec::new();
    let mut adding_forbidden = Vec::new();
    let mut forbidden: BTreeSet<&str> = BTreeSet::new();
    for c in pod.containers() {
        let Some(caps) = field(c, &["securityContext", "capabilities"]) else {
            missing_drop_all.push(name(c));
            continue;
        };
        if !list(caps, &["drop"]).iter().any(|d| d.as_str() == Some("ALL")) {
            missing_drop_all.push(name(c));
        }
        let mut added_forbidden = false;
        for cap in list(caps, &["add"]) {
            let cap = cap.as_str().unwrap_or_default();
            if cap != "NET_BIND_SERVICE" {
                added_forbidden = true;
                forbidden.insert(cap);
            }
        }
        if added_forbidden {
            adding_forbidden.push(name(c));
        }
    }
    let mut details = Vec::new();
    if !missing_drop_all.is_empty() {
        details.push(format!(
            "{} must set securityContext.capabilities.drop=[\"ALL\"]",
            containers_phrase(&missing_drop_all)
        ));
    }
    if !adding_forbidden.is_empty() {
        details.push(format!(
            "{} must not include {} in securityContext.capabilities.add",
            containers_phrase(&adding_forbidden),
            join_quote(forbidden)
        ));
    }
    if details.is_empty() {
        return None;
    }
    violation("unrestricted capabilities", details.join("; "))
}

fn capabilities_restricted_1_25(pod: &Pod<'_>) -> Option<Violation> {
    if pod.is_windows() {
        return None;
    }
    capabilities_restricted_1_22(pod)
}

/// Volume sources the restricted level allows.
const ALLOWED_VOLUME_SOURCES: &[&str] = &[
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

/// Forbidden volume sources, in the order kube tests them to name a volume's type.
const RESTRICTED_VOLUME_SOURCES: &[&str] = &[
    "hostPath",
    "gcePersistentDisk",
    "awsElasticBlockStore",
    "gitRepo",
    "nfs",
    "iscsi",
    "glusterfs",
    "rbd",
    "flexVolume",
    "cinder",
    "cephfs",
    "flocker",
    "fc",
    "azureFile",
    "vsphereVolume",
    "quobyte",
    "azureDisk",
    "photonPersistentDisk",
    "portworxVolume",
    "scaleIO",
    "storageos",
];

fn restricted_volumes_1_0(pod: &Pod<'_>) -> Option<Violation> {
    let mut bad_volumes = Vec::new();
    let mut bad_types: BTreeSet<&str> = BTreeSet::new();
    for volume in list(pod.spec, &["volumes"]) {
        if ALLOWED_VOLUME_SOURCES.iter().any(|&s| field(volume, &[s]).is_some()) {
            continue;
        }
        bad_volumes.push(name(volume));
        let ty = RESTRICTED_VOLUME_SOURCES.iter().copied().find(|&s| field(volume, &[s]).is_some());
        bad_types.insert(ty.unwrap_or("unknown"));
    }
    if bad_volumes.is_empty() {
        return None;
    }
    violation(
        "restricted volume types",
        format!(
            "{} {} {} {} {}",
            pluralize("volume", "volumes", bad_volumes.len()),
            join_quote(&bad_volumes),
            pluralize("uses", "use", bad_volumes.len()),
            pluralize("restricted volume type", "restricted volume types", bad_types.len()),
            join_quote(bad_types)
        ),
    )
}

fn run_as_non_root_1_0(pod: &Pod<'_>) -> Option<Violation> {
    let mut setters = Vec::new();
    let mut pod_non_root = false;
    match pod.security_context().and_then(|sc| bool_at(sc, &["runAsNonRoot"])) {
        Some(false) => setters.push("pod".to_string()),
        Some(true) => pod_non_root = true,
        None => {}
    }
    let mut explicitly_bad = Vec::new();
    let mut implicitly_bad = Vec::new();
    for c in pod.containers() {
        match bool_at(c, &["securityContext", "runAsNonRoot"]) {
            Some(false) => explicitly_bad.push(name(c)),
            Some(true) => {}
            None if !pod_non_root => implicitly_bad.push(name(c)),
            None => {}
        }
    }
    if !explicitly_bad.is_empty() {
        setters.push(containers_phrase(&explicitly_bad));
    }
    if !setters.is_empty() {
        return violation(
            "runAsNonRoot != true",
            format!("{} must not set securityContext.runAsNonRoot=false", setters.join(" and ")),
        );
    }
    if !implicitly_bad.is_empty() {
        return violation(
            "runAsNonRoot != true",
            format!(
                "pod or {} must set securityContext.runAsNonRoot=true",
                containers_phrase(&implicitly_bad)
            ),
        );
    }
    None
}

fn run_as_non_root_1_35(pod: &Pod<'_>) -> Option<Violation> {
    if pod.in_user_namespace() {
        return None;
    }
    run_as_non_root_1_0(pod)
}

fn run_as_user_1_23(pod: &Pod<'_>) -> Option<Violation> {
    let is_root = |sc: &Value| field(sc, &["runAsUser"]).and_then(Value::as_i64) == Some(0);
    let mut setters = Vec::new();
    if pod.security_context().is_some_and(is_root) {
        setters.push("pod".to_string());
    }
    let bad: Vec<&str> = pod
        .containers()
        .filter(|c| field(c, &["securityContext"]).is_some_and(is_root))
        .map(name)
        .collect();
    if !bad.is_empty() {
        setters.push(containers_phrase(&bad));
    }
    if setters.is_empty() {
        return None;
    }
    violation("runAsUser=0", format!("{} must not set runAsUser=0", setters.join(" and ")))
}

fn run_as_user_1_35(pod: &Pod<'_>) -> Option<Violation> {
    if pod.in_user_namespace() {
        return None;
    }
    run_as_user_1_23(pod)
}

fn seccomp_profile_restricted_1_19(pod: &Pod<'_>) -> Option<Violation> {
    let (setters, bad_values, pod_valid) = explicit_bad_seccomp(pod);
    if !setters.is_empty() {
        return seccomp_explicit_violation(&setters, &bad_values);
    }
    if pod_valid {
        return None;
    }
    let implicitly_bad: Vec<&str> = pod
        .containers()
        .filter(|c| field(c, &["securityContext", "seccompProfile"]).is_none())
        .map(name)
        .collect();
    if implicitly_bad.is_empty() {
        return None;
    }
    violation(
        "seccompProfile",
        format!(
            "pod or {} must set securityContext.seccompProfile.type to \"RuntimeDefault\" or \"Localhost\"",
            containers_phrase(&implicitly_bad)
        ),
    )
}

fn seccomp_profile_restricted_1_25(pod: &Pod<'_>) -> Option<Violation> {
    if pod.is_windows() {
        return None;
    }
    seccomp_profile_restricted_1_19(pod)
}

#[cfg(test)]
mod tests;
