//! Events the scheduler records (`Scheduled`, `FailedScheduling`). Like client-go's event
//! broadcaster, writes go through a bounded buffer and are dropped when it is full: events
//! never hold up scheduling or binding.

use std::sync::Arc;

use futures::StreamExt;
use k8s_openapi::api::core::v1::{Event, EventSource, ObjectReference};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use kube::api::{Api, PostParams};
use tokio::sync::mpsc;

use crate::types::PodInfo;

const BUFFER: usize = 1000;
const CONCURRENT_WRITES: usize = 8;

#[derive(Clone)]
pub struct EventSink {
    tx: mpsc::Sender<Event>,
    component: Arc<str>,
}

impl EventSink {
    /// Start the writer on the current runtime.
    pub fn start(client: kube::Client, component: &str) -> Self {
        let (tx, rx) = mpsc::channel::<Event>(BUFFER);
        tokio::spawn(async move {
            tokio_stream_from(rx)
                .for_each_concurrent(CONCURRENT_WRITES, |event| {
                    let client = client.clone();
                    async move {
                        let ns = event.metadata.namespace.clone().unwrap_or_default();
                        let api: Api<Event> = Api::namespaced(client, &ns);
                        if let Err(e) = api.create(&PostParams::default(), &event).await {
                            tracing::debug!(error = %e, "event not recorded");
                        }
                    }
                })
                .await;
        });
        EventSink { tx, component: component.into() }
    }

    pub fn normal(&self, pod: &PodInfo, reason: &str, message: String) {
        self.record(pod, "Normal", reason, message);
    }

    pub fn warning(&self, pod: &PodInfo, reason: &str, message: String) {
        self.record(pod, "Warning", reason, message);
    }

    fn record(&self, pod: &PodInfo, type_: &str, reason: &str, message: String) {
        let now = Time(k8s_openapi::jiff::Timestamp::now());
        let event = Event {
            metadata: ObjectMeta {
                name: Some(format!("{}.{:016x}", pod.name, rand_u64())),
                namespace: Some(pod.namespace.clone()),
                ..Default::default()
            },
            involved_object: ObjectReference {
                api_version: Some("v1".into()),
                kind: Some("Pod".into()),
                name: Some(pod.name.clone()),
                namespace: Some(pod.namespace.clone()),
                uid: Some(pod.uid.clone()),
                resource_version: pod.pod.metadata.resource_version.clone(),
                field_path: None,
            },
            reason: Some(reason.to_string()),
            message: Some(message),
            type_: Some(type_.to_string()),
            source: Some(EventSource { component: Some(self.component.to_string()), host: None }),
            reporting_component: Some(self.component.to_string()),
            reporting_instance: Some(self.component.to_string()),
            first_timestamp: Some(now.clone()),
            last_timestamp: Some(now),
            count: Some(1),
            ..Default::default()
        };
        if self.tx.try_send(event).is_err() {
            tracing::debug!(pod = %pod.key(), reason, "event buffer full; event dropped");
        }
    }
}

fn tokio_stream_from(mut rx: mpsc::Receiver<Event>) -> impl futures::Stream<Item = Event> {
    futures::stream::poll_fn(move |cx| rx.poll_recv(cx))
}

fn rand_u64() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0),
    );
    h.finish()
}
