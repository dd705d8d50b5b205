use serde_json::{Value, json};

use super::*;

/// A Pod with most field kinds: quantities, times, IntOrString probes, maps, lists, inline
/// structs, pointer zeros; as kube keeps it (zeros Go's JSON omits are left out).
pub(crate) fn sample_pod() -> Value {
    let mut pod: Value =
        serde_json::from_str(include_str!("testdata/pod.json")).expect("testdata/pod.json is JSON");
    normalize(&mut pod).expect("normalized");
    pod
}

fn round_trip(obj: &Value) -> Value {
    let bytes = encode(obj).unwrap_or_else(|e| panic!("encode failed: {e}"));
    assert!(bytes.starts_with(MAGIC));
    decode(&bytes).unwrap_or_else(|e| panic!("decode failed: {e}"))
}

#[test]
fn pod_should_round_trip_with_every_field_kind() {
    let pod = sample_pod();
    let back = round_trip(&pod);
    assert_eq!(back, pod);
    // The result is a well-formed Pod as Kubernetes' JSON schema sees it.
    let typed: k8s_openapi::api::core::v1::Pod =
        serde_json::from_value(back).expect("decoded pod is a valid Pod");
    assert_eq!(typed.spec.and_then(|s| s.automount_service_account_token), Some(false));
}

#[test]
fn deployment_should_round_trip_with_int_or_string_and_zero_replicas() {
    let d = json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "web", "namespace": "default", "labels": {"app": "web"}},
        "spec": {
            "replicas": 0,
            "selector": {"matchLabels": {"app": "web"},
                "matchExpressions": [{"key": "track", "operator": "NotIn", "values": ["canary"]}]},
            "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": "25%", "maxUnavailable": 0}},
            "revisionHistoryLimit": 10,
            "progressDeadlineSeconds": 600,
            "paused": false,
            "template": {
                "metadata": {"labels": {"app": "web"}},
                "spec": {"containers": [{"name": "web", "image": "nginx", "resources": {}}]}
            }
        },
        "status": {"observedGeneration": 1, "replicas": 0, "conditions": [{
            "type": "Available", "status": "True", "lastUpdateTime": "2026-01-02T03:04:05Z",
            "lastTransitionTime": "2026-01-02T03:04:05Z", "reason": "MinimumReplicasAvailable"}]}
    });
    // `paused: false` is a non-pointer zero: Go's JSON leaves it out, and so does the decoder.
    let mut want = d.clone();
    normalize(&mut want).expect("normalized");
    assert_eq!(want["spec"].get("paused"), None);
    assert_eq!(want["spec"]["replicas"], 0);
    assert_eq!(round_trip(&d), want);
}

#[test]
fn service_should_round_trip() {
    let s = json!({
        "apiVersion": "v1", "kind": "Service",
        "metadata": {"name": "web", "namespace": "default"},
        "spec": {
            "type": "ClusterIP",
            "selector": {"app": "web"},
            "clusterIP": "10.96.0.10", "clusterIPs": ["10.96.0.10"],
            "ipFamilies": ["IPv4"], "ipFamilyPolicy": "SingleStack",
            "ports": [
                {"name": "http", "protocol": "TCP", "port": 80, "targetPort": 8080},
                {"name": "metrics", "protocol": "TCP", "port": 9090, "targetPort": "metrics"}
            ],
            "sessionAffinity": "ClientIP",
            "sessionAffinityConfig": {"clientIP": {"timeoutSeconds": 10800}}
        },
        "status": {"loadBalancer": {}}
    });
    assert_eq!(round_trip(&s), s);
}

#[test]
fn configmap_and_secret_should_round_trip_bytes_as_base64() {
    let cm = json!({
        "apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": "cfg", "namespace": "default"},
        "data": {"a": "1", "empty": "", "multi": "line one\nline two"},
        "binaryData": {"blob": "AAEC/w=="},
        "immutable": false
    });
    assert_eq!(round_trip(&cm), cm);
    let secret = json!({
        "apiVersion": "v1", "kind": "Secret",
        "metadata": {"name": "creds", "namespace": "default"},
        "type": "Opaque",
        "data": {"password": "czNjcjN0", "empty": ""}
    });
    let bytes = encode(&secret).expect("encode");
    // The secret's value travels as raw bytes, not as its base64 text.
    assert!(bytes.windows(6).any(|w| w == b"s3cr3t"));
    assert_eq!(decode(&bytes).expect("decode"), secret);
}

#[test]
fn pod_list_should_round_trip_without_item_type_meta() {
    let mut item = sample_pod();
    let list = json!({
        "apiVersion": "v1", "kind": "PodList",
        "metadata": {"resourceVersion": "77", "continue": "abc", "remainingItemCount": 0},
        "items": [item.clone(), {"metadata": {"name": "b"}, "spec": {"containers": []}}]
    });
    let back = round_trip(&list);
    // Items carry no TypeMeta in protobuf, as in Kubernetes' own list encoding.
    let obj = item.as_object_mut().expect("object");
    obj.remove("apiVersion");
    obj.remove("kind");
    assert_eq!(back["items"][0], item);
    assert_eq!(back["items"][1], json!({"metadata": {"name": "b"}, "spec": {}}));
    assert_eq!(back["metadata"], list["metadata"]);
}

#[test]
fn meta_kinds_should_be_found_in_every_group_version() {
    assert!(supports("v1", "Pod"));
    assert!(supports("apps/v1", "Deployment"));
    assert!(supports("apps/v1", "DeploymentList"));
    assert!(supports("storage.k8s.io/v1", "CSIDriver"));
    assert!(supports("rbac.authorization.k8s.io/v1", "ClusterRole"));
    assert!(supports("apiextensions.k8s.io/v1", "CustomResourceDefinition"));
    assert!(supports("v1", "Status"));
    assert!(supports("apps/v1", "DeleteOptions"));
    assert!(supports("meta.k8s.io/v1", "Status"));
    assert!(!supports("v1", "Deployment"));
    assert!(!supports("example.com/v1", "Widget"));
    assert!(!supports("v1", "Nonsense"));
    assert!(!supports("", ""));
    let opts = json!({"apiVersion": "v1", "kind": "DeleteOptions", "gracePeriodSeconds": 0,
        "propagationPolicy": "Foreground", "preconditions": {"uid": "u-1"}, "dryRun": ["All"]});
    assert_eq!(round_trip(&opts), opts);
    let status = json!({"apiVersion": "v1", "kind": "Status", "metadata": {}, "status": "Failure",
        "message": "pods \"x\" not found", "reason": "NotFound", "code": 404,
        "details": {"name": "x", "kind": "pods", "causes": [{"reason": "FieldValueInvalid", "field": "spec"}]}});
    assert_eq!(round_trip(&status), status);
}

#[test]
fn namespace_should_decode_from_hand_built_bytes() {
    let mut body = MAGIC.to_vec();
    // runtime.Unknown field 1: TypeMeta {1: "v1", 2: "Namespace"}
    body.extend([0x0a, 15, 0x0a, 2, b'v', b'1', 0x12, 9]);
    body.extend(b"Namespace");
    // field 2: raw Namespace (38 bytes)
    body.extend([0x12, 38]);
    // Namespace.metadata (1) = ObjectMeta (22 bytes)
    body.extend([0x0a, 22]);
    body.extend([0x0a, 4]); // name
    body.extend(b"demo");
    body.extend([0x12, 0]); // generateName "" (Go writes unset strings)
    body.extend([0x38, 0]); // generation 0
    body.extend([0x42, 0]); // creationTimestamp: an unset Time is an empty message
    body.extend([0x5a, 8, 0x0a, 1, b'a', 0x12, 3]); // labels {"a": "yes"}
    body.extend(b"yes");
    // Namespace.spec (2) = {finalizers (1): ["kubernetes"]}
    body.extend([0x12, 12, 0x0a, 10]);
    body.extend(b"kubernetes");
    // contentEncoding and contentType, empty
    body.extend([0x1a, 0, 0x22, 0]);
    let ns = decode(&body).expect("decode");
    assert_eq!(
        ns,
        json!({"apiVersion": "v1", "kind": "Namespace",
            "metadata": {"name": "demo", "labels": {"a": "yes"}},
            "spec": {"finalizers": ["kubernetes"]}})
    );
    // And back: our encoding decodes to the same object.
    assert_eq!(round_trip(&ns), ns);
}

#[test]
fn unknown_fields_should_be_rejected_with_their_name() {
    let mut pod = sample_pod();
    pod["spec"]["containers"][0]["colour"] = json!("blue");
    let err = encode(&pod).expect_err("unknown field");
    assert!(matches!(&err, ProtoError::UnknownField { field, .. } if field == "colour"), "{err}");
    assert!(err.to_string().contains("api.core.v1.Container"), "{err}");
    let err = encode(&json!({"apiVersion": "v1", "kind": "Pod", "spec": {"priority": "high"}}))
        .expect_err("wrong type");
    assert!(err.to_string().contains("priority"), "{err}");
    let err = encode(&json!({"apiVersion": "example.com/v1", "kind": "Widget"})).expect_err("kind");
    assert!(matches!(err, ProtoError::UnknownKind { .. }));
    assert!(matches!(encode(&json!({"kind": "Pod"})), Err(ProtoError::MissingTypeMeta(_))));
}

#[test]
fn crd_schema_should_round_trip_irregular_names_and_wrappers() {
    let crd = json!({
        "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
        "metadata": {"name": "widgets.example.com"},
        "spec": {
            "group": "example.com", "scope": "Namespaced",
            "names": {"plural": "widgets", "singular": "widget", "kind": "Widget", "listKind": "WidgetList"},
            "versions": [{
                "name": "v1", "served": true, "storage": true,
                "schema": {"openAPIV3Schema": {
                    "type": "object",
                    "properties": {
                        "spec": {
                            "type": "object",
                            "x-kubernetes-preserve-unknown-fields": true,
                            "required": ["size"],
                            "properties": {
                                "size": {"type": "integer", "minimum": 1.0, "maximum": 10.0, "default": 3},
                                "mode": {"type": "string", "enum": ["fast", "slow"]},
                                "tags": {"type": "array", "items": {"type": "string"},
                                    "x-kubernetes-list-type": "set"},
                                "labels": {"type": "object", "additionalProperties": {"type": "string"}},
                                "open": {"type": "object", "additionalProperties": false},
                                "port": {"x-kubernetes-int-or-string": true}
                            },
                            "x-kubernetes-validations": [{"rule": "self.size < 100", "message": "too big"}]
                        }
                    }
                }},
                "subresources": {"status": {}}
            }]
        }
    });
    assert_eq!(round_trip(&crd), crd);
}

#[test]
fn micro_times_and_durations_should_keep_their_json_forms() {
    let lease = json!({
        "apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
        "metadata": {"name": "node-1", "namespace": "kube-node-lease"},
        "spec": {"holderIdentity": "node-1", "leaseDurationSeconds": 40,
            "renewTime": "2026-03-01T10:20:30.123456Z", "acquireTime": "2026-03-01T10:00:00.000000Z"}
    });
    assert_eq!(round_trip(&lease), lease);
    for (ns, text) in [
        (0, "0s"),
        (1, "1ns"),
        (1_500, "1.5µs"),
        (500_000_000, "500ms"),
        (1_500_000_000, "1.5s"),
        (90_000_000_000, "1m30s"),
        (3_600_000_000_000, "1h0m0s"),
        (-5_000_000_000, "-5s"),
    ] {
        assert_eq!(formats::format_duration(ns), text);
        assert_eq!(formats::parse_duration(text), Ok(ns), "{text}");
    }
    assert_eq!(formats::parse_duration("1h30m"), Ok(5_400_000_000_000));
    assert!(formats::parse_duration("soon").is_err());
    assert!(formats::parse_duration("").is_err());
}

#[test]
fn watch_frames_should_carry_the_object_envelope() {
    let pod = sample_pod();
    let mut stream = encode_watch_event("ADDED", &pod).expect("frame");
    stream.extend(encode_watch_event("DELETED", &pod).expect("frame"));
    let (first, rest) = decode_watch_frame(&stream).expect("decode").expect("whole frame");
    assert_eq!(first["type"], "ADDED");
    assert_eq!(first["kind"], "WatchEvent");
    assert_eq!(first["object"], pod);
    let (second, rest) = decode_watch_frame(rest).expect("decode").expect("whole frame");
    assert_eq!(second["type"], "DELETED");
    assert!(rest.is_empty());
    assert!(decode_watch_frame(&stream[..10]).expect("partial").is_none());
}

/// xorshift64*: deterministic inputs without a dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

#[test]
fn garbage_truncated_and_mutated_bodies_should_error_without_panicking() {
    assert!(matches!(decode(b""), Err(ProtoError::MissingMagic)));
    assert!(matches!(decode(b"{\"kind\":\"Pod\"}"), Err(ProtoError::MissingMagic)));
    assert!(decode(b"k8s\0").is_err());
    let valid = encode(&sample_pod()).expect("encode");
    for cut in 4..valid.len() {
        // Every strict prefix is either an error or (cut at a field boundary) a smaller object.
        let _ = decode(&valid[..cut]);
    }
    let mut rng = Rng(0x5eed_cafe_f00d_d00d);
    let mut errors = 0;
    for round in 0..4000 {
        let input = if round % 2 == 0 {
            let mut b = valid.clone();
            for _ in 0..1 + rng.below(8) {
                let at = rng.below(b.len());
                match rng.below(3) {
                    0 => b[at] = rng.next() as u8,
                    1 => {
                        b.remove(at);
                    }
                    _ => b.insert(at, rng.next() as u8),
                }
            }
            b
        } else {
            let mut b = MAGIC.to_vec();
            b.extend((0..rng.below(200)).map(|_| rng.next() as u8));
            b
        };
        match decode(&input) {
            Ok(v) => {
                // Whatever decodes must encode again.
                let _ = encode(&v);
            }
            Err(e) => {
                assert!(!e.to_string().is_empty());
                errors += 1;
            }
        }
    }
    assert!(errors > 1000, "random input should mostly fail to decode ({errors} errors)");
    // Deep nesting is refused, not a stack overflow.
    let mut deep = json!({"type": "object"});
    for _ in 0..150 {
        deep = json!({"type": "object", "properties": {"x": deep}});
    }
    let crd = json!({"apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
        "spec": {"versions": [{"name": "v1", "schema": {"openAPIV3Schema": deep}}]}});
    assert!(matches!(encode(&crd), Err(ProtoError::TooDeep(_))));
}

#[test]
fn a_list_built_from_item_envelopes_should_equal_the_list_encoded_whole() {
    let mut a = sample_pod();
    a["metadata"]["name"] = json!("a");
    let mut b = sample_pod();
    b["metadata"]["name"] = json!("b");
    let envelopes = [encode(&a).expect("a"), encode(&b).expect("b")];
    let built =
        encode_list("v1", "PodList", "42", Some("next"), envelopes.iter().map(Vec::as_slice))
            .expect("list");
    let strip = |mut o: Value| {
        let m = o.as_object_mut().expect("object");
        m.remove("apiVersion");
        m.remove("kind");
        o
    };
    let decoded = decode(&built).expect("decodes");
    assert_eq!(decoded["metadata"], json!({"resourceVersion": "42", "continue": "next"}));
    assert_eq!(decoded["items"], json!([strip(a.clone()), strip(b.clone())]));
    let whole = json!({"apiVersion": "v1", "kind": "PodList",
        "metadata": {"resourceVersion": "42", "continue": "next"}, "items": [a, b]});
    assert_eq!(built, encode(&whole).expect("whole"));
    assert!(encode_list("v1", "NoSuchList", "1", None, []).is_err());
    assert!(encode_list("v1", "PodList", "1", None, [&b"garbage"[..]]).is_err());
}

#[test]
fn a_watch_frame_around_an_envelope_should_equal_one_encoded_from_the_object() {
    let pod = sample_pod();
    let envelope = encode(&pod).expect("pod");
    assert_eq!(
        encode_watch_frame("MODIFIED", "v1", &envelope),
        encode_watch_event("MODIFIED", &pod).expect("frame")
    );
}
