//! The `admission.k8s.io` AdmissionReview a webhook (or a Wasm policy) is sent and answers,
//! as kube-apiserver builds and checks it (`k8s.io/apiserver/pkg/admission/plugin/webhook/
//! request`): the request with kind, resource, user, objects and options; the answer read
//! strictly, since it comes from a program outside the api server.

use base64::Engine as _;
use serde::Deserialize;
use serde_json::{Value, json};

/// What is asked about, for [`request_body`].
#[derive(Debug, Clone, Copy)]
pub struct RequestInfo<'a> {
    pub uid: &'a str,
    pub group: &'a str,
    pub version: &'a str,
    pub kind: &'a str,
    /// The plural.
    pub resource: &'a str,
    pub subresource: &'a str,
    pub name: &'a str,
    pub namespace: &'a str,
    /// `CREATE`, `UPDATE`, `DELETE` or `CONNECT`.
    pub operation: &'a str,
    /// `authentication.k8s.io/v1` UserInfo.
    pub user: &'a Value,
    pub object: Option<&'a Value>,
    pub old_object: Option<&'a Value>,
    pub dry_run: bool,
}

/// The options kind of an operation (`CreateOptions`…), as the request's `options`.
fn options_of(operation: &str) -> Value {
    let kind = match operation {
        "CREATE" => "CreateOptions",
        "UPDATE" => "UpdateOptions",
        "DELETE" => "DeleteOptions",
        _ => return Value::Null,
    };
    json!({"kind": kind, "apiVersion": "meta.k8s.io/v1"})
}

/// The `request` of an AdmissionReview.
pub fn request(r: &RequestInfo<'_>) -> Value {
    let kind = json!({"group": r.group, "version": r.version, "kind": r.kind});
    let resource = json!({"group": r.group, "version": r.version, "resource": r.resource});
    let mut req = json!({
        "uid": r.uid,
        "kind": kind,
        "resource": resource,
        "requestKind": kind,
        "requestResource": resource,
        "name": r.name,
        "namespace": r.namespace,
        "operation": r.operation,
        "userInfo": r.user,
        "object": r.object,
        "oldObject": r.old_object,
        "dryRun": r.dry_run,
        "options": options_of(r.operation),
    });
    if !r.subresource.is_empty() {
        req["subResource"] = json!(r.subresource);
        req["requestSubResource"] = json!(r.subresource);
    }
    req
}

/// The AdmissionReview body sent to a webhook in `version` (`v1` or `v1beta1`).
pub fn request_body(version: &str, r: &RequestInfo<'_>) -> Vec<u8> {
    let review = json!({
        "kind": "AdmissionReview",
        "apiVersion": format!("admission.k8s.io/{version}"),
        "request": request(r),
    });
    serde_json::to_vec(&review).unwrap_or_default()
}

/// A webhook's `response.status` (a `metav1.Status`) as far as it matters.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Status {
    pub code: u16,
    pub reason: String,
    pub message: String,
}

/// A webhook's answer.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Answer {
    pub allowed: bool,
    pub status: Option<Status>,
    /// A JSON patch (RFC 6902), decoded from base64.
    pub patch: Option<Vec<u8>>,
    pub warnings: Vec<String>,
    pub audit_annotations: Vec<(String, String)>,
}

/// Why an answer could not be used; each is a webhook failure (its `failurePolicy` decides).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReviewError {
    #[error("the response is not a JSON AdmissionReview: {0}")]
    NotJson(String),
    #[error(
        "expected webhook response of admission.k8s.io/{expected}, Kind=AdmissionReview, got {got}"
    )]
    WrongKind { expected: String, got: String },
    #[error("webhook response was absent")]
    MissingResponse,
    #[error("expected response.uid={expected:?}, got {got:?}")]
    WrongUid { expected: String, got: String },
    #[error("expected patchType JSONPatch, got {0:?}")]
    WrongPatchType(String),
    #[error("patch is not valid base64: {0}")]
    BadPatchEncoding(String),
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Review {
    #[serde(default)]
    api_version: String,
    #[serde(default)]
    kind: String,
    response: Option<ResponseBody>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ResponseBody {
    #[serde(default)]
    uid: String,
    #[serde(default)]
    allowed: bool,
    #[serde(default)]
    status: Option<StatusBody>,
    #[serde(default)]
    patch: Option<String>,
    #[serde(default)]
    patch_type: Option<String>,
    #[serde(default)]
    warnings: Option<Vec<String>>,
    #[serde(default)]
    audit_annotations: Option<std::collections::BTreeMap<String, String>>,
}

#[derive(Deserialize)]
struct StatusBody {
    #[serde(default)]
    code: Option<i64>,
    #[serde(default)]
    reason: Option<String>,
    #[serde(default)]
    message: Option<String>,
}

/// Warnings longer than this are cut (kube's limit per warning is 4 KiB of header).
const MAX_WARNING: usize = 4096;

/// Read a webhook's answer to the review of request `uid` sent in `version`. For `v1` the
/// answer must be a v1 AdmissionReview naming the same uid (as kube requires); `v1beta1`
/// answers are read leniently, as kube does.
pub fn decode_response(version: &str, body: &[u8], uid: &str) -> Result<Answer, ReviewError> {
    let review: Review =
        serde_json::from_slice(body).map_err(|e| ReviewError::NotJson(e.to_string()))?;
    let expected_api = format!("admission.k8s.io/{version}");
    if version == "v1" && (review.api_version != expected_api || review.kind != "AdmissionReview") {
        return Err(ReviewError::WrongKind {
            expected: version.to_string(),
            got: format!("{}, Kind={}", review.api_version, review.kind),
        });
    }
    let r = review.response.ok_or(ReviewError::MissingResponse)?;
    if version == "v1" && r.uid != uid {
        return Err(ReviewError::WrongUid { expected: uid.to_string(), got: r.uid });
    }
    let patch = match r.patch.as_deref() {
        None | Some("") => None,
        Some(p) => {
            match r.patch_type.as_deref() {
                Some("JSONPatch") => {}
                Some(other) => return Err(ReviewError::WrongPatchType(other.to_string())),
                None if version == "v1" => {
                    return Err(ReviewError::WrongPatchType(String::new()));
                }
                None => {}
            }
            Some(
                base64::engine::general_purpose::STANDARD
                    .decode(p)
                    .map_err(|e| ReviewError::BadPatchEncoding(e.to_string()))?,
            )
        }
    };
    let status = r.status.map(|s| Status {
        code: s.code.and_then(|c| u16::try_from(c).ok()).unwrap_or(0),
        reason: s.reason.unwrap_or_default(),
        message: s.message.unwrap_or_default(),
    });
    let warnings = r
        .warnings
        .unwrap_or_default()
        .into_iter()
        .map(|w| clean_warning(&w))
        .filter(|w| !w.is_empty())
        .collect();
    Ok(Answer {
        allowed: r.allowed,
        status,
        patch,
        warnings,
        audit_annotations: r.audit_annotations.unwrap_or_default().into_iter().collect(),
    })
}

/// A warning as a header can carry it: printable characters only, bounded length.
fn clean_warning(w: &str) -> String {
    let mut s: String = w.chars().filter(|c| !c.is_control()).collect();
    if s.len() > MAX_WARNING {
        let mut end = MAX_WARNING;
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        s.truncate(end);
    }
    s
}

/// The denial a webhook's answer becomes, as kube's `ToStatusErr`: its code (400 when it
/// gave none below 400), its reason, and `admission webhook "<name>" denied the request: …`.
pub fn denial(webhook: &str, status: Option<&Status>) -> Status {
    let denied_by = format!("admission webhook {webhook:?} denied the request");
    let s = status.cloned().unwrap_or_default();
    let message = if !s.message.is_empty() {
        format!("{denied_by}: {}", s.message)
    } else if !s.reason.is_empty() {
        format!("{denied_by}: {}", s.reason)
    } else {
        format!("{denied_by} without explanation")
    };
    Status { code: if s.code < 400 { 400 } else { s.code }, reason: s.reason, message }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info<'a>(user: &'a Value, object: &'a Value) -> RequestInfo<'a> {
        RequestInfo {
            uid: "u-1",
            group: "",
            version: "v1",
            kind: "Pod",
            resource: "pods",
            subresource: "",
            name: "p",
            namespace: "default",
            operation: "CREATE",
            user,
            object: Some(object),
            old_object: None,
            dry_run: false,
        }
    }

    #[test]
    fn request_body_should_carry_kind_resource_user_and_options() {
        let user = json!({"username": "alice", "groups": ["devs"]});
        let pod = json!({"kind": "Pod", "metadata": {"name": "p"}});
        let body: Value =
            serde_json::from_slice(&request_body("v1", &info(&user, &pod))).expect("json");
        assert_eq!(body["apiVersion"], "admission.k8s.io/v1");
        assert_eq!(body["kind"], "AdmissionReview");
        let r = &body["request"];
        assert_eq!(r["uid"], "u-1");
        assert_eq!(r["kind"], json!({"group": "", "version": "v1", "kind": "Pod"}));
        assert_eq!(r["resource"]["resource"], "pods");
        assert_eq!(r["operation"], "CREATE");
        assert_eq!(r["userInfo"]["username"], "alice");
        assert_eq!(r["object"], pod);
        assert!(r["oldObject"].is_null());
        assert_eq!(r["options"]["kind"], "CreateOptions");
        assert!(r.get("subResource").is_none());
    }

    fn answer(body: Value) -> Result<Answer, ReviewError> {
        decode_response("v1", &serde_json::to_vec(&body).expect("json"), "u-1")
    }

    #[test]
    fn decode_response_should_read_patch_warnings_and_annotations() {
        let patch = base64::engine::general_purpose::STANDARD
            .encode(br#"[{"op":"add","path":"/metadata/labels/x","value":"1"}]"#);
        let a = answer(json!({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
            "response": {"uid": "u-1", "allowed": true, "patch": patch, "patchType": "JSONPatch",
                "warnings": ["careful\nnow"], "auditAnnotations": {"k": "v"}}}))
        .expect("answer");
        assert!(a.allowed);
        assert_eq!(
            a.patch.as_deref(),
            Some(&br#"[{"op":"add","path":"/metadata/labels/x","value":"1"}]"#[..])
        );
        assert_eq!(a.warnings, vec!["carefulnow".to_string()]);
        assert_eq!(a.audit_annotations, vec![("k".to_string(), "v".to_string())]);
    }

    #[test]
    fn decode_response_should_refuse_what_kube_refuses() {
        let head = |resp: Value| json!({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "response": resp});
        assert!(matches!(answer(json!("nope")), Err(ReviewError::NotJson(_))));
        assert!(matches!(
            answer(json!({"apiVersion": "v1", "kind": "Status"})),
            Err(ReviewError::WrongKind { .. })
        ));
        assert_eq!(
            answer(json!({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview"})),
            Err(ReviewError::MissingResponse)
        );
        assert!(matches!(
            answer(head(json!({"uid": "other", "allowed": true}))),
            Err(ReviewError::WrongUid { .. })
        ));
        assert!(matches!(
            answer(head(json!({"uid": "u-1", "allowed": true, "patch": "W10="}))),
            Err(ReviewError::WrongPatchType(_))
        ));
        assert!(matches!(
            answer(head(
                json!({"uid": "u-1", "allowed": true, "patch": "***", "patchType": "JSONPatch"})
            )),
            Err(ReviewError::BadPatchEncoding(_))
        ));
    }

    #[test]
    fn denial_should_word_the_message_as_kube() {
        let d = denial("deny.example.com", None);
        assert_eq!(d.code, 400);
        assert_eq!(
            d.message,
            "admission webhook \"deny.example.com\" denied the request without explanation"
        );
        let s = Status { code: 403, reason: "Forbidden".into(), message: "no latest tags".into() };
        let d = denial("deny.example.com", Some(&s));
        assert_eq!(d.code, 403);
        assert_eq!(
            d.message,
            "admission webhook \"deny.example.com\" denied the request: no latest tags"
        );
        let s = Status { code: 200, reason: "NotAllowed".into(), message: String::new() };
        let d = denial("w.x.y", Some(&s));
        assert_eq!(
            (d.code, d.message.as_str()),
            (400, "admission webhook \"w.x.y\" denied the request: NotAllowed")
        );
    }
}
