//! One audit log entry, serialized exactly as `audit.k8s.io/v1` `Event` (kube's
//! `pkg/apis/audit/v1/types.go`), so that tools reading kube-apiserver's audit log read
//! Skiff's.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::policy::{Level, Stage};
use crate::user::UserInfo;

pub const API_VERSION: &str = "audit.k8s.io/v1";

/// An audit event. Field order is the one kube-apiserver writes. The default is an empty
/// stand-in (for an event moved out).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Event {
    pub kind: String,
    pub api_version: String,
    pub level: Level,
    #[serde(rename = "auditID")]
    pub audit_id: String,
    pub stage: Stage,
    #[serde(rename = "requestURI")]
    pub request_uri: String,
    pub verb: String,
    pub user: UserInfo,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub impersonated_user: Option<UserInfo>,
    #[serde(default, rename = "sourceIPs", skip_serializing_if = "Vec::is_empty")]
    pub source_ips: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_agent: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub object_ref: Option<ObjectReference>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub response_status: Option<ResponseStatus>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_object: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub response_object: Option<Value>,
    #[serde(with = "micro_time")]
    pub request_received_timestamp: DateTime<Utc>,
    #[serde(with = "micro_time")]
    pub stage_timestamp: DateTime<Utc>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
}

impl Event {
    /// A new event at stage `RequestReceived`, received `now`, with a fresh (v4 UUID) audit ID.
    pub fn new(
        level: Level,
        request_uri: &str,
        verb: &str,
        user: UserInfo,
        now: DateTime<Utc>,
    ) -> Event {
        Event {
            kind: "Event".to_string(),
            api_version: API_VERSION.to_string(),
            level,
            audit_id: uuid::Uuid::new_v4().to_string(),
            stage: Stage::RequestReceived,
            request_uri: request_uri.to_string(),
            verb: verb.to_string(),
            user,
            impersonated_user: None,
            source_ips: Vec::new(),
            user_agent: None,
            object_ref: None,
            response_status: None,
            request_object: None,
            response_object: None,
            request_received_timestamp: now,
            stage_timestamp: now,
            annotations: BTreeMap::new(),
        }
    }

    /// The event as one line of the log (JSON and a newline).
    pub fn to_line(&self) -> Result<Vec<u8>, serde_json::Error> {
        let mut line = serde_json::to_vec(self)?;
        line.push(b'\n');
        Ok(line)
    }
}

/// What a resource request was about (`audit.k8s.io/v1` `ObjectReference`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ObjectReference {
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub resource: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub namespace: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub name: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub uid: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub api_group: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub api_version: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub resource_version: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub subresource: String,
}

impl ObjectReference {
    /// Fill what the request's path did not say (the name of a created object, its uid and
    /// resourceVersion) from the object's metadata, as kube-apiserver's `LogRequestObject`.
    pub fn complete_from(&mut self, object: &Value) {
        let meta = &object["metadata"];
        let fill = |field: &mut String, key: &str| {
            if field.is_empty()
                && let Some(v) = meta[key].as_str()
            {
                *field = v.to_string();
            }
        };
        fill(&mut self.namespace, "namespace");
        fill(&mut self.name, "name");
        fill(&mut self.uid, "uid");
        fill(&mut self.resource_version, "resourceVersion");
    }
}

/// The response's status: a `meta/v1` `Status` that keeps only the bounded fields (kube's
/// audit copies no more of a Status, and only the code of any other response).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ResponseStatus {
    /// Always `{}`, as kube-apiserver writes it.
    #[serde(default)]
    pub metadata: Map<String, Value>,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub status: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub message: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub reason: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub details: Option<Value>,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub code: u16,
}

fn is_zero(code: &u16) -> bool {
    *code == 0
}

impl ResponseStatus {
    /// The status of a response with HTTP status `code` whose body is `body`: the body's
    /// status, message, reason and details when it is a `Status`.
    pub fn from_response(code: u16, body: Option<&Value>) -> ResponseStatus {
        let mut status = ResponseStatus { code, ..Default::default() };
        if let Some(body) = body.filter(|b| b["kind"] == "Status") {
            let text = |key: &str| body[key].as_str().unwrap_or_default().to_string();
            status.status = text("status");
            status.message = text("message");
            status.reason = text("reason");
            status.details = body.get("details").filter(|d| !d.is_null()).cloned();
        }
        status
    }
}

/// `meta/v1` `MicroTime`: RFC 3339 with microseconds, in UTC.
mod micro_time {
    use chrono::{DateTime, SecondsFormat, Utc};
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(t: &DateTime<Utc>, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&t.to_rfc3339_opts(SecondsFormat::Micros, true))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<DateTime<Utc>, D::Error> {
        let s = String::deserialize(d)?;
        DateTime::parse_from_rfc3339(&s)
            .map(|t| t.with_timezone(&Utc))
            .map_err(serde::de::Error::custom)
    }
}
