//! `LimitRanger`, as kube-apiserver's plugin: a new pod's containers get the default
//! requests and limits of their namespace's LimitRanges, and pods and PersistentVolumeClaims
//! must stay within the ranges' minimum, maximum and limit/request ratio.

use serde_json::Value;
use skiff_admission::limitranger;

use super::{Operation, Request};
use crate::State;
use crate::errors::ApiError;

/// The LimitRanges of the request's namespace.
async fn ranges(state: &State, req: &Request<'_>) -> Result<Vec<Value>, ApiError> {
    if req.namespace.is_empty() {
        return Ok(Vec::new());
    }
    let ranges = super::list(state, "", "limitranges", Some(req.namespace), false).await?;
    Ok(ranges.into_iter().map(|r| r.value).collect())
}

/// Defaults for a new pod; whether there were LimitRanges to take them from.
pub(super) async fn default_pod(
    state: &State,
    req: &Request<'_>,
    pod: &mut Value,
) -> Result<bool, ApiError> {
    let ranges = ranges(state, req).await?;
    if ranges.is_empty() {
        return Ok(false);
    }
    limitranger::default_pod(&ranges, pod);
    Ok(true)
}

/// Bounds: new pods, and PersistentVolumeClaims as they are created or resized.
pub(super) async fn validate(
    state: &State,
    req: &Request<'_>,
    obj: &Value,
) -> Result<(), ApiError> {
    let checked = req.subresource.is_empty()
        && req.res.group.is_empty()
        && match req.res.kind {
            "Pod" => req.operation == Operation::Create,
            "PersistentVolumeClaim" => {
                matches!(req.operation, Operation::Create | Operation::Update)
            }
            _ => false,
        };
    if !checked {
        return Ok(());
    }
    let ranges = ranges(state, req).await?;
    if ranges.is_empty() {
        return Ok(());
    }
    limitranger::validate(&ranges, req.res.kind, obj).map_err(|errors| {
        super::forbidden(req.res, req.name, &limitranger::forbidden_message(&errors))
    })
}
