//! Admission of new pods that needs other objects, as kube-apiserver's plugins do it:
//! `Priority` (resolve `priorityClassName`, or the global default class, into `priority`
//! and `preemptionPolicy`), `RuntimeClass` (copy the class's pod overhead and merge its
//! scheduling constraints into the pod) and `ServiceAccount` (default the pod's service
//! account and mount its API credentials: a bound token, the cluster CA and the namespace).

use serde_json::{Map, Value, json};

use super::{Config, read};
use crate::State;
use crate::errors::ApiError;

/// The two classes every cluster has (kube-apiserver creates them at start-up).
pub const SYSTEM_CLUSTER_CRITICAL: (&str, i64) = ("system-cluster-critical", 2_000_000_000);
pub const SYSTEM_NODE_CRITICAL: (&str, i64) = ("system-node-critical", 2_000_001_000);

fn forbidden(pod: &str, why: String) -> ApiError {
    ApiError::new(403, "Forbidden", format!("pods \"{pod}\" is forbidden: {why}"))
}

/// Run the pod admission plugins (`Priority`, `RuntimeClass`, `ServiceAccount`, as enabled)
/// on a prepared (defaulted) new pod.
pub(super) async fn admit_pod(
    state: &State,
    pod: &mut Value,
    config: &Config,
) -> Result<(), ApiError> {
    let name = pod["metadata"]["name"].as_str().unwrap_or("").to_string();
    let namespace = pod["metadata"]["namespace"].as_str().unwrap_or("default").to_string();
    let mirror = pod.pointer("/metadata/annotations/kubernetes.io~1config.mirror").is_some();
    let Some(spec) = pod.get_mut("spec").and_then(Value::as_object_mut) else { return Ok(()) };
    if config.enabled("ServiceAccount") {
        admit_service_account(state, &namespace, &name, mirror, spec).await?;
    }
    if config.enabled("Priority") {
        admit_priority(state, &name, spec).await?;
    }
    if config.enabled("RuntimeClass") {
        admit_runtime_class(state, &name, spec).await?;
    }
    let gated =
        spec.get("schedulingGates").and_then(Value::as_array).is_some_and(|g| !g.is_empty());
    if gated {
        // What kube-apiserver writes on a gated pod, so `kubectl get` shows SchedulingGated.
        pod["status"]["conditions"] = json!([{
            "type": "PodScheduled", "status": "False", "reason": "SchedulingGated",
            "message": "Scheduling is blocked due to non-empty scheduling gates",
            "lastProbeTime": null,
            "lastTransitionTime": crate::objects::now_rfc3339(),
        }]);
    }
    Ok(())
}

async fn admit_priority(
    state: &State,
    pod: &str,
    spec: &mut Map<String, Value>,
) -> Result<(), ApiError> {
    let class_name = spec.get("priorityClassName").and_then(Value::as_str).unwrap_or("");
    let class = if class_name.is_empty() {
        let classes =
            super::list(state, "scheduling.k8s.io", "priorityclasses", None, false).await?;
        classes
            .into_iter()
            .map(|c| c.value)
            .filter(|c| c["globalDefault"] == json!(true))
            // Several global defaults: the lowest value wins (kube-apiserver's choice).
            .min_by_key(|c| c["value"].as_i64().unwrap_or(0))
    } else {
        match read(state, "scheduling.k8s.io", "priorityclasses", class_name).await? {
            Some(c) => Some(c),
            None => {
                return Err(forbidden(
                    pod,
                    format!("no PriorityClass with name {class_name} was found"),
                ));
            }
        }
    };
    let (value, policy, resolved_name) = match &class {
        Some(c) => (
            c["value"].as_i64().unwrap_or(0),
            c["preemptionPolicy"].as_str().unwrap_or("PreemptLowerPriority").to_string(),
            c["metadata"]["name"].as_str().unwrap_or("").to_string(),
        ),
        None => (0, "PreemptLowerPriority".to_string(), String::new()),
    };
    // Defaulting fills `priority: 0`; any other value the user wrote must agree.
    if let Some(given) = spec.get("priority").and_then(Value::as_i64)
        && given != 0
        && given != value
    {
        return Err(forbidden(
            pod,
            format!(
                "the integer value of priority ({given}) must not be provided in pod spec; priority admission controller computed {value} from the given PriorityClass name"
            ),
        ));
    }
    spec.insert("priority".into(), json!(value));
    if !resolved_name.is_empty() {
        spec.insert("priorityClassName".into(), json!(resolved_name));
    }
    let given_policy = spec.get("preemptionPolicy").and_then(Value::as_str).unwrap_or("");
    if class.is_some() || given_policy.is_empty() {
        spec.insert("preemptionPolicy".into(), json!(policy));
    }
    Ok(())
}

async fn admit_runtime_class(
    state: &State,
    pod: &str,
    spec: &mut Map<String, Value>,
) -> Result<(), ApiError> {
    let Some(rc_name) = spec.get("runtimeClassName").and_then(Value::as_str).map(str::to_string)
    else {
        return Ok(());
    };
    if rc_name.is_empty() {
        return Ok(());
    }
    let Some(rc) = read(state, "node.k8s.io", "runtimeclasses", &rc_name).await? else {
        return Err(forbidden(pod, format!("pod rejected: RuntimeClass \"{rc_name}\" not found")));
    };
    if let Some(fixed) = rc["overhead"]["podFixed"].as_object() {
        match spec.get("overhead") {
            Some(given) if !given.is_null() && given.as_object() != Some(fixed) => {
                return Err(forbidden(
                    pod,
                    "pod rejected: Pod's Overhead doesn't match RuntimeClass's defined Overhead"
                        .into(),
                ));
            }
            _ => {
                spec.insert("overhead".into(), Value::Object(fixed.clone()));
            }
        }
    }
    let scheduling = &rc["scheduling"];
    if let Some(selector) = scheduling["nodeSelector"].as_object() {
        let target = spec.entry("nodeSelector").or_insert_with(|| json!({}));
        if target.is_null() {
            *target = json!({});
        }
        if let Some(target) = target.as_object_mut() {
            for (k, v) in selector {
                match target.get(k) {
                    Some(existing) if existing != v => {
                        return Err(forbidden(
                            pod,
                            "pod rejected: conflict in nodeSelector".into(),
                        ));
                    }
                    _ => {
                        target.insert(k.clone(), v.clone());
                    }
                }
            }
        }
    }
    if let Some(tolerations) = scheduling["tolerations"].as_array() {
        let list = spec.entry("tolerations").or_insert_with(|| json!([]));
        if list.is_null() {
            *list = json!([]);
        }
        if let Some(list) = list.as_array_mut() {
            for t in tolerations {
                if !list.contains(t) {
                    list.push(t.clone());
                }
            }
        }
    }
    Ok(())
}

/// `AlwaysPullImages`: every container of the pod pulls its image, so that a pod can use
/// only images its own pull secrets give access to (not another tenant's pulled copy).
pub(super) fn always_pull_images(pod: &mut Value) {
    for list in ["initContainers", "containers", "ephemeralContainers"] {
        let Some(cs) = pod.pointer_mut(&format!("/spec/{list}")).and_then(Value::as_array_mut)
        else {
            continue;
        };
        for c in cs.iter_mut().filter_map(Value::as_object_mut) {
            c.insert("imagePullPolicy".into(), json!("Always"));
        }
    }
}

/// Where every container finds its service account's credentials (kube-apiserver's
/// `DefaultAPITokenMountPath`, which in-cluster client configurations read).
pub const SERVICE_ACCOUNT_MOUNT_PATH: &str = "/var/run/secrets/kubernetes.io/serviceaccount";
/// The service account of a pod that names none.
pub const DEFAULT_SERVICE_ACCOUNT: &str = "default";
/// The ConfigMap holding the cluster CA in every namespace (root-ca-cert-publisher's).
pub const ROOT_CA_CONFIG_MAP: &str = "kube-root-ca.crt";
/// Prefix of the projected volume the credentials come in.
const API_ACCESS_VOLUME_PREFIX: &str = "kube-api-access-";
/// Lifetime asked for the mounted token: kube-apiserver's value (an hour and seven seconds),
/// which tells a token issued for this volume from any other an hour long. The kubelet
/// refreshes it long before it runs out.
const API_ACCESS_TOKEN_SECONDS: i64 = 3607;

/// `ServiceAccount` admission: the pod's service account defaults to `default` and must
/// exist; unless the pod (or else the account) says `automountServiceAccountToken: false`,
/// a projected `kube-api-access-*` volume (token, `ca.crt`, `namespace`) is added and mounted
/// read-only at [`SERVICE_ACCOUNT_MOUNT_PATH`] in every container and init container that does
/// not mount something there already. A mirror pod is left alone and may not name an account.
async fn admit_service_account(
    state: &State,
    namespace: &str,
    pod: &str,
    mirror: bool,
    spec: &mut Map<String, Value>,
) -> Result<(), ApiError> {
    let named = |key: &str| {
        spec.get(key).and_then(Value::as_str).filter(|s| !s.is_empty()).map(str::to_string)
    };
    // `serviceAccount` is the field's deprecated alias; the current name wins.
    let given = named("serviceAccountName").or_else(|| named("serviceAccount"));
    if mirror {
        return match given {
            Some(_) => {
                Err(forbidden(pod, "a mirror pod may not reference service accounts".into()))
            }
            None => Ok(()),
        };
    }
    let account_name = given.unwrap_or_else(|| DEFAULT_SERVICE_ACCOUNT.to_string());
    spec.insert("serviceAccountName".into(), json!(account_name));
    spec.insert("serviceAccount".into(), json!(account_name));
    let account = match service_account(state, namespace, &account_name).await? {
        Some(account) => Some(account),
        // A pod in a namespace that does not exist (or is going) gets the namespace's own
        // error from the create handler, not this one.
        None if !namespace_active(state, namespace).await? => return Ok(()),
        // kube-apiserver refuses a pod until its `default` account exists, retrying for a
        // couple of seconds so that a namespace and its pods applied together usually get
        // through. Skiff admits it instead: the account is created by the ServiceAccount
        // controller right after its namespace, and the kubelet asks for the token until it
        // can be had, so the pod starts as soon as it would have been accepted.
        None if account_name == DEFAULT_SERVICE_ACCOUNT => None,
        None => {
            return Err(forbidden(
                pod,
                format!(
                    "error looking up service account {namespace}/{account_name}: serviceaccount \"{account_name}\" not found"
                ),
            ));
        }
    };
    let automount = spec
        .get("automountServiceAccountToken")
        .and_then(Value::as_bool)
        .or_else(|| account.as_ref().and_then(|a| a["automountServiceAccountToken"].as_bool()))
        .unwrap_or(true);
    if automount {
        mount_api_access(spec, &random_suffix());
    }
    Ok(())
}

/// The ServiceAccount `namespace/name`: from the watch cache, else from the store (the cache
/// may not have a just-created account yet).
async fn service_account(
    state: &State,
    namespace: &str,
    name: &str,
) -> Result<Option<Value>, ApiError> {
    read(state, "", "serviceaccounts", &format!("{namespace}/{name}")).await
}

/// Whether `namespace` exists and is not being deleted.
async fn namespace_active(state: &State, namespace: &str) -> Result<bool, ApiError> {
    let ns = read(state, "", "namespaces", namespace).await?;
    Ok(ns.is_some_and(|ns| ns.pointer("/metadata/deletionTimestamp").is_none_or(Value::is_null)))
}

/// Five characters of Kubernetes' name-suffix alphabet (no vowels: no words by chance).
fn random_suffix() -> String {
    use rand::Rng;
    const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    let mut rng = rand::rng();
    (0..5).map(|_| ALPHABET[rng.random_range(0..ALPHABET.len())] as char).collect()
}

/// Add the API access volume (named `kube-api-access-<suffix>`, or another suffix when the
/// pod has a volume of that name) and mount it in every container and init container without
/// a mount at [`SERVICE_ACCOUNT_MOUNT_PATH`]; the volume is added only if one mounts it.
fn mount_api_access(spec: &mut Map<String, Value>, suffix: &str) {
    let taken: Vec<String> = spec
        .get("volumes")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|v| v["name"].as_str().map(str::to_string))
        .collect();
    let mut volume = format!("{API_ACCESS_VOLUME_PREFIX}{suffix}");
    while taken.contains(&volume) {
        volume = format!("{API_ACCESS_VOLUME_PREFIX}{}", random_suffix());
    }
    let mount = json!({"name": volume, "readOnly": true, "mountPath": SERVICE_ACCOUNT_MOUNT_PATH});
    let mut mounted = false;
    for list in ["initContainers", "containers"] {
        let Some(containers) = spec.get_mut(list).and_then(Value::as_array_mut) else { continue };
        for c in containers.iter_mut().filter_map(Value::as_object_mut) {
            let mounts = c.entry("volumeMounts").or_insert_with(|| json!([]));
            if mounts.is_null() {
                *mounts = json!([]);
            }
            let Some(mounts) = mounts.as_array_mut() else { continue };
            if mounts.iter().any(|m| m["mountPath"] == SERVICE_ACCOUNT_MOUNT_PATH) {
                continue;
            }
            mounts.push(mount.clone());
            mounted = true;
        }
    }
    if !mounted {
        return;
    }
    let volumes = spec.entry("volumes").or_insert_with(|| json!([]));
    if volumes.is_null() {
        *volumes = json!([]);
    }
    if let Some(volumes) = volumes.as_array_mut() {
        volumes.push(api_access_volume(&volume));
    }
}

/// The projected volume a pod's API credentials come in, as kube-apiserver writes it.
fn api_access_volume(name: &str) -> Value {
    json!({
        "name": name,
        "projected": {
            "defaultMode": 0o644,
            "sources": [
                {"serviceAccountToken": {"expirationSeconds": API_ACCESS_TOKEN_SECONDS, "path": "token"}},
                {"configMap": {"name": ROOT_CA_CONFIG_MAP, "items": [{"key": "ca.crt", "path": "ca.crt"}]}},
                {"downwardAPI": {"items": [{"path": "namespace", "fieldRef": {"apiVersion": "v1", "fieldPath": "metadata.namespace"}}]}},
            ],
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(v: Value) -> Map<String, Value> {
        v.as_object().cloned().unwrap_or_default()
    }

    #[test]
    fn mount_api_access_should_mount_every_container_without_the_path() {
        let mut s = spec(json!({
            "initContainers": [{"name": "init"}],
            "containers": [
                {"name": "a", "volumeMounts": [{"name": "data", "mountPath": "/data"}]},
                {"name": "b", "volumeMounts": [{"name": "own", "mountPath": SERVICE_ACCOUNT_MOUNT_PATH}]},
            ],
            "volumes": [{"name": "data", "emptyDir": {}}, {"name": "own", "emptyDir": {}}],
        }));
        mount_api_access(&mut s, "x2b4z");
        let mount = json!({"name": "kube-api-access-x2b4z", "readOnly": true, "mountPath": SERVICE_ACCOUNT_MOUNT_PATH});
        assert_eq!(s["initContainers"][0]["volumeMounts"], json!([mount]));
        assert_eq!(s["containers"][0]["volumeMounts"][1], mount);
        assert_eq!(s["containers"][1]["volumeMounts"].as_array().map(Vec::len), Some(1));
        let volumes = s["volumes"].as_array().cloned().unwrap_or_default();
        assert_eq!(volumes.len(), 3);
        assert_eq!(volumes[2]["name"], "kube-api-access-x2b4z");
        let sources = &volumes[2]["projected"]["sources"];
        assert_eq!(volumes[2]["projected"]["defaultMode"], 420);
        assert_eq!(sources[0]["serviceAccountToken"]["expirationSeconds"], 3607);
        assert_eq!(sources[0]["serviceAccountToken"]["path"], "token");
        assert_eq!(sources[1]["configMap"]["name"], "kube-root-ca.crt");
        assert_eq!(sources[1]["configMap"]["items"][0], json!({"key": "ca.crt", "path": "ca.crt"}));
        assert_eq!(
            sources[2]["downwardAPI"]["items"][0]["fieldRef"]["fieldPath"],
            "metadata.namespace"
        );
    }

    #[test]
    fn mount_api_access_should_add_no_volume_when_every_container_has_the_path() {
        let own = json!([{"name": "own", "mountPath": SERVICE_ACCOUNT_MOUNT_PATH}]);
        let mut s = spec(json!({
            "containers": [{"name": "a", "volumeMounts": own}],
            "volumes": [{"name": "own", "emptyDir": {}}],
        }));
        mount_api_access(&mut s, "x2b4z");
        assert_eq!(s["volumes"].as_array().map(Vec::len), Some(1));
        assert_eq!(s["containers"][0]["volumeMounts"], own);
    }

    #[test]
    fn mount_api_access_should_pick_a_free_volume_name() {
        let mut s = spec(json!({
            "containers": [{"name": "a"}],
            "volumes": [{"name": "kube-api-access-x2b4z", "emptyDir": {}}],
        }));
        mount_api_access(&mut s, "x2b4z");
        let name = s["volumes"][1]["name"].as_str().unwrap_or("");
        assert!(name.starts_with("kube-api-access-") && name != "kube-api-access-x2b4z", "{name}");
        assert_eq!(s["containers"][0]["volumeMounts"][0]["name"], name);
    }

    #[test]
    fn random_suffix_should_be_five_safe_characters() {
        let s = random_suffix();
        assert_eq!(s.len(), 5);
        assert!(s.chars().all(|c| "bcdfghjklmnpqrstvwxz2456789".contains(c)), "{s}");
    }
}
