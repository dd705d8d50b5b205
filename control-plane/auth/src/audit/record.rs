//! One request's way through the audit log (kube-apiserver's `WithAudit` filter and its
//! `LogRequestObject`/`LogResponseObject`): the [`Recorder`] decides a request's level from
//! the policy and hands it an [`AuditRecord`], which writes the request's events
//! (`RequestReceived`, `ResponseStarted` for long-running requests, `ResponseComplete`) as
//! the request goes. Bodies are kept only at the levels that ask for them, and are always
//! scrubbed of Secret values and tokens before they are written.

use std::sync::Arc;

use chrono::Utc;
use serde_json::Value;

use super::event::{Event, ObjectReference, ResponseStatus};
use super::log::LogWriter;
use super::policy::{Level, Policy, RuleDecision, Stage};
use super::redact::{omit_managed_fields, redact_secret_material};
use crate::attributes::Attributes;
use crate::user::UserInfo;

/// The policy and the log it writes to. `Send + Sync`; one per api server.
pub struct Recorder {
    policy: Policy,
    writer: Arc<LogWriter>,
}

/// What the request path knows of a request when it starts.
pub struct RequestMeta<'a> {
    /// The authenticated user (the policy is checked against this user, as kube-apiserver
    /// does, not against the one it impersonates).
    pub user: &'a UserInfo,
    /// The user the request acts as, when it impersonates one.
    pub impersonated: Option<&'a UserInfo>,
    pub attrs: &'a Attributes,
    /// Path and query, as received.
    pub request_uri: &'a str,
    pub source_ip: Option<std::net::IpAddr>,
    pub user_agent: Option<&'a str>,
}

impl Recorder {
    pub fn new(policy: Policy, writer: LogWriter) -> Recorder {
        Recorder { policy, writer: Arc::new(writer) }
    }

    pub fn writer(&self) -> &Arc<LogWriter> {
        &self.writer
    }

    /// Decide the level for a request and, unless None, start its event (writes
    /// RequestReceived unless omitted).
    pub fn begin(&self, m: &RequestMeta<'_>) -> Option<AuditRecord> {
        let decision = self.policy.evaluate(m.user, m.attrs);
        if decision.level == Level::None {
            return None;
        }
        let attrs = m.attrs;
        let uri = path_and_query(m.request_uri);
        let mut event = Event::new(decision.level, uri, &attrs.verb, m.user.clone(), Utc::now());
        event.impersonated_user = m.impersonated.cloned();
        event.source_ips = m.source_ip.iter().map(ToString::to_string).collect();
        event.user_agent = m.user_agent.map(str::to_string);
        if attrs.resource_request {
            event.object_ref = Some(ObjectReference {
                resource: attrs.resource.clone(),
                namespace: attrs.namespace.clone(),
                name: attrs.name.clone(),
                api_group: attrs.api_group.clone(),
                api_version: attrs.api_version.clone(),
                subresource: attrs.subresource.clone(),
                ..Default::default()
            });
        }
        let record = AuditRecord {
            event,
            decision,
            resource_request: attrs.resource_request,
            resource: attrs.resource.clone(),
            subresource: attrs.subresource.clone(),
            writer: self.writer.clone(),
            started: None,
            finished: false,
        };
        record.emit(Stage::RequestReceived);
        Some(record)
    }
}

/// One audited request's event, carried by the request from [`Auditor::begin`] to
/// [`AuditRecord::finish`]. `Send`.
///
/// Dropped without `finish` (the client went away during a watch or exec), it writes
/// ResponseComplete with the code it started with, so a long-running request always ends
/// in the log; a record dropped before any response writes nothing more.
pub struct AuditRecord {
    event: Event,
    decision: RuleDecision,
    resource_request: bool,
    resource: String,
    subresource: String,
    writer: Arc<LogWriter>,
    started: Option<u16>,
    finished: bool,
}

impl AuditRecord {
    pub fn level(&self) -> Level {
        self.decision.level
    }

    /// Request or RequestResponse, on a resource request (kube-apiserver keeps no bodies of
    /// other requests).
    pub fn wants_request_object(&self) -> bool {
        self.resource_request && self.decision.level >= Level::Request
    }

    /// RequestResponse, on a resource request.
    pub fn wants_response_object(&self) -> bool {
        self.resource_request && self.decision.level >= Level::RequestResponse
    }

    /// Whether the request body is of use: kept at Request and above, and read on a create
    /// for the name of the object it makes, which the path does not give (kube-apiserver's
    /// objectRef names the created object at every level).
    pub fn needs_request_body(&self) -> bool {
        self.wants_request_object()
            || (self.resource_request
                && self.event.verb == "create"
                && self.event.object_ref.as_ref().is_some_and(|r| r.name.is_empty()))
    }

    /// The request body (ignored if not JSON). Call it for every request with a body,
    /// whatever the level, as kube-apiserver does: the event's objectRef takes a created
    /// object's name (and uid, resourceVersion) from it; the body itself is kept only when
    /// [`wants_request_object`](Self::wants_request_object).
    pub fn set_request_object(&mut self, json: &[u8]) {
        if !self.resource_request {
            return;
        }
        let Ok(mut body) = serde_json::from_slice::<Value>(json) else { return };
        if let Some(r) = self.event.object_ref.as_mut() {
            r.complete_from(&body);
        }
        if self.wants_request_object() {
            self.scrub(&mut body);
            self.event.request_object = Some(body);
        }
    }

    /// The authorizer's decision (`allow` or `forbid`) and reason, as the event's
    /// `authorization.k8s.io/*` annotations.
    pub fn set_authorization(&mut self, decision: &str, reason: &str) {
        let a = &mut self.event.annotations;
        a.insert("authorization.k8s.io/decision".to_string(), decision.to_string());
        a.insert("authorization.k8s.io/reason".to_string(), reason.to_string());
    }

    /// Annotations admission added (a webhook's, PodSecurity's); the first value of a key
    /// stays, as kube-apiserver keeps it.
    pub fn add_annotations<'a>(
        &mut self,
        annotations: impl IntoIterator<Item = (&'a str, &'a str)>,
    ) {
        for (k, v) in annotations {
            self.event.annotations.entry(k.to_string()).or_insert_with(|| v.to_string());
        }
    }

    /// long-running (watch, exec): writes ResponseStarted unless omitted.
    pub fn response_started(&mut self, code: u16) {
        self.started = Some(code);
        self.event.response_status = Some(ResponseStatus::from_response(code, None));
        self.emit(Stage::ResponseStarted);
    }

    /// ResponseComplete (responseStatus from code and, for errors, the Status body's
    /// message/reason).
    pub fn finish(mut self, code: u16, response_json: Option<&[u8]>) {
        self.complete(code, response_json);
    }

    fn complete(&mut self, code: u16, response_json: Option<&[u8]>) {
        self.finished = true;
        // Success bodies are parsed only when they are to be logged: lists can be large.
        let parse = self.wants_response_object() || code >= 300;
        let mut body =
            response_json.filter(|_| parse).and_then(|b| serde_json::from_slice::<Value>(b).ok());
        self.event.response_status = Some(ResponseStatus::from_response(code, body.as_ref()));
        if self.wants_response_object()
            && let Some(mut b) = body.take()
        {
            self.scrub(&mut b);
            self.event.response_object = Some(b);
        }
        if self.decision.omits(Stage::ResponseComplete) {
            return;
        }
        // The last event of the record: moved out, not cloned.
        let mut event = std::mem::take(&mut self.event);
        event.stage = Stage::ResponseComplete;
        event.stage_timestamp = Utc::now();
        self.writer.write(event);
    }

    fn scrub(&self, body: &mut Value) {
        redact_secret_material(body, &self.resource, &self.subresource);
        if self.decision.omit_managed_fields {
            omit_managed_fields(body);
        }
    }

    /// Write the event as it stands at `stage`, unless the policy omits that stage.
    fn emit(&self, stage: Stage) {
        if self.decision.omits(stage) {
            return;
        }
        let mut event = self.event.clone();
        event.stage = stage;
        event.stage_timestamp = Utc::now();
        self.writer.write(event);
    }
}

impl Drop for AuditRecord {
    fn drop(&mut self) {
        if !self.finished
            && let Some(code) = self.started
        {
            self.complete(code, None);
        }
    }
}

/// kube-apiserver's requestURI is the request line's path and query; an HTTP/2 request's URI
/// also carries scheme and authority, which are dropped.
fn path_and_query(uri: &str) -> &str {
    match uri.split_once("://") {
        Some((scheme, rest)) if !scheme.contains('/') => {
            rest.find(['/', '?']).map_or("/", |i| &rest[i..])
        }
        _ => uri,
    }
}

// The request path shares the recorder between tasks and moves records into response
// bodies (watch streams): keep them so.
const _: () = {
    const fn send_sync<T: Send + Sync>() {}
    const fn send<T: Send>() {}
    send_sync::<Recorder>();
    send::<AuditRecord>();
};
