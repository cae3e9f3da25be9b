//! The real `kubectl` (with its default validation) against the API server over a socket.

mod common;

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use common::{Transport, require_tool, start};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::Command;

struct Kubectl {
    kubeconfig: std::path::PathBuf,
}

struct Out {
    ok: bool,
    stdout: String,
    stderr: String,
}

impl Kubectl {
    fn new(dir: &Path, addr: std::net::SocketAddr) -> Self {
        let kubeconfig = dir.join("kubeconfig");
        std::fs::write(
            &kubeconfig,
            format!(
                "apiVersion: v1\nkind: Config\nclusters:\n- name: t\n  cluster: {{server: \"http://{addr}\"}}\ncontexts:\n- name: t\n  context: {{cluster: t, user: t, namespace: default}}\ncurrent-context: t\nusers:\n- name: t\n  user: {{}}\n"
            ),
        )
        .unwrap();
        Self { kubeconfig }
    }

    fn command(&self, args: &[&str]) -> Command {
        let mut c = Command::new("kubectl");
        c.arg("--kubeconfig").arg(&self.kubeconfig).args(args);
        c.env_remove("KUBECONFIG");
        c.env("HOME", self.kubeconfig.parent().unwrap());
        c
    }

    async fn run(&self, args: &[&str]) -> Out {
        let out = tokio::time::timeout(Duration::from_secs(60), self.command(args).output())
            .await
            .expect("kubectl finished in time")
            .expect("kubectl runs");
        Out {
            ok: out.status.success(),
            stdout: String::from_utf8_lossy(&out.stdout).into(),
            stderr: String::from_utf8_lossy(&out.stderr).into(),
        }
    }

    async fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args).await;
        assert!(
            out.ok,
            "kubectl {args:?} failed:\n{}\n{}",
            out.stdout, out.stderr
        );
        out.stdout
    }
}

const MY_SERVICE: &str = "apiVersion: v1
kind: Service
metadata: {name: my-service}
spec:
  selector: {app: MyApp}
  ports:
  - {name: http, protocol: TCP, port: 80, targetPort: 9376}
  - {name: https, protocol: TCP, port: 443, targetPort: 9377}
";

const WEB_V1: &str = "apiVersion: v1
kind: Service
metadata: {name: web, labels: {tier: fe}}
spec:
  type: NodePort
  selector: {app: web}
  ports:
  - {name: http, port: 80, targetPort: 8080}
  - {name: admin, port: 9000}
";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_drives_services_end_to_end() {
    if !require_tool("kubectl") {
        return;
    }
    let srv = start(Transport::Socket).await;
    let dir = srv.dir.path().to_owned();
    let k = Kubectl::new(&dir, srv.addr.unwrap());
    std::fs::write(dir.join("my-service.yaml"), MY_SERVICE).unwrap();
    std::fs::write(dir.join("web.yaml"), WEB_V1).unwrap();
    let f = |name: &str| dir.join(name).to_string_lossy().into_owned();

    let out = k.ok(&["create", "-f", &f("my-service.yaml")]).await;
    assert_eq!(out.trim(), "service/my-service created");

    // apply twice: create, then a three-way strategic merge patch that changes one port
    // and drops the other.
    assert_eq!(
        k.ok(&["apply", "-f", &f("web.yaml")]).await.trim(),
        "service/web created"
    );
    let v2 = WEB_V1
        .replace("targetPort: 8080", "targetPort: 8081")
        .replace("  - {name: admin, port: 9000}\n", "");
    std::fs::write(dir.join("web.yaml"), v2).unwrap();
    assert_eq!(
        k.ok(&["apply", "-f", &f("web.yaml")]).await.trim(),
        "service/web configured"
    );
    let ports = k
        .ok(&[
            "get",
            "svc",
            "web",
            "-o",
            "jsonpath={range .spec.ports[*]}{.port}:{.targetPort}:{.nodePort} {end}",
        ])
        .await;
    let ports: Vec<&str> = ports.split_whitespace().collect();
    assert_eq!(ports.len(), 1, "{ports:?}");
    assert!(ports[0].starts_with("80:8081:3"), "{ports:?}");

    let table = k.ok(&["get", "svc"]).await;
    let mut lines = table.lines();
    let header: Vec<&str> = lines.next().unwrap().split_whitespace().collect();
    assert_eq!(
        header,
        [
            "NAME",
            "TYPE",
            "CLUSTER-IP",
            "EXTERNAL-IP",
            "PORT(S)",
            "AGE"
        ]
    );
    let row = table
        .lines()
        .find(|l| l.starts_with("my-service"))
        .expect("my-service row");
    let cells: Vec<&str> = row.split_whitespace().collect();
    assert_eq!(cells[1], "ClusterIP");
    assert!(cells[2].starts_with("10."), "{row}");
    assert_eq!(cells[3], "<none>");
    assert_eq!(cells[4], "80/TCP,443/TCP");
    let web = table.lines().find(|l| l.starts_with("web")).unwrap();
    assert!(web.contains("NodePort") && web.contains("80:3"), "{web}");

    let wide = k.ok(&["get", "svc", "-o", "wide"]).await;
    assert!(wide.lines().next().unwrap().ends_with("SELECTOR"), "{wide}");
    assert!(
        wide.lines()
            .any(|l| l.starts_with("my-service") && l.trim_end().ends_with("app=MyApp")),
        "{wide}"
    );

    let yaml = k.ok(&["get", "svc", "my-service", "-o", "yaml"]).await;
    for want in [
        "kind: Service",
        "name: my-service",
        "clusterIP: 10.",
        "sessionAffinity: None",
        "targetPort: 9377",
        "resourceVersion:",
    ] {
        assert!(yaml.contains(want), "missing {want:?} in\n{yaml}");
    }

    let described = k.ok(&["describe", "svc", "my-service"]).await;
    for want in [
        "Name:",
        "my-service",
        "Selector:",
        "app=MyApp",
        "TargetPort:",
        "9376/TCP",
        "Session Affinity:",
    ] {
        assert!(described.contains(want), "missing {want:?} in\n{described}");
    }

    // get -w prints the current rows, then new ones as they happen.
    let mut watch = k
        .command(&["get", "svc", "-w"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut reader = BufReader::new(watch.stdout.take().unwrap()).lines();
    let header = reader.next_line().await.unwrap().unwrap();
    assert!(header.starts_with("NAME"), "{header}");
    std::fs::write(dir.join("late.yaml"), "apiVersion: v1\nkind: Service\nmetadata: {name: late}\nspec: {ports: [{port: 8080, targetPort: 80}]}\n").unwrap();
    let created = k.run(&["create", "-f", &f("late.yaml")]).await;
    assert!(created.ok, "{}", created.stderr);
    let found = tokio::time::timeout(Duration::from_secs(20), async {
        while let Some(line) = reader.next_line().await.unwrap() {
            if line.starts_with("late") {
                return line;
            }
        }
        panic!("watch ended");
    })
    .await
    .expect("the watch shows the new Service");
    assert!(found.contains("8080/TCP"), "{found}");
    watch.kill().await.ok();

    let patched = k
        .ok(&[
            "patch",
            "svc",
            "my-service",
            "-p",
            r#"{"spec":{"ports":[{"port":80,"targetPort":8080}]}}"#,
        ])
        .await;
    assert_eq!(patched.trim(), "service/my-service patched");
    let tp = k
        .ok(&[
            "get",
            "svc",
            "my-service",
            "-o",
            "jsonpath={.spec.ports[0].targetPort} {.spec.ports[1].targetPort}",
        ])
        .await;
    assert_eq!(tp.trim(), "8080 9377");

    // Validation errors reach the user with the field path.
    std::fs::write(dir.join("bad.yaml"), "apiVersion: v1\nkind: Service\nmetadata: {name: bad}\nspec: {ports: [{name: 123_abc, port: 80}]}\n").unwrap();
    let bad = k.run(&["create", "-f", &f("bad.yaml")]).await;
    assert!(!bad.ok);
    assert!(
        bad.stderr
            .contains(r#"spec.ports[0].name: Invalid value: "123_abc""#),
        "{}",
        bad.stderr
    );

    assert_eq!(
        k.ok(&["delete", "svc", "my-service"]).await.trim(),
        "service \"my-service\" deleted"
    );
    let gone = k.run(&["get", "svc", "my-service"]).await;
    assert!(!gone.ok);
    assert!(gone.stderr.contains("NotFound"), "{}", gone.stderr);
    let eps = k.ok(&["get", "endpointslices"]).await;
    assert!(
        !eps.contains("my-service"),
        "slices follow the Service away:\n{eps}"
    );
}

const APPLIED: &str = "apiVersion: v1
kind: Service
metadata: {name: applied, labels: {app: web}}
spec:
  selector: {app: web}
  ports:
  - {name: http, port: 80, targetPort: 8080}
";

/// `kubectl apply --server-side` by two field managers: the second conflicts (409, kubectl
/// names the field and the manager), `--force-conflicts` takes the field over, and
/// `--show-managed-fields` shows both; an object made by client-side apply migrates; dry runs
/// (`--dry-run=server`, `kubectl diff`) change nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_server_side_apply_conflicts_forces_and_migrates() {
    if !require_tool("kubectl") {
        return;
    }
    let srv = start(Transport::Socket).await;
    let dir = srv.dir.path().to_owned();
    let k = Kubectl::new(&dir, srv.addr.unwrap());
    let f = |name: &str, text: &str| {
        let p = dir.join(name);
        std::fs::write(&p, text).unwrap();
        p.to_string_lossy().into_owned()
    };
    let v1 = f("v1.yaml", APPLIED);
    let v2 = f("v2.yaml", &APPLIED.replace("8080", "9090"));
    assert_eq!(
        k.ok(&["apply", "--server-side", "-f", &v1]).await.trim(),
        "service/applied serverside-applied"
    );
    // The same again changes nothing.
    let rv = k
        .ok(&[
            "get",
            "svc",
            "applied",
            "-o",
            "jsonpath={.metadata.resourceVersion}",
        ])
        .await;
    k.ok(&["apply", "--server-side", "-f", &v1]).await;
    let again = k
        .ok(&[
            "get",
            "svc",
            "applied",
            "-o",
            "jsonpath={.metadata.resourceVersion}",
        ])
        .await;
    assert_eq!(rv, again, "a no-op apply is not written");

    let conflict = k
        .run(&["apply", "--server-side", "--field-manager=other", "-f", &v2])
        .await;
    assert!(!conflict.ok);
    assert!(
        conflict.stderr.contains(
            r#"Apply failed with 1 conflict: conflict with "kubectl": .spec.ports[port=80,protocol="TCP"].targetPort"#
        ),
        "{}",
        conflict.stderr
    );
    assert!(
        conflict.stderr.contains("--force-conflicts"),
        "{}",
        conflict.stderr
    );
    k.ok(&[
        "apply",
        "--server-side",
        "--field-manager=other",
        "--force-conflicts",
        "-f",
        &v2,
    ])
    .await;
    let yaml = k
        .ok(&[
            "get",
            "svc",
            "applied",
            "-o",
            "yaml",
            "--show-managed-fields",
        ])
        .await;
    assert!(yaml.contains("manager: kubectl\n"), "{yaml}");
    assert!(yaml.contains("manager: other\n"), "{yaml}");
    assert!(yaml.contains("operation: Apply"), "{yaml}");
    assert!(yaml.contains("targetPort: 9090"), "{yaml}");
    let plain = k.ok(&["get", "svc", "applied", "-o", "yaml"]).await;
    assert!(
        !plain.contains("managedFields"),
        "kubectl hides them by default"
    );

    // Dry runs change nothing.
    let v3 = f("v3.yaml", &APPLIED.replace("8080", "7070"));
    let diff = k
        .run(&["diff", "--server-side", "--force-conflicts", "-f", &v3])
        .await;
    assert!(
        diff.stdout.contains("+    targetPort: 7070"),
        "{}{}",
        diff.stdout,
        diff.stderr
    );
    k.ok(&[
        "apply",
        "--server-side",
        "--force-conflicts",
        "--dry-run=server",
        "-f",
        &v3,
    ])
    .await;
    assert_eq!(
        k.ok(&["delete", "svc", "applied", "--dry-run=server"])
            .await
            .trim(),
        "service \"applied\" deleted (server dry run)"
    );
    let tp = k
        .ok(&[
            "get",
            "svc",
            "applied",
            "-o",
            "jsonpath={.spec.ports[0].targetPort}",
        ])
        .await;
    assert_eq!(tp, "9090");

    // Client-side apply, then server-side: kubectl migrates the ownership, and a port the
    // manifest no longer has goes.
    let csa = f(
        "csa.yaml",
        "apiVersion: v1\nkind: Service\nmetadata: {name: csa}\nspec:\n  selector: {app: csa}\n  ports:\n  - {name: http, port: 80, targetPort: 8080}\n  - {name: alt, port: 81, targetPort: 8081}\n",
    );
    k.ok(&["apply", "-f", &csa]).await;
    let ssa = f(
        "ssa.yaml",
        "apiVersion: v1\nkind: Service\nmetadata: {name: csa}\nspec:\n  selector: {app: csa}\n  ports:\n  - {name: http, port: 80, targetPort: 7070}\n",
    );
    k.ok(&["apply", "--server-side", "-f", &ssa]).await;
    let ports = k
        .ok(&["get", "svc", "csa", "-o", "jsonpath={.spec.ports[*].port}/{.spec.ports[0].targetPort}/{.metadata.managedFields[*].manager}"])
        .await;
    assert_eq!(ports, "80/7070/kubectl kubectl-last-applied");
}
