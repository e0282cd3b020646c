//! Leader election on a `coordination.k8s.io/v1` Lease, with client-go's protocol.
//!
//! A candidate reads the Lease. If nobody holds it, or the holder has not renewed it
//! within `leaseDurationSeconds`, the candidate writes itself in as holder — using the
//! Lease's resourceVersion as precondition, so of several candidates exactly one wins
//! (the others get 409 Conflict and retry). The leader renews `renewTime` every
//! `retry_period`; if it cannot renew within `renew_deadline` it steps down (its work is
//! cancelled) before the lease can expire, so two leaders never act at once as long as
//! clocks tick at the same rate. `leaseTransitions` counts changes of holder.

use std::time::Duration;

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, ObjectMeta, PostParams};
use kube::Client;
use tokio_util::sync::CancellationToken;

#[derive(Clone, Debug, Hash, PartialEq, Eq, prometheus_client::encoding::EncodeLabelSet)]
struct LeaseLabels {
    name: String,
}

/// `leader_election_master_status{name}`: 1 while this process leads on the Lease, as
/// client-go reports it.
fn master_status(name: &str) -> prometheus_client::metrics::gauge::Gauge {
    use prometheus_client::metrics::family::Family;
    use prometheus_client::metrics::gauge::Gauge;
    static STATUS: std::sync::OnceLock<Family<LeaseLabels, Gauge>> = std::sync::OnceLock::new();
    let family = STATUS.get_or_init(|| {
        let family = Family::<LeaseLabels, Gauge>::default();
        component_base::metrics::register(
            "leader_election_master_status",
            "Gauge of if the reporting system is master of the relevant lease, 0 indicates backup, 1 indicates master. 'name' is the string used to identify the lease.",
            family.clone(),
        );
        family
    });
    family
        .get_or_create(&LeaseLabels {
            name: name.to_string(),
        })
        .clone()
}

#[derive(Clone, Debug)]
pub struct LeaderElectionConfig {
    pub namespace: String,
    pub name: String,
    /// This candidate's identity (hostname + a unique suffix, as upstream).
    pub identity: String,
    pub lease_duration: Duration,
    pub renew_deadline: Duration,
    pub retry_period: Duration,
}

impl LeaderElectionConfig {
    /// Upstream defaults: 15 s lease, 10 s renew deadline, 2 s retry.
    pub fn new(namespace: &str, name: &str, identity: &str) -> Self {
        LeaderElectionConfig {
            namespace: namespace.to_string(),
            name: name.to_string(),
            identity: identity.to_string(),
            lease_duration: Duration::from_secs(15),
            renew_deadline: Duration::from_secs(10),
            retry_period: Duration::from_secs(2),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("kubernetes API: {0}")]
    Api(#[from] kube::Error),
}

/// Outcome of one attempt to take or keep the lease.
#[derive(Debug, PartialEq, Eq)]
enum Attempt {
    Held,
    HeldByOther(String),
}

pub struct LeaderElector {
    config: LeaderElectionConfig,
    leases: Api<Lease>,
}

impl LeaderElector {
    pub fn new(client: Client, config: LeaderElectionConfig) -> Self {
        let leases = Api::namespaced(client, &config.namespace);
        LeaderElector { config, leases }
    }

    /// Campaigns until `cancel`; whenever this candidate leads, runs `lead(token)` with a
    /// token cancelled when leadership is lost. Returns when `cancel` fires.
    pub async fn run<F, Fut>(self, cancel: CancellationToken, mut lead: F)
    where
        F: FnMut(CancellationToken) -> Fut,
        Fut: std::future::Future<Output = ()> + Send + 'static,
    {
        let cfg = self.config.clone();
        loop {
            // Acquire.
            loop {
                match self.try_acquire_or_renew().await {
                    Ok(Attempt::Held) => break,
                    Ok(Attempt::HeldByOther(holder)) => {
                        tracing::debug!(lease = %cfg.name, %holder, "lease held by another candidate");
                    }
                    Err(e) => tracing::warn!(lease = %cfg.name, error = %e, "cannot acquire lease"),
                }
                tokio::select! {
                    _ = cancel.cancelled() => return,
                    _ = tokio::time::sleep(cfg.retry_period) => {}
                }
            }
            tracing::info!(lease = %cfg.name, identity = %cfg.identity, "became leader");
            let status = master_status(&cfg.name);
            status.set(1);
            let leading = cancel.child_token();
            let work = tokio::spawn(lead(leading.clone()));
            // Renew.
            let mut last_renew = tokio::time::Instant::now();
            loop {
                tokio::select! {
                    _ = cancel.cancelled() => {
                        leading.cancel();
                        let _ = work.await;
                        self.release().await;
                        status.set(0);
                        return;
                    }
                    _ = tokio::time::sleep(cfg.retry_period) => {}
                }
                match self.try_acquire_or_renew().await {
                    Ok(Attempt::Held) => last_renew = tokio::time::Instant::now(),
                    Ok(Attempt::HeldByOther(holder)) => {
                        tracing::warn!(lease = %cfg.name, %holder, "lost leadership");
                        break;
                    }
                    Err(e) => {
                        if last_renew.elapsed() > cfg.renew_deadline {
                            tracing::warn!(lease = %cfg.name, error = %e, "failed to renew lease within the deadline; stepping down");
                            break;
                        }
                    }
                }
            }
            leading.cancel();
            let _ = work.await;
            status.set(0);
        }
    }

    async fn try_acquire_or_renew(&self) -> Result<Attempt, Error> {
        let cfg = &self.config;
        let now = Timestamp::now();
        let spec = |transitions: i32, acquire: Option<MicroTime>| LeaseSpec {
            holder_identity: Some(cfg.identity.clone()),
            lease_duration_seconds: Some(cfg.lease_duration.as_secs() as i32),
            acquire_time: acquire,
            renew_time: Some(MicroTime(now)),
            lease_transitions: Some(transitions),
            ..LeaseSpec::default()
        };
        let existing = self.leases.get_opt(&cfg.name).await?;
        let Some(mut lease) = existing else {
            let lease = Lease {
                metadata: ObjectMeta {
                    name: Some(cfg.name.clone()),
                    ..ObjectMeta::default()
                },
                spec: Some(spec(0, Some(MicroTime(now)))),
            };
            return match self.leases.create(&PostParams::default(), &lease).await {
                Ok(_) => Ok(Attempt::Held),
                Err(kube::Error::Api(e)) if e.code == 409 => {
                    Ok(Attempt::HeldByOther(String::new()))
                }
                Err(e) => Err(e.into()),
            };
        };
        let current = lease.spec.clone().unwrap_or_default();
        let holder = current.holder_identity.clone().unwrap_or_default();
        let duration_s = i64::from(current.lease_duration_seconds.unwrap_or(15));
        let expired = current
            .renew_time
            .as_ref()
            .map(|t| t.0.as_millisecond() + duration_s * 1000 < now.as_millisecond())
            .unwrap_or(true);
        let ours = holder == cfg.identity;
        if !ours && !holder.is_empty() && !expired {
            return Ok(Attempt::HeldByOther(holder));
        }
        let transitions = current.lease_transitions.unwrap_or(0) + if ours { 0 } else { 1 };
        let acquire = if ours {
            current.acquire_time.clone()
        } else {
            Some(MicroTime(now))
        };
        lease.spec = Some(spec(transitions, acquire));
        // The resourceVersion in `lease` makes this a compare-and-swap.
        match self
            .leases
            .replace(&cfg.name, &PostParams::default(), &lease)
            .await
        {
            Ok(_) => Ok(Attempt::Held),
            Err(kube::Error::Api(e)) if e.code == 409 => Ok(Attempt::HeldByOther(holder)),
            Err(e) => Err(e.into()),
        }
    }

    /// Gives the lease up on clean shutdown so a standby takes over at once.
    async fn release(&self) {
        let Ok(Some(mut lease)) = self.leases.get_opt(&self.config.name).await else {
            return;
        };
        let Some(spec) = lease.spec.as_mut() else {
            return;
        };
        if spec.holder_identity.as_deref() != Some(self.config.identity.as_str()) {
            return;
        }
        spec.holder_identity = None;
        spec.renew_time = None;
        spec.acquire_time = None;
        spec.lease_duration_seconds = Some(1);
        if let Err(e) = self
            .leases
            .replace(&self.config.name, &PostParams::default(), &lease)
            .await
        {
            tracing::debug!(error = %e, "could not release lease");
        }
    }
}

/// `hostname_<random>` like upstream's default identity.
pub fn default_identity() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_string())
        .unwrap_or_default();
    let suffix: u64 = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0);
    format!("{host}_{:x}", suffix ^ u64::from(std::process::id()))
}
