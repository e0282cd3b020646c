//! Two candidates on one Lease: exactly one leads; when it stops, the other takes over.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use leaderelection::{LeaderElectionConfig, LeaderElector};
use tokio_util::sync::CancellationToken;

async fn client_for(running: &server::RunningServer) -> anyhow::Result<kube::Client> {
    let kc = kube::config::Kubeconfig::read_from(&running.kubeconfig)?;
    let config = kube::Config::from_custom_kubeconfig(kc, &Default::default()).await?;
    Ok(kube::Client::try_from(config)?)
}

fn fast(identity: &str) -> LeaderElectionConfig {
    let mut c = LeaderElectionConfig::new("kube-system", "test-election", identity);
    c.lease_duration = Duration::from_secs(2);
    c.renew_deadline = Duration::from_millis(1500);
    c.retry_period = Duration::from_millis(200);
    c
}

#[tokio::test]
async fn only_the_lease_holder_leads_and_a_standby_takes_over() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let mut config = server::ServerConfig::with_data_dir(dir.path().join("data"));
    config.bind_address = "127.0.0.1".parse()?;
    config.https_listen_port = 0;
    config.write_kubeconfig = dir.path().join("kubeconfig.yaml");
    let running = server::start(config).await?;
    let client = client_for(&running).await?;

    let leaders = Arc::new(AtomicUsize::new(0));
    let max_leaders = Arc::new(AtomicUsize::new(0));
    let led = Arc::new(tokio::sync::Notify::new());
    let spawn = |identity: &str, cancel: CancellationToken| {
        let elector = LeaderElector::new(client.clone(), fast(identity));
        let (leaders, max_leaders, led) = (leaders.clone(), max_leaders.clone(), led.clone());
        let name = identity.to_string();
        tokio::spawn(async move {
            elector
                .run(cancel, move |token| {
                    let (leaders, max_leaders, led, name) = (
                        leaders.clone(),
                        max_leaders.clone(),
                        led.clone(),
                        name.clone(),
                    );
                    async move {
                        let n = leaders.fetch_add(1, Ordering::SeqCst) + 1;
                        max_leaders.fetch_max(n, Ordering::SeqCst);
                        tracing::info!(%name, "leading");
                        led.notify_waiters();
                        token.cancelled().await;
                        leaders.fetch_sub(1, Ordering::SeqCst);
                    }
                })
                .await
        })
    };
    let a_cancel = CancellationToken::new();
    let b_cancel = CancellationToken::new();
    let waiting = led.notified();
    let a = spawn("a", a_cancel.clone());
    tokio::time::timeout(Duration::from_secs(10), waiting).await?;
    let b = spawn("b", b_cancel.clone());

    let leases: kube::Api<k8s_openapi::api::coordination::v1::Lease> =
        kube::Api::namespaced(client.clone(), "kube-system");
    let holder = |l: &k8s_openapi::api::coordination::v1::Lease| {
        l.spec.as_ref().and_then(|s| s.holder_identity.clone())
    };
    assert_eq!(
        holder(&leases.get("test-election").await?),
        Some("a".to_string())
    );

    // While "a" renews, "b" never leads.
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(max_leaders.load(Ordering::SeqCst), 1);
    assert_eq!(
        holder(&leases.get("test-election").await?),
        Some("a".to_string())
    );

    // Stopping "a" releases the lease; "b" takes over.
    let waiting = led.notified();
    a_cancel.cancel();
    a.await?;
    tokio::time::timeout(Duration::from_secs(10), waiting).await?;
    assert_eq!(
        holder(&leases.get("test-election").await?),
        Some("b".to_string())
    );
    assert_eq!(max_leaders.load(Ordering::SeqCst), 1, "two leaders at once");

    b_cancel.cancel();
    b.await?;
    running.shutdown().await;
    Ok(())
}
