//! `ResourceQuota`, as kube-apiserver's plugin: an object is charged to every quota of its
//! namespace that covers it, and refused when a charge would pass a quota's hard limit. The
//! charge is an update of the quota's `status.used`, conditional on the revision it was
//! computed from, that the handler commits in one transaction with the object: two creates
//! that race for the last unit cannot both win, and a create that fails charges nothing.
//! The quota controller recomputes `status.used` from what exists (deletions, pods that
//! finish).

use serde_json::Value;
use skiff_admission::quota;
use skiff_store::TxnOp;

use super::{Admitted, Operation, Request};
use crate::State;
use crate::errors::ApiError;

pub(super) async fn admit(
    state: &State,
    req: &Request<'_>,
    obj: &Value,
    out: &mut Admitted,
) -> Result<(), ApiError> {
    let old = if req.operation == Operation::Update { req.old } else { None };
    if req.namespace.is_empty()
        || !quota::handles(req.res.group, req.res.plural, req.subresource, obj, old)
    {
        return Ok(());
    }
    let fresh = req.attempt > 0;
    let quotas = super::list(state, "", "resourcequotas", Some(req.namespace), fresh).await?;
    if quotas.is_empty() {
        return Ok(());
    }
    let (values, revisions): (Vec<Value>, Vec<u64>) =
        quotas.into_iter().map(|q| (q.value, q.revision)).unzip();
    let charges = quota::charge_all(&values, &[], req.res.group, req.res.plural, obj, old)
        .map_err(|refusal| match refusal {
            quota::Refusal::Forbidden(why) => super::forbidden(req.res, req.name, &why),
            quota::Refusal::Unknown(why) => ApiError::internal(why),
        })?;
    if req.dry_run {
        return Ok(());
    }
    for ((mut charged, revision), used) in values.into_iter().zip(revisions).zip(charges) {
        let Some(used) = used else { continue };
        charged["status"]["used"] = used;
        if let Some(meta) = charged.get_mut("metadata").and_then(Value::as_object_mut) {
            meta.remove("resourceVersion");
        }
        let key = format!(
            "/registry/resourcequotas/{}/{}",
            req.namespace,
            charged.pointer("/metadata/name").and_then(Value::as_str).unwrap_or("")
        );
        out.ops.push(TxnOp::Update {
            key,
            value: skiff_api::gojson::to_vec(&charged),
            expected: Some(revision),
        });
    }
    Ok(())
}
