//! kube's `library/authz.go`: the `authorizer` variable and the checks built from it
//! (`authorizer.group('apps').resource('deployments').namespace('ns').check('create')`,
//! `authorizer.path('/healthz').check('get')`, `authorizer.serviceAccount(ns, name)`), and
//! `authorizer.requestResource`, a check on the request's own resource.
//!
//! The checks carry a borrowed [`Authorizer`], so they cannot be downcast like the other
//! library values (downcasting needs `'static`); the library's functions reach them through
//! the one trait method a borrowed value offers, indexing, with a private key type naming
//! the method and its arguments.

use std::any::Any;

use cel::common::traits::Indexer;
use cel::common::types::{CelString, STRING_TYPE, Type};
use cel::common::value::{CowVal, StaticVal, Val};
use cel::{DeclarationError, Env, ExecutionError};
use serde_json::Value;

use super::library::{arg, boolean, fail, no_overload, str_arg, string};

/// What the api server's authorizer answers for expressions. Implementations must be
/// thread-safe; a check may be asked many times for one request (kube caches decisions
/// per request, which an implementation may do too).
pub trait Authorizer: Send + Sync {
    /// Whether the check is allowed, and the authorizer's reason.
    fn allowed(&self, check: &AuthzCheck) -> (bool, String);
}

/// One authorization question, as kube's `authorizer.AttributesRecord`: a resource check
/// (`path` is `None`) or a non-resource path check.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AuthzCheck {
    /// `None`: the requesting user; `Some`: the service account named with
    /// `authorizer.serviceAccount(ns, name)` (`system:serviceaccount:ns:name`).
    pub user: Option<String>,
    /// A non-resource request path (`/healthz`).
    pub path: Option<String>,
    pub group: String,
    pub resource: String,
    pub subresource: String,
    pub namespace: String,
    pub name: String,
    pub verb: String,
    pub field_selector: String,
    pub label_selector: String,
}

static AUTHORIZER_TYPE: Type = Type::new_unspecified_type("kubernetes.authorization.Authorizer");
static PATH_CHECK_TYPE: Type = Type::new_unspecified_type("kubernetes.authorization.PathCheck");
static GROUP_CHECK_TYPE: Type = Type::new_unspecified_type("kubernetes.authorization.GroupCheck");
static RESOURCE_CHECK_TYPE: Type =
    Type::new_unspecified_type("kubernetes.authorization.ResourceCheck");
static DECISION_TYPE: Type = Type::new_unspecified_type("kubernetes.authorization.Decision");
static METHOD_TYPE: Type = Type::new_unspecified_type("kubernetes.authorization.method");

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Stage {
    Authorizer,
    Path,
    Group,
    Resource,
}

/// An authorizer or a check being built, with the authorizer that will answer it.
#[derive(Clone)]
pub(crate) struct AuthzVal<'a> {
    handle: &'a dyn Authorizer,
    stage: Stage,
    check: AuthzCheck,
}

impl std::fmt::Debug for AuthzVal<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuthzVal").field("stage", &self.stage).field("check", &self.check).finish()
    }
}

pub(crate) fn authorizer(handle: &dyn Authorizer) -> AuthzVal<'_> {
    AuthzVal { handle, stage: Stage::Authorizer, check: AuthzCheck::default() }
}

/// `authorizer.requestResource`: the request's group, resource, subresource, namespace and
/// name, from the AdmissionRequest as CEL sees it.
pub(crate) fn request_resource<'a>(handle: &'a dyn Authorizer, request: &Value) -> AuthzVal<'a> {
    let text = |p: &str| request.pointer(p).and_then(Value::as_str).unwrap_or_default().to_string();
    AuthzVal {
        handle,
        stage: Stage::Resource,
        check: AuthzCheck {
            group: text("/resource/group"),
            resource: text("/resource/resource"),
            subresource: text("/subResource"),
            namespace: text("/namespace"),
            name: text("/name"),
            ..AuthzCheck::default()
        },
    }
}

impl<'a> Val for AuthzVal<'a> {
    fn get_type(&self) -> &Type {
        match self.stage {
            Stage::Authorizer => &AUTHORIZER_TYPE,
            Stage::Path => &PATH_CHECK_TYPE,
            Stage::Group => &GROUP_CHECK_TYPE,
            Stage::Resource => &RESOURCE_CHECK_TYPE,
        }
    }
    fn cel_type() -> &'static Type {
        &AUTHORIZER_TYPE
    }
    fn as_indexer<'b, 'v>(&'b self) -> Option<&'b (dyn Indexer + 'v)>
    where
        Self: 'v,
    {
        Some(self)
    }
    fn clone_as_boxed<'v>(&self) -> Box<dyn Val + 'v>
    where
        Self: 'v,
    {
        Box::new(self.clone())
    }
}

/// A method call on an [`AuthzVal`]: the method and its string arguments.
#[derive(Debug, Clone)]
struct Method {
    name: &'static str,
    args: Vec<String>,
}

impl Val for Method {
    fn get_type(&self) -> &Type {
        &METHOD_TYPE
    }
    fn cel_type() -> &'static Type {
        &METHOD_TYPE
    }
    fn clone_as_boxed<'v>(&self) -> Box<dyn Val + 'v> {
        Box::new(self.clone())
    }
    fn as_any(&self) -> Option<&dyn Any> {
        Some(self)
    }
}

impl StaticVal for Method {}

/// An authorization decision.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Decision {
    allowed: bool,
    reason: String,
}

impl Val for Decision {
    fn get_type(&self) -> &Type {
        &DECISION_TYPE
    }
    fn cel_type() -> &'static Type {
        &DECISION_TYPE
    }
    fn clone_as_boxed<'v>(&self) -> Box<dyn Val + 'v> {
        Box::new(self.clone())
    }
    fn as_any(&self) -> Option<&dyn Any> {
        Some(self)
    }
}

impl StaticVal for Decision {}

fn is_dns_label(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b.len() <= 63
        && b.iter().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-')
        && b[0] != b'-'
        && b[b.len() - 1] != b'-'
}

impl<'a> AuthzVal<'a> {
    fn call(&self, method: &Method) -> Result<Box<dyn Val + 'a>, String> {
        let arg = |i: usize| method.args.get(i).cloned().unwrap_or_default();
        let next = |stage: Stage, check: AuthzCheck| -> Result<Box<dyn Val + 'a>, String> {
            Ok(Box::new(AuthzVal { handle: self.handle, stage, check }))
        };
        let mut check = self.check.clone();
        match (self.stage, method.name) {
            (Stage::Authorizer, "path") => {
                if arg(0).trim().is_empty() {
                    return Err("path must not be empty".into());
                }
                check.path = Some(arg(0));
                next(Stage::Path, check)
            }
            (Stage::Authorizer, "group") => {
                check.group = arg(0);
                next(Stage::Group, check)
            }
            (Stage::Authorizer, "serviceAccount") => {
                let (namespace, name) = (arg(0), arg(1));
                if name.is_empty() || name.len() > 253 || !name.split('.').all(is_dns_label) {
                    return Err("Invalid service account name".into());
                }
                if !is_dns_label(&namespace) {
                    return Err("Invalid service account namespace".into());
                }
                check.user = Some(format!("system:serviceaccount:{namespace}:{name}"));
                next(Stage::Authorizer, check)
            }
            (Stage::Group, "resource") => {
                if arg(0).trim().is_empty() {
                    return Err("resource must not be empty".into());
                }
                check.resource = arg(0);
                next(Stage::Resource, check)
            }
            (
                Stage::Resource,
                field @ ("subresource" | "namespace" | "name" | "fieldSelector" | "labelSelector"),
            ) => {
                let slot = match field {
                    "subresource" => &mut check.subresource,
                    "namespace" => &mut check.namespace,
                    "name" => &mut check.name,
                    "fieldSelector" => &mut check.field_selector,
                    _ => &mut check.label_selector,
                };
                *slot = arg(0);
                next(Stage::Resource, check)
            }
            (Stage::Path | Stage::Resource, "check") => {
                check.verb = arg(0);
                if self.stage == Stage::Resource {
                    check.path = None;
                }
                super::cost::charge(AUTHZ_CHECK_COST)
                    .map_err(|_| super::cost::COST_EXCEEDED.to_string())?;
                let (allowed, reason) = self.handle.allowed(&check);
                Ok(Box::new(Decision { allowed, reason }))
            }
            _ => Err("no such overload".into()),
        }
    }
}

/// kube's estimate for one authorization check (`library.CostEstimator`).
const AUTHZ_CHECK_COST: u64 = 350_000;

impl<'a> Indexer for AuthzVal<'a> {
    fn get<'b, 'v>(&'b self, idx: &dyn Val) -> Result<CowVal<'b, 'v>, ExecutionError>
    where
        Self: 'v,
    {
        let Some(method) = idx.downcast_ref::<Method>() else {
            let key =
                idx.downcast_ref::<CelString>().map(|s| s.inner().to_string()).unwrap_or_default();
            return Err(ExecutionError::no_such_key(&key));
        };
        self.call(method).map(CowVal::Owned).map_err(|e| fail(method.name, e))
    }

    fn steal<'v>(self: Box<Self>, idx: &dyn Val) -> Result<Box<dyn Val + 'v>, ExecutionError>
    where
        Self: 'v,
    {
        self.get(idx).map(CowVal::into_owned)
    }
}

/// Calls `name` on the receiver (`args[0]`) with the remaining string arguments.
fn dispatch<'b, 'v>(
    name: &'static str,
    args: Vec<CowVal<'b, 'v>>,
) -> Result<CowVal<'b, 'v>, ExecutionError> {
    let receiver = arg(&args, 0)?;
    let strings = (1..args.len())
        .map(|i| str_arg(&args, i, name).map(str::to_string))
        .collect::<Result<Vec<_>, _>>()?;
    let method = Method { name, args: strings };
    let indexer = receiver.as_indexer().ok_or_else(|| no_overload(name, &args))?;
    let result = indexer.get(&method)?.into_owned();
    Ok(CowVal::Owned(result))
}

macro_rules! methods {
    ($($f:ident => $name:literal),* $(,)?) => {
        $(
            fn $f<'b, 'v>(args: Vec<CowVal<'b, 'v>>) -> Result<CowVal<'b, 'v>, ExecutionError> {
                dispatch($name, args)
            }
        )*
    };
}

methods! {
    path => "path",
    group => "group",
    service_account => "serviceAccount",
    resource => "resource",
    subresource => "subresource",
    namespace => "namespace",
    name => "name",
    field_selector => "fieldSelector",
    label_selector => "labelSelector",
    check => "check",
}

fn decision<'x>(
    args: &'x [CowVal<'_, '_>],
    function: &str,
) -> Result<&'x Decision, ExecutionError> {
    arg(args, 0)?.downcast_ref::<Decision>().ok_or_else(|| no_overload(function, args))
}

fn allowed<'b, 'v>(args: Vec<CowVal<'b, 'v>>) -> Result<CowVal<'b, 'v>, ExecutionError> {
    boolean(decision(&args, "allowed")?.allowed)
}

fn reason<'b, 'v>(args: Vec<CowVal<'b, 'v>>) -> Result<CowVal<'b, 'v>, ExecutionError> {
    string(decision(&args, "reason")?.reason.clone())
}

/// The [`Authorizer`] answers without errors, so a decision never errored.
fn errored<'b, 'v>(args: Vec<CowVal<'b, 'v>>) -> Result<CowVal<'b, 'v>, ExecutionError> {
    decision(&args, "errored")?;
    boolean(false)
}

fn error<'b, 'v>(args: Vec<CowVal<'b, 'v>>) -> Result<CowVal<'b, 'v>, ExecutionError> {
    decision(&args, "error")?;
    string(String::new())
}

pub(crate) fn register(env: &mut Env) -> Result<(), DeclarationError> {
    let a = || AUTHORIZER_TYPE.to_owned();
    let r = || RESOURCE_CHECK_TYPE.to_owned();
    let d = || DECISION_TYPE.to_owned();
    for t in [
        &AUTHORIZER_TYPE,
        &PATH_CHECK_TYPE,
        &GROUP_CHECK_TYPE,
        &RESOURCE_CHECK_TYPE,
        &DECISION_TYPE,
    ] {
        env.add_type(t.to_owned())?;
    }
    env.add_member_overload("path", "authorizer_path", a(), vec![STRING_TYPE], path)?;
    env.add_member_overload("group", "authorizer_group", a(), vec![STRING_TYPE], group)?;
    env.add_member_overload(
        "serviceAccount",
        "authorizer_serviceaccount",
        a(),
        vec![STRING_TYPE, STRING_TYPE],
        service_account,
    )?;
    env.add_member_overload(
        "resource",
        "groupcheck_resource",
        GROUP_CHECK_TYPE.to_owned(),
        vec![STRING_TYPE],
        resource,
    )?;
    env.add_member_overload(
        "subresource",
        "resourcecheck_subresource",
        r(),
        vec![STRING_TYPE],
        subresource,
    )?;
    env.add_member_overload(
        "namespace",
        "resourcecheck_namespace",
        r(),
        vec![STRING_TYPE],
        namespace,
    )?;
    env.add_member_overload("name", "resourcecheck_name", r(), vec![STRING_TYPE], name)?;
    env.add_member_overload(
        "fieldSelector",
        "authorizer_fieldselector",
        r(),
        vec![STRING_TYPE],
        field_selector,
    )?;
    env.add_member_overload(
        "labelSelector",
        "authorizer_labelselector",
        r(),
        vec![STRING_TYPE],
        label_selector,
    )?;
    env.add_member_overload(
        "check",
        "pathcheck_check",
        PATH_CHECK_TYPE.to_owned(),
        vec![STRING_TYPE],
        check,
    )?;
    env.add_member_overload("check", "resourcecheck_check", r(), vec![STRING_TYPE], check)?;
    env.add_member_overload("allowed", "decision_allowed", d(), vec![], allowed)?;
    env.add_member_overload("reason", "decision_reason", d(), vec![], reason)?;
    env.add_member_overload("errored", "decision_errored", d(), vec![], errored)?;
    env.add_member_overload("error", "decision_error", d(), vec![], error)?;
    Ok(())
}
