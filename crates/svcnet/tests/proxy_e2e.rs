//! The proxy's end-to-end suite, run in a network-namespace lab against a real `svcnet
//! apiserver` and real `svcnet proxy` processes. Written once, parameterised by proxy mode; the
//! behaviour numbers refer to reference/kube-proxy.md §6.
//!
//! Everything runs inside namespaces the lab creates (no link to the host); the test drives the
//! API with the real `kubectl` from inside the lab's control namespace.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use svcnet_lab::{Lab, LabProcess, Node, Pod};

const BIN: &str = env!("CARGO_BIN_EXE_svcnet");

struct Backend {
    pod: Pod,
    echo: Vec<LabProcess>,
}

struct Cluster {
    lab: Lab,
    dir: tempfile::TempDir,
    server: String,
    nodes: Vec<Node>,
    proxies: Vec<Option<LabProcess>>,
    mode: String,
    backends: BTreeMap<String, Backend>,
    apiserver: Option<LabProcess>,
}

fn lines(out: &std::process::Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

impl Cluster {
    fn start(mode: &str) -> Cluster {
        let lab = Lab::new("proxy").expect("lab");
        let dir = tempfile::tempdir().unwrap();
        let control = lab.control().clone();
        let server = format!("http://{}:6443", control.ip);
        let mut c = Cluster {
            lab,
            dir,
            server,
            nodes: Vec::new(),
            proxies: Vec::new(),
            mode: mode.into(),
            backends: BTreeMap::new(),
            apiserver: None,
        };
        c.start_apiserver();
        c.wait_for("the API server", || {
            c.kubectl_ok(&["get", "ns", "default"]).then_some(())
        });
        for name in ["node1", "node2"] {
            let node = c.lab.add_node(name).expect("node");
            c.nodes.push(node);
            c.proxies.push(None);
            let i = c.nodes.len() - 1;
            c.start_proxy(i);
        }
        c
    }

    fn start_apiserver(&mut self) {
        let control = self.lab.control().clone();
        let data = self.dir.path().join("api");
        let listen = format!("{}:6443", control.ip);
        let p = self
            .lab
            .spawn(
                &control.netns,
                BIN,
                &[
                    "apiserver",
                    "--listen",
                    &listen,
                    "--data-dir",
                    data.to_str().unwrap(),
                    "--service-cluster-ip-range",
                    "10.96.0.0/16",
                ],
            )
            .expect("apiserver");
        self.apiserver = Some(p);
    }

    fn start_proxy(&mut self, i: usize) {
        let node = self.nodes[i].clone();
        let p = self
            .lab
            .spawn(
                &node.netns,
                BIN,
                &[
                    "proxy",
                    "--master",
                    &self.server,
                    "--hostname-override",
                    &node.name,
                    "--proxy-mode",
                    &self.mode,
                    "--min-sync-period",
                    "100ms",
                    "--healthz-bind-address",
                    "0.0.0.0:10256",
                    "--metrics-bind-address",
                    "127.0.0.1:10249",
                ],
            )
            .expect("proxy");
        self.proxies[i] = Some(p);
    }

    fn kubectl_out(&self, args: &[&str]) -> std::process::Output {
        let mut full = vec!["--server", self.server.as_str(), "--request-timeout=10s"];
        full.extend_from_slice(args);
        let control = self.lab.control().netns.clone();
        self.lab
            .exec(&control, "kubectl", &full)
            .expect("kubectl runs")
    }

    fn kubectl_ok(&self, args: &[&str]) -> bool {
        self.kubectl_out(args).status.success()
    }

    fn kubectl(&self, args: &[&str]) -> String {
        let out = self.kubectl_out(args);
        assert!(out.status.success(), "kubectl {args:?}: {}", lines(&out));
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// `kubectl patch svc <svc> --type=<kind> -p <patch>`; `kind` is json, merge or strategic.
    fn patch_svc(&self, svc: &str, kind: &str, patch: &str) {
        self.kubectl(&["patch", "svc", svc, &format!("--type={kind}"), "-p", patch]);
    }

    fn apply(&self, yaml: &str) {
        let path: PathBuf = self.dir.path().join(format!("obj-{}.yaml", rand_suffix()));
        std::fs::write(&path, yaml).unwrap();
        self.kubectl(&["apply", "-f", path.to_str().unwrap()]);
    }

    fn wait_for<T>(&self, what: &str, mut f: impl FnMut() -> Option<T>) -> T {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(v) = f() {
                return v;
            }
            assert!(Instant::now() < deadline, "timed out waiting for {what}");
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Starts echo servers on 8080 and 9090 in a new pod, and registers a Ready Pod for it.
    fn add_backend(&mut self, node: usize, name: &str, app: &str) {
        let node = self.nodes[node].clone();
        let pod = self.lab.add_pod(&node, name).expect("pod");
        let mut echo = Vec::new();
        for (port, suffix) in [(8080, ""), (9090, "-alt")] {
            let label = format!("{name}{suffix}");
            echo.push(
                self.lab
                    .spawn(
                        &pod.netns,
                        BIN,
                        &[
                            "echo",
                            "--listen",
                            &format!("0.0.0.0:{port}"),
                            "--name",
                            &label,
                        ],
                    )
                    .expect("echo"),
            );
        }
        self.apply(&format!(
            "apiVersion: v1\nkind: Pod\nmetadata: {{name: {name}, labels: {{app: {app}}}}}\nspec:\n  nodeName: {}\n  containers:\n  - name: c\n    image: svcnet-echo\n    ports: [{{name: http, containerPort: 8080}}, {{name: alt, containerPort: 9090}}]\n",
            node.name
        ));
        let status = format!(
            r#"{{"status":{{"phase":"Running","podIP":"{ip}","podIPs":[{{"ip":"{ip}"}}],"conditions":[{{"type":"Ready","status":"True"}}]}}}}"#,
            ip = pod.ip
        );
        self.kubectl(&[
            "patch",
            "pod",
            name,
            "--subresource=status",
            "--type=merge",
            "-p",
            &status,
        ]);
        self.backends.insert(name.into(), Backend { pod, echo });
    }

    fn remove_backend(&mut self, name: &str) {
        self.kubectl(&[
            "delete",
            "pod",
            name,
            "--grace-period=0",
            "--force",
            "--wait=false",
        ]);
        if let Some(b) = self.backends.remove(name) {
            drop(b.echo);
            self.lab.remove_pod(&b.pod).expect("remove pod");
        }
    }

    fn cluster_ip(&self, svc: &str) -> String {
        self.kubectl(&["get", "svc", svc, "-o", "jsonpath={.spec.clusterIP}"])
    }

    /// Runs `svcnet probe` in `netns`; returns (ok backend names, error kinds).
    fn probe(
        &self,
        netns: &str,
        target: &str,
        count: usize,
        extra: &[&str],
    ) -> (Vec<String>, Vec<String>) {
        let count = count.to_string();
        let mut args = vec!["probe", target, "--count", count.as_str()];
        args.extend_from_slice(extra);
        let out = self.lab.exec(netns, BIN, &args).expect("probe runs");
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        let (mut ok, mut err) = (Vec::new(), Vec::new());
        for l in text.lines() {
            let parts: Vec<&str> = l.split_whitespace().collect();
            match parts.as_slice() {
                ["ok", name, _] => ok.push((*name).to_owned()),
                ["err", kind, _] => err.push((*kind).to_owned()),
                _ => {}
            }
        }
        (ok, err)
    }

    fn node_ns(&self, i: usize) -> String {
        self.nodes[i].netns.clone()
    }
}

fn rand_suffix() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    N.fetch_add(1, Ordering::Relaxed)
}

fn counts(names: &[String]) -> BTreeMap<String, usize> {
    let mut m = BTreeMap::new();
    for n in names {
        *m.entry(n.clone()).or_insert(0) += 1;
    }
    m
}

fn service(name: &str, selector: &str, extra_spec: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Service\nmetadata: {{name: {name}}}\nspec:\n  selector: {{app: {selector}}}\n  ports:\n  - {{name: http, port: 80, targetPort: http}}\n  - {{name: alt, port: 81, targetPort: alt}}\n{extra_spec}"
    )
}

fn suite(mode: &str) {
    if !svcnet_lab::skip_unless_privileged(&format!("proxy e2e ({mode})")) {
        return;
    }
    let mut c = Cluster::start(mode);
    for (i, name) in ["a", "b", "c"].iter().enumerate() {
        c.add_backend(if i < 2 { 0 } else { 1 }, name, "web");
    }
    c.add_backend(1, "client", "client");
    let client_ns = c.backends["client"].pod.netns.clone();

    // 2, 3: a multi-port Service with named target ports reaches every pod.
    c.apply(&service("web", "web", ""));
    let vip = c.cluster_ip("web");
    let web80 = format!("{vip}:80");
    let web81 = format!("{vip}:81");
    c.wait_for("web to serve all three pods", || {
        let (ok, _) = c.probe(&client_ns, &web80, 9, &[]);
        (counts(&ok).len() == 3).then_some(())
    });
    let (alt, err) = c.probe(&client_ns, &web81, 6, &[]);
    assert!(err.is_empty(), "{err:?}");
    assert!(
        alt.iter().all(|n| n.ends_with("-alt")),
        "port 81 → targetPort alt: {alt:?}"
    );
    let (from_node, err) = c.probe(&c.node_ns(0), &web80, 6, &[]);
    assert!(
        err.is_empty() && from_node.len() == 6,
        "node-local clients too: {err:?}"
    );

    // Round robin spreads 300 connects evenly (each within ±5%).
    let (ok, err) = c.probe(&client_ns, &web80, 300, &[]);
    assert!(err.is_empty(), "{err:?}");
    for (name, n) in counts(&ok) {
        assert!(
            (95..=105).contains(&n),
            "{name} got {n} of 300: {:?}",
            counts(&ok)
        );
    }

    // A dead backend (process gone, Pod still Ready) is retried transparently: 100 of 100.
    let b_echo = std::mem::take(&mut c.backends.get_mut("b").unwrap().echo);
    drop(b_echo);
    let (ok, err) = c.probe(&client_ns, &web80, 100, &[]);
    assert_eq!((ok.len(), err.len()), (100, 0), "errors: {err:?}");
    assert!(!ok.iter().any(|n| n == "b"));

    // 2: removing a pod stops traffic to it; adding one brings it in.
    c.remove_backend("b");
    c.add_backend(1, "d", "web");
    c.wait_for("d to join and b to leave", || {
        let (ok, _) = c.probe(&client_ns, &web80, 9, &[]);
        let seen = counts(&ok);
        (seen.contains_key("d") && !seen.contains_key("b")).then_some(())
    });

    // 6: hairpin — a pod reaches itself through its Service.
    let a_ns = c.backends["a"].pod.netns.clone();
    let (ok, err) = c.probe(&a_ns, &web80, 9, &[]);
    assert!(err.is_empty(), "{err:?}");
    assert!(
        ok.iter().any(|n| n == "a"),
        "a never reached itself: {ok:?}"
    );

    // 12: the same port over TCP and UDP.
    c.apply("apiVersion: v1\nkind: Service\nmetadata: {name: dns}\nspec:\n  selector: {app: web}\n  ports:\n  - {name: tcp, port: 53, protocol: TCP, targetPort: 8080}\n  - {name: udp, port: 53, protocol: UDP, targetPort: 8080}\n");
    let dns = format!("{}:53", c.cluster_ip("dns"));
    c.wait_for("dns over TCP and UDP", || {
        let (t, _) = c.probe(&client_ns, &dns, 1, &[]);
        let (u, _) = c.probe(&client_ns, &dns, 1, &["--udp", "--timeout", "1s"]);
        (!t.is_empty() && !u.is_empty()).then_some(())
    });

    // 21: no endpoints → refused at once, never a hang.
    c.apply(&service("empty", "nobody", ""));
    let empty = format!("{}:80", c.cluster_ip("empty"));
    let (_, err) = c.wait_for("empty to be programmed", || {
        let r = c.probe(&client_ns, &empty, 1, &["--timeout", "2s"]);
        (r.1 == ["refused"]).then_some(r)
    });
    assert_eq!(err, ["refused"]);
    let (_, err) = c.probe(
        &client_ns,
        &format!("{}:53", c.cluster_ip("empty")),
        1,
        &["--udp", "--timeout", "2s"],
    );
    assert_eq!(err, ["refused"], "UDP gets port unreachable");

    // 4: ports added and removed take effect.
    c.patch_svc(
        "web",
        "json",
        r#"[{"op":"add","path":"/spec/ports/-","value":{"name":"extra","port":82,"targetPort":"alt"}}]"#,
    );
    let web82 = format!("{vip}:82");
    c.wait_for("port 82", || {
        (!c.probe(&client_ns, &web82, 1, &[]).0.is_empty()).then_some(())
    });
    c.patch_svc("web", "json", r#"[{"op":"remove","path":"/spec/ports/1"}]"#);
    c.wait_for("port 81 gone", || {
        (c.probe(&client_ns, &web81, 1, &["--timeout", "2s"]).1 == ["refused"]).then_some(())
    });

    // 16, 17, 18: ClientIP affinity sticks, expires, and converges when switched.
    c.apply(&service(
        "sticky",
        "web",
        "  sessionAffinity: ClientIP\n  sessionAffinityConfig: {clientIP: {timeoutSeconds: 2}}\n",
    ));
    let sticky = format!("{}:80", c.cluster_ip("sticky"));
    c.wait_for("sticky", || {
        (!c.probe(&client_ns, &sticky, 1, &[]).0.is_empty()).then_some(())
    });
    std::thread::sleep(Duration::from_secs(3));
    let (ok, _) = c.probe(&client_ns, &sticky, 20, &["--interval", "50ms"]);
    assert_eq!(counts(&ok).len(), 1, "one client, one backend: {ok:?}");
    let pinned = ok[0].clone();
    std::thread::sleep(Duration::from_secs(3));
    let (after, _) = c.probe(&client_ns, &sticky, 1, &[]);
    assert_ne!(after[0], pinned, "after the timeout round robin moves on");
    c.patch_svc(
        "sticky",
        "merge",
        r#"{"spec":{"sessionAffinity":"None","sessionAffinityConfig":null}}"#,
    );
    c.wait_for("affinity off", || {
        (counts(&c.probe(&client_ns, &sticky, 6, &[]).0).len() > 1).then_some(())
    });
    c.patch_svc(
        "sticky",
        "merge",
        r#"{"spec":{"sessionAffinity":"ClientIP"}}"#,
    );
    c.wait_for("affinity back on", || {
        let (ok, _) = c.probe(&client_ns, &sticky, 10, &[]);
        (ok.len() == 10 && counts(&ok).len() == 1).then_some(())
    });

    // 7, 8: deleting a Service stops it without touching others; recreating it works.
    c.kubectl(&["delete", "svc", "dns"]);
    c.wait_for("dns gone", || {
        c.probe(&client_ns, &dns, 1, &["--timeout", "1s"])
            .0
            .is_empty()
            .then_some(())
    });
    assert_eq!(
        c.probe(&client_ns, &web80, 3, &[]).0.len(),
        3,
        "web unaffected"
    );
    c.apply("apiVersion: v1\nkind: Service\nmetadata: {name: dns}\nspec:\n  selector: {app: web}\n  ports:\n  - {name: tcp, port: 53, protocol: TCP, targetPort: 8080}\n");
    let dns2 = format!("{}:53", c.cluster_ip("dns"));
    c.wait_for("dns recreated", || {
        (!c.probe(&client_ns, &dns2, 1, &[]).0.is_empty()).then_some(())
    });

    // 19, 20: the service-proxy-name and headless labels make the proxy ignore a Service.
    c.kubectl(&[
        "label",
        "svc",
        "web",
        "service.kubernetes.io/service-proxy-name=other",
    ]);
    c.wait_for("web ignored", || {
        c.probe(&client_ns, &web80, 1, &["--timeout", "1s"])
            .0
            .is_empty()
            .then_some(())
    });
    c.kubectl(&[
        "label",
        "svc",
        "web",
        "service.kubernetes.io/service-proxy-name-",
    ]);
    c.wait_for("web back", || {
        (!c.probe(&client_ns, &web80, 1, &[]).0.is_empty()).then_some(())
    });
    c.apply(&service("labelled", "web", "").replace(
        "metadata: {name: labelled}",
        "metadata: {name: labelled, labels: {service.kubernetes.io/headless: \"\"}}",
    ));
    let labelled = format!("{}:80", c.cluster_ip("labelled"));
    std::thread::sleep(Duration::from_millis(500));
    assert!(
        c.probe(&client_ns, &labelled, 1, &["--timeout", "1s"])
            .0
            .is_empty(),
        "headless-labelled Service is not proxied"
    );

    // 22: endpoints going away (empty slice) → refused.
    c.patch_svc("sticky", "merge", r#"{"spec":{"selector":{"app":"gone"}}}"#);
    c.wait_for("sticky refused", || {
        (c.probe(&client_ns, &sticky, 1, &["--timeout", "2s"]).1 == ["refused"]).then_some(())
    });

    // 9: after a proxy restart everything works again; /healthz and /metrics answer (32).
    c.proxies[1] = None;
    c.start_proxy(1);
    c.wait_for("web after proxy restart", || {
        (c.probe(&client_ns, &web80, 3, &[]).0.len() == 3).then_some(())
    });
    let node2 = c.node_ns(1);
    let health = c
        .lab
        .exec(
            &node2,
            "curl",
            &[
                "-s",
                "-o",
                "/dev/null",
                "-w",
                "%{http_code}",
                "http://127.0.0.1:10256/healthz",
            ],
        )
        .expect("curl");
    assert_eq!(String::from_utf8_lossy(&health.stdout), "200");
    let metrics = c
        .lab
        .exec(&node2, "curl", &["-s", "http://127.0.0.1:10249/metrics"])
        .expect("curl");
    let text = String::from_utf8_lossy(&metrics.stdout);
    assert!(
        text.contains("kubeproxy_sync_proxy_rules_duration_seconds"),
        "{text}"
    );
    assert!(
        text.contains("kubeproxy_network_programming_duration_seconds"),
        "{text}"
    );

    // 9: the proxies follow an API server restart (their watches reconnect).
    c.apiserver = None;
    c.start_apiserver();
    c.wait_for("the API server again", || {
        c.kubectl_ok(&["get", "ns", "default"]).then_some(())
    });
    c.apply(&service("late", "web", ""));
    let late = format!("{}:80", c.cluster_ip("late"));
    c.wait_for("a Service created after the restart", || {
        (!c.probe(&client_ns, &late, 1, &[]).0.is_empty()).then_some(())
    });

    // --cleanup removes what the proxy installed.
    c.proxies[0] = None;
    let out = c
        .lab
        .exec(
            &c.node_ns(0),
            BIN,
            &["proxy", "--proxy-mode", mode, "--cleanup"],
        )
        .expect("cleanup");
    assert!(out.status.success(), "{}", lines(&out));
    let tables = c
        .lab
        .exec(&c.node_ns(0), "nft", &["list", "tables"])
        .expect("nft");
    assert!(
        !String::from_utf8_lossy(&tables.stdout).contains("svcnet"),
        "table left behind"
    );
}

#[test]
fn userspace_mode() {
    suite("userspace");
}
