//! Translation between Skiff's runtime-neutral types and CRI v1 messages. Pure functions: no
//! I/O, so the Kubernetes conventions they encode are unit-tested here.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use chrono::{DateTime, TimeZone, Utc};
use k8s_cri::v1 as cri;
use skiff_runtime_core::{
    ContainerConfig, ContainerState, ContainerStatus, ExitInfo, SandboxConfig, SandboxStatus,
};

/// Sandbox annotation keeping the pod's log directory, so a container can be created in a
/// sandbox this process did not start (after a kubelet restart).
pub(crate) const LOG_DIRECTORY_ANNOTATION: &str = "skiff.io/log-directory";
/// Sandbox annotation keeping the pod's cgroup parent, for the same reason.
pub(crate) const CGROUP_PARENT_ANNOTATION: &str = "skiff.io/cgroup-parent";
/// Container annotation naming the host file behind the termination message.
pub(crate) const TERMINATION_FILE_ANNOTATION: &str = "skiff.io/termination-message-host-path";
/// The longest termination message read back (Kubernetes' limit per container).
pub(crate) const MAX_TERMINATION_MESSAGE: usize = 4096;

/// CFS period the CPU quota is expressed in (Kubernetes' default, 100 ms).
pub(crate) const CPU_PERIOD_MICROS: i64 = 100_000;
const MIN_CPU_SHARES: i64 = 2;
const MAX_CPU_SHARES: i64 = 262_144;
const MIN_CPU_QUOTA_MICROS: i64 = 1_000;

/// `cpu.shares` for a CPU request, as the kubelet computes it (`MilliCPUToShares`).
pub(crate) fn cpu_shares(millis: u64) -> i64 {
    let shares = i64::try_from(millis).unwrap_or(i64::MAX).saturating_mul(1024) / 1000;
    shares.clamp(MIN_CPU_SHARES, MAX_CPU_SHARES)
}

/// CFS quota for a CPU limit over [`CPU_PERIOD_MICROS`] (`MilliCPUToQuota`).
pub(crate) fn cpu_quota(millis: u64) -> i64 {
    let quota = i64::try_from(millis).unwrap_or(i64::MAX).saturating_mul(CPU_PERIOD_MICROS) / 1000;
    quota.max(MIN_CPU_QUOTA_MICROS)
}

fn to_hash(map: &BTreeMap<String, String>) -> HashMap<String, String> {
    map.iter().map(|(k, v)| (k.clone(), v.clone())).collect()
}

fn to_btree(map: &HashMap<String, String>) -> BTreeMap<String, String> {
    map.iter().map(|(k, v)| (k.clone(), v.clone())).collect()
}

fn protocol(name: &str) -> cri::Protocol {
    match name.to_ascii_uppercase().as_str() {
        "UDP" => cri::Protocol::Udp,
        "SCTP" => cri::Protocol::Sctp,
        _ => cri::Protocol::Tcp,
    }
}

/// The namespaces a pod's sandbox and containers use: the node's network with `hostNetwork`,
/// a PID namespace per container (Kubernetes' default without `shareProcessNamespace`).
pub(crate) fn namespace_options(host_network: bool) -> cri::NamespaceOption {
    cri::NamespaceOption {
        network: if host_network { cri::NamespaceMode::Node } else { cri::NamespaceMode::Pod }
            as i32,
        pid: cri::NamespaceMode::Container as i32,
        ipc: cri::NamespaceMode::Pod as i32,
        ..Default::default()
    }
}

pub(crate) fn sandbox_config(config: &SandboxConfig) -> cri::PodSandboxConfig {
    let mut annotations = to_hash(&config.annotations);
    annotations.insert(
        LOG_DIRECTORY_ANNOTATION.to_string(),
        config.log_directory.to_string_lossy().into_owned(),
    );
    if let Some(parent) = &config.cgroup_parent {
        annotations.insert(CGROUP_PARENT_ANNOTATION.to_string(), parent.clone());
    }
    cri::PodSandboxConfig {
        metadata: Some(cri::PodSandboxMetadata {
            name: config.pod_name.clone(),
            uid: config.pod_uid.clone(),
            namespace: config.pod_namespace.clone(),
            attempt: config.attempt,
        }),
        hostname: config.hostname.clone(),
        log_directory: config.log_directory.to_string_lossy().into_owned(),
        port_mappings: config
            .ports
            .iter()
            .map(|p| cri::PortMapping {
                protocol: protocol(&p.protocol) as i32,
                container_port: i32::from(p.container_port),
                host_port: p.host_port.map(i32::from).unwrap_or(0),
                host_ip: String::new(),
            })
            .collect(),
        labels: to_hash(&config.labels),
        annotations,
        dns_config: config.dns.as_ref().map(|d| cri::DnsConfig {
            servers: d.servers.clone(),
            searches: d.searches.clone(),
            options: d.options.clone(),
        }),
        linux: Some(cri::LinuxPodSandboxConfig {
            cgroup_parent: config.cgroup_parent.clone().unwrap_or_default(),
            security_context: Some(cri::LinuxSandboxSecurityContext {
                namespace_options: Some(namespace_options(config.host_network)),
                ..Default::default()
            }),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// A sandbox's config rebuilt from what the runtime reports about it, for sandboxes created
/// by an earlier process (CRI's CreateContainer wants the sandbox config again).
pub(crate) fn sandbox_config_from_status(status: &cri::PodSandboxStatus) -> cri::PodSandboxConfig {
    let host_network = status
        .linux
        .as_ref()
        .and_then(|l| l.namespaces.as_ref())
        .and_then(|n| n.options.as_ref())
        .is_some_and(|o| o.network == cri::NamespaceMode::Node as i32);
    cri::PodSandboxConfig {
        metadata: status.metadata.clone(),
        log_directory: status
            .annotations
            .get(LOG_DIRECTORY_ANNOTATION)
            .cloned()
            .unwrap_or_default(),
        labels: status.labels.clone(),
        annotations: status.annotations.clone(),
        linux: Some(cri::LinuxPodSandboxConfig {
            cgroup_parent: status
                .annotations
                .get(CGROUP_PARENT_ANNOTATION)
                .cloned()
                .unwrap_or_default(),
            security_context: Some(cri::LinuxSandboxSecurityContext {
                namespace_options: Some(namespace_options(host_network)),
                ..Default::default()
            }),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// The directory containerd joins the container's log path to, and that relative path: CRI
/// wants the log path relative to the sandbox's log directory. A path outside it keeps its
/// own directory (the sandbox config sent with the request carries that directory instead).
pub(crate) fn split_log_path(log_directory: &Path, log_path: &Path) -> (PathBuf, PathBuf) {
    if !log_directory.as_os_str().is_empty()
        && let Ok(relative) = log_path.strip_prefix(log_directory)
        && !relative.as_os_str().is_empty()
    {
        return (log_directory.to_path_buf(), relative.to_path_buf());
    }
    let dir = log_path.parent().map(Path::to_path_buf).unwrap_or_default();
    let file = log_path.file_name().map(PathBuf::from).unwrap_or_default();
    (dir, file)
}

pub(crate) fn linux_resources(config: &ContainerConfig) -> cri::LinuxContainerResources {
    // Without a request Kubernetes defaults it to the limit; with neither, minimal shares.
    let shares = cpu_shares(config.cpu_request_millis.or(config.cpu_limit_millis).unwrap_or(0));
    let (cpu_period, cpu_quota) = match config.cpu_limit_millis {
        Some(m) if m > 0 => (CPU_PERIOD_MICROS, cpu_quota(m)),
        _ => (0, 0),
    };
    cri::LinuxContainerResources {
        cpu_period,
        cpu_quota,
        cpu_shares: shares,
        memory_limit_in_bytes: i64::try_from(config.memory_limit_bytes).unwrap_or(i64::MAX),
        ..Default::default()
    }
}

/// The CRI container config for `config`, whose log file is `log_path` relative to the
/// sandbox's log directory.
pub(crate) fn container_config(
    config: &ContainerConfig,
    log_path: &Path,
    host_network: bool,
) -> cri::ContainerConfig {
    let mut mounts: Vec<cri::Mount> = config
        .mounts
        .iter()
        .map(|m| cri::Mount {
            container_path: m.container_path.clone(),
            host_path: m.host_path.to_string_lossy().into_owned(),
            readonly: m.read_only,
            propagation: cri::MountPropagation::PropagationPrivate as i32,
            ..Default::default()
        })
        .collect();
    let mut annotations = to_hash(&config.annotations);
    if let (Some(path), Some(host)) =
        (&config.termination_message_path, &config.termination_message_host_path)
    {
        mounts.push(cri::Mount {
            container_path: path.clone(),
            host_path: host.to_string_lossy().into_owned(),
            readonly: false,
            ..Default::default()
        });
        annotations
            .insert(TERMINATION_FILE_ANNOTATION.to_string(), host.to_string_lossy().into_owned());
    }
    cri::ContainerConfig {
        metadata: Some(cri::ContainerMetadata {
            name: config.name.clone(),
            attempt: config.attempt,
        }),
        image: Some(cri::ImageSpec { image: config.image.clone(), ..Default::default() }),
        command: config.command.clone(),
        args: config.args.clone(),
        working_dir: config.working_dir.clone().unwrap_or_default(),
        envs: config
            .env
            .iter()
            .map(|(key, value)| cri::KeyValue { key: key.clone(), value: value.clone() })
            .collect(),
        mounts,
        labels: to_hash(&config.labels),
        annotations,
        log_path: log_path.to_string_lossy().into_owned(),
        linux: Some(cri::LinuxContainerConfig {
            resources: Some(linux_resources(config)),
            security_context: Some(cri::LinuxContainerSecurityContext {
                namespace_options: Some(namespace_options(host_network)),
                ..Default::default()
            }),
        }),
        ..Default::default()
    }
}

pub(crate) fn timestamp(nanos: i64) -> DateTime<Utc> {
    Utc.timestamp_nanos(nanos)
}

/// `terminated.reason` as Kubernetes shows it: the runtime's reason (`OOMKilled`, …) when it
/// gives one, else `Completed` for exit code 0 and `Error` for any other.
pub(crate) fn exit_reason(cri_reason: &str, exit_code: i32) -> String {
    match cri_reason {
        "" if exit_code == 0 => "Completed".to_string(),
        "" => "Error".to_string(),
        reason => reason.to_string(),
    }
}

/// Our view of a CRI container status; `termination_message` is the content of the
/// container's termination message file, if it wrote one.
pub(crate) fn container_status(
    status: &cri::ContainerStatus,
    termination_message: Option<String>,
) -> ContainerStatus {
    let state = match cri::ContainerState::try_from(status.state) {
        Ok(cri::ContainerState::ContainerCreated) => ContainerState::Created,
        Ok(cri::ContainerState::ContainerRunning) => {
            ContainerState::Running { started_at: timestamp(status.started_at) }
        }
        // An unknown container (its shim lost) is reported as ended, so the kubelet replaces it.
        Ok(cri::ContainerState::ContainerExited | cri::ContainerState::ContainerUnknown)
        | Err(_) => {
            let unknown = status.state != cri::ContainerState::ContainerExited as i32;
            let reason = if unknown {
                "Unknown".to_string()
            } else {
                exit_reason(&status.reason, status.exit_code)
            };
            let message = termination_message
                .filter(|m| !m.is_empty())
                .or_else(|| Some(status.message.clone()).filter(|m| !m.is_empty()));
            ContainerState::Exited(ExitInfo {
                exit_code: status.exit_code,
                reason,
                message,
                started_at: timestamp(status.started_at),
                // containerd records the start after the task runs: a container that exits at
                // once can seem to finish before it started.
                finished_at: timestamp(status.finished_at.max(status.started_at)),
            })
        }
    };
    let mut annotations = to_btree(&status.annotations);
    annotations.remove(TERMINATION_FILE_ANNOTATION);
    ContainerStatus {
        id: status.id.clone(),
        name: status.metadata.as_ref().map(|m| m.name.clone()).unwrap_or_default(),
        image: status.image.as_ref().map(|i| i.image.clone()).unwrap_or_default(),
        image_id: if status.image_ref.is_empty() {
            status.image_id.clone()
        } else {
            status.image_ref.clone()
        },
        state,
        labels: to_btree(&status.labels),
        annotations,
        sandbox_id: String::new(),
    }
}

pub(crate) fn sandbox_status(status: &cri::PodSandboxStatus) -> SandboxStatus {
    SandboxStatus {
        id: status.id.clone(),
        ready: status.state == cri::PodSandboxState::SandboxReady as i32,
        ip: status.network.as_ref().map(|n| n.ip.clone()).filter(|ip| !ip.is_empty()),
        labels: to_btree(&status.labels),
    }
}

/// Kubernetes truncates a termination message to 4 KiB; cut on a character boundary.
pub(crate) fn truncate_message(mut bytes: Vec<u8>) -> String {
    bytes.truncate(MAX_TERMINATION_MESSAGE);
    match String::from_utf8(bytes) {
        Ok(s) => s,
        Err(e) => {
            let valid = e.utf8_error().valid_up_to();
            let mut bytes = e.into_bytes();
            bytes.truncate(valid);
            String::from_utf8(bytes).unwrap_or_default()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use skiff_runtime_core::{Mount, PortMapping};

    #[test]
    fn cpu_shares_should_follow_the_kubelet_formula() {
        assert_eq!(cpu_shares(0), 2);
        assert_eq!(cpu_shares(1), 2);
        assert_eq!(cpu_shares(100), 102);
        assert_eq!(cpu_shares(1000), 1024);
        assert_eq!(cpu_shares(1_000_000), 262_144);
    }

    #[test]
    fn cpu_quota_should_scale_to_the_period_with_a_floor() {
        assert_eq!(cpu_quota(500), 50_000);
        assert_eq!(cpu_quota(2000), 200_000);
        assert_eq!(cpu_quota(1), 1_000);
    }

    #[test]
    fn linux_resources_should_default_the_request_to_the_limit() {
        let config = ContainerConfig {
            cpu_limit_millis: Some(250),
            memory_limit_bytes: 64 << 20,
            ..Default::default()
        };
        let r = linux_resources(&config);
        assert_eq!(r.cpu_shares, 256);
        assert_eq!((r.cpu_period, r.cpu_quota), (100_000, 25_000));
        assert_eq!(r.memory_limit_in_bytes, 64 << 20);
        let r = linux_resources(&ContainerConfig::default());
        assert_eq!((r.cpu_shares, r.cpu_quota, r.memory_limit_in_bytes), (2, 0, 0));
    }

    #[test]
    fn split_log_path_should_make_the_path_relative_to_the_sandbox_directory() {
        let dir = Path::new("/var/log/pods/ns_p_uid");
        let (d, rel) = split_log_path(dir, &dir.join("app/0.log"));
        assert_eq!((d.as_path(), rel.as_path()), (dir, Path::new("app/0.log")));
        let (d, rel) = split_log_path(dir, Path::new("/elsewhere/app/1.log"));
        assert_eq!((d.as_path(), rel.as_path()), (Path::new("/elsewhere/app"), Path::new("1.log")));
    }

    #[test]
    fn sandbox_config_should_carry_metadata_ports_and_host_network() {
        let config = SandboxConfig {
            pod_uid: "u1".into(),
            pod_namespace: "ns".into(),
            pod_name: "p".into(),
            log_directory: "/logs/ns_p_u1".into(),
            attempt: 2,
            hostname: "h".into(),
            host_network: true,
            cgroup_parent: Some("/skiff/podu1".into()),
            ports: vec![PortMapping {
                container: "c".into(),
                name: None,
                container_port: 53,
                protocol: "UDP".into(),
                host_port: Some(5353),
            }],
            dns: Some(skiff_runtime_core::DnsConfig {
                servers: vec!["10.96.0.10".into()],
                searches: vec!["ns.svc.cluster.local".into()],
                options: vec!["ndots:5".into()],
            }),
            ..Default::default()
        };
        let c = sandbox_config(&config);
        let dns = c.dns_config.as_ref().unwrap();
        assert_eq!((dns.servers[0].as_str(), dns.options[0].as_str()), ("10.96.0.10", "ndots:5"));
        let m = c.metadata.as_ref().unwrap();
        assert_eq!(
            (m.name.as_str(), m.uid.as_str(), m.namespace.as_str(), m.attempt),
            ("p", "u1", "ns", 2)
        );
        assert_eq!(c.port_mappings[0].protocol, cri::Protocol::Udp as i32);
        assert_eq!((c.port_mappings[0].container_port, c.port_mappings[0].host_port), (53, 5353));
        let linux = c.linux.as_ref().unwrap();
        assert_eq!(linux.cgroup_parent, "/skiff/podu1");
        let ns = linux.security_context.as_ref().unwrap().namespace_options.clone().unwrap();
        assert_eq!(ns.network, cri::NamespaceMode::Node as i32);
        // A later process rebuilds the same essentials from the sandbox's status.
        let status = cri::PodSandboxStatus {
            metadata: c.metadata.clone(),
            annotations: c.annotations.clone(),
            linux: Some(cri::LinuxPodSandboxStatus {
                namespaces: Some(cri::Namespace { options: Some(ns.clone()) }),
            }),
            ..Default::default()
        };
        let rebuilt = sandbox_config_from_status(&status);
        assert_eq!(rebuilt.log_directory, "/logs/ns_p_u1");
        assert_eq!(rebuilt.linux.unwrap().cgroup_parent, "/skiff/podu1");
    }

    #[test]
    fn container_config_should_mount_the_termination_message_file() {
        let config = ContainerConfig {
            name: "c".into(),
            image: "skiff.local/busybox:1.36".into(),
            command: vec!["sh".into()],
            args: vec!["-c".into(), "true".into()],
            argv: vec!["ignored".into()],
            mounts: vec![Mount {
                host_path: "/data".into(),
                container_path: "/data".into(),
                read_only: true,
            }],
            termination_message_path: Some("/dev/termination-log".into()),
            termination_message_host_path: Some("/pods/u/containers/c/abc".into()),
            ..Default::default()
        };
        let c = container_config(&config, Path::new("c/0.log"), false);
        assert_eq!(c.command, ["sh"]);
        assert_eq!(c.args, ["-c", "true"]);
        assert!(c.mounts[0].readonly);
        assert_eq!(c.mounts[1].container_path, "/dev/termination-log");
        assert_eq!(c.log_path, "c/0.log");
        assert_eq!(c.annotations[TERMINATION_FILE_ANNOTATION], "/pods/u/containers/c/abc");
    }

    #[test]
    fn container_status_should_map_exit_reasons_and_prefer_the_termination_message() {
        let mut status = cri::ContainerStatus {
            id: "x".into(),
            state: cri::ContainerState::ContainerExited as i32,
            exit_code: 3,
            started_at: 2_000,
            finished_at: 1_000,
            message: "cri message".into(),
            annotations: HashMap::from([(TERMINATION_FILE_ANNOTATION.into(), "/f".into())]),
            ..Default::default()
        };
        let s = container_status(&status, Some("from file".into()));
        let ContainerState::Exited(exit) = &s.state else { panic!("{:?}", s.state) };
        assert_eq!((exit.reason.as_str(), exit.message.as_deref()), ("Error", Some("from file")));
        assert!(s.annotations.is_empty());
        assert_eq!(exit.finished_at, exit.started_at);
        let s = container_status(&status, None);
        let ContainerState::Exited(exit) = &s.state else { panic!() };
        assert_eq!(exit.message.as_deref(), Some("cri message"));
        status.exit_code = 0;
        status.reason = String::new();
        let ContainerState::Exited(exit) = container_status(&status, None).state else { panic!() };
        assert_eq!(exit.reason, "Completed");
        status.exit_code = 137;
        status.reason = "OOMKilled".into();
        let ContainerState::Exited(exit) = container_status(&status, None).state else { panic!() };
        assert_eq!(exit.reason, "OOMKilled");
    }

    #[test]
    fn truncate_message_should_cut_at_4k_on_a_char_boundary() {
        let long = "é".repeat(3000);
        let cut = truncate_message(long.into_bytes());
        assert!(cut.len() <= MAX_TERMINATION_MESSAGE);
        assert_eq!(cut.len() % 2, 0);
    }
}
