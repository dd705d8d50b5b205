//! RuntimeClass (Skiff's own plugin): a pod that names a RuntimeClass runs only on nodes
//! that advertise the class's handler (`status.runtimeHandlers`), e.g. `wasmtime` or
//! `runc`. The class's overhead and scheduling constraints are merged into the pod at
//! admission, so only the handler is checked here.

use std::sync::Arc;

use crate::framework::{
    Action, ClusterEvent, CycleState, FilterPlugin, Plugin, PreFilterPlugin, PreFilterResult,
    Resource, Status,
};
use crate::plugins::helper::missing_state;
use crate::snapshot::Snapshot;
use crate::types::{NodeInfo, PodInfo};

pub const NAME: &str = "RuntimeClass";

const PRE_FILTER_KEY: &str = "PreFilterRuntimeClass";

#[derive(Debug, Default)]
pub struct RuntimeClass;

/// The handler the pod's RuntimeClass names.
#[derive(Debug, Clone)]
struct Handler(Arc<str>);

impl Plugin for RuntimeClass {
    fn name(&self) -> &'static str {
        NAME
    }

    fn events(&self) -> Vec<ClusterEvent> {
        // A node starts advertising the handler, or the missing class is created (or its
        // handler changed).
        vec![
            ClusterEvent::new(Resource::Node, Action::Add),
            ClusterEvent::new(Resource::Node, Action::Update),
            ClusterEvent::new(Resource::RuntimeClass, Action::Add),
            ClusterEvent::new(Resource::RuntimeClass, Action::Update),
        ]
    }
}

impl PreFilterPlugin for RuntimeClass {
    fn pre_filter(
        &self,
        state: &mut CycleState,
        pod: &PodInfo,
        snapshot: &Snapshot,
    ) -> (Option<PreFilterResult>, Status) {
        let Some(class) = pod
            .pod
            .spec
            .as_ref()
            .and_then(|s| s.runtime_class_name.as_deref())
            .filter(|c| !c.is_empty())
        else {
            return (None, Status::skip());
        };
        match snapshot.listers.runtime_classes.get(class) {
            None => (None, Status::unresolvable(format!("RuntimeClass {class:?} not found"))),
            Some(rc) => {
                state.write(PRE_FILTER_KEY, Handler(rc.handler.as_str().into()));
                (None, Status::success())
            }
        }
    }
}

impl FilterPlugin for RuntimeClass {
    fn filter(&self, state: &CycleState, _pod: &PodInfo, node: &NodeInfo) -> Status {
        let Some(Handler(handler)) = state.read::<Handler>(PRE_FILTER_KEY) else {
            return missing_state(PRE_FILTER_KEY);
        };
        if node.runtime_handlers.iter().any(|h| **h == **handler) {
            Status::success()
        } else {
            Status::unresolvable(format!("node(s) didn't have the runtime handler {handler:?}"))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::framework::Code;
    use crate::types::testing::*;
    use k8s_openapi::api::core::v1::NodeRuntimeHandler;
    use k8s_openapi::api::node::v1::RuntimeClass as RuntimeClassObject;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
    use std::collections::HashMap;

    fn snapshot_with_classes(classes: &[(&str, &str)]) -> Snapshot {
        let mut s = Snapshot::default();
        let map: HashMap<String, Arc<RuntimeClassObject>> = classes
            .iter()
            .map(|(name, handler)| {
                let rc = RuntimeClassObject {
                    metadata: ObjectMeta { name: Some(name.to_string()), ..Default::default() },
                    handler: handler.to_string(),
                    ..Default::default()
                };
                (name.to_string(), Arc::new(rc))
            })
            .collect();
        s.listers.runtime_classes = Arc::new(map);
        s
    }

    fn node_with_handlers(handlers: &[&str]) -> NodeInfo {
        let mut n = node("n", &[]);
        n.status.as_mut().unwrap().runtime_handlers = Some(
            handlers
                .iter()
                .map(|h| NodeRuntimeHandler { name: Some(h.to_string()), features: None })
                .collect(),
        );
        node_info(n, vec![])
    }

    #[test]
    fn runtime_class_should_place_pods_only_on_nodes_with_the_handler() {
        let classes = [("wasm", "wasmtime"), ("oci", "runc")];
        // (name, pod's class, node's handlers, pre-filter code, filter rejection)
        type Case<'a> = (&'a str, Option<&'a str>, &'a [&'a str], Code, Option<&'a str>);
        let cases: &[Case<'_>] = &[
            ("pod names no class", None, &[], Code::Skip, None),
            (
                "class does not exist",
                Some("gvisor"),
                &["runc"],
                Code::UnschedulableAndUnresolvable,
                None,
            ),
            ("node has the handler", Some("wasm"), &["runc", "wasmtime"], Code::Success, None),
            (
                "node lacks the handler",
                Some("oci"),
                &["wasmtime"],
                Code::Success,
                Some("node(s) didn't have the runtime handler \"runc\""),
            ),
            (
                "node advertises no handlers",
                Some("wasm"),
                &[],
                Code::Success,
                Some("node(s) didn't have the runtime handler \"wasmtime\""),
            ),
        ];
        let snapshot = snapshot_with_classes(&classes);
        for (name, class, handlers, pre_code, reject) in cases {
            let mut p = pod("p", &[]);
            p.spec.as_mut().unwrap().runtime_class_name = class.map(str::to_string);
            let p = pod_info(p);
            let mut state = CycleState::default();
            let (result, pre) = RuntimeClass.pre_filter(&mut state, &p, &snapshot);
            assert!(result.is_none(), "{name}");
            assert_eq!(pre.code, *pre_code, "{name}");
            if *pre_code == Code::UnschedulableAndUnresolvable {
                assert_eq!(
                    pre.reasons.to_vec(),
                    vec!["RuntimeClass \"gvisor\" not found".to_string()]
                );
            }
            if *pre_code != Code::Success {
                continue;
            }
            let status = RuntimeClass.filter(&state, &p, &node_with_handlers(handlers));
            match reject {
                None => assert!(status.is_success(), "{name}: {status:?}"),
                Some(reason) => {
                    assert_eq!(status.code, Code::UnschedulableAndUnresolvable, "{name}");
                    assert_eq!(status.reasons.to_vec(), vec![reason.to_string()], "{name}");
                }
            }
        }
    }
}
