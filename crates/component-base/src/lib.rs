//! What every rkube component shares, after upstream's `k8s.io/component-base`: one
//! Prometheus registry that the controllers, the scheduler and leader election register
//! their metrics in ([`metrics`]), and the small HTTPS endpoint a component run as its
//! own process serves them on, with `/healthz`, `/livez` and `/readyz` ([`serve`]) —
//! kube-controller-manager's `--secure-port` 10257 and kube-scheduler's 10259.
//!
//! Under `rkube server` the components run in-process and the API server's own
//! `/metrics` appends this registry.

pub mod metrics;
pub mod serve;

pub use serve::{serve, ServeError};
