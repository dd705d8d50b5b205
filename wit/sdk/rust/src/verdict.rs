//! A policy's answer to one request, built with [`Verdict::allow`] or [`Verdict::deny`] and
//! turned into the world's `verdict` record by the SDK.

use crate::bindings;
use crate::patch::PatchOp;

/// Allowed or refused, with what goes along: a refusal's message and HTTP code, a JSON patch
/// for the object (applied only when allowed), warnings for the client and annotations for
/// the audit event.
#[derive(Debug, Clone, PartialEq)]
#[must_use]
pub struct Verdict {
    pub allowed: bool,
    /// Why the request is refused; shown to the user.
    pub message: String,
    /// HTTP code of a refusal; 0 means 403.
    pub code: u16,
    /// Changes to the object; empty for none.
    pub patch: Vec<PatchOp>,
    pub warnings: Vec<String>,
    pub audit_annotations: Vec<(String, String)>,
}

impl Verdict {
    /// Allows the request as it is.
    pub fn allow() -> Verdict {
        Verdict {
            allowed: true,
            message: String::new(),
            code: 0,
            patch: Vec::new(),
            warnings: Vec::new(),
            audit_annotations: Vec::new(),
        }
    }

    /// Refuses the request with `message` (and code 403 unless [`Verdict::with_code`]).
    pub fn deny(message: impl Into<String>) -> Verdict {
        Verdict { allowed: false, message: message.into(), ..Verdict::allow() }
    }

    /// Sets the HTTP code of a refusal (e.g. 422 for an invalid object).
    pub fn with_code(mut self, code: u16) -> Verdict {
        self.code = code;
        self
    }

    /// Adds a warning, shown by kubectl whether the request is allowed or not.
    pub fn with_warning(mut self, warning: impl Into<String>) -> Verdict {
        self.warnings.push(warning.into());
        self
    }

    /// Appends operations to the patch applied to the object (see [`crate::patch`]).
    pub fn with_patch(mut self, ops: impl IntoIterator<Item = PatchOp>) -> Verdict {
        self.patch.extend(ops);
        self
    }

    /// Adds an annotation to the request's audit event.
    pub fn with_audit_annotation(
        mut self,
        key: impl Into<String>,
        value: impl Into<String>,
    ) -> Verdict {
        self.audit_annotations.push((key.into(), value.into()));
        self
    }
}

impl From<Verdict> for bindings::Verdict {
    fn from(verdict: Verdict) -> bindings::Verdict {
        bindings::Verdict {
            allowed: verdict.allowed,
            message: verdict.message,
            code: verdict.code,
            patch: crate::patch::to_json(&verdict.patch),
            warnings: verdict.warnings,
            audit_annotations: verdict.audit_annotations,
        }
    }
}
