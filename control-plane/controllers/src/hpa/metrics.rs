//! Reading the metrics an HPA names, through the API as kube's HPA controller does: the
//! resource metrics API (`metrics.k8s.io`) for Resource and ContainerResource metrics, the
//! custom metrics API for Pods and Object metrics, the external metrics API for External
//! ones. Values are in milli-units, as kube's replica calculator takes them.

use std::collections::HashMap;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde_json::Value;

use super::replicas::Sample;

/// `GET path?query` through the API, as JSON; a failure is said as a person would read it.
async fn get(client: &kube::Client, path: &str, query: &[(&str, &str)]) -> Result<Value, String> {
    let mut uri = path.to_string();
    let q: Vec<String> = query
        .iter()
        .filter(|(_, v)| !v.is_empty())
        .map(|(k, v)| format!("{k}={}", encode(v)))
        .collect();
    if !q.is_empty() {
        uri.push('?');
        uri.push_str(&q.join("&"));
    }
    let req = http::Request::get(&uri).body(Vec::new()).map_err(|e| e.to_string())?;
    client.request::<Value>(req).await.map_err(|e| match e {
        kube::Error::Api(s) => s.message,
        e => e.to_string(),
    })
}

/// Percent-encoding for a query value (selectors carry `=`, `,`, `!`, spaces, parentheses).
fn encode(v: &str) -> String {
    let mut out = String::new();
    for b in v.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                out.push(b as char)
            }
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

fn time(v: &Value) -> DateTime<Utc> {
    v.as_str()
        .and_then(|t| DateTime::parse_from_rfc3339(t).ok())
        .map_or_else(Utc::now, |t| t.with_timezone(&Utc))
}

/// A Go duration as the metrics API writes a window (`15s`, `1.004s`).
fn window(v: &Value) -> Duration {
    v.as_str()
        .and_then(|w| w.strip_suffix('s'))
        .and_then(|w| w.parse::<f64>().ok())
        .map_or(Duration::from_secs(15), Duration::from_secs_f64)
}

fn milli(q: &Value) -> Option<i64> {
    super::quantity_milli(q.as_str()?)
}

/// Each pod's use of `resource` (summed over its containers, or one `container`'s), from
/// `metrics.k8s.io` for the pods `selector` picks.
pub async fn resource(
    client: &kube::Client,
    ns: &str,
    selector: &str,
    resource: &str,
    container: Option<&str>,
) -> Result<HashMap<String, Sample>, String> {
    let path = format!("/apis/metrics.k8s.io/v1beta1/namespaces/{ns}/pods");
    let list = get(client, &path, &[("labelSelector", selector)])
        .await
        .map_err(|e| format!("unable to get metrics for resource {resource}: unable to fetch metrics from resource metrics API: {e}"))?;
    let mut out = HashMap::new();
    for item in list["items"].as_array().into_iter().flatten() {
        let Some(name) = item.pointer("/metadata/name").and_then(Value::as_str) else { continue };
        let mut sum = 0;
        let mut found = false;
        for c in item["containers"].as_array().into_iter().flatten() {
            if container.is_some_and(|want| c["name"].as_str() != Some(want)) {
                continue;
            }
            if let Some(v) = milli(&c["usage"][resource]) {
                sum += v;
                found = true;
            }
        }
        if found {
            out.insert(
                name.to_string(),
                Sample {
                    value: sum,
                    timestamp: time(&item["timestamp"]),
                    window: window(&item["window"]),
                },
            );
        }
    }
    if out.is_empty() {
        return Err(format!(
            "unable to get metrics for resource {resource}: no metrics returned from resource metrics API"
        ));
    }
    Ok(out)
}

/// Each pod's value of the custom metric `metric`.
pub async fn pods(
    client: &kube::Client,
    ns: &str,
    selector: &str,
    metric: &str,
    metric_selector: &str,
) -> Result<HashMap<String, Sample>, String> {
    let path = format!("/apis/custom.metrics.k8s.io/v1beta2/namespaces/{ns}/pods/*/{metric}");
    let list = get(
        client,
        &path,
        &[("labelSelector", selector), ("metricLabelSelector", metric_selector)],
    )
    .await
    .map_err(|e| {
        format!(
            "unable to get metric {metric}: unable to fetch metrics from custom metrics API: {e}"
        )
    })?;
    let mut out = HashMap::new();
    for item in list["items"].as_array().into_iter().flatten() {
        let (Some(name), Some(v)) =
            (item.pointer("/describedObject/name").and_then(Value::as_str), milli(&item["value"]))
        else {
            continue;
        };
        let w = item["windowSeconds"].as_u64().unwrap_or(60);
        out.insert(
            name.to_string(),
            Sample {
                value: v,
                timestamp: time(&item["timestamp"]),
                window: Duration::from_secs(w),
            },
        );
    }
    if out.is_empty() {
        return Err(format!(
            "unable to get metric {metric}: no metrics returned from custom metrics API"
        ));
    }
    Ok(out)
}

/// The custom metric `metric` of one object (`plural`/`name` in `ns`).
pub async fn object(
    client: &kube::Client,
    ns: &str,
    plural: &str,
    name: &str,
    metric: &str,
    metric_selector: &str,
) -> Result<(i64, DateTime<Utc>), String> {
    let path =
        format!("/apis/custom.metrics.k8s.io/v1beta2/namespaces/{ns}/{plural}/{name}/{metric}");
    let list = get(client, &path, &[("metricLabelSelector", metric_selector)])
        .await
        .map_err(|e| format!("unable to get metric {metric}: {plural} {ns}/{name}: unable to fetch metrics from custom metrics API: {e}"))?;
    let item = list["items"].as_array().and_then(|a| a.first()).ok_or_else(|| {
        format!("unable to get metric {metric}: no metrics returned from custom metrics API")
    })?;
    let v = milli(&item["value"])
        .ok_or_else(|| format!("unable to read the value of metric {metric}"))?;
    Ok((v, time(&item["timestamp"])))
}

/// The sum of the external metric `metric`'s values that `selector` picks.
pub async fn external(
    client: &kube::Client,
    ns: &str,
    metric: &str,
    selector: &str,
) -> Result<(i64, DateTime<Utc>), String> {
    let path = format!("/apis/external.metrics.k8s.io/v1beta1/namespaces/{ns}/{metric}");
    let list = get(client, &path, &[("labelSelector", selector)])
        .await
        .map_err(|e| format!("unable to get external metric {ns}/{metric}/{selector}: unable to fetch metrics from external metrics API: {e}"))?;
    let items: Vec<&Value> = list["items"].as_array().into_iter().flatten().collect();
    if items.is_empty() {
        return Err(format!(
            "unable to get external metric {ns}/{metric}/{selector}: no metrics returned from external metrics API"
        ));
    }
    let sum = items.iter().filter_map(|i| milli(&i["value"])).sum();
    let ts = items.iter().map(|i| time(&i["timestamp"])).min().unwrap_or_else(Utc::now);
    Ok((sum, ts))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encode_should_escape_selector_characters() {
        assert_eq!(encode("app=web,tier in (a,b)"), "app%3Dweb%2Ctier%20in%20%28a%2Cb%29");
    }

    #[test]
    fn window_and_milli_should_read_the_metrics_api_forms() {
        assert_eq!(window(&Value::from("1.5s")), Duration::from_millis(1500));
        assert_eq!(milli(&Value::from("250000000n")), Some(250));
        assert_eq!(milli(&Value::from("12Ki")), Some(12 * 1024 * 1000));
        assert_eq!(milli(&Value::from("1500m")), Some(1500));
    }
}
