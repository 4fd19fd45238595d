// Package deploy holds what an operator deploys pushgate with, and the
// tests that keep it true to the gateway:
//
//   - k8s/: a kustomize base (Deployment, Services, PodDisruptionBudget,
//     HorizontalPodAutoscaler, ServiceMonitor, NetworkPolicy, settings);
//   - prometheus/: alert rules, checked with promtool;
//   - grafana/: a dashboard of the gateway's metrics.
//
// The package has no code of its own; its tests render and check them. It
// is a module of its own, so that the gateway's users never download what
// its tests use (kustomize, the Kubernetes and prometheus-operator API
// types); the repository's go.work joins it to the gateway, whose packages
// (metrics, internal/proctest) the tests import.
package deploy
