//! The node's resources as the kubelet reports them: capacity from the machine (cores,
//! `MemTotal`, the data dir's file system through statvfs, `--max-pods`) and allocatable =
//! capacity − kube-reserved − system-reserved − hard eviction threshold, Kubernetes' node
//! allocatable (`pkg/kubelet/cm` `GetNodeAllocatableAbsolute`). Also the eviction signals'
//! raw readings and the parsers of the kubelet's `--kube-reserved`, `--system-reserved` and
//! `--eviction-hard` flags, with the kubelet's syntax and checks.

use std::collections::BTreeMap;
use std::fmt;
use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use skiff_helpers::quantity::{milli_value, value};

/// A malformed `--kube-reserved`, `--system-reserved`, `--eviction-hard` or duration flag.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ResourceFlagError {
    #[error("invalid reservation {0:?}: want NAME=QUANTITY")]
    BadPair(String),
    #[error("cannot reserve {0:?} resource")]
    UnknownResource(String),
    #[error("invalid quantity {value:?} for {name}")]
    BadQuantity { name: String, value: String },
    #[error("resource quantity for {name} must be non-negative: {value}")]
    Negative { name: String, value: String },
    #[error("unsupported eviction signal {0}")]
    UnknownSignal(String),
    #[error("invalid eviction threshold {0:?}: want SIGNAL<QUANTITY or SIGNAL<PERCENT%")]
    BadThreshold(String),
    #[error("eviction percentage threshold {signal} must be >= 0% and <= 100%: {value}")]
    BadPercentage { signal: String, value: String },
    #[error("eviction threshold {signal} must be positive: {value}")]
    NotPositive { signal: String, value: String },
    #[error("invalid duration {0:?} (e.g. 30s, 5m0s, 1h)")]
    BadDuration(String),
}

/// Resources set aside from allocatable (`--kube-reserved`, `--system-reserved`): `cpu` in
/// millicores, `memory`, `ephemeral-storage` in bytes, `pid` in processes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Reserved(pub BTreeMap<String, i64>);

impl Reserved {
    pub fn get(&self, resource: &str) -> i64 {
        self.0.get(resource).copied().unwrap_or(0)
    }
}

impl FromStr for Reserved {
    type Err = ResourceFlagError;

    /// `cpu=100m,memory=100Mi,ephemeral-storage=1Gi,pid=1000` (empty: nothing reserved).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let mut out = BTreeMap::new();
        for pair in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (name, q) =
                pair.split_once('=').ok_or_else(|| ResourceFlagError::BadPair(pair.to_string()))?;
            let (name, q) = (name.trim(), q.trim());
            let parsed = match name {
                "cpu" => milli_value(q),
                "memory" | "ephemeral-storage" | "pid" => value(q),
                _ => return Err(ResourceFlagError::UnknownResource(name.to_string())),
            };
            let v = parsed.ok_or_else(|| ResourceFlagError::BadQuantity {
                name: name.to_string(),
                value: q.to_string(),
            })?;
            if v < 0 {
                return Err(ResourceFlagError::Negative {
                    name: name.to_string(),
                    value: q.to_string(),
                });
            }
            out.insert(name.to_string(), v);
        }
        Ok(Reserved(out))
    }
}

/// An eviction signal (`pkg/kubelet/eviction/api`), each observed as available/capacity.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Signal {
    MemoryAvailable,
    NodeFsAvailable,
    NodeFsInodesFree,
    ImageFsAvailable,
    ImageFsInodesFree,
    PidAvailable,
}

/// The node condition a signal past its threshold sets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Pressure {
    Memory,
    Disk,
    Pid,
}

impl Signal {
    pub const ALL: [Signal; 6] = [
        Signal::MemoryAvailable,
        Signal::NodeFsAvailable,
        Signal::NodeFsInodesFree,
        Signal::ImageFsAvailable,
        Signal::ImageFsInodesFree,
        Signal::PidAvailable,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Signal::MemoryAvailable => "memory.available",
            Signal::NodeFsAvailable => "nodefs.available",
            Signal::NodeFsInodesFree => "nodefs.inodesFree",
            Signal::ImageFsAvailable => "imagefs.available",
            Signal::ImageFsInodesFree => "imagefs.inodesFree",
            Signal::PidAvailable => "pid.available",
        }
    }

    pub fn pressure(self) -> Pressure {
        match self {
            Signal::MemoryAvailable => Pressure::Memory,
            Signal::PidAvailable => Pressure::Pid,
            _ => Pressure::Disk,
        }
    }

    /// The resource evicting pods reclaims (what the eviction message names).
    pub fn resource(self) -> &'static str {
        match self {
            Signal::MemoryAvailable => "memory",
            Signal::NodeFsAvailable | Signal::ImageFsAvailable => "ephemeral-storage",
            Signal::NodeFsInodesFree | Signal::ImageFsInodesFree => "inodes",
            Signal::PidAvailable => "pids",
        }
    }
}

impl FromStr for Signal {
    type Err = ResourceFlagError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Signal::ALL
            .into_iter()
            .find(|sig| sig.name() == s)
            .ok_or_else(|| ResourceFlagError::UnknownSignal(s.to_string()))
    }
}

impl fmt::Display for Signal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A threshold's value: an absolute quantity (bytes, inodes, processes) or a fraction of the
/// capacity, kept as the kubelet keeps it (a 32-bit float) so amounts come out the same.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum ThresholdValue {
    Quantity(i64),
    Percentage(f32),
}

impl ThresholdValue {
    /// The absolute amount against `capacity` (`evictionapi.GetThresholdQuantity`).
    pub fn quantity(self, capacity: i64) -> i64 {
        match self {
            ThresholdValue::Quantity(q) => q,
            #[allow(clippy::cast_precision_loss, clippy::cast_possible_truncation)]
            ThresholdValue::Percentage(p) => (capacity as f64 * f64::from(p)) as i64,
        }
    }
}

/// `SIGNAL < VALUE`: the signal is met when what is available drops below the value.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Threshold {
    pub signal: Signal,
    pub value: ThresholdValue,
}

/// The hard eviction thresholds (`--eviction-hard`).
#[derive(Debug, Clone, PartialEq)]
pub struct Thresholds(pub Vec<Threshold>);

/// The kubelet's `--eviction-hard` default on Linux.
pub const DEFAULT_EVICTION_HARD: &str = "memory.available<100Mi,nodefs.available<10%,nodefs.inodesFree<5%,imagefs.available<15%,imagefs.inodesFree<5%";

impl Default for Thresholds {
    fn default() -> Self {
        DEFAULT_EVICTION_HARD.parse().unwrap_or(Thresholds(Vec::new()))
    }
}

impl Thresholds {
    pub fn get(&self, signal: Signal) -> Option<&Threshold> {
        self.0.iter().find(|t| t.signal == signal)
    }
}

impl FromStr for Thresholds {
    type Err = ResourceFlagError;

    /// `memory.available<100Mi,nodefs.available<10%`. As with the kubelet, signals left out
    /// have no threshold (the defaults apply only when the flag is not given at all), `0%` and
    /// `100%` switch a signal off, and a later statement of a signal replaces an earlier one.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let mut out: Vec<Threshold> = Vec::new();
        for statement in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (signal, v) = statement
                .split_once('<')
                .ok_or_else(|| ResourceFlagError::BadThreshold(statement.to_string()))?;
            let signal: Signal = signal.trim().parse()?;
            let v = v.trim();
            out.retain(|t| t.signal != signal);
            let bad = |v: &str| ResourceFlagError::BadPercentage {
                signal: signal.to_string(),
                value: v.to_string(),
            };
            let value = if let Some(p) = v.strip_suffix('%') {
                if v == "0%" || v == "100%" {
                    continue;
                }
                let p: f32 = p.trim().parse().map_err(|_| bad(v))?;
                let p = p / 100.0;
                if !(0.0..=1.0).contains(&p) {
                    return Err(bad(v));
                }
                ThresholdValue::Percentage(p)
            } else {
                let q = value(v).ok_or_else(|| ResourceFlagError::BadQuantity {
                    name: signal.to_string(),
                    value: v.to_string(),
                })?;
                if q <= 0 {
                    return Err(ResourceFlagError::NotPositive {
                        signal: signal.to_string(),
                        value: v.to_string(),
                    });
                }
                ThresholdValue::Quantity(q)
            };
            out.push(Threshold { signal, value });
        }
        Ok(Thresholds(out))
    }
}

/// A Go-style duration (`300ms`, `30s`, `5m0s`, `1h`), as the kubelet's duration flags take.
pub fn parse_duration(s: &str) -> Result<Duration, ResourceFlagError> {
    skiff_helpers::duration::parse(s).ok_or_else(|| ResourceFlagError::BadDuration(s.to_string()))
}

/// A node's amounts of the resources it reports.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct NodeAmounts {
    pub cpu_milli: i64,
    pub memory: i64,
    pub ephemeral_storage: i64,
    pub pods: i64,
}

impl NodeAmounts {
    /// As `status.capacity` / `status.allocatable` show them.
    pub fn to_json(self) -> serde_json::Value {
        serde_json::json!({
            "cpu": format_cpu(self.cpu_milli),
            "memory": format_bytes(self.memory),
            "ephemeral-storage": format_bytes(self.ephemeral_storage),
            "pods": self.pods.to_string(),
        })
    }
}

/// Allocatable: capacity − kube-reserved − system-reserved − the hard eviction threshold of
/// `memory.available` (memory) and `nodefs.available` (ephemeral-storage), never below zero.
pub fn allocatable(
    capacity: NodeAmounts,
    kube: &Reserved,
    system: &Reserved,
    hard: &Thresholds,
) -> NodeAmounts {
    let eviction = |signal: Signal, cap: i64| hard.get(signal).map_or(0, |t| t.value.quantity(cap));
    let left = |cap: i64, name: &str, evict: i64| {
        cap.saturating_sub(kube.get(name))
            .saturating_sub(system.get(name))
            .saturating_sub(evict)
            .max(0)
    };
    NodeAmounts {
        cpu_milli: left(capacity.cpu_milli, "cpu", 0),
        memory: left(capacity.memory, "memory", eviction(Signal::MemoryAvailable, capacity.memory)),
        ephemeral_storage: left(
            capacity.ephemeral_storage,
            "ephemeral-storage",
            eviction(Signal::NodeFsAvailable, capacity.ephemeral_storage),
        ),
        pods: capacity.pods,
    }
}

/// CPU as a quantity: whole cores (`2`) or millicores (`1900m`).
pub fn format_cpu(milli: i64) -> String {
    if milli % 1000 == 0 { (milli / 1000).to_string() } else { format!("{milli}m") }
}

/// Bytes as apimachinery writes a binary-SI quantity: the largest power-of-1024 suffix that
/// divides the amount exactly (`3Gi`, `1536Ki`), else plain digits (also below 1024).
pub fn format_bytes(bytes: i64) -> String {
    if bytes.abs() < 1024 {
        return bytes.to_string();
    }
    let mut n = bytes;
    let mut suffix = 0;
    while n % 1024 == 0 && suffix < 6 {
        n /= 1024;
        suffix += 1;
    }
    let s = ["", "Ki", "Mi", "Gi", "Ti", "Pi", "Ei"][suffix];
    format!("{n}{s}")
}

/// A count as apimachinery writes a decimal-SI quantity: the largest power-of-1000 suffix that
/// divides it exactly (`1k`, `2M`), else plain digits.
pub fn format_decimal(n: i64) -> String {
    if n == 0 {
        return "0".into();
    }
    let mut v = n;
    let mut suffix = 0;
    while v % 1000 == 0 && suffix < 6 {
        v /= 1000;
        suffix += 1;
    }
    let s = ["", "k", "M", "G", "T", "P", "E"][suffix];
    format!("{v}{s}")
}

/// A file system's size and free space as the kubelet reads them (statvfs).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FsStats {
    pub capacity: u64,
    /// Free to unprivileged users (`f_bavail`).
    pub available: u64,
    pub inodes: u64,
    pub inodes_free: u64,
}

/// statvfs of the file system holding `path`.
pub fn fs_stats(path: &Path) -> std::io::Result<FsStats> {
    let c = std::ffi::CString::new(path.as_os_str().as_encoded_bytes())
        .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e))?;
    // SAFETY: statvfs writes only into the zeroed struct it is given; `c` is NUL-terminated
    // and outlives the call.
    #[allow(unsafe_code)]
    let st = unsafe {
        let mut st: libc::statvfs = std::mem::zeroed();
        if libc::statvfs(c.as_ptr(), &mut st) != 0 {
            return Err(std::io::Error::last_os_error());
        }
        st
    };
    let frsize = st.f_frsize as u64;
    Ok(FsStats {
        capacity: (st.f_blocks as u64).saturating_mul(frsize),
        available: (st.f_bavail as u64).saturating_mul(frsize),
        inodes: st.f_files as u64,
        inodes_free: st.f_ffree as u64,
    })
}

/// `/proc/sys/kernel/pid_max` (bounded by `threads-max`) and the tasks that exist now (the
/// total of `/proc/loadavg`'s `running/total`), as the kubelet's PID signal reads them.
pub fn pid_stats() -> Option<(i64, i64)> {
    let read = |p: &str| std::fs::read_to_string(p).ok()?.trim().parse::<i64>().ok();
    let max = read("/proc/sys/kernel/pid_max")?;
    let max = read("/proc/sys/kernel/threads-max").map_or(max, |t| t.min(max));
    let loadavg = std::fs::read_to_string("/proc/loadavg").ok()?;
    let tasks = parse_loadavg_tasks(&loadavg)?;
    Some((max, tasks))
}

/// The total task count of a `/proc/loadavg` line (`0.1 0.2 0.3 2/345 6789` → 345).
pub fn parse_loadavg_tasks(text: &str) -> Option<i64> {
    text.split_whitespace().nth(3)?.split_once('/')?.1.parse().ok()
}

/// The node's capacity: cores, `MemTotal`, the file system of `data_dir`, `max_pods`.
pub fn node_capacity(data_dir: &Path, max_pods: u32) -> NodeAmounts {
    let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1) as i64;
    let mut mem = crate::stats::NodeUsage::default();
    crate::stats::parse_meminfo(
        &std::fs::read_to_string("/proc/meminfo").unwrap_or_default(),
        &mut mem,
    );
    let fs = fs_stats(data_dir).unwrap_or_else(|e| {
        tracing::warn!(dir = %data_dir.display(), error = %e, "reading the data dir's file system failed; ephemeral-storage capacity is 0");
        FsStats::default()
    });
    NodeAmounts {
        cpu_milli: cores * 1000,
        memory: i64::try_from(mem.memory_total_bytes).unwrap_or(i64::MAX),
        ephemeral_storage: i64::try_from(fs.capacity).unwrap_or(i64::MAX),
        pods: i64::from(max_pods),
    }
}

/// The node's resource flags: what is reserved and the hard eviction thresholds.
#[derive(Debug, Clone)]
pub struct ResourceConfig {
    pub kube_reserved: Reserved,
    pub system_reserved: Reserved,
    pub eviction_hard: Thresholds,
    /// How long a pressure condition stays true after its signal last crossed its threshold
    /// (`--eviction-pressure-transition-period`).
    pub pressure_transition_period: Duration,
    /// How often the eviction manager looks at the signals and at pods' local storage.
    pub monitoring_interval: Duration,
}

impl Default for ResourceConfig {
    fn default() -> Self {
        ResourceConfig {
            kube_reserved: Reserved::default(),
            system_reserved: Reserved::default(),
            eviction_hard: Thresholds::default(),
            pressure_transition_period: Duration::from_secs(300),
            monitoring_interval: Duration::from_secs(10),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reserved_should_parse_the_kubelets_syntax() {
        let r: Reserved = "cpu=100m, memory=100Mi,ephemeral-storage=1Gi,pid=1000".parse().unwrap();
        assert_eq!(r.get("cpu"), 100);
        assert_eq!(r.get("memory"), 100 * 1024 * 1024);
        assert_eq!(r.get("ephemeral-storage"), 1 << 30);
        assert_eq!(r.get("pid"), 1000);
        assert_eq!(r.get("pods"), 0);
        assert_eq!("".parse::<Reserved>().unwrap(), Reserved::default());
        assert_eq!(
            "gpu=1".parse::<Reserved>(),
            Err(ResourceFlagError::UnknownResource("gpu".into()))
        );
        assert!(matches!("memory".parse::<Reserved>(), Err(ResourceFlagError::BadPair(_))));
        assert!(matches!(
            "memory=lots".parse::<Reserved>(),
            Err(ResourceFlagError::BadQuantity { .. })
        ));
        assert!(matches!("cpu=-1".parse::<Reserved>(), Err(ResourceFlagError::Negative { .. })));
    }

    #[test]
    fn thresholds_should_parse_the_kubelets_syntax() {
        let t: Thresholds =
            "memory.available<100Mi,nodefs.available<10%,pid.available<1k".parse().unwrap();
        assert_eq!(t.0.len(), 3);
        assert_eq!(
            t.get(Signal::MemoryAvailable).unwrap().value,
            ThresholdValue::Quantity(100 << 20)
        );
        assert_eq!(t.get(Signal::NodeFsAvailable).unwrap().value, ThresholdValue::Percentage(0.1));
        assert_eq!(t.get(Signal::PidAvailable).unwrap().value, ThresholdValue::Quantity(1000));
        assert!(t.get(Signal::ImageFsAvailable).is_none(), "left-out signals are off");
        // 0% and 100% switch a signal off; a later statement wins.
        let t: Thresholds =
            "nodefs.available<0%,memory.available<1Gi,memory.available<2Gi".parse().unwrap();
        assert_eq!(
            t.0,
            vec![Threshold {
                signal: Signal::MemoryAvailable,
                value: ThresholdValue::Quantity(2 << 30)
            }]
        );
        let d = Thresholds::default();
        assert_eq!(d.0.len(), 5);
        assert_eq!(
            d.get(Signal::ImageFsAvailable).unwrap().value,
            ThresholdValue::Percentage(0.15)
        );
        for (bad, want) in [
            ("memory.free<1Gi", "unsupported eviction signal memory.free"),
            ("memory.available=1Gi", "invalid eviction threshold"),
            ("nodefs.available<101%", "must be >= 0% and <= 100%"),
            ("nodefs.available<-1%", "must be >= 0% and <= 100%"),
            ("memory.available<0", "must be positive"),
        ] {
            let err = bad.parse::<Thresholds>().unwrap_err().to_string();
            assert!(err.contains(want), "{bad}: {err}");
        }
    }

    #[test]
    fn percentages_should_come_out_as_the_kubelets_float32_arithmetic() {
        // 10% is 0.1f32 = 0.100000001490116…: the kubelet's amount carries that error.
        let cap = 270_582_939_648_i64;
        let got = ThresholdValue::Percentage(10.0 / 100.0).quantity(cap);
        assert_eq!(got, (cap as f64 * f64::from(0.1f32)) as i64);
        assert_ne!(got, cap / 10, "not the exact tenth");
    }

    #[test]
    fn allocatable_should_follow_the_kubelets_formula() {
        let capacity = NodeAmounts {
            cpu_milli: 2000,
            memory: 8 << 30,
            ephemeral_storage: 100 << 30,
            pods: 110,
        };
        let kube: Reserved = "cpu=100m,memory=100Mi,ephemeral-storage=1Gi".parse().unwrap();
        let system: Reserved = "cpu=200m,memory=200Mi,ephemeral-storage=2Gi".parse().unwrap();
        let hard: Thresholds = "memory.available<100Mi,nodefs.available<10%".parse().unwrap();
        let a = allocatable(capacity, &kube, &system, &hard);
        assert_eq!(a.cpu_milli, 1700);
        assert_eq!(a.memory, (8 << 30) - (400 << 20));
        let tenth = ThresholdValue::Percentage(0.1).quantity(100 << 30);
        assert_eq!(a.ephemeral_storage, (100 << 30) - (3 << 30) - tenth);
        assert_eq!(a.pods, 110);
        assert_eq!(a.to_json()["cpu"], "1700m");
        // Never below zero.
        let all: Reserved = "cpu=4,memory=16Gi".parse().unwrap();
        let a = allocatable(capacity, &all, &Reserved::default(), &Thresholds(Vec::new()));
        assert_eq!((a.cpu_milli, a.memory), (0, 0));
        assert_eq!(a.ephemeral_storage, 100 << 30);
    }

    #[test]
    fn quantities_should_print_as_apimachinery_prints_them() {
        assert_eq!(format_bytes(3 << 30), "3Gi");
        assert_eq!(format_bytes(1536 * 1024), "1536Ki");
        assert_eq!(format_bytes(1536), "1536");
        assert_eq!(format_bytes(1000), "1000");
        assert_eq!(format_bytes(0), "0");
        assert_eq!(format_bytes(20 << 20), "20Mi");
        assert_eq!(format_decimal(838_860), "838860");
        assert_eq!(format_decimal(2_000_000), "2M");
        assert_eq!(format_cpu(2000), "2");
        assert_eq!(format_cpu(1900), "1900m");
    }

    #[test]
    fn durations_should_parse_as_go_durations() {
        assert_eq!(parse_duration("5m0s").unwrap(), Duration::from_secs(300));
        assert_eq!(parse_duration("1h30m").unwrap(), Duration::from_secs(5400));
        assert_eq!(parse_duration("500ms").unwrap(), Duration::from_millis(500));
        assert_eq!(parse_duration("1.5s").unwrap(), Duration::from_millis(1500));
        assert_eq!(parse_duration("0").unwrap(), Duration::ZERO);
        assert!(parse_duration("10").is_err());
        assert!(parse_duration("").is_err());
        assert!(parse_duration("5x").is_err());
    }

    #[test]
    fn loadavg_should_give_the_task_count() {
        assert_eq!(parse_loadavg_tasks("0.10 0.20 0.30 2/345 6789\n"), Some(345));
        assert_eq!(parse_loadavg_tasks("garbage"), None);
    }

    #[test]
    fn fs_stats_should_read_a_real_file_system() {
        let dir = tempfile::tempdir().unwrap();
        let fs = fs_stats(dir.path()).unwrap();
        assert!(fs.capacity > 0 && fs.available <= fs.capacity);
    }
}
