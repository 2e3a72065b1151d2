//! The `kubernetes` actuator: one Deployment.
//!
//! | operation | request |
//! | --- | --- |
//! | current replicas | `GET /apis/apps/v1/namespaces/{ns}/deployments/{name}/scale` → `spec.replicas` |
//! | scale | `PATCH .../deployments/{name}/scale`, `application/merge-patch+json`, `{"spec":{"replicas":N}}` |
//! | rollout restart | `PATCH .../deployments/{name}`, `application/strategic-merge-patch+json`, the pod template annotation `kubectl.kubernetes.io/restartedAt` = now (RFC 3339), as `kubectl rollout restart` |
//! | restart one pod | `GET` the scale (its `status.selector`), `GET /api/v1/namespaces/{ns}/pods/{pod}`, check the pod's labels match the selector, then `DELETE` it with a `preconditions.uid` so only that very pod goes |

use super::{KubeClient, KubeError, rfc3339_seconds};
use crate::remediate::Clock;
use crate::remediate::actuator::{ActionOutcome, Actuator, ActuatorError, BoxFuture};
use crate::remediate::config::valid_dns_subdomain;
use reqwest::Method;
use serde::Deserialize;
use std::collections::BTreeMap;
use std::sync::Arc;

/// The `kubernetes` actuator (see the module docs).
#[derive(Debug, Clone)]
pub struct DeploymentActuator {
    client: KubeClient,
    namespace: String,
    name: String,
    clock: Arc<dyn Clock>,
}

#[derive(Debug, Deserialize)]
struct Scale {
    #[serde(default)]
    spec: ScaleSpec,
    #[serde(default)]
    status: ScaleStatus,
}

#[derive(Debug, Default, Deserialize)]
struct ScaleSpec {
    #[serde(default)]
    replicas: i64,
}

#[derive(Debug, Default, Deserialize)]
struct ScaleStatus {
    #[serde(default)]
    replicas: i64,
    #[serde(default)]
    selector: String,
}

#[derive(Debug, Deserialize)]
struct Pod {
    metadata: PodMeta,
}

#[derive(Debug, Deserialize)]
struct PodMeta {
    #[serde(default)]
    uid: String,
    #[serde(default)]
    labels: BTreeMap<String, String>,
}

fn err(e: KubeError) -> ActuatorError {
    ActuatorError::new(e.to_string())
}

impl DeploymentActuator {
    /// Acts on Deployment `name` in `namespace` through `client`.
    pub fn new(client: KubeClient, namespace: &str, name: &str, clock: Arc<dyn Clock>) -> DeploymentActuator {
        DeploymentActuator { client, namespace: namespace.to_string(), name: name.to_string(), clock }
    }

    fn deployment_path(&self) -> String {
        format!("/apis/apps/v1/namespaces/{}/deployments/{}", self.namespace, self.name)
    }

    async fn scale(&self) -> Result<Scale, KubeError> {
        self.client.request_json(Method::GET, &format!("{}/scale", self.deployment_path()), None, None).await
    }

    async fn delete_pod(&self, pod: &str) -> Result<ActionOutcome, ActuatorError> {
        if !valid_dns_subdomain(pod) {
            return Err(ActuatorError::new("instance is not a valid pod name"));
        }
        let selector = self.scale().await.map_err(err)?.status.selector;
        let wanted = parse_selector(&selector).ok_or_else(|| {
            ActuatorError::new(format!(
                "deployment {} uses a set-based selector; refusing to guess whether the pod belongs to it",
                self.name
            ))
        })?;
        let pod_path = format!("/api/v1/namespaces/{}/pods/{pod}", self.namespace);
        let p: Pod = self.client.request_json(Method::GET, &pod_path, None, None).await.map_err(err)?;
        if wanted.is_empty() || !wanted.iter().all(|(k, v)| p.metadata.labels.get(k) == Some(v)) {
            return Err(ActuatorError::new(format!("pod {pod} does not belong to deployment {}", self.name)));
        }
        let body = serde_json::json!({
            "apiVersion": "v1",
            "kind": "DeleteOptions",
            "preconditions": {"uid": p.metadata.uid},
        });
        self.client
            .request(Method::DELETE, &pod_path, Some("application/json"), Some(body.to_string().into_bytes()))
            .await
            .map_err(err)?;
        Ok(ActionOutcome { detail: Some(format!("deleted pod {pod} of deployment {}", self.name)) })
    }
}

/// `k=v,k2==v2` (the form `metav1.FormatLabelSelector` gives `matchLabels`) as pairs;
/// None for set-based expressions.
fn parse_selector(s: &str) -> Option<Vec<(String, String)>> {
    s.split(',')
        .filter(|p| !p.trim().is_empty())
        .map(|p| {
            let (k, v) = p.split_once("==").or_else(|| p.split_once('='))?;
            let (k, v) = (k.trim(), v.trim());
            if k.is_empty() || k.ends_with('!') || k.contains([' ', '(']) || v.contains([' ', '(']) {
                return None;
            }
            Some((k.to_string(), v.to_string()))
        })
        .collect()
}

impl Actuator for DeploymentActuator {
    fn kind(&self) -> &'static str {
        "kubernetes"
    }

    fn current_replicas(&self) -> BoxFuture<'_, Result<i64, ActuatorError>> {
        Box::pin(async move { Ok(self.scale().await.map_err(err)?.spec.replicas) })
    }

    fn scale_to(&self, replicas: i64) -> BoxFuture<'_, Result<ActionOutcome, ActuatorError>> {
        Box::pin(async move {
            let body = serde_json::json!({"spec": {"replicas": replicas}});
            let s: Scale = self
                .client
                .request_json(
                    Method::PATCH,
                    &format!("{}/scale", self.deployment_path()),
                    Some("application/merge-patch+json"),
                    Some(body.to_string().into_bytes()),
                )
                .await
                .map_err(err)?;
            if s.spec.replicas != replicas {
                return Err(ActuatorError::new(format!(
                    "scale of deployment {} answered spec.replicas {} instead of {replicas}",
                    self.name, s.spec.replicas
                )));
            }
            Ok(ActionOutcome {
                detail: Some(format!(
                    "deployment {} spec.replicas {replicas} (status.replicas {})",
                    self.name, s.status.replicas
                )),
            })
        })
    }

    fn restart(&self, instance: Option<String>) -> BoxFuture<'_, Result<ActionOutcome, ActuatorError>> {
        Box::pin(async move {
            if let Some(pod) = instance {
                return self.delete_pod(&pod).await;
            }
            let at = rfc3339_seconds(self.clock.now_ms());
            let body = serde_json::json!({
                "spec": {"template": {"metadata": {"annotations": {"kubectl.kubernetes.io/restartedAt": at}}}}
            });
            self.client
                .request(
                    Method::PATCH,
                    &self.deployment_path(),
                    Some("application/strategic-merge-patch+json"),
                    Some(body.to_string().into_bytes()),
                )
                .await
                .map_err(err)?;
            Ok(ActionOutcome { detail: Some(format!("rollout restart of deployment {} at {at}", self.name)) })
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn selectors() {
        let p = |s: &str| parse_selector(s);
        assert_eq!(p("app=web"), Some(vec![("app".into(), "web".into())]));
        assert_eq!(p("app==web, tier=fe"), Some(vec![("app".into(), "web".into()), ("tier".into(), "fe".into())]));
        assert_eq!(p("app in (web,api)"), None);
        assert_eq!(p("app!=web"), None);
        assert_eq!(p("app"), None);
        assert_eq!(p(""), Some(vec![]));
    }
}
