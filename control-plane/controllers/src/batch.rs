//! Job condition helpers that the Job, CronJob and TTL-after-finished controllers share:
//! whether and when a Job finished, and the HTTP code of an API error.

use k8s_openapi::api::batch::v1::{Job, JobCondition};
use k8s_openapi::jiff::Timestamp;

/// The condition of `type_` if it is True.
pub fn true_condition<'a>(job: &'a Job, type_: &str) -> Option<&'a JobCondition> {
    job.status
        .as_ref()?
        .conditions
        .as_ref()?
        .iter()
        .find(|c| c.type_ == type_ && c.status == "True")
}

/// `Complete` or `Failed` (the finished condition), if the Job has finished.
pub fn finished_condition(job: &Job) -> Option<&JobCondition> {
    true_condition(job, "Complete").or_else(|| true_condition(job, "Failed"))
}

/// When the Job finished: its finished condition's transition time.
pub fn finished_at(job: &Job) -> Option<Timestamp> {
    finished_condition(job).and_then(|c| c.last_transition_time.as_ref().map(|t| t.0))
}

/// The HTTP code of an API error answer (`404`, `409`, …); `None` for other errors.
pub fn api_code(e: &kube::Error) -> Option<u16> {
    match e {
        kube::Error::Api(s) => Some(s.code),
        _ => None,
    }
}
