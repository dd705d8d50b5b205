//! The CustomResourceDefinition object itself, as kube-apiserver's apiextensions-apiserver
//! treats it: its own validation on create and update
//! (`pkg/apis/apiextensions/validation/validation.go`), the names it is given among the
//! CRDs of its group (`pkg/controller/status/naming_controller.go`), the priority of its
//! versions (`version.CompareKubeAwareVersionStrings`), a typed view of what serving it
//! needs, and the JSONPath of its printer columns.

mod jsonpath;
mod names;
mod validation;
mod version;
mod view;

#[cfg(test)]
mod tests;

use serde_json::Value;

use crate::errors::FieldError;

pub use names::{NamesResult, accepted_names};
pub use version::compare_versions;
pub use view::{
    ClientConfig, Conversion, ConversionStrategy, CrdView, Names, PrinterColumn, Scale,
    ServiceReference, VersionView,
};

/// The CRD's own validation on create (`old` = None) and update, with kube's messages
/// (e.g. `metadata.name: Invalid value: "x": must be spec.names.plural+"."+spec.group`).
/// `crd` is the v1 object as written (v1's defaults are assumed where fields are missing);
/// the status is the server's: on create the stored versions are the storage version, on
/// update the old ones plus it, and the accepted names checked are the old ones.
/// Each version's schema is checked by [`crate::schema::structural_errors`] and its rules
/// by [`crate::cel::Rules::compile`] (only when the schema is structural).
pub fn validate_crd(crd: &Value, old: Option<&Value>) -> Vec<FieldError> {
    validation::validate(crd, old)
}

/// Every value the printer-column JSONPath `path` reaches in `obj` (`.spec.replicas`,
/// `.status.conditions[?(@.type=="Ready")].status`, `.spec.list[*].name`), in order;
/// empty when nothing is there (kube's columns allow missing keys); `None` when the path
/// does not parse.
pub fn evaluate_jsonpath(obj: &Value, path: &str) -> Option<Vec<Value>> {
    let steps = jsonpath::parse(path).ok()?;
    Some(jsonpath::evaluate(&steps, obj).into_iter().cloned().collect())
}
