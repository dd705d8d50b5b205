//! `KubeSchedulerConfiguration` (kubescheduler.config.k8s.io/v1), the file
//! `skiff server --scheduler-config` reads: `percentageOfNodesToScore`, and `profiles` with
//! their `schedulerName`, plugins `disabled` at any extension point, and `pluginConfig` for
//! NodeResourcesFit (`scoringStrategy`, `ignoredResources`, `ignoredResourceGroups`) and
//! InterPodAffinity (`hardPodAffinityWeight`, `ignorePreferredTermsOfExistingPods`).

use serde_json::Value;

use crate::plugins::node_resources_fit::{
    ResourceSpec, ScoringStrategy, ScoringStrategyType, UtilizationShapePoint, default_resources,
};
use crate::profiles::ProfileConfig;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ConfigError {
    #[error(
        "kind must be KubeSchedulerConfiguration with apiVersion kubescheduler.config.k8s.io/v1, not {0}"
    )]
    Kind(String),
    #[error("{field}: {message}")]
    Invalid { field: String, message: String },
}

fn invalid(field: impl Into<String>, message: impl Into<String>) -> ConfigError {
    ConfigError::Invalid { field: field.into(), message: message.into() }
}

/// What the file sets: profiles (at least one) and the share of nodes to score.
#[derive(Debug, Clone)]
pub struct SchedulerConfig {
    pub profiles: Vec<ProfileConfig>,
    pub percentage_of_nodes_to_score: u32,
}

/// Parse a configuration already read as JSON/YAML.
pub fn parse(doc: &Value) -> Result<SchedulerConfig, ConfigError> {
    let api_version = doc["apiVersion"].as_str().unwrap_or("");
    let kind = doc["kind"].as_str().unwrap_or("");
    if kind != "KubeSchedulerConfiguration" || api_version != "kubescheduler.config.k8s.io/v1" {
        return Err(ConfigError::Kind(format!("{api_version}/{kind}")));
    }
    let percentage =
        match &doc["percentageOfNodesToScore"] {
            Value::Null => 0,
            v => v.as_u64().filter(|p| *p <= 100).and_then(|p| u32::try_from(p).ok()).ok_or_else(
                || invalid("percentageOfNodesToScore", "must be an integer in [0, 100]"),
            )?,
        };
    let mut profiles = Vec::new();
    let empty = Vec::new();
    let list = doc["profiles"].as_array().unwrap_or(&empty);
    for (i, p) in list.iter().enumerate() {
        let field = format!("profiles[{i}]");
        let name = p["schedulerName"].as_str().unwrap_or(crate::DEFAULT_SCHEDULER_NAME);
        if profiles.iter().any(|q: &ProfileConfig| q.scheduler_name == name) {
            return Err(invalid(
                format!("{field}.schedulerName"),
                format!("duplicate profile {name:?}"),
            ));
        }
        let mut profile = ProfileConfig::named(name);
        if let Some(points) = p["plugins"].as_object() {
            for set in points.values() {
                for d in set["disabled"].as_array().into_iter().flatten() {
                    if let Some(n) = d["name"].as_str() {
                        profile.disabled.push(n.to_string());
                    }
                }
                if let Some(enabled) = set["enabled"].as_array().filter(|e| !e.is_empty()) {
                    // Only the in-tree plugins exist; enabling one that is already on is fine.
                    for e in enabled {
                        let n = e["name"].as_str().unwrap_or("");
                        profile.disabled.retain(|d| d != n);
                    }
                }
            }
        }
        for (j, pc) in p["pluginConfig"].as_array().into_iter().flatten().enumerate() {
            let field = format!("{field}.pluginConfig[{j}]");
            let args = &pc["args"];
            match pc["name"].as_str().unwrap_or("") {
                "NodeResourcesFit" => {
                    if !args["scoringStrategy"].is_null() {
                        profile.fit.scoring_strategy = scoring_strategy(
                            &args["scoringStrategy"],
                            &format!("{field}.args.scoringStrategy"),
                        )?;
                    }
                    profile.fit.ignored_resources = strings(&args["ignoredResources"]);
                    profile.fit.ignored_resource_groups = strings(&args["ignoredResourceGroups"]);
                }
                "InterPodAffinity" => {
                    if let Some(w) = args["hardPodAffinityWeight"].as_i64() {
                        profile.inter_pod_affinity.hard_pod_affinity_weight = i32::try_from(w)
                            .map_err(|_| {
                                invalid(
                                    format!("{field}.args.hardPodAffinityWeight"),
                                    "out of range",
                                )
                            })?;
                    }
                    if let Some(b) = args["ignorePreferredTermsOfExistingPods"].as_bool() {
                        profile.inter_pod_affinity.ignore_preferred_terms_of_existing_pods = b;
                    }
                }
                other => {
                    return Err(invalid(
                        format!("{field}.name"),
                        format!("no arguments are accepted for plugin {other:?}"),
                    ));
                }
            }
        }
        profiles.push(profile);
    }
    if profiles.is_empty() {
        profiles.push(ProfileConfig::named(crate::DEFAULT_SCHEDULER_NAME));
    }
    Ok(SchedulerConfig { profiles, percentage_of_nodes_to_score: percentage })
}

fn strings(v: &Value) -> Vec<String> {
    v.as_array().into_iter().flatten().filter_map(|s| s.as_str().map(str::to_string)).collect()
}

fn scoring_strategy(v: &Value, field: &str) -> Result<ScoringStrategy, ConfigError> {
    let resources = match v["resources"].as_array() {
        None => default_resources(),
        Some(list) => list
            .iter()
            .map(|r| {
                ResourceSpec::new(
                    r["name"].as_str().unwrap_or(""),
                    r["weight"].as_i64().unwrap_or(1),
                )
            })
            .collect(),
    };
    let strategy = match v["type"].as_str().unwrap_or("LeastAllocated") {
        "LeastAllocated" => ScoringStrategyType::LeastAllocated,
        "MostAllocated" => ScoringStrategyType::MostAllocated,
        "RequestedToCapacityRatio" => {
            let shape = v["requestedToCapacityRatio"]["shape"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|p| UtilizationShapePoint {
                    utilization: p["utilization"]
                        .as_i64()
                        .and_then(|u| i32::try_from(u).ok())
                        .unwrap_or(-1),
                    score: p["score"].as_i64().and_then(|s| i32::try_from(s).ok()).unwrap_or(-1),
                })
                .collect();
            ScoringStrategyType::RequestedToCapacityRatio { shape }
        }
        other => {
            return Err(invalid(
                format!("{field}.type"),
                format!(
                    "Unsupported value: {other:?}: supported values: \"LeastAllocated\", \"MostAllocated\", \"RequestedToCapacityRatio\""
                ),
            ));
        }
    };
    Ok(ScoringStrategy { strategy, resources })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn parse_should_read_profiles_disabled_plugins_and_scoring_strategy() {
        let cfg = parse(&json!({
            "apiVersion": "kubescheduler.config.k8s.io/v1",
            "kind": "KubeSchedulerConfiguration",
            "percentageOfNodesToScore": 30,
            "profiles": [
                {"schedulerName": "default-scheduler"},
                {"schedulerName": "bin-packing",
                 "plugins": {"score": {"disabled": [{"name": "ImageLocality"}]}},
                 "pluginConfig": [{"name": "NodeResourcesFit", "args": {"scoringStrategy": {
                     "type": "MostAllocated", "resources": [{"name": "cpu", "weight": 3}]}}}]},
            ]
        }))
        .unwrap();
        assert_eq!(cfg.percentage_of_nodes_to_score, 30);
        assert_eq!(cfg.profiles.len(), 2);
        let bp = &cfg.profiles[1];
        assert_eq!(bp.scheduler_name, "bin-packing");
        assert_eq!(bp.disabled, ["ImageLocality"]);
        assert_eq!(bp.fit.scoring_strategy.strategy, ScoringStrategyType::MostAllocated);
        assert_eq!(bp.fit.scoring_strategy.resources, [ResourceSpec::new("cpu", 3)]);
    }

    #[test]
    fn parse_should_reject_wrong_kind_duplicates_and_unknown_strategy() {
        assert!(matches!(parse(&json!({"kind": "Pod"})), Err(ConfigError::Kind(_))));
        let base = |profiles: Value| json!({"apiVersion": "kubescheduler.config.k8s.io/v1", "kind": "KubeSchedulerConfiguration", "profiles": profiles});
        let dup =
            parse(&base(json!([{"schedulerName": "a"}, {"schedulerName": "a"}]))).unwrap_err();
        assert_eq!(dup.to_string(), "profiles[1].schedulerName: duplicate profile \"a\"");
        let bad = parse(&base(json!([{"pluginConfig": [{"name": "NodeResourcesFit", "args": {"scoringStrategy": {"type": "Random"}}}]}]))).unwrap_err();
        assert!(bad.to_string().contains("Unsupported value: \"Random\""), "{bad}");
    }
}
