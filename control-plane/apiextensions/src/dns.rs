//! apimachinery's name checks with its messages, for the CRD's names and embedded objects'
//! metadata: skiff-admission's (its CEL `format` library has them), and kube's newer
//! "must not contain dots" for a label that is a subdomain.

pub(crate) use skiff_admission::cel::{dns1035_label, dns1123_subdomain};

/// apimachinery's `IsDNS1123Label`: a name made of labels joined by dots says so.
pub(crate) fn dns1123_label(s: &str) -> Vec<String> {
    let mut errs = skiff_admission::cel::dns1123_label(s);
    let dotted = s.contains('.')
        && s.split('.').all(|part| skiff_admission::cel::dns1123_label(part).is_empty());
    if dotted && let Some(last) = errs.last_mut() {
        *last = "must not contain dots".to_string();
    }
    errs
}
