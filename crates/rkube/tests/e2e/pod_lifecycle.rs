//! Pods on real containers, beyond the scenarios: restarts of killed containers, init
//! containers in order, Jobs to completion, image pull errors, cgroup limits and OOM
//! kills, ConfigMaps/Secrets as env and files (with live updates), shared emptyDir and
//! localhost, the streaming commands (`logs -f`, `exec` with and without a TTY,
//! `port-forward`, `cp`), graceful deletion, agent restarts and persistent volume claims
//! of the default local-path class. One node per test
//! (`common::node`), stock kubectl throughout.

use crate::common;

use std::process::Command;
use std::time::{Duration, Instant};

use common::node::NodeCluster;
use common::{eventually, free_port};

const POD_START: Duration = Duration::from_secs(90);

/// `ctr` against the node's managed containerd.
fn ctr(c: &NodeCluster, args: &[&str]) -> String {
    let out = Command::new("ctr")
        .arg("--address")
        .arg(c.data_dir().join("agent/containerd/containerd.sock"))
        .args(["-n", "k8s.io"])
        .args(args)
        .output()
        .expect("run ctr");
    assert!(
        out.status.success(),
        "ctr {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn restarts_init_containers_jobs_and_image_errors() {
    let Some(c) = NodeCluster::start() else {
        return;
    };
    let r = &c.r;

    // A container killed from outside is restarted; RESTARTS counts it.
    c.apply("sleeper",
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: sleeper\nspec:\n  terminationGracePeriodSeconds: 1\n  containers:\n  - name: main\n    image: busybox\n    command: [\"sleep\", \"3600\"]\n",
    );
    c.wait_running("sleeper", POD_START);
    let id = c.jsonpath(
        &["pod", "sleeper"],
        "{.status.containerStatuses[0].containerID}",
    );
    let id = id
        .strip_prefix("containerd://")
        .unwrap_or_else(|| panic!("containerID {id:?}"))
        .to_string();
    ctr(&c, &["tasks", "kill", "--signal", "SIGKILL", &id]);
    eventually(
        "restartCount 1, running again",
        Duration::from_secs(60),
        || {
            let t = c.jsonpath(&["pod", "sleeper"], "{.status.containerStatuses[0].restartCount} {.status.containerStatuses[0].state.running.startedAt} {.status.containerStatuses[0].lastState.terminated.exitCode}");
            t.starts_with("1 ").then_some(()).filter(|_| {
                t.ends_with(" 137") && t.split(' ').nth(1).is_some_and(|s| !s.is_empty())
            })
        },
    );
    let row = r.k(&["get", "pod", "sleeper", "--no-headers"]);
    let cols: Vec<&str> = row.split_whitespace().collect();
    assert_eq!(&cols[1..4], ["1/1", "Running", "1"], "{row}");

    // Init containers run first, in order, sharing an emptyDir with the main container.
    c.apply(
        "init",
        r#"apiVersion: v1
kind: Pod
metadata:
  name: init-order
spec:
  restartPolicy: Never
  volumes:
  - name: work
    emptyDir: {}
  initContainers:
  - name: first
    image: busybox
    command: ["sh", "-c", "echo first >> /work/log"]
    volumeMounts: [{name: work, mountPath: /work}]
  - name: second
    image: busybox
    command: ["sh", "-c", "echo second >> /work/log"]
    volumeMounts: [{name: work, mountPath: /work}]
  containers:
  - name: main
    image: busybox
    command: ["sh", "-c", "echo main >> /work/log; cat /work/log"]
    volumeMounts: [{name: work, mountPath: /work}]
"#,
    );
    eventually("init-order Succeeded", POD_START, || {
        (c.jsonpath(&["pod", "init-order"], "{.status.phase}") == "Succeeded").then_some(())
    });
    assert_eq!(r.k(&["logs", "init-order"]).trim(), "first\nsecond\nmain");
    let reasons = c.jsonpath(&["pod", "init-order"], "{.status.initContainerStatuses[*].state.terminated.reason} {.status.containerStatuses[0].state.terminated.reason}");
    assert_eq!(reasons, "Completed Completed Completed");
    let row = r.k(&["get", "pod", "init-order", "--no-headers"]);
    assert_eq!(row.split_whitespace().nth(2), Some("Completed"), "{row}");

    // A Job's container runs to completion; its pod ends Completed.
    c.apply("job",
        "apiVersion: batch/v1\nkind: Job\nmetadata:\n  name: once\nspec:\n  template:\n    spec:\n      restartPolicy: Never\n      containers:\n      - name: work\n        image: busybox\n        command: [\"sh\", \"-c\", \"echo job done\"]\n",
    );
    r.k(&[
        "wait",
        "--for=condition=complete",
        "job/once",
        "--timeout=90s",
    ]);
    let row = r.k(&["get", "pods", "-l", "job-name=once", "--no-headers"]);
    assert_eq!(row.split_whitespace().nth(2), Some("Completed"), "{row}");
    assert_eq!(r.k(&["logs", "job/once"]).trim(), "job done");

    // A missing image: ErrImagePull, then ImagePullBackOff, with the pull error as an Event.
    c.apply("missing",
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: missing-image\nspec:\n  containers:\n  - name: main\n    image: no-such-image:1.0\n",
    );
    let mut seen = Vec::new();
    eventually("ImagePullBackOff", Duration::from_secs(60), || {
        let reason = c.jsonpath(
            &["pod", "missing-image"],
            "{.status.containerStatuses[0].state.waiting.reason}",
        );
        if !reason.is_empty() && seen.last() != Some(&reason) {
            seen.push(reason.clone());
        }
        (reason == "ImagePullBackOff").then_some(())
    });
    assert!(
        seen.iter()
            .all(|r| r == "ErrImagePull" || r == "ImagePullBackOff" || r == "ContainerCreating"),
        "{seen:?}"
    );
    let describe = r.k(&["describe", "pod", "missing-image"]);
    assert!(
        describe.contains("Failed to pull image \"no-such-image:1.0\""),
        "{describe}"
    );

    // A projected service-account token is a token for the pod's ServiceAccount.
    if !r
        .kubectl(&["get", "serviceaccount", "default"])
        .status
        .success()
    {
        r.k(&["create", "serviceaccount", "default"]);
    }
    c.apply(
        "token",
        r#"apiVersion: v1
kind: Pod
metadata:
  name: with-token
spec:
  serviceAccountName: default
  containers:
  - name: main
    image: busybox
    command: ["sleep", "3600"]
    volumeMounts: [{name: api, mountPath: /var/run/secrets/kubernetes.io/serviceaccount}]
  volumes:
  - name: api
    projected:
      sources:
      - serviceAccountToken: {path: token, expirationSeconds: 3607}
      - downwardAPI:
          items:
          - path: namespace
            fieldRef: {fieldPath: metadata.namespace}
"#,
    );
    c.wait_running("with-token", POD_START);
    let token = r.k(&[
        "exec",
        "with-token",
        "--",
        "cat",
        "/var/run/secrets/kubernetes.io/serviceaccount/token",
    ]);
    assert_eq!(token.split('.').count(), 3, "not a JWT: {token}");
    assert_eq!(
        r.k(&[
            "exec",
            "with-token",
            "--",
            "cat",
            "/var/run/secrets/kubernetes.io/serviceaccount/namespace"
        ]),
        "default"
    );
    let who = r.k(&[
        "auth",
        "whoami",
        "--token",
        &token,
        "-o",
        "jsonpath={.status.userInfo.username}",
    ]);
    assert_eq!(who, "system:serviceaccount:default:default");
}

#[test]
fn limits_oom_config_and_shared_pod_resources() {
    let Some(c) = NodeCluster::start() else {
        return;
    };
    let r = &c.r;
    r.k(&[
        "create",
        "configmap",
        "app-config",
        "--from-literal=greeting=hello",
    ]);
    r.k(&[
        "create",
        "secret",
        "generic",
        "app-secret",
        "--from-literal=password=s3cret",
    ]);
    c.apply("app",
        r#"apiVersion: v1
kind: Pod
metadata:
  name: app
spec:
  terminationGracePeriodSeconds: 2
  volumes:
  - name: shared
    emptyDir: {}
  - name: config
    configMap: {name: app-config}
  - name: secret
    secret: {secretName: app-secret}
  containers:
  - name: web
    image: busybox
    command: ["sh", "-c", "trap 'exit 0' TERM; echo from-web > /shared/note; httpd -f -p 127.0.0.1:8080 -h /shared & wait"]
    env:
    - name: GREETING
      valueFrom: {configMapKeyRef: {name: app-config, key: greeting}}
    - name: PASSWORD
      valueFrom: {secretKeyRef: {name: app-secret, key: password}}
    - name: MY_POD
      valueFrom: {fieldRef: {fieldPath: metadata.name}}
    envFrom:
    - configMapRef: {name: app-config}
      prefix: CM_
    resources:
      limits: {cpu: 500m, memory: 64Mi}
    volumeMounts:
    - {name: shared, mountPath: /shared}
    - {name: config, mountPath: /etc/config}
    - {name: secret, mountPath: /etc/secret, readOnly: true}
  - name: sidecar
    image: busybox
    command: ["sh", "-c", "trap 'exit 0' TERM; while true; do sleep 1; done"]
    volumeMounts:
    - {name: shared, mountPath: /data}
"#,
    );
    c.wait_running("app", POD_START);
    eventually("both containers ready", POD_START, || {
        (c.jsonpath(&["pod", "app"], "{.status.containerStatuses[*].ready}") == "true true")
            .then_some(())
    });

    // ConfigMap and Secret as env and as files.
    let env = r.k(&["exec", "app", "-c", "web", "--", "env"]);
    for want in [
        "GREETING=hello",
        "PASSWORD=s3cret",
        "MY_POD=app",
        "CM_greeting=hello",
    ] {
        assert!(env.lines().any(|l| l == want), "env lacks {want}: {env}");
    }
    assert_eq!(
        r.k(&[
            "exec",
            "app",
            "-c",
            "web",
            "--",
            "cat",
            "/etc/config/greeting"
        ]),
        "hello"
    );
    assert_eq!(
        r.k(&[
            "exec",
            "app",
            "-c",
            "web",
            "--",
            "cat",
            "/etc/secret/password"
        ]),
        "s3cret"
    );
    // An updated ConfigMap reaches the mounted file.
    r.k(&[
        "patch",
        "configmap",
        "app-config",
        "--type=merge",
        "-p",
        r#"{"data":{"greeting":"bonjour"}}"#,
    ]);
    eventually(
        "the updated ConfigMap in the file",
        Duration::from_secs(30),
        || {
            (r.k(&[
                "exec",
                "app",
                "-c",
                "web",
                "--",
                "cat",
                "/etc/config/greeting",
            ]) == "bonjour")
                .then_some(())
        },
    );

    // emptyDir shared by the two containers, which share localhost too.
    assert_eq!(
        r.k(&["exec", "app", "-c", "sidecar", "--", "cat", "/data/note"])
            .trim(),
        "from-web"
    );
    let page = r.k(&[
        "exec",
        "app",
        "-c",
        "sidecar",
        "--",
        "wget",
        "-qO-",
        "http://127.0.0.1:8080/note",
    ]);
    assert_eq!(page.trim(), "from-web");

    // cpu and memory limits in the container's cgroup.
    let quota = r.k(&[
        "exec",
        "app",
        "-c",
        "web",
        "--",
        "cat",
        "/sys/fs/cgroup/cpu/cpu.cfs_quota_us",
    ]);
    let period = r.k(&[
        "exec",
        "app",
        "-c",
        "web",
        "--",
        "cat",
        "/sys/fs/cgroup/cpu/cpu.cfs_period_us",
    ]);
    assert_eq!((quota.trim(), period.trim()), ("50000", "100000"));
    let mem = r.k(&[
        "exec",
        "app",
        "-c",
        "web",
        "--",
        "cat",
        "/sys/fs/cgroup/memory/memory.limit_in_bytes",
    ]);
    assert_eq!(mem.trim(), (64 * 1024 * 1024).to_string());

    // Usage per container and node from the agent, through the API server's node proxy.
    let raw = r.k(&[
        "get",
        "--raw",
        &format!("/api/v1/nodes/{}/proxy/stats/summary", c.node),
    ]);
    let summary: serde_json::Value = serde_json::from_str(&raw).expect("summary JSON");
    assert_eq!(summary["node"]["nodeName"], c.node.as_str());
    assert!(
        summary["node"]["memory"]["workingSetBytes"]
            .as_u64()
            .is_some_and(|b| b > 0),
        "{raw}"
    );
    let app = summary["pods"]
        .as_array()
        .and_then(|p| p.iter().find(|p| p["podRef"]["name"] == "app"))
        .cloned()
        .unwrap_or_default();
    let names: Vec<&str> = app["containers"]
        .as_array()
        .map(|c| c.iter().filter_map(|c| c["name"].as_str()).collect())
        .unwrap_or_default();
    assert_eq!(names, ["sidecar", "web"], "{raw}");
    assert!(
        app["memory"]["workingSetBytes"]
            .as_u64()
            .is_some_and(|b| b > 0),
        "{raw}"
    );
    let metrics = r.k(&[
        "get",
        "--raw",
        &format!("/api/v1/nodes/{}/proxy/metrics/resource", c.node),
    ]);
    assert!(metrics.contains("container_memory_working_set_bytes{container=\"web\",namespace=\"default\",pod=\"app\"}"), "{metrics}");
    assert!(
        metrics.contains("node_cpu_usage_seconds_total "),
        "{metrics}"
    );

    // exec through a TTY (kubectl under `script`, as a terminal user).
    let out = Command::new("script")
        .args([
            "-qc",
            &format!(
                "{} --kubeconfig {} exec -it app -c web -- sh",
                common::KUBECTL,
                r.kubeconfig.display()
            ),
            "/dev/null",
        ])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .and_then(|mut child| {
            use std::io::Write;
            let mut stdin = child.stdin.take().expect("stdin");
            stdin.write_all(b"echo $((6*7)) in-tty; tty; exit\n")?;
            child.wait_with_output()
        })
        .expect("script");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("42 in-tty"), "{text}");
    assert!(text.contains("/dev/pts/"), "{text}");

    // cp both ways.
    let local = r.write("upload.txt", "uploaded through kubectl cp\n");
    r.k(&[
        "cp",
        local.to_str().expect("utf-8"),
        "app:/shared/upload.txt",
        "-c",
        "web",
    ]);
    assert_eq!(
        r.k(&[
            "exec",
            "app",
            "-c",
            "sidecar",
            "--",
            "cat",
            "/data/upload.txt"
        ]),
        "uploaded through kubectl cp\n"
    );
    let back = r.path("download.txt");
    r.k(&[
        "cp",
        "app:/shared/note",
        back.to_str().expect("utf-8"),
        "-c",
        "web",
    ]);
    assert_eq!(
        std::fs::read_to_string(&back).expect("downloaded file"),
        "from-web\n"
    );

    // port-forward to the loopback-only server inside the pod.
    let port = free_port();
    let pf = r.spawn_kubectl(&["port-forward", "pod/app", &format!("{port}:8080")]);
    pf.expect_line("Forwarding from 127.0.0.1", Duration::from_secs(30));
    let (code, body) = eventually(
        "a response through port-forward",
        Duration::from_secs(20),
        || c.http_get("127.0.0.1", port, "/note"),
    );
    assert_eq!((code, body.trim()), (200, "from-web"));
    drop(pf);

    // Over its memory limit, a container is OOMKilled and reported so.
    c.apply("hog",
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: hog\nspec:\n  restartPolicy: Never\n  containers:\n  - name: main\n    image: busybox\n    command: [\"sh\", \"-c\", \"dd if=/dev/zero of=/dev/null bs=128M count=4\"]\n    resources:\n      limits: {memory: 32Mi}\n",
    );
    let state = eventually("hog terminated", POD_START, || {
        let t = c.jsonpath(&["pod", "hog"], "{.status.containerStatuses[0].state.terminated.reason} {.status.containerStatuses[0].state.terminated.exitCode} {.status.phase}");
        (!t.starts_with(' ')).then_some(t)
    });
    assert_eq!(state, "OOMKilled 137 Failed");
    let row = r.k(&["get", "pod", "hog", "--no-headers"]);
    assert_eq!(row.split_whitespace().nth(2), Some("OOMKilled"), "{row}");
}

#[test]
fn logs_follow_graceful_delete_and_agent_restart() {
    let Some(mut c) = NodeCluster::start() else {
        return;
    };
    c.apply("ticker",
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: ticker\nspec:\n  terminationGracePeriodSeconds: 20\n  containers:\n  - name: main\n    image: busybox\n    command: [\"sh\", \"-c\", \"trap 'echo stopping; sleep 2; exit 0' TERM; i=0; while true; do i=$((i+1)); echo tick $i; sleep 1 & wait; done\"]\n",
    );
    c.wait_running("ticker", POD_START);
    // A static pod: a manifest in the agent's folder, mirrored into the API.
    let manifests = c.data_dir().join("agent/pod-manifests");
    std::fs::create_dir_all(&manifests).expect("manifest folder");
    std::fs::write(
        manifests.join("static-web.yaml"),
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: static-web\n  namespace: kube-system\nspec:\n  containers:\n  - name: web\n    image: nginx:1.17\n",
    )
    .expect("write a static pod manifest");

    // logs -f streams new lines as they are written.
    let follow = c.r.spawn_kubectl(&["logs", "-f", "ticker"]);
    let first = follow.expect_line("tick", Duration::from_secs(20));
    let n: u32 = first
        .trim_start_matches("tick ")
        .parse()
        .expect("tick number");
    follow.expect_line(&format!("tick {}", n + 2), Duration::from_secs(20));
    drop(follow);
    let tail = c.r.k(&["logs", "ticker", "--tail=1"]);
    assert_eq!(tail.lines().count(), 1, "{tail}");

    // The static pod runs (the folder is read every 20 s), mirrored as <name>-<node> owned by the Node.
    let mirror = format!("static-web-{}", c.node);
    let ip = eventually("the static pod's mirror Running", POD_START, || {
        let t = c.get(&[
            "get",
            "pod",
            &mirror,
            "-n",
            "kube-system",
            "-o",
            "jsonpath={.status.phase} {.status.podIP}",
        ])?;
        let (phase, ip) = t.split_once(' ')?;
        (phase == "Running" && !ip.is_empty()).then(|| ip.to_string())
    });
    c.welcome_page(&ip);
    let all = c.r.k(&["get", "pods", "--all-namespaces"]);
    assert!(
        all.lines()
            .any(|l| l.starts_with("kube-system") && l.contains(&mirror)),
        "{all}"
    );
    let owner = c.r.k(&["get", "pod", &mirror, "-n", "kube-system", "-o", "jsonpath={.metadata.ownerReferences[0].kind}/{.metadata.ownerReferences[0].name} {.metadata.annotations.kubernetes\\.io/config\\.source}"]);
    assert_eq!(owner, format!("Node/{} file", c.node));

    // Restarting the server (and with it the agent and containerd) leaves the pod
    // running: same container, no restart, no duplicate.
    let before = c.jsonpath(
        &["pod", "ticker"],
        "{.status.containerStatuses[0].containerID} {.status.containerStatuses[0].restartCount}",
    );
    let containers_before = ctr(&c, &["containers", "ls", "-q"]).lines().count();
    c.r.restart();
    eventually("the node Ready again", Duration::from_secs(60), || {
        (c.jsonpath(
            &["node", &c.node],
            "{.status.conditions[?(@.type==\"Ready\")].status}",
        ) == "True")
            .then_some(())
    });
    // The node stays Ready from before the restart; the agent is back once its port
    // serves logs again, and the container keeps ticking.
    let last_tick = |c: &NodeCluster| -> Option<u32> {
        c.get(&["logs", "ticker", "--tail=1"])?
            .trim()
            .strip_prefix("tick ")?
            .parse()
            .ok()
    };
    let first = eventually(
        "logs through the restarted agent",
        Duration::from_secs(60),
        || last_tick(&c),
    );
    eventually(
        "the container still ticking",
        Duration::from_secs(20),
        || last_tick(&c).filter(|n| *n > first),
    );
    let after = c.jsonpath(
        &["pod", "ticker"],
        "{.status.containerStatuses[0].containerID} {.status.containerStatuses[0].restartCount}",
    );
    assert_eq!(before, after);
    assert_eq!(
        ctr(&c, &["containers", "ls", "-q"]).lines().count(),
        containers_before
    );
    assert_eq!(
        c.jsonpath(
            &["pod", "ticker"],
            "{.status.phase} {.status.containerStatuses[0].ready}"
        ),
        "Running true"
    );

    std::fs::remove_file(manifests.join("static-web.yaml")).expect("remove the manifest");

    // Deleting runs the container's TERM handler within the grace period.
    let started = Instant::now();
    c.r.k(&["delete", "pod", "ticker", "--timeout=60s"]);
    let took = started.elapsed();
    assert!(
        took >= Duration::from_secs(2),
        "deleted in {took:?}, before the TERM handler finished"
    );
    assert!(
        took < Duration::from_secs(20),
        "deleted in {took:?}: the grace period was waited out"
    );
    // The runtime's containers are removed once the pod is gone from the API, and the
    // static pod once its manifest is gone (the folder is read every 20 s).
    eventually(
        "the pods' containers removed",
        Duration::from_secs(60),
        || {
            ctr(&c, &["containers", "ls", "-q"])
                .trim()
                .is_empty()
                .then_some(())
        },
    );
    assert!(c
        .get(&["get", "pod", &mirror, "-n", "kube-system"])
        .is_none());
}

/// A claim of the default `local-path` class, mounted by one pod after another: the
/// scheduler picks the node, the provisioner makes the volume there, the agent mounts
/// the directory, and the data outlives the pod; deleting the claim removes both the
/// volume and its directory.
#[test]
fn persistent_volume_claims_keep_data_across_pods() {
    let Some(c) = NodeCluster::start() else {
        return;
    };
    let pod = |name: &str, command: &str| {
        format!(
            "apiVersion: v1\nkind: Pod\nmetadata:\n  name: {name}\nspec:\n  terminationGracePeriodSeconds: 1\n  volumes:\n  - name: data\n    persistentVolumeClaim: {{claimName: data}}\n  containers:\n  - name: main\n    image: busybox\n    command: [\"sh\", \"-c\", \"{command}\"]\n    volumeMounts:\n    - {{name: data, mountPath: /data}}\n"
        )
    };
    c.apply("claim",
        "apiVersion: v1\nkind: PersistentVolumeClaim\nmetadata:\n  name: data\nspec:\n  accessModes: [ReadWriteOnce]\n  resources:\n    requests: {storage: 64Mi}\n",
    );
    assert_eq!(c.jsonpath(&["pvc", "data"], "{.status.phase}"), "Pending");
    c.apply(
        "writer",
        &pod(
            "writer",
            "echo persisted > /data/note; trap 'exit 0' TERM; while true; do sleep 1; done",
        ),
    );
    c.wait_running("writer", POD_START);
    assert_eq!(c.jsonpath(&["pvc", "data"], "{.status.phase}"), "Bound");
    let volume = c.jsonpath(&["pvc", "data"], "{.spec.volumeName}");
    let dir = c.jsonpath(&["pv", &volume], "{.spec.hostPath.path}");
    assert!(
        dir.starts_with(&c.data_dir().join("storage").display().to_string()),
        "{dir}"
    );
    eventually("the note on the host", Duration::from_secs(20), || {
        std::fs::read_to_string(format!("{dir}/note"))
            .ok()
            .filter(|s| s == "persisted\n")
    });
    let printed = c.r.k(&["get", "pvc", "data", "--no-headers"]);
    assert!(
        printed.contains("Bound") && printed.contains(&volume) && printed.contains("local-path"),
        "{printed}"
    );
    c.r.k(&["delete", "pod", "writer", "--timeout=60s"]);

    c.apply(
        "reader",
        &pod("reader", "trap 'exit 0' TERM; while true; do sleep 1; done"),
    );
    c.wait_running("reader", POD_START);
    assert_eq!(
        c.r.k(&["exec", "reader", "--", "cat", "/data/note"]).trim(),
        "persisted"
    );
    c.r.k(&["delete", "pod", "reader", "--timeout=60s"]);
    c.r.k(&["delete", "pvc", "data", "--timeout=60s"]);
    eventually("the volume deleted", Duration::from_secs(30), || {
        c.get(&["get", "pv", &volume]).is_none().then_some(())
    });
    eventually("its directory removed", Duration::from_secs(30), || {
        (!std::path::Path::new(&dir).exists()).then_some(())
    });
}
