//! Node identity: the certificates API (`certificates.k8s.io/v1` CertificateSigningRequest)
//! with its create, status and approval rules (kube-apiserver's `certificates` registry), the
//! control plane's CSR approver and signer (kube-controller-manager's `csrapproving` and
//! `csrsigning`), the node's side of asking for a certificate and renewing it (the kubelet's
//! certificate manager), and the TokenReview the kubelet asks its callers' tokens about.
//!
//! The approver auto-approves `kubernetes.io/kube-apiserver-client-kubelet` requests for
//! `CN=system:node:<name>, O=system:nodes` whose requestor may `create`
//! `certificatesigningrequests/nodeclient` (a bootstrap token) or, for its own name,
//! `certificatesigningrequests/selfnodeclient` (a node renewing). The signer issues client
//! certificates from the cluster CA for approved requests of
//! `kubernetes.io/kube-apiserver-client(-kubelet)` and serving certificates for
//! `kubernetes.io/kubelet-serving`.

use std::collections::BTreeSet;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use k8s_openapi::api::certificates::v1::CertificateSigningRequest;
use rcgen::{
    CertificateParams, CertificateSigningRequestParams, DistinguishedName, DnType,
    ExtendedKeyUsagePurpose, Issuer, KeyPair, KeyUsagePurpose, SanType, SerialNumber,
};
use serde_json::{Value, json};
use skiff_auth::{Attributes, UserInfo};

use crate::State;
use crate::errors::ApiError;

/// Client certificates of kubelets (`system:node:<name>` in `system:nodes`).
pub const SIGNER_KUBELET_CLIENT: &str = "kubernetes.io/kube-apiserver-client-kubelet";
/// Client certificates of any user of the api server.
pub const SIGNER_CLIENT: &str = "kubernetes.io/kube-apiserver-client";
/// Serving certificates of kubelets.
pub const SIGNER_KUBELET_SERVING: &str = "kubernetes.io/kubelet-serving";

const GROUP: &str = "certificates.k8s.io";
const NODES: &str = "system:nodes";
const NODE_PREFIX: &str = "system:node:";
/// kube-apiserver's floor for `spec.expirationSeconds`.
const MIN_EXPIRATION_SECONDS: i64 = 600;
/// How far back issued certificates are dated, for clocks a little behind (as kube's signer).
const BACKDATE: Duration = Duration::from_secs(5 * 60);
/// The key usages kube accepts in `spec.usages`.
const KNOWN_USAGES: &[&str] = &[
    "signing",
    "digital signature",
    "content commitment",
    "key encipherment",
    "key agreement",
    "data encipherment",
    "cert sign",
    "crl sign",
    "encipher only",
    "decipher only",
    "any",
    "server auth",
    "client auth",
    "code signing",
    "email protection",
    "s/mime",
    "ipsec end system",
    "ipsec tunnel",
    "ipsec user",
    "timestamping",
    "ocsp signing",
    "microsoft sgc",
    "netscape sgc",
];

/// Why a certificate could not be issued or obtained.
#[derive(Debug, thiserror::Error)]
pub enum CertificateError {
    #[error("certificate request: {0}")]
    Request(String),
    #[error("the request does not meet signer {signer}'s rules: {reason}")]
    Signer { signer: String, reason: String },
    #[error("certificate generation failed: {0}")]
    Cert(#[from] rcgen::Error),
    #[error("certificate signing request {name}: {source}")]
    Api {
        name: String,
        #[source]
        source: kube::Error,
    },
    #[error("certificate signing request {name} was {outcome}: {message}")]
    Refused { name: String, outcome: &'static str, message: String },
    #[error("certificate signing request {name} was not signed within {waited:?}")]
    Timeout { name: String, waited: Duration },
}

// ---------------------------------------------------------------------------------------------
// Reading requests

/// What a PEM certificate request asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestedSubject {
    pub common_name: String,
    pub organizations: Vec<String>,
    pub dns_names: Vec<String>,
    pub ip_addresses: Vec<IpAddr>,
    /// SANs other than DNS names and IP addresses (emails, URIs, ...).
    pub other_names: usize,
}

fn pem_der(pem: &str) -> Result<Vec<u8>, CertificateError> {
    let bad = |why: &str| CertificateError::Request(why.to_string());
    match rustls_pemfile::read_one(&mut pem.as_bytes()) {
        Ok(Some(rustls_pemfile::Item::Csr(der))) => Ok(der.as_ref().to_vec()),
        Ok(Some(_)) => Err(bad("PEM block type must be CERTIFICATE REQUEST")),
        Ok(None) | Err(_) => Err(bad("must be a PEM-encoded certificate request")),
    }
}

/// Parse a PEM certificate request and check its signature (it proves the requestor holds
/// the key).
pub fn parse_request(pem: &str) -> Result<RequestedSubject, CertificateError> {
    use x509_parser::prelude::FromDer;
    let der = pem_der(pem)?;
    let (_, csr) = x509_parser::certification_request::X509CertificationRequest::from_der(&der)
        .map_err(|e| CertificateError::Request(format!("cannot parse the request: {e}")))?;
    // rcgen's parser verifies the signature and refuses extensions it could not reproduce.
    CertificateSigningRequestParams::from_der(&der.clone().into())
        .map_err(|e| CertificateError::Request(e.to_string()))?;
    let subject = &csr.certification_request_info.subject;
    let text = |a: &x509_parser::x509::AttributeTypeAndValue<'_>| {
        a.as_str().map(str::to_string).unwrap_or_default()
    };
    let mut req = RequestedSubject {
        common_name: subject.iter_common_name().next().map(text).unwrap_or_default(),
        organizations: subject.iter_organization().map(text).collect(),
        dns_names: Vec::new(),
        ip_addresses: Vec::new(),
        other_names: 0,
    };
    for ext in csr.requested_extensions().into_iter().flatten() {
        if let x509_parser::extensions::ParsedExtension::SubjectAlternativeName(san) = ext {
            for name in &san.general_names {
                match name {
                    x509_parser::extensions::GeneralName::DNSName(d) => {
                        req.dns_names.push(d.to_string())
                    }
                    x509_parser::extensions::GeneralName::IPAddress(raw) => {
                        match <[u8; 4]>::try_from(*raw)
                            .map(IpAddr::from)
                            .or_else(|_| <[u8; 16]>::try_from(*raw).map(IpAddr::from))
                        {
                            Ok(ip) => req.ip_addresses.push(ip),
                            Err(_) => req.other_names += 1,
                        }
                    }
                    _ => req.other_names += 1,
                }
            }
        }
    }
    Ok(req)
}

/// The PEM text of a `[]byte` field of a JSON object (base64 in JSON).
fn bytes_field(obj: &Value, ptr: &str) -> Option<String> {
    let b64 = obj.pointer(ptr)?.as_str()?;
    let raw = base64::engine::general_purpose::STANDARD.decode(b64).ok()?;
    String::from_utf8(raw).ok()
}

fn usages(obj: &Value) -> Vec<String> {
    obj.pointer("/spec/usages")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .map(str::to_string)
        .collect()
}

// ---------------------------------------------------------------------------------------------
// The API's rules

fn condition_true(csr: &Value, kind: &str) -> bool {
    csr.pointer("/status/conditions").and_then(Value::as_array).into_iter().flatten().any(|c| {
        c.get("type").and_then(Value::as_str) == Some(kind)
            && c.get("status").and_then(Value::as_str).is_none_or(|s| s == "True")
    })
}

/// kubectl's CONDITION column: `Approved`/`Denied`/`Pending`, then `,Failed` and `,Issued`.
pub fn condition_summary(csr: &Value) -> String {
    let mut s = if condition_true(csr, "Denied") {
        "Denied".to_string()
    } else if condition_true(csr, "Approved") {
        "Approved".to_string()
    } else {
        "Pending".to_string()
    };
    if condition_true(csr, "Failed") {
        s.push_str(",Failed");
    }
    if csr.pointer("/status/certificate").and_then(Value::as_str).is_some_and(|c| !c.is_empty()) {
        s.push_str(",Issued");
    }
    s
}

fn invalid(obj: &Value, causes: Vec<(String, String)>) -> ApiError {
    let name = obj.pointer("/metadata/name").and_then(Value::as_str).unwrap_or("");
    ApiError::invalid("CertificateSigningRequest", name, causes)
}

/// A new CSR: the requestor is the user making the request (whatever the body said, as
/// kube-apiserver overwrites it), status starts empty, and the request must be a CSR whose
/// signature verifies, for a named signer.
pub fn admit_create(obj: &mut Value) -> Result<(), ApiError> {
    let user = crate::authn::current_user();
    if !obj.get("spec").is_some_and(Value::is_object) {
        obj["spec"] = json!({});
    }
    let spec = &mut obj["spec"];
    if let Some(m) = spec.as_object_mut() {
        for k in ["username", "uid", "groups", "extra"] {
            m.remove(k);
        }
    }
    if let Some(u) = user {
        spec["username"] = json!(u.name);
        if !u.uid.is_empty() {
            spec["uid"] = json!(u.uid);
        }
        if !u.groups.is_empty() {
            spec["groups"] = json!(u.groups);
        }
        if !u.extra.is_empty() {
            spec["extra"] = json!(u.extra);
        }
    }
    if let Some(m) = obj.as_object_mut() {
        m.remove("status");
    }
    validate_spec(obj)
}

fn validate_spec(obj: &Value) -> Result<(), ApiError> {
    let mut causes = Vec::new();
    match obj.pointer("/spec/request").and_then(Value::as_str) {
        None | Some("") => causes.push(("spec.request".into(), "Required value".into())),
        Some(_) => match bytes_field(obj, "/spec/request") {
            None => causes
                .push(("spec.request".into(), "Invalid value: must be base64-encoded PEM".into())),
            Some(pem) => {
                if let Err(e) = parse_request(&pem) {
                    causes.push(("spec.request".into(), format!("Invalid value: {e}")));
                }
            }
        },
    }
    match obj.pointer("/spec/signerName").and_then(Value::as_str) {
        None | Some("") => causes.push(("spec.signerName".into(), "Required value".into())),
        Some(s) => {
            let ok = s.split_once('/').is_some_and(|(domain, path)| {
                !domain.is_empty()
                    && domain.contains('.')
                    && !path.is_empty()
                    && s.bytes().all(|b| b.is_ascii_alphanumeric() || b"-._/".contains(&b))
            });
            if !ok {
                causes.push((
                    "spec.signerName".into(),
                    format!(
                        "Invalid value: {s:?}: must be a fully qualified domain and path of the form 'example.com/signer-name'"
                    ),
                ));
            }
        }
    }
    for (i, u) in usages(obj).iter().enumerate() {
        if !KNOWN_USAGES.contains(&u.as_str()) {
            causes.push((format!("spec.usages[{i}]"), format!("Unsupported value: {u:?}")));
        }
    }
    if let Some(secs) = obj.pointer("/spec/expirationSeconds").and_then(Value::as_i64)
        && secs < MIN_EXPIRATION_SECONDS
    {
        causes.push((
            "spec.expirationSeconds".into(),
            format!("Invalid value: {secs}: may not specify a duration less than 600 seconds (10 minutes)"),
        ));
    }
    if causes.is_empty() { Ok(()) } else { Err(invalid(obj, causes)) }
}

fn conditions(obj: &Value) -> Vec<Value> {
    obj.pointer("/status/conditions").and_then(Value::as_array).cloned().unwrap_or_default()
}

fn is_approval(c: &Value) -> bool {
    matches!(c.get("type").and_then(Value::as_str), Some("Approved" | "Denied"))
}

/// Fill what kube defaults in a condition: status True, the update and transition times.
fn default_condition(c: &mut Value) {
    let now = crate::objects::now_rfc3339();
    if let Some(m) = c.as_object_mut() {
        m.entry("status").or_insert_with(|| json!("True"));
        m.entry("lastUpdateTime").or_insert_with(|| json!(now.clone()));
        m.entry("lastTransitionTime").or_insert_with(|| json!(now));
    }
}

fn set_conditions(obj: &mut Value, conds: Vec<Value>) {
    if !obj.get("status").is_some_and(Value::is_object) {
        obj["status"] = json!({});
    }
    if conds.is_empty() {
        if let Some(s) = obj["status"].as_object_mut() {
            s.remove("conditions");
        }
    } else {
        obj["status"]["conditions"] = Value::Array(conds);
    }
}

/// An update of a CSR through `endpoint` (`None`: the object, `status`, `approval`): what of
/// `new` is taken is what that endpoint owns, as kube-apiserver's CSR strategies decide.
/// For the object itself only metadata changes (the spec is kept, the caller keeps the
/// status); `status` changes the certificate (once) and conditions other than Approved and
/// Denied; `approval` changes only the Approved and Denied conditions, which can be added
/// but never removed, and never both.
pub fn prepare_update(
    new: &mut Value,
    old: &Value,
    endpoint: Option<&str>,
) -> Result<(), ApiError> {
    match endpoint {
        None => {
            match old.get("spec") {
                Some(s) => new["spec"] = s.clone(),
                None => {
                    if let Some(m) = new.as_object_mut() {
                        m.remove("spec");
                    }
                }
            }
            Ok(())
        }
        Some("status") => {
            let incoming = new.get("status").cloned().unwrap_or(json!({}));
            *new = old.clone();
            let old_cert = old.pointer("/status/certificate").and_then(Value::as_str).unwrap_or("");
            let new_cert = incoming.get("certificate").and_then(Value::as_str).unwrap_or("");
            if !old_cert.is_empty() && new_cert != old_cert {
                return Err(invalid(
                    old,
                    vec![(
                        "status.certificate".into(),
                        "Forbidden: updates may not modify existing certificate content".into(),
                    )],
                ));
            }
            if !new_cert.is_empty() && old_cert.is_empty() {
                let pem = bytes_field(&incoming, "/certificate").unwrap_or_default();
                let certs =
                    rustls_pemfile::certs(&mut pem.as_bytes()).collect::<Result<Vec<_>, _>>();
                if !matches!(certs, Ok(c) if !c.is_empty()) {
                    return Err(invalid(
                        old,
                        vec![(
                            "status.certificate".into(),
                            "Invalid value: \"<certificate data>\": must contain at least one CERTIFICATE PEM block".into(),
                        )],
                    ));
                }
                if !condition_true(old, "Approved") || condition_true(old, "Denied") {
                    return Err(invalid(
                        old,
                        vec![(
                            "status.certificate".into(),
                            "Forbidden: certificate may only be set when the request is approved"
                                .into(),
                        )],
                    ));
                }
                new["status"]["certificate"] = json!(new_cert);
            }
            let mut conds: Vec<Value> = conditions(old).into_iter().filter(is_approval).collect();
            for mut c in
                incoming.get("conditions").and_then(Value::as_array).cloned().unwrap_or_default()
            {
                if !is_approval(&c) {
                    default_condition(&mut c);
                    conds.push(c);
                }
            }
            set_conditions(new, conds);
            Ok(())
        }
        Some("approval") => {
            let incoming = conditions(new);
            *new = old.clone();
            let mut conds: Vec<Value> =
                conditions(old).into_iter().filter(|c| !is_approval(c)).collect();
            for mut c in incoming.into_iter().filter(is_approval) {
                default_condition(&mut c);
                conds.push(c);
            }
            set_conditions(new, conds);
            let mut causes = Vec::new();
            for kind in ["Approved", "Denied"] {
                if condition_true(old, kind) && !condition_true(new, kind) {
                    causes.push((
                        "status.conditions".into(),
                        format!("Forbidden: updates may not remove a condition of type {kind:?}"),
                    ));
                }
            }
            if condition_true(new, "Approved") && condition_true(new, "Denied") {
                causes.push((
                    "status.conditions".into(),
                    "Invalid value: Approved and Denied conditions are mutually exclusive".into(),
                ));
            }
            if causes.is_empty() { Ok(()) } else { Err(invalid(old, causes)) }
        }
        Some(other) => Err(ApiError::method_not_allowed(format!(
            "certificatesigningrequests/{other} cannot be updated"
        ))),
    }
}

// ---------------------------------------------------------------------------------------------
// Signing

/// Whether `req` (with `usages`) is what a kubelet client certificate must be: exactly
/// `CN=system:node:<name>, O=system:nodes`, no SANs, usages digital signature (or key
/// encipherment) and client auth (kube's `ValidateKubeletClientCSR`).
pub fn check_kubelet_client(req: &RequestedSubject, usages: &[String]) -> Result<(), String> {
    if req.organizations != [NODES] {
        return Err(format!("subject organization must be exactly [{NODES:?}]"));
    }
    if !req.common_name.starts_with(NODE_PREFIX) || req.common_name.len() == NODE_PREFIX.len() {
        return Err(format!("subject common name must begin with {NODE_PREFIX:?}"));
    }
    if !req.dns_names.is_empty() || !req.ip_addresses.is_empty() || req.other_names > 0 {
        return Err("subject alternative names are not allowed".into());
    }
    let allowed: BTreeSet<&str> = ["digital signature", "key encipherment", "client auth"].into();
    if !usages.iter().all(|u| allowed.contains(u.as_str()))
        || !usages.iter().any(|u| u == "client auth")
    {
        return Err(
            "usages must be client auth with digital signature and/or key encipherment".into()
        );
    }
    Ok(())
}

fn check_kubelet_serving(req: &RequestedSubject, usages: &[String]) -> Result<(), String> {
    if req.organizations != [NODES] {
        return Err(format!("subject organization must be exactly [{NODES:?}]"));
    }
    if !req.common_name.starts_with(NODE_PREFIX) || req.common_name.len() == NODE_PREFIX.len() {
        return Err(format!("subject common name must begin with {NODE_PREFIX:?}"));
    }
    if req.other_names > 0 {
        return Err("only DNS and IP subject alternative names are allowed".into());
    }
    if req.dns_names.is_empty() && req.ip_addresses.is_empty() {
        return Err("at least one DNS or IP subject alternative name is required".into());
    }
    let allowed: BTreeSet<&str> = ["digital signature", "key encipherment", "server auth"].into();
    if !usages.iter().all(|u| allowed.contains(u.as_str()))
        || !usages.iter().any(|u| u == "server auth")
    {
        return Err(
            "usages must be server auth with digital signature and/or key encipherment".into()
        );
    }
    Ok(())
}

fn unix_now() -> Duration {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default()
}

/// Issues certificates from the cluster CA (kube-controller-manager's csrsigning, with
/// `--cluster-signing-duration` as the longest lifetime).
pub struct Signer {
    issuer: Issuer<'static, KeyPair>,
    max_duration: Duration,
}

impl Signer {
    pub fn new(
        ca_cert_pem: &str,
        ca_key_pem: &str,
        max_duration: Duration,
    ) -> Result<Signer, CertificateError> {
        let issuer = Issuer::from_ca_cert_pem(ca_cert_pem, KeyPair::from_pem(ca_key_pem)?)?;
        Ok(Signer { issuer, max_duration })
    }

    /// A certificate for `request_pem` as `signer` issues it, valid for `duration` (capped
    /// at the signing duration): the request's subject, the signer's usages. PEM.
    pub fn sign(
        &self,
        signer: &str,
        request_pem: &str,
        usages: &[String],
        duration: Option<Duration>,
    ) -> Result<String, CertificateError> {
        let req = parse_request(request_pem)?;
        let refuse =
            |reason: String| CertificateError::Signer { signer: signer.to_string(), reason };
        let eku = match signer {
            SIGNER_KUBELET_CLIENT => {
                check_kubelet_client(&req, usages).map_err(refuse)?;
                ExtendedKeyUsagePurpose::ClientAuth
            }
            SIGNER_CLIENT => {
                if !usages.iter().any(|u| u == "client auth")
                    || usages.iter().any(|u| u == "server auth")
                {
                    return Err(refuse(
                        "usages must include client auth and not server auth".into(),
                    ));
                }
                if req.common_name.is_empty() {
                    return Err(refuse("the subject must have a common name".into()));
                }
                // Extension servers trust this name's requests to say who is asking.
                if req.common_name == crate::aggregator::PROXY_CLIENT_NAME {
                    return Err(refuse(format!(
                        "the common name {} is the api server's front-proxy identity",
                        crate::aggregator::PROXY_CLIENT_NAME
                    )));
                }
                ExtendedKeyUsagePurpose::ClientAuth
            }
            SIGNER_KUBELET_SERVING => {
                check_kubelet_serving(&req, usages).map_err(refuse)?;
                ExtendedKeyUsagePurpose::ServerAuth
            }
            other => return Err(refuse(format!("{other} is not a signer of this cluster"))),
        };
        let lifetime = duration.map_or(self.max_duration, |d| d.min(self.max_duration));
        let mut params = CertificateParams::default();
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, req.common_name.as_str());
        // rcgen holds one value per attribute type: a request naming several groups is
        // refused rather than signed with fewer.
        match req.organizations.as_slice() {
            [] => {}
            [o] => dn.push(DnType::OrganizationName, o.as_str()),
            _ => return Err(refuse("more than one subject organization is not supported".into())),
        }
        params.distinguished_name = dn;
        if eku == ExtendedKeyUsagePurpose::ServerAuth {
            params.subject_alt_names = req
                .dns_names
                .iter()
                .map(|d| d.clone().try_into().map(SanType::DnsName))
                .chain(req.ip_addresses.iter().map(|ip| Ok(SanType::IpAddress(*ip))))
                .collect::<Result<_, _>>()?;
        }
        params.extended_key_usages = vec![eku];
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        if usages.iter().any(|u| u == "key encipherment") {
            params.key_usages.push(KeyUsagePurpose::KeyEncipherment);
        }
        let epoch = rcgen::date_time_ymd(1970, 1, 1);
        let now = unix_now();
        params.not_before = epoch + now.saturating_sub(BACKDATE.min(lifetime));
        params.not_after = epoch + now + lifetime;
        let mut serial = [0u8; 16];
        rand::RngCore::fill_bytes(&mut rand::rng(), &mut serial);
        serial[0] &= 0x7f;
        params.serial_number = Some(SerialNumber::from_slice(&serial));
        let csr = CertificateSigningRequestParams::from_der(&pem_der(request_pem)?.into())
            .map_err(|e| CertificateError::Request(e.to_string()))?;
        let signed = CertificateSigningRequestParams { params, public_key: csr.public_key };
        Ok(signed.signed_by(&self.issuer)?.pem())
    }

    /// A client certificate and its new key for `common_name` in `organizations`, valid for
    /// `lifetime` (the api server's own identity towards kubelets). `(cert_pem, key_pem)`.
    pub fn issue_client(
        &self,
        common_name: &str,
        organization: &str,
        lifetime: Duration,
    ) -> Result<(String, String), CertificateError> {
        let key = KeyPair::generate()?;
        let mut params = CertificateParams::default();
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, common_name);
        dn.push(DnType::OrganizationName, organization);
        params.distinguished_name = dn;
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        let epoch = rcgen::date_time_ymd(1970, 1, 1);
        let now = unix_now();
        params.not_before = epoch + now.saturating_sub(BACKDATE);
        params.not_after = epoch + now + lifetime;
        Ok((params.signed_by(&key, &self.issuer)?.pem(), key.serialize_pem()))
    }
}

// ---------------------------------------------------------------------------------------------
// Approver and signer loop

/// Why a CSR may be auto-approved: `(reason, message)`, or `None`.
fn auto_approval(state: &State, csr: &Value) -> Option<(&'static str, &'static str)> {
    if csr.pointer("/spec/signerName").and_then(Value::as_str) != Some(SIGNER_KUBELET_CLIENT) {
        return None;
    }
    let req = parse_request(&bytes_field(csr, "/spec/request")?).ok()?;
    check_kubelet_client(&req, &usages(csr)).ok()?;
    let spec = csr.get("spec")?;
    let user = UserInfo {
        name: spec.get("username").and_then(Value::as_str).unwrap_or("").to_string(),
        uid: spec.get("uid").and_then(Value::as_str).unwrap_or("").to_string(),
        groups: serde_json::from_value(spec.get("groups").cloned().unwrap_or(json!([])))
            .unwrap_or_default(),
        extra: serde_json::from_value(spec.get("extra").cloned().unwrap_or(json!({})))
            .unwrap_or_default(),
    };
    if user.name.is_empty() {
        return None;
    }
    let asks = |sub: &str| {
        let attrs = Attributes::resource("create", GROUP, "certificatesigningrequests", "", "")
            .with_subresource(sub);
        crate::authz::allowed(state, &user, &attrs)
    };
    // A node renewing its own certificate, then anyone allowed to create node certificates.
    if user.name == req.common_name && asks("selfnodeclient") {
        return Some((
            "AutoApproved",
            "Auto approving self kubelet client certificate after SubjectAccessReview.",
        ));
    }
    if asks("nodeclient") {
        return Some((
            "AutoApproved",
            "Auto approving kubelet client certificate after SubjectAccessReview.",
        ));
    }
    None
}

/// Approve what may be auto-approved and sign what is approved, for as long as the process
/// runs. Level-triggered: every CSR is looked at on each (re)list and change; each step is
/// idempotent (a CSR approved, denied, failed or issued is not touched again).
pub async fn run(state: Arc<State>, client: kube::Client, signer: Arc<Signer>) {
    use futures::TryStreamExt;
    use kube::runtime::WatchStreamExt;
    let api: kube::Api<CertificateSigningRequest> = kube::Api::all(client);
    let stream = kube::runtime::watcher(api.clone(), kube::runtime::watcher::Config::default())
        .default_backoff()
        .applied_objects();
    futures::pin_mut!(stream);
    loop {
        match stream.try_next().await {
            Ok(Some(csr)) => {
                let name = csr.metadata.name.clone().unwrap_or_default();
                if let Err(e) = reconcile(&state, &api, &signer, csr).await {
                    tracing::warn!(csr = %name, error = %e, "certificate signing request");
                }
            }
            Ok(None) => return,
            Err(e) => tracing::debug!(error = %e, "watching certificate signing requests"),
        }
    }
}

async fn reconcile(
    state: &State,
    api: &kube::Api<CertificateSigningRequest>,
    signer: &Signer,
    csr: CertificateSigningRequest,
) -> Result<(), CertificateError> {
    use kube::api::{Patch, PatchParams};
    let name = csr.metadata.name.clone().unwrap_or_default();
    let api_err = |source| CertificateError::Api { name: name.clone(), source };
    let obj = serde_json::to_value(&csr).unwrap_or_default();
    let issued =
        obj.pointer("/status/certificate").and_then(Value::as_str).is_some_and(|c| !c.is_empty());
    if issued || condition_true(&obj, "Denied") || condition_true(&obj, "Failed") {
        return Ok(());
    }
    let now = crate::objects::now_rfc3339();
    if !condition_true(&obj, "Approved") {
        let Some((reason, message)) = auto_approval(state, &obj) else { return Ok(()) };
        let mut conds = conditions(&obj);
        conds.push(
            json!({"type": "Approved", "status": "True", "reason": reason, "message": message,
            "lastUpdateTime": now, "lastTransitionTime": now}),
        );
        api.patch_approval(
            &name,
            &PatchParams::default(),
            &Patch::Merge(json!({"status": {"conditions": conds}})),
        )
        .await
        .map_err(api_err)?;
        let requestor = obj.pointer("/spec/username").and_then(Value::as_str).unwrap_or("");
        tracing::info!(csr = %name, %requestor, "approved");
        // The approval is a change of its own: the next event signs it.
        return Ok(());
    }
    let signer_name = obj.pointer("/spec/signerName").and_then(Value::as_str).unwrap_or("");
    if ![SIGNER_KUBELET_CLIENT, SIGNER_CLIENT, SIGNER_KUBELET_SERVING].contains(&signer_name) {
        return Ok(());
    }
    let duration =
        obj.pointer("/spec/expirationSeconds").and_then(Value::as_u64).map(Duration::from_secs);
    let request = bytes_field(&obj, "/spec/request").unwrap_or_default();
    let patch = match signer.sign(signer_name, &request, &usages(&obj), duration) {
        Ok(pem) => {
            tracing::info!(csr = %name, signer = signer_name, "signed");
            json!({"status": {"certificate": base64::engine::general_purpose::STANDARD.encode(pem)}})
        }
        Err(e) => {
            tracing::warn!(csr = %name, error = %e, "not signed");
            let mut conds = conditions(&obj);
            conds.push(
                json!({"type": "Failed", "status": "True", "reason": "SignerValidationFailure",
                "message": e.to_string(), "lastUpdateTime": now, "lastTransitionTime": now}),
            );
            json!({"status": {"conditions": conds}})
        }
    };
    api.patch_status(&name, &PatchParams::default(), &Patch::Merge(patch))
        .await
        .map_err(api_err)?;
    Ok(())
}

/// The ClusterRoleBindings that let nodes join and renew with the certificates API (what
/// `kubeadm init` creates in its `bootstrap-token` phase): bootstrap token users may create
/// CSRs and have node client certificates auto-approved, nodes may have their own renewals
/// auto-approved. `(name, cluster role, group)`.
pub const NODE_BOOTSTRAP_BINDINGS: &[(&str, &str, &str)] = &[
    ("skiff:kubelet-bootstrap", "system:node-bootstrapper", "system:bootstrappers"),
    (
        "skiff:node-autoapprove-bootstrap",
        "system:certificates.k8s.io:certificatesigningrequests:nodeclient",
        "system:bootstrappers",
    ),
    (
        "skiff:node-autoapprove-certificate-rotation",
        "system:certificates.k8s.io:certificatesigningrequests:selfnodeclient",
        "system:nodes",
    ),
];

/// Create [`NODE_BOOTSTRAP_BINDINGS`] where missing (existing ones are left as the admin
/// keeps them), retrying until the api server takes them. Idempotent.
pub async fn ensure_node_bootstrap_bindings(client: kube::Client) {
    use kube::api::{Api, ApiResource, DynamicObject, GroupVersionKind, PostParams};
    let gvk = GroupVersionKind::gvk("rbac.authorization.k8s.io", "v1", "ClusterRoleBinding");
    let api: Api<DynamicObject> = Api::all_with(client, &ApiResource::from_gvk(&gvk));
    for (name, role, group) in NODE_BOOTSTRAP_BINDINGS {
        let Ok(binding) = serde_json::from_value::<DynamicObject>(json!({
            "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
            "metadata": {"name": name},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": role},
            "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "Group", "name": group}],
        })) else {
            continue;
        };
        for attempt in 0..30 {
            match api.create(&PostParams::default(), &binding).await {
                Ok(_) => break,
                Err(kube::Error::Api(e)) if e.code == 409 => break,
                Err(e) => {
                    tracing::debug!(binding = name, attempt, error = %e, "creating a node bootstrap binding");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// TokenReview

/// The status of a TokenReview (`authentication.k8s.io/v1`) `obj`: who `spec.token` is, by
/// the same authenticators the api server uses. The token is taken out of `obj`, so it is not
/// echoed back.
pub async fn token_review_status(state: &State, obj: &mut Value) -> Result<Value, ApiError> {
    let token = obj.pointer("/spec/token").and_then(Value::as_str).unwrap_or("").to_string();
    if token.is_empty() {
        return Err(invalid(obj, vec![("spec.token".into(), "Required value".into())]));
    }
    // The audiences asked for (the api server's own when none): a service account token must
    // share one; other credentials are the api server's only.
    let asked: Vec<String> = obj
        .pointer("/spec/audiences")
        .and_then(Value::as_array)
        .map(|a| a.iter().filter_map(Value::as_str).map(str::to_string).collect())
        .unwrap_or_default();
    let wanted: Vec<&str> = if asked.is_empty() {
        vec![crate::tokens::ISSUER]
    } else {
        asked.iter().map(String::as_str).collect()
    };
    let answer = match crate::tokens::authenticate_for(state, &token, &wanted).await {
        Some(found) => Some(found),
        None if wanted.contains(&crate::tokens::ISSUER) => {
            crate::authn::authenticate_token(state, &token)
                .await
                .map(|user| (user, vec![crate::tokens::ISSUER.to_string()]))
        }
        None => None,
    };
    // As kube answers a token it does not accept: `authenticated` false is left out
    // (omitempty); a service account token of this cluster for other audiences, or one of its
    // issuer that does not verify, gets an error; any other token is simply not one this
    // server knows.
    let status = match answer {
        Some((user, audiences)) => {
            json!({"authenticated": true, "user": user, "audiences": audiences})
        }
        None => match crate::tokens::verified_audiences(state, &token) {
            Some(auds) if !auds.iter().any(|a| wanted.contains(&a.as_str())) => {
                json!({"user": {}, "error": format!(
                    "token audiences {} is invalid for the target audiences {}",
                    crate::tokens::go_quoted_list(&auds),
                    crate::tokens::go_quoted_list(&wanted)
                )})
            }
            _ if crate::tokens::claims_issuer_unverified(&token).is_some_and(|iss| {
                iss == crate::tokens::ISSUER || iss == crate::tokens::LEGACY_ISSUER
            }) =>
            {
                json!({"user": {}, "error": "invalid bearer token"})
            }
            _ => json!({"user": {}}),
        },
    };
    if let Some(spec) = obj.get_mut("spec").and_then(Value::as_object_mut) {
        spec.remove("token");
    }
    Ok(status)
}

// ---------------------------------------------------------------------------------------------
// The node's side

/// A new key and a certificate request for node `name`'s client certificate
/// (`CN=system:node:<name>, O=system:nodes`): `(key_pem, request_pem)`.
pub fn node_client_request(name: &str) -> Result<(String, String), CertificateError> {
    let key = KeyPair::generate()?;
    let mut params = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, format!("{NODE_PREFIX}{name}"));
    dn.push(DnType::OrganizationName, NODES);
    params.distinguished_name = dn;
    let csr = params.serialize_request(&key)?;
    Ok((key.serialize_pem(), csr.pem()?))
}

/// `(not_before, not_after)` of the first certificate in `pem`.
pub fn validity(pem: &str) -> Option<(SystemTime, SystemTime)> {
    let der = rustls_pemfile::certs(&mut pem.as_bytes()).next()?.ok()?;
    let (_, cert) = x509_parser::parse_x509_certificate(der.as_ref()).ok()?;
    let at = |t: i64| UNIX_EPOCH + Duration::from_secs(u64::try_from(t).unwrap_or(0));
    Some((at(cert.validity().not_before.timestamp()), at(cert.validity().not_after.timestamp())))
}

/// When a certificate valid from `not_before` to `not_after` should be renewed: at 80% of
/// its lifetime (the kubelet picks 70–90%).
pub fn renew_at(not_before: SystemTime, not_after: SystemTime) -> SystemTime {
    let life = not_after.duration_since(not_before).unwrap_or_default();
    not_before + life.mul_f64(0.8)
}

/// Create a CSR for `request_pem` with `signer` and `usages` and wait (up to `timeout`) until
/// it is signed; returns the certificate PEM. A denied or failed request is an error at once.
pub async fn request_certificate(
    client: &kube::Client,
    request_pem: &str,
    signer: &str,
    usages: &[&str],
    timeout: Duration,
) -> Result<String, CertificateError> {
    use kube::api::PostParams;
    let api: kube::Api<CertificateSigningRequest> = kube::Api::all(client.clone());
    let body: CertificateSigningRequest = serde_json::from_value(json!({
        "apiVersion": "certificates.k8s.io/v1",
        "kind": "CertificateSigningRequest",
        "metadata": {"generateName": "csr-"},
        "spec": {
            "request": base64::engine::general_purpose::STANDARD.encode(request_pem),
            "signerName": signer,
            "usages": usages,
        },
    }))
    .map_err(|e| CertificateError::Request(e.to_string()))?;
    let created = api
        .create(&PostParams::default(), &body)
        .await
        .map_err(|source| CertificateError::Api { name: "csr-*".into(), source })?;
    let name = created.metadata.name.clone().unwrap_or_default();
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        let csr = api
            .get(&name)
            .await
            .map_err(|source| CertificateError::Api { name: name.clone(), source })?;
        let obj = serde_json::to_value(&csr).unwrap_or_default();
        if let Some(pem) = bytes_field(&obj, "/status/certificate").filter(|p| !p.is_empty()) {
            return Ok(pem);
        }
        for (kind, outcome) in [("Denied", "denied"), ("Failed", "not signed")] {
            if condition_true(&obj, kind) {
                let message = conditions(&obj)
                    .iter()
                    .find(|c| c["type"] == kind)
                    .and_then(|c| c["message"].as_str())
                    .unwrap_or("")
                    .to_string();
                return Err(CertificateError::Refused { name, outcome, message });
            }
        }
        if tokio::time::Instant::now() >= deadline {
            return Err(CertificateError::Timeout { name, waited: timeout });
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// A node's credentials, kept in its `pki` directory: the cluster CA, its client certificate
/// and key (`kubelet-client.crt`/`.key`, rotated in place) and its kubelet serving
/// certificate and key (`kubelet.crt`/`.key`).
#[derive(Clone)]
pub struct NodeCredentials {
    pub ca_pem: String,
    pub client_cert_pem: String,
    pub client_key_pem: String,
    pub kubelet_cert_pem: String,
    pub kubelet_key_pem: String,
}

impl std::fmt::Debug for NodeCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NodeCredentials").finish_non_exhaustive()
    }
}

/// How long before expiry a kept client certificate is no longer used at start.
const MIN_REMAINING: Duration = Duration::from_secs(30);

impl NodeCredentials {
    /// The credentials kept in `dir`, if all are there and the client certificate is still
    /// valid for a while and names `node` (a node restarting needs no token).
    pub fn load(dir: &std::path::Path, node: &str) -> Option<NodeCredentials> {
        let read = |f: &str| std::fs::read_to_string(dir.join(f)).ok();
        let creds = NodeCredentials {
            ca_pem: read("ca.crt")?,
            client_cert_pem: read("kubelet-client.crt")?,
            client_key_pem: read("kubelet-client.key")?,
            kubelet_cert_pem: read("kubelet.crt")?,
            kubelet_key_pem: read("kubelet.key")?,
        };
        let (_, not_after) = validity(&creds.client_cert_pem)?;
        if not_after < SystemTime::now() + MIN_REMAINING {
            return None;
        }
        let der = rustls_pemfile::certs(&mut creds.client_cert_pem.as_bytes()).next()?.ok()?;
        let (_, cert) = x509_parser::parse_x509_certificate(der.as_ref()).ok()?;
        let cn = cert.subject().iter_common_name().next()?.as_str().ok()?.to_string();
        (cn == format!("{NODE_PREFIX}{node}")).then_some(creds)
    }

    /// Write every file to `dir`, owner-only, the key before its certificate (a crash in
    /// between leaves a pair that does not load, and the node joins again).
    pub fn save(&self, dir: &std::path::Path) -> Result<(), crate::pki::PkiError> {
        std::fs::create_dir_all(dir)
            .map_err(|source| crate::pki::PkiError::Io { path: dir.into(), source })?;
        let w = crate::pki::write_private;
        w(&dir.join("ca.crt"), self.ca_pem.as_bytes())?;
        w(&dir.join("kubelet.key"), self.kubelet_key_pem.as_bytes())?;
        w(&dir.join("kubelet.crt"), self.kubelet_cert_pem.as_bytes())?;
        w(&dir.join("kubelet-client.key"), self.client_key_pem.as_bytes())?;
        w(&dir.join("kubelet-client.crt"), self.client_cert_pem.as_bytes())
    }

    /// A kubeconfig for `server` with the node's client certificate and key inline.
    pub fn kubeconfig(&self, server: &str, node: &str) -> String {
        let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s.as_bytes());
        format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: skiff\n  cluster:\n    server: {server}\n    certificate-authority-data: {}\nusers:\n- name: system:node:{node}\n  user:\n    client-certificate-data: {}\n    client-key-data: {}\ncontexts:\n- name: skiff\n  context:\n    cluster: skiff\n    user: system:node:{node}\ncurrent-context: skiff\npreferences: {{}}\n",
            b64(&self.ca_pem),
            b64(&self.client_cert_pem),
            b64(&self.client_key_pem),
        )
    }
}

/// A kube client from kubeconfig text.
pub async fn client_from_kubeconfig(yaml: &str) -> Result<kube::Client, NodeIdentityError> {
    let kubeconfig = kube::config::Kubeconfig::from_yaml(yaml)
        .map_err(|e| NodeIdentityError::Client(e.to_string()))?;
    let config = kube::Config::from_custom_kubeconfig(kubeconfig, &Default::default())
        .await
        .map_err(|e| NodeIdentityError::Client(e.to_string()))?;
    kube::Client::try_from(config).map_err(|e| NodeIdentityError::Client(e.to_string()))
}

/// Why a node could not get or renew its identity.
#[derive(Debug, thiserror::Error)]
pub enum NodeIdentityError {
    #[error(transparent)]
    Join(#[from] crate::join::JoinError),
    #[error(transparent)]
    Certificate(#[from] CertificateError),
    #[error(transparent)]
    Token(#[from] crate::bootstrap_tokens::BootstrapTokenError),
    #[error("api client: {0}")]
    Client(String),
    #[error("saving the node's credentials: {0}")]
    Save(#[from] crate::pki::PkiError),
    #[error("the join answer has no client certificate (an older server?)")]
    NoClientCertificate,
}

/// How long a joining node waits for its first certificate.
const FIRST_CERTIFICATE_WAIT: Duration = Duration::from_secs(120);
/// How long a renewal waits for its certificate before trying again.
const RENEWAL_WAIT: Duration = Duration::from_secs(60);

/// Join the cluster at `server` as node `node` (address `node_ip`) with `token`: the join
/// token (`skiff1.…`; the server signs the node's client certificate at once) or a bootstrap
/// token (`<id>.<secret>`: the CA is trusted once the server proved it knows the token, or
/// matches `ca_cert_hash`; the node then asks for its client certificate through the
/// certificates API, as the bootstrap user, and waits until it is approved and signed).
pub async fn join_node(
    server: &str,
    token: &str,
    ca_cert_hash: Option<&str>,
    node: &str,
    node_ip: &str,
) -> Result<NodeCredentials, NodeIdentityError> {
    let (key_pem, request_pem) = node_client_request(node)?;
    if token.trim().starts_with("skiff1.") {
        let token = crate::join::JoinToken::parse(token)?;
        let bundle =
            crate::join::request_agent_credentials(server, &token, node, node_ip, &request_pem)
                .await?;
        if bundle.client_cert.is_empty() {
            return Err(NodeIdentityError::NoClientCertificate);
        }
        return Ok(NodeCredentials {
            ca_pem: bundle.ca_cert,
            client_cert_pem: bundle.client_cert,
            client_key_pem: key_pem,
            kubelet_cert_pem: bundle.kubelet_cert,
            kubelet_key_pem: bundle.kubelet_key,
        });
    }
    let token = crate::bootstrap_tokens::BootstrapToken::parse(token)?;
    let ca =
        crate::join::fetch_cluster_ca_with_bootstrap_token(server, &token, ca_cert_hash).await?;
    let bundle = crate::join::request_agent_credentials_with_bootstrap_token(
        server, &ca, &token, node, node_ip,
    )
    .await?;
    let bootstrap = client_from_kubeconfig(&crate::pki::kubeconfig(
        server,
        &ca,
        &format!("{}{}", crate::bootstrap_tokens::USER_PREFIX, token.id),
        &token.to_string(),
    ))
    .await?;
    let cert = request_certificate(
        &bootstrap,
        &request_pem,
        SIGNER_KUBELET_CLIENT,
        &["digital signature", "client auth"],
        FIRST_CERTIFICATE_WAIT,
    )
    .await?;
    Ok(NodeCredentials {
        ca_pem: ca,
        client_cert_pem: cert,
        client_key_pem: key_pem,
        kubelet_cert_pem: bundle.kubelet_cert,
        kubelet_key_pem: bundle.kubelet_key,
    })
}

/// A kube client whose credential can be replaced while it is in use: every request goes
/// through the current inner client (watches opened before a swap run on until they end).
#[derive(Clone)]
pub struct RotatingClient {
    current: Arc<std::sync::RwLock<kube::Client>>,
}

impl RotatingClient {
    pub fn new(client: kube::Client) -> RotatingClient {
        RotatingClient { current: Arc::new(std::sync::RwLock::new(client)) }
    }

    /// Send every later request with `client`.
    pub fn swap(&self, client: kube::Client) {
        if let Ok(mut c) = self.current.write() {
            *c = client;
        }
    }

    fn inner(&self) -> kube::Client {
        match self.current.read() {
            Ok(c) => c.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    /// A client that always uses the current credential.
    pub fn client(&self) -> kube::Client {
        let this = self.clone();
        let svc = tower::service_fn(move |req: http::Request<kube::client::Body>| {
            let inner = this.inner();
            async move { inner.send(req).await }
        });
        kube::Client::new(svc, "default")
    }
}

/// Renew the node's client certificate at 80% of its lifetime, for as long as the process
/// runs: a new key, a CSR sent with the current certificate (auto-approved as the node's
/// own renewal), the files in `dir` and the kubeconfig at `kubeconfig_path` rewritten, then
/// `client` swapped. A failed renewal is retried (every 10 s) until one succeeds.
pub async fn rotate_client_certificate(
    dir: std::path::PathBuf,
    kubeconfig_path: std::path::PathBuf,
    server: String,
    node: String,
    mut creds: NodeCredentials,
    client: RotatingClient,
) {
    loop {
        let Some((from, to)) = validity(&creds.client_cert_pem) else {
            tracing::error!("the node's client certificate cannot be read; not rotating it");
            return;
        };
        let wait = renew_at(from, to).duration_since(SystemTime::now()).unwrap_or_default();
        tracing::debug!(?wait, "next client certificate renewal");
        tokio::time::sleep(wait).await;
        loop {
            match renew(&dir, &kubeconfig_path, &server, &node, &creds, &client).await {
                Ok(next) => {
                    creds = next;
                    tracing::info!(node = %node, "rotated the node's client certificate");
                    break;
                }
                Err(e) => {
                    tracing::warn!(node = %node, error = %e, "renewing the node's client certificate");
                    tokio::time::sleep(Duration::from_secs(10)).await;
                }
            }
        }
    }
}

async fn renew(
    dir: &std::path::Path,
    kubeconfig_path: &std::path::Path,
    server: &str,
    node: &str,
    creds: &NodeCredentials,
    client: &RotatingClient,
) -> Result<NodeCredentials, NodeIdentityError> {
    let (key_pem, request_pem) = node_client_request(node)?;
    let cert = request_certificate(
        &client.client(),
        &request_pem,
        SIGNER_KUBELET_CLIENT,
        &["digital signature", "client auth"],
        RENEWAL_WAIT,
    )
    .await?;
    let next = NodeCredentials { client_cert_pem: cert, client_key_pem: key_pem, ..creds.clone() };
    next.save(dir)?;
    let yaml = next.kubeconfig(server, node);
    crate::pki::write_private(kubeconfig_path, yaml.as_bytes())?;
    client.swap(client_from_kubeconfig(&yaml).await?);
    Ok(next)
}

// ---------------------------------------------------------------------------------------------
// The kubelet API's callers (the kubelet's webhook authentication and authorization)

/// How long the kubelet keeps an answer (the kubelet's defaults: 2 min for tokens, 5 min
/// for an allow, 30 s for a deny).
const TOKEN_TTL: Duration = Duration::from_secs(120);
const ALLOW_TTL: Duration = Duration::from_secs(300);
const DENY_TTL: Duration = Duration::from_secs(30);

type Expiring<T> = std::sync::Mutex<std::collections::HashMap<String, (T, std::time::Instant)>>;

/// Asks the api server who a caller's bearer token is (TokenReview) and whether a user may
/// do something on this node (SubjectAccessReview), caching the answers briefly.
pub struct WebhookAuth {
    client: kube::Client,
    tokens: Expiring<Option<UserInfo>>,
    decisions: Expiring<bool>,
}

fn cached<T: Clone>(cache: &Expiring<T>, key: &str) -> Option<T> {
    let map = cache.lock().ok()?;
    let (v, until) = map.get(key)?;
    (std::time::Instant::now() < *until).then(|| v.clone())
}

fn remember<T>(cache: &Expiring<T>, key: String, value: T, ttl: Duration) {
    if let Ok(mut map) = cache.lock() {
        let now = std::time::Instant::now();
        // Bounded: expired answers go whenever the map grows large.
        if map.len() > 4096 {
            map.retain(|_, (_, until)| *until > now);
        }
        map.insert(key, (value, now + ttl));
    }
}

impl WebhookAuth {
    pub fn new(client: kube::Client) -> WebhookAuth {
        WebhookAuth { client, tokens: Default::default(), decisions: Default::default() }
    }

    async fn post(&self, path: &str, body: &Value) -> Option<Value> {
        let request = http::Request::post(path)
            .header(http::header::CONTENT_TYPE, "application/json")
            .body(serde_json::to_vec(body).ok()?)
            .ok()?;
        match self.client.request::<Value>(request).await {
            Ok(v) => Some(v),
            Err(e) => {
                tracing::warn!(path, error = %e, "asking the api server about a kubelet API caller");
                None
            }
        }
    }
}

#[async_trait::async_trait]
impl crate::kubelet::KubeletAuth for WebhookAuth {
    async fn authenticate_token(&self, token: &str) -> Option<UserInfo> {
        use sha2::Digest as _;
        let key = hex::encode(sha2::Sha256::digest(token.as_bytes()));
        if let Some(user) = cached(&self.tokens, &key) {
            return user;
        }
        let review = json!({"apiVersion": "authentication.k8s.io/v1", "kind": "TokenReview",
            "spec": {"token": token}});
        let answer = self.post("/apis/authentication.k8s.io/v1/tokenreviews", &review).await?;
        let user = (answer.pointer("/status/authenticated") == Some(&json!(true)))
            .then(|| serde_json::from_value::<UserInfo>(answer["status"]["user"].clone()).ok())
            .flatten();
        remember(&self.tokens, key, user.clone(), TOKEN_TTL);
        user
    }

    async fn authorize(&self, user: &UserInfo, attrs: &Attributes) -> bool {
        let key = serde_json::to_string(&(user, attrs)).unwrap_or_default();
        if let Some(allowed) = cached(&self.decisions, &key) {
            return allowed;
        }
        let review = json!({"apiVersion": "authorization.k8s.io/v1", "kind": "SubjectAccessReview",
            "spec": {"user": user.name, "uid": user.uid, "groups": user.groups, "extra": user.extra,
                "resourceAttributes": {"verb": attrs.verb, "resource": attrs.resource,
                    "subresource": attrs.subresource, "name": attrs.name}}});
        let Some(answer) =
            self.post("/apis/authorization.k8s.io/v1/subjectaccessreviews", &review).await
        else {
            return false;
        };
        let allowed = answer.pointer("/status/allowed") == Some(&json!(true));
        remember(&self.decisions, key, allowed, if allowed { ALLOW_TTL } else { DENY_TTL });
        allowed
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ca() -> (String, String) {
        let key = KeyPair::generate().expect("key");
        let mut params = CertificateParams::default();
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, "test-ca");
        params.distinguished_name = dn;
        (params.self_signed(&key).expect("ca").pem(), key.serialize_pem())
    }

    fn request(cn: &str, orgs: &[&str], sans: &[&str]) -> String {
        let key = KeyPair::generate().expect("key");
        let mut params =
            CertificateParams::new(sans.iter().map(|s| s.to_string()).collect::<Vec<_>>())
                .expect("params");
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, cn);
        for o in orgs {
            dn.push(DnType::OrganizationName, *o);
        }
        params.distinguished_name = dn;
        params.serialize_request(&key).expect("csr").pem().expect("pem")
    }

    fn usages(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    fn csr_object(pem: &str, signer: &str) -> Value {
        json!({"apiVersion": "certificates.k8s.io/v1", "kind": "CertificateSigningRequest",
            "metadata": {"name": "x"},
            "spec": {"request": base64::engine::general_purpose::STANDARD.encode(pem), "signerName": signer,
                "usages": ["digital signature", "client auth"], "username": "mallory", "groups": ["system:masters"]}})
    }

    #[test]
    fn parse_request_should_read_subject_and_sans() {
        let (_, pem) = node_client_request("n1").expect("csr");
        let req = parse_request(&pem).expect("parse");
        assert_eq!(req.common_name, "system:node:n1");
        assert_eq!(req.organizations, vec!["system:nodes".to_string()]);
        let req = parse_request(&request("system:node:n1", &["system:nodes"], &["n1", "10.0.0.1"]))
            .expect("parse");
        assert_eq!(req.dns_names, vec!["n1".to_string()]);
        assert_eq!(req.ip_addresses, vec!["10.0.0.1".parse::<IpAddr>().expect("ip")]);
        assert!(parse_request("not a pem").is_err());
        let (cert, _) = ca();
        assert!(parse_request(&cert).is_err(), "a certificate is not a request");
    }

    #[test]
    fn parse_request_should_refuse_a_forged_signature() {
        let pem = request("jane", &[], &[]);
        let mut der = pem_der(&pem).expect("der");
        let last = der.len() - 1;
        der[last] ^= 0xff;
        let b64 = base64::engine::general_purpose::STANDARD.encode(&der);
        let forged = format!(
            "-----BEGIN CERTIFICATE REQUEST-----\n{b64}\n-----END CERTIFICATE REQUEST-----\n"
        );
        assert!(parse_request(&forged).is_err());
    }

    #[test]
    fn check_kubelet_client_should_accept_only_a_node_subject() {
        let node = |cn: &str, orgs: &[&str], sans: &[&str]| {
            parse_request(&request(cn, orgs, sans)).expect("parse")
        };
        let ok = usages(&["digital signature", "client auth"]);
        assert!(check_kubelet_client(&node("system:node:n1", &["system:nodes"], &[]), &ok).is_ok());
        assert!(
            check_kubelet_client(
                &node("system:node:n1", &["system:nodes"], &[]),
                &usages(&["key encipherment", "digital signature", "client auth"])
            )
            .is_ok()
        );
        for (cn, orgs, sans, u) in [
            ("jane", &["system:nodes"][..], &[][..], ok.clone()),
            ("system:node:", &["system:nodes"], &[], ok.clone()),
            ("system:node:n1", &["system:masters"], &[], ok.clone()),
            ("system:node:n1", &[], &[], ok.clone()),
            ("system:node:n1", &["system:nodes"], &["n1"], ok.clone()),
            (
                "system:node:n1",
                &["system:nodes"],
                &[],
                usages(&["digital signature", "server auth"]),
            ),
            ("system:node:n1", &["system:nodes"], &[], usages(&["digital signature"])),
        ] {
            assert!(
                check_kubelet_client(&node(cn, orgs, sans), &u).is_err(),
                "{cn} {orgs:?} {sans:?} {u:?}"
            );
        }
    }

    #[test]
    fn signer_should_issue_a_client_certificate_with_the_request_subject() {
        let (ca_cert, ca_key) = ca();
        let signer = Signer::new(&ca_cert, &ca_key, Duration::from_secs(3600)).expect("signer");
        let (_, pem) = node_client_request("n1").expect("csr");
        let cert = signer
            .sign(SIGNER_KUBELET_CLIENT, &pem, &usages(&["digital signature", "client auth"]), None)
            .expect("signed");
        let der = rustls_pemfile::certs(&mut cert.as_bytes()).next().expect("cert").expect("der");
        let (_, x) = x509_parser::parse_x509_certificate(der.as_ref()).expect("parse");
        assert_eq!(
            x.subject().iter_common_name().next().and_then(|c| c.as_str().ok()),
            Some("system:node:n1")
        );
        assert_eq!(
            x.subject().iter_organization().next().and_then(|c| c.as_str().ok()),
            Some("system:nodes")
        );
        let (from, to) = validity(&cert).expect("validity");
        let life = to.duration_since(from).expect("ordered");
        // One hour plus the five minutes it is backdated.
        assert!(
            life <= Duration::from_secs(3600 + 300) && life >= Duration::from_secs(3600),
            "{life:?}"
        );
        // A shorter requested duration wins; a longer one is capped.
        let short = signer
            .sign(
                SIGNER_CLIENT,
                &request("jane", &["devs"], &[]),
                &usages(&["client auth"]),
                Some(Duration::from_secs(600)),
            )
            .expect("signed");
        let (from, to) = validity(&short).expect("validity");
        assert!(to.duration_since(from).expect("ordered") <= Duration::from_secs(900));
        // Not a node subject: the kubelet signer refuses.
        assert!(
            signer
                .sign(
                    SIGNER_KUBELET_CLIENT,
                    &request("jane", &[], &[]),
                    &usages(&["client auth"]),
                    None
                )
                .is_err()
        );
        assert!(signer.sign("example.com/other", &pem, &usages(&["client auth"]), None).is_err());
    }

    #[test]
    fn renew_at_should_be_at_four_fifths_of_the_lifetime() {
        let start = UNIX_EPOCH + Duration::from_secs(1000);
        assert_eq!(
            renew_at(start, start + Duration::from_secs(100)),
            start + Duration::from_secs(80)
        );
    }

    #[test]
    fn admit_create_should_overwrite_the_requestor_and_validate() {
        let (_, pem) = node_client_request("n1").expect("csr");
        let mut obj = csr_object(&pem, SIGNER_KUBELET_CLIENT);
        obj["status"] = json!({"certificate": "Zm9v"});
        admit_create(&mut obj).expect("valid");
        // No user on this task: nobody is the requestor, certainly not the body's claim.
        assert!(obj.pointer("/spec/username").is_none());
        assert!(obj.pointer("/spec/groups").is_none());
        assert!(obj.get("status").is_none());
        for (ptr, value) in [
            ("/spec/signerName", json!("")),
            ("/spec/signerName", json!("nodomain")),
            ("/spec/request", json!("bm90IGEgY3Ny")),
            ("/spec/expirationSeconds", json!(60)),
            ("/spec/usages", json!(["flying"])),
        ] {
            let mut bad = csr_object(&pem, SIGNER_KUBELET_CLIENT);
            bad["spec"][ptr.trim_start_matches("/spec/")] = value.clone();
            assert_eq!(admit_create(&mut bad).map_err(|e| e.code), Err(422), "{ptr} = {value}");
        }
    }

    #[test]
    fn approval_should_change_only_approval_conditions_and_never_remove_them() {
        let (_, pem) = node_client_request("n1").expect("csr");
        let old = csr_object(&pem, SIGNER_KUBELET_CLIENT);
        let mut new = old.clone();
        new["spec"]["signerName"] = json!("example.com/changed");
        new["status"] = json!({"certificate": "Zm9v", "conditions": [{"type": "Approved", "reason": "KubectlApprove"}]});
        prepare_update(&mut new, &old, Some("approval")).expect("approve");
        assert_eq!(new["spec"], old["spec"]);
        assert!(new.pointer("/status/certificate").is_none());
        assert_eq!(condition_summary(&new), "Approved");
        assert_eq!(new["status"]["conditions"][0]["status"], "True");
        // Removing the approval, or denying as well, is refused.
        let mut removed = new.clone();
        removed["status"]["conditions"] = json!([]);
        assert_eq!(
            prepare_update(&mut removed, &new, Some("approval")).map_err(|e| e.code),
            Err(422)
        );
        let mut both = new.clone();
        both["status"]["conditions"] = json!([{"type": "Approved"}, {"type": "Denied"}]);
        assert_eq!(prepare_update(&mut both, &new, Some("approval")).map_err(|e| e.code), Err(422));
    }

    #[test]
    fn status_should_set_the_certificate_once_and_keep_approvals() {
        let (ca_cert, _) = ca();
        let cert = base64::engine::general_purpose::STANDARD.encode(&ca_cert);
        let (_, pem) = node_client_request("n1").expect("csr");
        let pending = csr_object(&pem, SIGNER_KUBELET_CLIENT);
        let mut early = pending.clone();
        early["status"] = json!({"certificate": cert});
        assert_eq!(
            prepare_update(&mut early, &pending, Some("status")).map_err(|e| e.code),
            Err(422),
            "not approved yet"
        );
        let mut approved = pending.clone();
        approved["status"] = json!({"conditions": [{"type": "Approved", "status": "True"}]});
        let mut issued = approved.clone();
        // A status update that drops the approval and sets the certificate: the approval stays.
        issued["status"] = json!({"certificate": cert, "conditions": []});
        prepare_update(&mut issued, &approved, Some("status")).expect("issue");
        assert_eq!(condition_summary(&issued), "Approved,Issued");
        let mut changed = issued.clone();
        changed["status"]["certificate"] =
            json!(base64::engine::general_purpose::STANDARD.encode(ca().0));
        assert_eq!(
            prepare_update(&mut changed, &issued, Some("status")).map_err(|e| e.code),
            Err(422)
        );
    }

    #[test]
    fn kubelet_request_attributes_should_name_the_node_subresource_by_path() {
        let cases = [
            ("GET", "/stats/summary", "get", "stats"),
            ("GET", "/metrics", "get", "metrics"),
            ("GET", "/metrics/resource", "get", "metrics"),
            ("GET", "/logs/syslog", "get", "log"),
            ("GET", "/containerLogs/ns/p/c", "get", "proxy"),
            ("POST", "/exec/ns/p/c", "create", "proxy"),
            ("GET", "/healthz", "get", "proxy"),
            ("GET", "/statsx", "get", "proxy"),
        ];
        for (method, path, verb, sub) in cases {
            let a = crate::kubelet::request_attributes("n1", method, path);
            assert_eq!((a.verb.as_str(), a.subresource.as_str()), (verb, sub), "{method} {path}");
            assert_eq!(
                (a.resource.as_str(), a.name.as_str(), a.api_group.as_str()),
                ("nodes", "n1", "")
            );
        }
    }

    #[test]
    fn condition_summary_should_match_kubectl() {
        assert_eq!(condition_summary(&json!({})), "Pending");
        assert_eq!(
            condition_summary(
                &json!({"status": {"conditions": [{"type": "Denied", "status": "True"}]}})
            ),
            "Denied"
        );
        assert_eq!(
            condition_summary(
                &json!({"status": {"certificate": "eA==", "conditions": [{"type": "Approved", "status": "True"}, {"type": "Failed", "status": "True"}]}})
            ),
            "Approved,Failed,Issued"
        );
    }
}
