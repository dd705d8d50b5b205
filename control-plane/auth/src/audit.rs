//! Audit logging, as kube-apiserver's `k8s.io/apiserver/pkg/audit` and its log backend
//! (`plugin/pkg/audit/log`) do it: the `audit.k8s.io/v1` [`Policy`] that decides how much of a
//! request is recorded, the [`Event`] written at each stage of a request, the scrubbing of
//! secret material from the objects an event carries ([`redact_secret_material`]), the
//! [`Recorder`] that follows one request through its stages ([`AuditRecord`]), and the
//! JSON-lines [`LogWriter`] that rotates its file as kube-apiserver's `--audit-log-max*`
//! options (lumberjack) do.

mod event;
mod log;
mod policy;
mod record;
mod redact;
#[cfg(test)]
mod tests;

pub use event::{API_VERSION, Event, ObjectReference, ResponseStatus};
pub use log::{LogError, LogStats, LogTarget, LogWriter, RotationOptions};
pub use policy::{GroupResources, Level, Policy, PolicyError, PolicyRule, RuleDecision, Stage};
pub use record::{AuditRecord, Recorder, RequestMeta};
pub use redact::{REDACTED, omit_managed_fields, redact_secret_material};
