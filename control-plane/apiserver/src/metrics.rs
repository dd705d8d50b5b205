//! The api server's Prometheus metrics, named as Kubernetes names them.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    pub verb: String,
    pub group: String,
    pub version: String,
    pub resource: String,
    pub subresource: String,
    pub scope: String,
    pub code: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DurationLabels {
    pub verb: String,
    pub group: String,
    pub version: String,
    pub resource: String,
    pub subresource: String,
    pub scope: String,
}

/// `apiserver_admission_webhook_admission_duration_seconds` labels.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct WebhookLabels {
    pub name: String,
    /// `admit` (mutating) or `validating`.
    pub r#type: String,
    pub operation: String,
    pub rejected: String,
}

pub struct Metrics {
    registry: std::sync::RwLock<Registry>,
    pub requests: Family<RequestLabels, Counter>,
    pub durations: Family<DurationLabels, Histogram>,
    pub inflight_watches: Gauge,
    pub webhook_durations: Family<WebhookLabels, Histogram>,
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::default();
        let requests = Family::<RequestLabels, Counter>::default();
        let durations = Family::<DurationLabels, Histogram>::new_with_constructor(|| {
            Histogram::new([
                0.005, 0.025, 0.05, 0.1, 0.2, 0.4, 0.6, 0.8, 1.0, 1.25, 1.5, 2.0, 3.0, 4.0, 5.0,
                6.0, 8.0, 10.0, 15.0, 20.0, 30.0, 45.0, 60.0,
            ])
        });
        let inflight_watches = Gauge::default();
        let webhook_durations = Family::<WebhookLabels, Histogram>::new_with_constructor(|| {
            Histogram::new([0.005, 0.025, 0.1, 0.5, 1.0, 2.5, 10.0, 25.0])
        });
        registry.register(
            "apiserver_admission_webhook_admission_duration_seconds",
            "Admission webhook latency histogram in seconds, identified by name and broken out for each operation and API resource and type (validate or admit)",
            webhook_durations.clone(),
        );
        registry.register(
            "apiserver_request",
            "Counter of apiserver requests broken out for each verb, group, version, resource, scope, component, and HTTP response code",
            requests.clone(),
        );
        registry.register(
            "apiserver_request_duration_seconds",
            "Response latency distribution in seconds for each verb, group, version, resource, subresource, and scope",
            durations.clone(),
        );
        registry.register(
            "apiserver_longrunning_requests",
            "Gauge of all active long-running apiserver requests (watches)",
            inflight_watches.clone(),
        );
        Metrics {
            registry: std::sync::RwLock::new(registry),
            requests,
            durations,
            inflight_watches,
            webhook_durations,
        }
    }

    /// One call of an admission webhook.
    pub fn observe_webhook(
        &self,
        name: &str,
        mutating: bool,
        operation: &str,
        rejected: bool,
        elapsed: std::time::Duration,
    ) {
        let labels = WebhookLabels {
            name: name.to_string(),
            r#type: if mutating { "admit" } else { "validating" }.to_string(),
            operation: operation.to_string(),
            rejected: rejected.to_string(),
        };
        self.webhook_durations.get_or_create(&labels).observe(elapsed.as_secs_f64());
    }

    /// Add metrics another part of the process computes at scrape time (e.g. the store's).
    pub fn register_collector(&self, collector: Box<dyn prometheus_client::collector::Collector>) {
        if let Ok(mut registry) = self.registry.write() {
            registry.register_collector(collector);
        }
    }

    /// Register metrics another component of this process keeps (the scheduler's).
    pub fn with_registry(&self, f: impl FnOnce(&mut Registry)) {
        if let Ok(mut registry) = self.registry.write() {
            f(&mut registry);
        }
    }

    pub fn encode(&self) -> String {
        let mut out = String::new();
        if let Ok(registry) = self.registry.read() {
            // Writing into a String cannot fail.
            let _ = prometheus_client::encoding::text::encode(&mut out, &registry);
        }
        out
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encode_should_name_counters_like_kubernetes() {
        let m = Metrics::new();
        m.requests
            .get_or_create(&RequestLabels {
                verb: "GET".into(),
                group: "".into(),
                version: "v1".into(),
                resource: "pods".into(),
                subresource: "".into(),
                scope: "resource".into(),
                code: "200".into(),
            })
            .inc();
        m.durations
            .get_or_create(&DurationLabels {
                verb: "GET".into(),
                group: "".into(),
                version: "v1".into(),
                resource: "pods".into(),
                subresource: "".into(),
                scope: "resource".into(),
            })
            .observe(0.01);
        let text = m.encode();
        assert!(!text.contains(".."), "{text}");
        assert!(text.contains("apiserver_request_total{"), "{text}");
        assert!(text.contains("apiserver_request_duration_seconds"), "{text}");
    }
}
