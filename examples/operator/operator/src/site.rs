//! The `StaticSite` custom resource (`staticsites.web.skiff.dev/v1alpha1`): a set of files
//! served by a Deployment of site-server pods behind a Service.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// The operator's field manager (server-side apply) and its `managed-by` label value.
pub const MANAGER: &str = "static-site-operator";
/// Held on every `StaticSite` until its children are gone.
pub const FINALIZER: &str = "web.skiff.dev/cleanup";
/// The condition `status.conditions` carries.
pub const READY: &str = "Ready";
/// Bounds of `spec.replicas` (the CRD's schema enforces them; the operator checks them too).
pub const MAX_REPLICAS: i32 = 10;

/// A static web site: `files` served at `http://<name>.<namespace>.svc.cluster.local/`.
// Each printcolumn repeats `type_ = "integer"`-like arguments, which clippy takes for
// duplicated attributes.
#[allow(clippy::duplicated_attributes)]
#[derive(CustomResource, Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[kube(
    group = "web.skiff.dev",
    version = "v1alpha1",
    kind = "StaticSite",
    namespaced,
    shortname = "site",
    status = "StaticSiteStatus",
    doc = "A static web site served by Wasm pods.",
    printcolumn(name = "Replicas", type_ = "integer", json_path = ".spec.replicas"),
    printcolumn(name = "Ready", type_ = "integer", json_path = ".status.readyReplicas"),
    printcolumn(name = "URL", type_ = "string", json_path = ".status.url"),
    printcolumn(name = "Age", type_ = "date", json_path = ".metadata.creationTimestamp")
)]
#[serde(rename_all = "camelCase")]
pub struct StaticSiteSpec {
    /// File name → content. `index.html` answers `/`; names are ConfigMap keys (letters,
    /// digits, `-`, `_`, `.`).
    pub files: BTreeMap<String, String>,
    /// How many pods serve the site.
    #[serde(default = "default_replicas")]
    #[schemars(range(min = 0, max = 10))]
    pub replicas: i32,
}

fn default_replicas() -> i32 {
    1
}

/// What the operator last saw of the site.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct StaticSiteStatus {
    /// Pods of the site's Deployment that are ready.
    #[serde(default)]
    pub ready_replicas: i32,
    /// Where the site answers inside the cluster.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// The `metadata.generation` this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// `Ready`: every wanted pod is ready.
    #[serde(default)]
    #[schemars(schema_with = "conditions_schema")]
    pub conditions: Vec<Condition>,
}

/// `metav1.Condition`s as a list-map keyed by `type` (so server-side apply merges by type).
fn conditions_schema(generator: &mut schemars::SchemaGenerator) -> schemars::Schema {
    let item = generator.subschema_for::<Condition>();
    schemars::json_schema!({
        "type": "array",
        "items": item,
        "x-kubernetes-list-type": "map",
        "x-kubernetes-list-map-keys": ["type"],
    })
}

#[cfg(test)]
mod tests {
    use kube::CustomResourceExt;

    use super::*;

    const CHART_CRD: &str = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../../charts/static-site-operator/crds/staticsites.yaml"
    );

    /// The chart installs the CRD from a file; it must be the one the types derive. With
    /// `UPDATE_CRD=1` the test rewrites the file instead.
    #[test]
    fn crd_in_chart_should_match_the_derived_crd() {
        let derived = serde_json::to_value(StaticSite::crd()).expect("crd as json");
        if std::env::var_os("UPDATE_CRD").is_some() {
            let yaml = serde_yaml_ng::to_string(&derived).expect("crd as yaml");
            let header = "# Generated from examples/operator/operator/src/site.rs: \
                          `UPDATE_CRD=1 cargo test` in examples/operator rewrites it.\n";
            std::fs::write(CHART_CRD, format!("{header}{yaml}")).expect("writing the chart's CRD");
        }
        let text = std::fs::read_to_string(CHART_CRD).expect("reading the chart's CRD");
        let in_chart: serde_json::Value = serde_yaml_ng::from_str(&text).expect("chart CRD yaml");
        assert_eq!(
            in_chart, derived,
            "{CHART_CRD} differs from StaticSite::crd(): run `UPDATE_CRD=1 cargo test`"
        );
    }

    #[test]
    fn crd_should_declare_names_status_columns_and_list_map_conditions() {
        let crd = serde_json::to_value(StaticSite::crd()).expect("crd as json");
        assert_eq!(crd["metadata"]["name"], "staticsites.web.skiff.dev");
        assert_eq!(crd["spec"]["scope"], "Namespaced");
        assert_eq!(crd["spec"]["names"]["shortNames"], serde_json::json!(["site"]));
        let version = &crd["spec"]["versions"][0];
        assert_eq!(version["name"], "v1alpha1");
        assert_eq!(version["subresources"]["status"], serde_json::json!({}));
        let columns: Vec<&str> = version["additionalPrinterColumns"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|c| c["name"].as_str())
            .collect();
        assert_eq!(columns, ["Replicas", "Ready", "URL", "Age"]);
        let schema = &version["schema"]["openAPIV3Schema"]["properties"];
        assert_eq!(schema["spec"]["required"], serde_json::json!(["files"]));
        let replicas = &schema["spec"]["properties"]["replicas"];
        assert_eq!(
            (&replicas["default"], &replicas["minimum"], &replicas["maximum"]),
            (&1.into(), &0.0.into(), &10.0.into())
        );
        let conditions = &schema["status"]["properties"]["conditions"];
        assert_eq!(conditions["x-kubernetes-list-type"], "map");
        assert_eq!(conditions["x-kubernetes-list-map-keys"], serde_json::json!(["type"]));
    }
}
