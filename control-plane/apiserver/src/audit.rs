//! The api server's audit log (kube-apiserver's `--audit-policy-file`, `--audit-log-*` and
//! its `WithAudit` filter): the [`Auditor`] built from the flags, which the request path asks
//! for an [`AuditRecord`] per request. What is recorded, and how, is `skiff_auth::audit`'s.

use std::path::PathBuf;
use std::sync::Arc;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use skiff_auth::audit::{
    LogError, LogTarget, LogWriter, Policy, PolicyError, Recorder, RotationOptions,
};

pub use skiff_auth::audit::{AuditRecord, Level, RequestMeta};

/// The `--audit-*` flags.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditOptions {
    pub policy_file: PathBuf,
    /// `-` writes to stdout.
    pub log_path: PathBuf,
    /// Days to keep rotated files (0: no limit).
    pub max_age_days: u32,
    /// Rotated files to keep (0: all).
    pub max_backups: u32,
    /// Size in MB at which the file is rotated (0: 100).
    pub max_size_mb: u32,
}

#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    #[error("reading the audit policy {path}: {source}")]
    ReadPolicy {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("audit policy {path}: {source}")]
    Policy {
        path: PathBuf,
        #[source]
        source: PolicyError,
    },
    #[error(transparent)]
    Log(#[from] LogError),
}

/// Decides what each request's audit record holds and writes it. `Send + Sync`; one per
/// api server.
pub struct Auditor {
    recorder: Recorder,
}

impl Auditor {
    /// Read the policy and open the log. Fails on a bad policy or a log that cannot be
    /// opened: a server asked to audit does not start without auditing.
    pub fn new(o: &AuditOptions) -> Result<Auditor, AuditError> {
        let text = std::fs::read_to_string(&o.policy_file)
            .map_err(|source| AuditError::ReadPolicy { path: o.policy_file.clone(), source })?;
        let policy = Policy::parse(&text)
            .map_err(|source| AuditError::Policy { path: o.policy_file.clone(), source })?;
        let rotation = RotationOptions::from_flags(o.max_size_mb, o.max_backups, o.max_age_days);
        let writer = LogWriter::open(LogTarget::from_path(&o.log_path), rotation)?;
        Ok(Auditor { recorder: Recorder::new(policy, writer) })
    }

    /// Decide the level for a request and, unless None, start its event (writes
    /// RequestReceived unless omitted).
    pub fn begin(&self, m: &RequestMeta<'_>) -> Option<AuditRecord> {
        self.recorder.begin(m)
    }

    /// Wait until every event written so far is on disk.
    pub fn flush(&self) {
        self.recorder.writer().flush();
    }

    /// `apiserver_audit_event_total` and `apiserver_audit_error_total{plugin="log"}`, read at
    /// each scrape (for `Metrics::register_collector`).
    pub fn metrics_collector(&self) -> Box<dyn Collector> {
        Box::new(AuditMetrics { writer: self.recorder.writer().clone() })
    }
}

struct AuditMetrics {
    writer: Arc<LogWriter>,
}

impl std::fmt::Debug for AuditMetrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuditMetrics").field("stats", &self.writer.stats()).finish()
    }
}

impl Collector for AuditMetrics {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let stats = self.writer.stats();
        let events = ConstCounter::new(stats.events);
        events.encode(encoder.encode_descriptor(
            "apiserver_audit_event",
            "Counter of audit events generated and sent to the audit backend.",
            None,
            events.metric_type(),
        )?)?;
        let errors = ConstCounter::new(stats.errors);
        let mut family = encoder.encode_descriptor(
            "apiserver_audit_error",
            "Counter of audit events that failed to be audited properly. Plugin identifies the plugin affected by the error.",
            None,
            errors.metric_type(),
        )?;
        errors.encode(family.encode_family(&[("plugin", "log")])?)?;
        Ok(())
    }
}
