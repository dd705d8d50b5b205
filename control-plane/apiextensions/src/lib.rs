//! CustomResourceDefinitions as kube-apiserver's apiextensions-apiserver treats them, as pure
//! functions over JSON values: the structural schema of a version (parsed once), validation of
//! custom objects against it (kube-openapi's messages and field paths), pruning of unknown
//! fields, defaulting, list types and map keys, the CEL validation rules of
//! `x-kubernetes-validations`, and the CRD object's own validation and accepted names.

pub mod cel;
pub mod crd;
mod dns;
pub mod errors;
pub mod schema;

pub use errors::{ErrorType, FieldError};
