//! ImageLocality: favor nodes that already hold the pod's images, by their size, scaled
//! down by how many nodes have them (so one popular image does not pull every pod onto
//! the same few nodes).
//!
//! Nodes report images under the names their runtime knows them by: containerd fully
//! qualified (`docker.io/library/nginx:latest`, plus `…@sha256:` digests), Skiff's Wasm
//! store in Docker's short form (`nginx:latest`, `foo/bar:v1`). A pod's image is looked up
//! under Kubernetes' normalized name first, then under the other spelling.

use std::sync::Arc;

use crate::framework::{CycleState, MAX_NODE_SCORE, Plugin, PreScorePlugin, ScorePlugin, Status};
use crate::plugins::helper::missing_state;
use crate::snapshot::Snapshot;
use crate::types::{NodeInfo, PodInfo};

pub const NAME: &str = "ImageLocality";

const PRE_SCORE_KEY: &str = "PreScoreImageLocality";

const MB: i64 = 1024 * 1024;
/// Bounds of the per-container image size range Kubernetes scores over (most images on
/// Docker Hub fall in it).
const MIN_THRESHOLD: i64 = 23 * MB;
const MAX_CONTAINER_THRESHOLD: i64 = 1000 * MB;

#[derive(Debug, Default)]
pub struct ImageLocality;

/// Computed once per pod: for each container image that some node has, the names it may
/// be found under with the number of nodes reporting each name; and the counts the score
/// is scaled by.
#[derive(Debug, Clone)]
struct PreScoreState {
    images: Arc<[Vec<(String, usize)>]>,
    total_nodes: usize,
    num_containers: usize,
}

/// Kubernetes' `normalizedImageName`: `:latest` when the name has neither tag nor digest
/// (a `:` after the last `/`; a registry port does not count).
pub fn normalized_image_name(name: &str) -> String {
    let last_colon = name.rfind(':');
    let last_slash = name.rfind('/');
    if last_colon.is_none() || last_colon < last_slash {
        format!("{name}:latest")
    } else {
        name.to_string()
    }
}

/// The names a node may report `image` under, most likely first: the normalized name,
/// then the same with Docker Hub's implicit registry spelled out (as containerd reports
/// it) or taken away (as Skiff's Wasm store reports it).
pub fn image_name_candidates(image: &str) -> Vec<String> {
    let normalized = normalized_image_name(image);
    let domain = normalized
        .split_once('/')
        .map(|(first, _)| first)
        .filter(|first| first.contains('.') || first.contains(':') || *first == "localhost");
    let other = match domain {
        None if normalized.contains('/') => Some(format!("docker.io/{normalized}")),
        None => Some(format!("docker.io/library/{normalized}")),
        Some("docker.io") => {
            let rest = &normalized["docker.io/".len()..];
            Some(
                rest.strip_prefix("library/")
                    .filter(|r| !r.contains('/'))
                    .unwrap_or(rest)
                    .to_string(),
            )
        }
        Some(_) => None,
    };
    let mut names = vec![normalized];
    names.extend(other.filter(|o| *o != names[0]));
    names
}

/// Kubernetes' `calculatePriority`: the summed scaled sizes mapped from
/// [23 MiB, 1000 MiB × containers] onto 0..=MAX_NODE_SCORE.
fn calculate_priority(sum: i64, num_containers: usize) -> i64 {
    let max_threshold = MAX_CONTAINER_THRESHOLD * num_containers as i64;
    if max_threshold <= MIN_THRESHOLD {
        return 0;
    }
    let sum = sum.clamp(MIN_THRESHOLD, max_threshold);
    MAX_NODE_SCORE * (sum - MIN_THRESHOLD) / (max_threshold - MIN_THRESHOLD)
}

impl Plugin for ImageLocality {
    fn name(&self) -> &'static str {
        NAME
    }
}

impl PreScorePlugin for ImageLocality {
    fn pre_score(
        &self,
        state: &mut CycleState,
        pod: &PodInfo,
        _nodes: &[Arc<NodeInfo>],
        snapshot: &Snapshot,
    ) -> Status {
        let Some(spec) = pod.pod.spec.as_ref() else { return Status::skip() };
        let containers = spec.init_containers.iter().flatten().chain(spec.containers.iter());
        let mut num_containers = 0;
        let mut images = Vec::new();
        for c in containers {
            num_containers += 1;
            let Some(image) = c.image.as_deref() else { continue };
            let known: Vec<(String, usize)> = image_name_candidates(image)
                .into_iter()
                .filter_map(|name| snapshot.image_nodes.get(&name).map(|&n| (name, n)))
                .collect();
            if !known.is_empty() {
                images.push(known);
            }
        }
        // No node has any of the images: every node would score 0.
        if images.is_empty() || snapshot.is_empty() {
            return Status::skip();
        }
        state.write(
            PRE_SCORE_KEY,
            PreScoreState { images: images.into(), total_nodes: snapshot.len(), num_containers },
        );
        Status::success()
    }
}

impl ScorePlugin for ImageLocality {
    fn score(&self, state: &CycleState, _pod: &PodInfo, node: &NodeInfo) -> (i64, Status) {
        let Some(s) = state.read::<PreScoreState>(PRE_SCORE_KEY) else {
            return (0, missing_state(PRE_SCORE_KEY));
        };
        let mut sum = 0i64;
        for names in s.images.iter() {
            // One image reported under several names counts once.
            if let Some((image, spread)) =
                names.iter().find_map(|(name, n)| node.image_states.get(name).map(|st| (st, *n)))
            {
                // Kubernetes' `scaledImageScore`.
                sum += (image.size as f64 * (spread as f64 / s.total_nodes as f64)) as i64;
            }
        }
        (calculate_priority(sum, s.num_containers), Status::success())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::framework::Code;
    use crate::types::testing::*;
    use k8s_openapi::api::core::v1::{Container, ContainerImage, Pod};

    fn image_node(name: &str, images: &[(&[&str], i64)]) -> NodeInfo {
        let mut n = node(name, &[]);
        n.status.as_mut().unwrap().images = Some(
            images
                .iter()
                .map(|(names, size)| ContainerImage {
                    names: Some(names.iter().map(|s| s.to_string()).collect()),
                    size_bytes: Some(*size),
                })
                .collect(),
        );
        node_info(n, vec![])
    }

    fn image_pod(init: &[&str], containers: &[&str]) -> Pod {
        let c = |image: &&str| Container {
            name: "c".into(),
            image: Some(image.to_string()),
            ..Default::default()
        };
        let mut p = pod("p", &[]);
        let spec = p.spec.as_mut().unwrap();
        spec.containers = containers.iter().map(c).collect();
        spec.init_containers = (!init.is_empty()).then(|| init.iter().map(c).collect());
        p
    }

    /// Scores, or `None` when pre-score skips.
    type Scores = Option<Vec<i64>>;

    fn run(p: Pod, nodes: Vec<NodeInfo>) -> Scores {
        let snapshot = Snapshot::from_nodes(nodes);
        let pod = pod_info(p);
        let mut state = CycleState::default();
        let status = ImageLocality.pre_score(&mut state, &pod, &snapshot.nodes, &snapshot);
        if status.is_skip() {
            return None;
        }
        assert!(status.is_success(), "{status:?}");
        Some(
            snapshot
                .nodes
                .iter()
                .map(|n| {
                    let (score, status) = ImageLocality.score(&state, &pod, n);
                    assert!(status.is_success());
                    score
                })
                .collect(),
        )
    }

    fn node_40_300_2000() -> NodeInfo {
        image_node(
            "machine1",
            &[
                (&["gcr.io/40:latest", "gcr.io/40:v1", "gcr.io/40:v1"], 40 * MB),
                (&["gcr.io/300:latest", "gcr.io/300:v1"], 300 * MB),
                (&["gcr.io/2000:latest"], 2000 * MB),
            ],
        )
    }

    fn node_250_10() -> NodeInfo {
        image_node(
            "machine2",
            &[(&["gcr.io/250:latest"], 250 * MB), (&["gcr.io/10:latest", "gcr.io/10:v1"], 10 * MB)],
        )
    }

    #[test]
    fn image_locality_should_favor_nodes_holding_large_images() {
        // (name, pod, nodes, want; None = pre-score skips)
        let cases: Vec<(&str, Pod, Vec<NodeInfo>, Scores)> = vec![
            (
                // machine1: 40M/2 < 23M → 0; machine2: 100 * (250M/2 - 23M) / (2000M - 23M) = 5.
                "two images spread on two nodes, prefer the larger image one",
                image_pod(&[], &["gcr.io/40", "gcr.io/250"]),
                vec![node_40_300_2000(), node_250_10()],
                Some(vec![0, 5]),
            ),
            (
                // machine1: 100 * ((40M + 300M)/2 - 23M) / (2000M - 23M) = 7.
                "two images on one node, prefer this node",
                image_pod(&[], &["gcr.io/40", "gcr.io/300"]),
                vec![node_40_300_2000(), node_250_10()],
                Some(vec![7, 0]),
            ),
            (
                // machine1: 100 * (2000M/2 - 23M) / (2000M - 23M) = 49; machine2: 10M/2 < 23M.
                "if exceed limit, use limit",
                image_pod(&[], &["gcr.io/2000", "gcr.io/10"]),
                vec![node_40_300_2000(), node_250_10()],
                Some(vec![49, 0]),
            ),
            (
                // machine1: 100 * (2000M/3 - 23M) / (2000M - 23M) = 32.
                "if exceed limit, use limit (with node which has no images present)",
                image_pod(&[], &["gcr.io/2000", "gcr.io/10"]),
                vec![node_40_300_2000(), node_250_10(), image_node("machine3", &[])],
                Some(vec![32, 0, 0]),
            ),
            (
                "init containers count too",
                image_pod(&["gcr.io/300"], &["gcr.io/40"]),
                vec![node_40_300_2000(), node_250_10()],
                Some(vec![7, 0]),
            ),
            (
                "no node has any of the images",
                image_pod(&[], &["gcr.io/missing"]),
                vec![node_40_300_2000(), node_250_10()],
                None,
            ),
        ];
        for (name, p, nodes, want) in cases {
            assert_eq!(run(p, nodes), want, "{name}");
        }
    }

    #[test]
    fn image_locality_should_match_names_as_each_runtime_reports_them() {
        let containerd = || {
            image_node(
                "containerd",
                &[(
                    &["docker.io/library/nginx:latest", "docker.io/library/nginx@sha256:abc"],
                    500 * MB,
                )],
            )
        };
        let wasm =
            || image_node("wasm", &[(&["nginx:latest"], 500 * MB), (&["foo/app:v1"], 500 * MB)]);
        // Each name is on one of two nodes: 100 * (500M/2 - 23M) / (1000M - 23M) = 23.
        let cases: &[(&str, &str, [i64; 2])] = &[
            ("short name", "nginx", [23, 23]),
            ("fully qualified name", "docker.io/library/nginx", [23, 23]),
            ("digest", "nginx@sha256:abc", [23, 0]),
            ("docker.io user image", "docker.io/foo/app:v1", [0, 23]),
        ];
        for (name, image, want) in cases {
            let got = run(image_pod(&[], &[image]), vec![containerd(), wasm()]);
            assert_eq!(got, Some(want.to_vec()), "{name}");
        }
    }

    #[test]
    fn image_name_candidates_should_normalize_like_kubernetes_then_try_docker_hub_spellings() {
        let digest = "sha256:4813494d137e1631bba301d5acab6e7bb7aa74ce1185d456565ef51d737677b2";
        let cases: Vec<(&str, String, Vec<String>)> = vec![
            (
                "add :latest postfix 1",
                "root".into(),
                vec!["root:latest".into(), "docker.io/library/root:latest".into()],
            ),
            (
                "add :latest postfix 2",
                "gcr.io:5000/root".into(),
                vec!["gcr.io:5000/root:latest".into()],
            ),
            (
                "keep it as is 1",
                "root:tag".into(),
                vec!["root:tag".into(), "docker.io/library/root:tag".into()],
            ),
            (
                "keep it as is 2",
                format!("root@{digest}"),
                vec![format!("root@{digest}"), format!("docker.io/library/root@{digest}")],
            ),
            (
                "docker hub user image",
                "library/nginx".into(),
                vec!["library/nginx:latest".into(), "docker.io/library/nginx:latest".into()],
            ),
            (
                "fully qualified official image",
                "docker.io/library/nginx:1.25".into(),
                vec!["docker.io/library/nginx:1.25".into(), "nginx:1.25".into()],
            ),
            (
                "fully qualified user image",
                "docker.io/foo/bar".into(),
                vec!["docker.io/foo/bar:latest".into(), "foo/bar:latest".into()],
            ),
            ("localhost registry", "localhost/app".into(), vec!["localhost/app:latest".into()]),
            ("other registry", "ghcr.io/a/b:v1".into(), vec!["ghcr.io/a/b:v1".into()]),
        ];
        for (name, image, want) in cases {
            assert_eq!(image_name_candidates(&image), want, "{name}");
        }
    }

    #[test]
    fn image_locality_score_should_error_without_pre_score_state() {
        let (_, status) = ImageLocality.score(
            &CycleState::default(),
            &pod_info(image_pod(&[], &["a"])),
            &node_250_10(),
        );
        assert_eq!(status.code, Code::Error);
    }
}
