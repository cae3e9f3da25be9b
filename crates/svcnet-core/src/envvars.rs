//! The Docker-link style environment variables the kubelet gives every container for the
//! Services it can see (`FOO_SERVICE_HOST`, `FOO_PORT_80_TCP_ADDR`, ...).
//!
//! This reproduces kubernetes/kubernetes `pkg/kubelet/kubelet_pods.go` (`getServiceEnvVarMap`:
//! which Services) and `pkg/kubelet/envvars/envvars.go` (`FromServices`: which variables), as a
//! pure function over a Service list. The kubelet collects the variables in a Go map, so their
//! order in a container is unspecified; [`service_env`] returns them sorted by name.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::Service;

/// The namespace whose "master" Services every pod sees (`metav1.NamespaceDefault`).
const MASTER_NAMESPACE: &str = "default";
/// The kubelet's `masterServices` set.
const MASTER_SERVICES: &[&str] = &["kubernetes"];

/// The service environment variables of a pod in `pod_namespace`, sorted by name.
///
/// `services` is every Service the kubelet knows (all namespaces). Included are:
/// - the `kubernetes` Service of the `default` namespace, always, even when
///   `enable_service_links` is false;
/// - every Service of the pod's own namespace when `enable_service_links` is true (the pod
///   default); a Service there called `kubernetes` replaces the `default` one.
///
/// Services without a cluster IP (`""` or `"None"`: headless and ExternalName Services) give
/// no variables. Only `spec.clusterIP` is used, so a dual-stack Service exposes its primary
/// family only; the address is copied verbatim (not canonicalised) and bracketed only inside
/// the `proto://host:port` URLs.
///
/// Two deviations, both for inputs the kubelet cannot meet sanely: a Service with a cluster IP
/// but no ports (rejected by validation; the kubelet would index out of range) gives no
/// variables, and when two included Services produce the same variable name (the kubelet's
/// result then depends on Go's map order) the Service whose name sorts last wins.
pub fn service_env(
    pod_namespace: &str,
    services: &[Service],
    enable_service_links: bool,
) -> Vec<(String, String)> {
    let mut included: BTreeMap<&str, &Service> = BTreeMap::new();
    for service in services {
        if cluster_ip(service).is_none() {
            continue;
        }
        let Some(name) = service.metadata.name.as_deref() else {
            continue;
        };
        let namespace = service.metadata.namespace.as_deref().unwrap_or_default();
        if namespace == MASTER_NAMESPACE && MASTER_SERVICES.contains(&name) {
            included.entry(name).or_insert(service);
        } else if namespace == pod_namespace && enable_service_links {
            included.insert(name, service);
        }
    }

    let mut env = BTreeMap::new();
    for (name, service) in included {
        for (key, value) in service_variables(name, service) {
            env.insert(key, value);
        }
    }
    env.into_iter().collect()
}

/// `spec.clusterIP` when it is set (the kubelet's `IsServiceIPSet`).
fn cluster_ip(service: &Service) -> Option<&str> {
    let ip = service.spec.as_ref()?.cluster_ip.as_deref()?;
    (!ip.is_empty() && ip != "None").then_some(ip)
}

/// `FromServices` for one Service, in the kubelet's order.
fn service_variables(name: &str, service: &Service) -> Vec<(String, String)> {
    let Some(ip) = cluster_ip(service) else {
        return Vec::new();
    };
    let ports = service
        .spec
        .as_ref()
        .and_then(|s| s.ports.as_deref())
        .unwrap_or_default();
    let Some(first) = ports.first() else {
        return Vec::new();
    };
    let prefix = env_name(name);
    let mut out = Vec::with_capacity(3 + 5 * ports.len());
    out.push((format!("{prefix}_SERVICE_HOST"), ip.to_owned()));
    let service_port = format!("{prefix}_SERVICE_PORT");
    out.push((service_port.clone(), first.port.to_string()));
    for port in ports {
        if let Some(port_name) = port.name.as_deref().filter(|n| !n.is_empty()) {
            out.push((
                format!("{service_port}_{}", env_name(port_name)),
                port.port.to_string(),
            ));
        }
    }
    // Docker-compatible link variables.
    for (i, port) in ports.iter().enumerate() {
        let protocol = port
            .protocol
            .as_deref()
            .filter(|p| !p.is_empty())
            .unwrap_or("TCP");
        let lower = protocol.to_lowercase();
        let url = format!("{lower}://{}", join_host_port(ip, port.port));
        if i == 0 {
            out.push((format!("{prefix}_PORT"), url.clone()));
        }
        let port_prefix = format!("{prefix}_PORT_{}_{}", port.port, protocol.to_uppercase());
        out.push((format!("{port_prefix}_PROTO"), lower));
        out.push((format!("{port_prefix}_PORT"), port.port.to_string()));
        out.push((format!("{port_prefix}_ADDR"), ip.to_owned()));
        out.push((port_prefix, url));
    }
    out
}

/// `makeEnvVariableName`: upper case, `-` as `_`.
fn env_name(s: &str) -> String {
    s.replace('-', "_").to_uppercase()
}

/// Go's `net.JoinHostPort`: brackets a host that contains a colon.
fn join_host_port(host: &str, port: i32) -> String {
    if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

#[cfg(test)]
mod tests {
    use k8s_openapi::api::core::v1::{ServicePort, ServiceSpec};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

    use super::*;

    fn service(ns: &str, name: &str, ip: Option<&str>, ports: &[(&str, &str, i32)]) -> Service {
        Service {
            metadata: ObjectMeta {
                name: Some(name.into()),
                namespace: Some(ns.into()),
                ..Default::default()
            },
            spec: Some(ServiceSpec {
                cluster_ip: ip.map(Into::into),
                ports: Some(
                    ports
                        .iter()
                        .map(|(name, proto, port)| ServicePort {
                            name: (!name.is_empty()).then(|| name.to_string()),
                            protocol: (!proto.is_empty()).then(|| proto.to_string()),
                            port: *port,
                            ..Default::default()
                        })
                        .collect(),
                ),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
        let mut v: Vec<_> = list
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        v.sort();
        v
    }

    /// The services of kubelet's `envvars_test.go` `TestFromServices`.
    fn upstream_services() -> Vec<Service> {
        vec![
            service("test", "foo-bar", Some("1.2.3.4"), &[("", "TCP", 8080)]),
            service(
                "test",
                "abc-123",
                Some("5.6.7.8"),
                &[("u-d-p", "UDP", 8081), ("t-c-p", "TCP", 8081)],
            ),
            service(
                "test",
                "q-u-u-x",
                Some("9.8.7.6"),
                &[("", "", 8082), ("", "", 8083)],
            ),
            service(
                "test",
                "svrc-clusterip-none",
                Some("None"),
                &[("", "", 8082)],
            ),
            service("test", "svrc-clusterip-empty", Some(""), &[("", "", 8082)]),
            service(
                "test",
                "super-ipv6",
                Some("2001:DB8::"),
                &[("u-d-p", "UDP", 8084), ("t-c-p", "TCP", 8084)],
            ),
            service("test", "sctp-1", Some("1.2.3.4"), &[("", "SCTP", 777)]),
        ]
    }

    #[test]
    fn upstream_vectors() {
        let got = service_env("test", &upstream_services(), true);
        let want = pairs(&[
            ("FOO_BAR_SERVICE_HOST", "1.2.3.4"),
            ("FOO_BAR_SERVICE_PORT", "8080"),
            ("FOO_BAR_PORT", "tcp://1.2.3.4:8080"),
            ("FOO_BAR_PORT_8080_TCP", "tcp://1.2.3.4:8080"),
            ("FOO_BAR_PORT_8080_TCP_PROTO", "tcp"),
            ("FOO_BAR_PORT_8080_TCP_PORT", "8080"),
            ("FOO_BAR_PORT_8080_TCP_ADDR", "1.2.3.4"),
            ("ABC_123_SERVICE_HOST", "5.6.7.8"),
            ("ABC_123_SERVICE_PORT", "8081"),
            ("ABC_123_SERVICE_PORT_U_D_P", "8081"),
            ("ABC_123_SERVICE_PORT_T_C_P", "8081"),
            ("ABC_123_PORT", "udp://5.6.7.8:8081"),
            ("ABC_123_PORT_8081_UDP", "udp://5.6.7.8:8081"),
            ("ABC_123_PORT_8081_UDP_PROTO", "udp"),
            ("ABC_123_PORT_8081_UDP_PORT", "8081"),
            ("ABC_123_PORT_8081_UDP_ADDR", "5.6.7.8"),
            ("ABC_123_PORT_8081_TCP", "tcp://5.6.7.8:8081"),
            ("ABC_123_PORT_8081_TCP_PROTO", "tcp"),
            ("ABC_123_PORT_8081_TCP_PORT", "8081"),
            ("ABC_123_PORT_8081_TCP_ADDR", "5.6.7.8"),
            ("Q_U_U_X_SERVICE_HOST", "9.8.7.6"),
            ("Q_U_U_X_SERVICE_PORT", "8082"),
            ("Q_U_U_X_PORT", "tcp://9.8.7.6:8082"),
            ("Q_U_U_X_PORT_8082_TCP", "tcp://9.8.7.6:8082"),
            ("Q_U_U_X_PORT_8082_TCP_PROTO", "tcp"),
            ("Q_U_U_X_PORT_8082_TCP_PORT", "8082"),
            ("Q_U_U_X_PORT_8082_TCP_ADDR", "9.8.7.6"),
            ("Q_U_U_X_PORT_8083_TCP", "tcp://9.8.7.6:8083"),
            ("Q_U_U_X_PORT_8083_TCP_PROTO", "tcp"),
            ("Q_U_U_X_PORT_8083_TCP_PORT", "8083"),
            ("Q_U_U_X_PORT_8083_TCP_ADDR", "9.8.7.6"),
            ("SUPER_IPV6_SERVICE_HOST", "2001:DB8::"),
            ("SUPER_IPV6_SERVICE_PORT", "8084"),
            ("SUPER_IPV6_SERVICE_PORT_U_D_P", "8084"),
            ("SUPER_IPV6_SERVICE_PORT_T_C_P", "8084"),
            ("SUPER_IPV6_PORT", "udp://[2001:DB8::]:8084"),
            ("SUPER_IPV6_PORT_8084_UDP", "udp://[2001:DB8::]:8084"),
            ("SUPER_IPV6_PORT_8084_UDP_PROTO", "udp"),
            ("SUPER_IPV6_PORT_8084_UDP_PORT", "8084"),
            ("SUPER_IPV6_PORT_8084_UDP_ADDR", "2001:DB8::"),
            ("SUPER_IPV6_PORT_8084_TCP", "tcp://[2001:DB8::]:8084"),
            ("SUPER_IPV6_PORT_8084_TCP_PROTO", "tcp"),
            ("SUPER_IPV6_PORT_8084_TCP_PORT", "8084"),
            ("SUPER_IPV6_PORT_8084_TCP_ADDR", "2001:DB8::"),
            ("SCTP_1_SERVICE_HOST", "1.2.3.4"),
            ("SCTP_1_SERVICE_PORT", "777"),
            ("SCTP_1_PORT", "sctp://1.2.3.4:777"),
            ("SCTP_1_PORT_777_SCTP", "sctp://1.2.3.4:777"),
            ("SCTP_1_PORT_777_SCTP_PROTO", "sctp"),
            ("SCTP_1_PORT_777_SCTP_PORT", "777"),
            ("SCTP_1_PORT_777_SCTP_ADDR", "1.2.3.4"),
        ]);
        assert_eq!(got, want);
    }

    #[test]
    fn sorted_by_name() {
        let got = service_env("test", &upstream_services(), true);
        assert!(got.windows(2).all(|w| w[0].0 < w[1].0));
    }

    #[test]
    fn no_cluster_ip_gives_nothing() {
        let services = [
            service("test", "none", Some("None"), &[("", "TCP", 80)]),
            service("test", "empty", Some(""), &[("", "TCP", 80)]),
            service("test", "unset", None, &[("", "TCP", 80)]),
        ];
        assert!(service_env("test", &services, true).is_empty());
    }

    #[test]
    fn external_name_is_skipped() {
        let mut ext = service("test", "ext", None, &[("", "TCP", 80)]);
        let spec = ext.spec.as_mut().unwrap();
        spec.type_ = Some("ExternalName".into());
        spec.external_name = Some("example.com".into());
        assert!(service_env("test", &[ext], true).is_empty());
    }

    #[test]
    fn worked_ipv6_example() {
        let services = [service(
            "ns",
            "my-svc",
            Some("fd00:10:96::a"),
            &[("http", "TCP", 8080), ("dns-udp", "UDP", 5353)],
        )];
        let got = service_env("ns", &services, true);
        let want = pairs(&[
            ("MY_SVC_SERVICE_HOST", "fd00:10:96::a"),
            ("MY_SVC_SERVICE_PORT", "8080"),
            ("MY_SVC_SERVICE_PORT_HTTP", "8080"),
            ("MY_SVC_SERVICE_PORT_DNS_UDP", "5353"),
            ("MY_SVC_PORT", "tcp://[fd00:10:96::a]:8080"),
            ("MY_SVC_PORT_8080_TCP", "tcp://[fd00:10:96::a]:8080"),
            ("MY_SVC_PORT_8080_TCP_PROTO", "tcp"),
            ("MY_SVC_PORT_8080_TCP_PORT", "8080"),
            ("MY_SVC_PORT_8080_TCP_ADDR", "fd00:10:96::a"),
            ("MY_SVC_PORT_5353_UDP", "udp://[fd00:10:96::a]:5353"),
            ("MY_SVC_PORT_5353_UDP_PROTO", "udp"),
            ("MY_SVC_PORT_5353_UDP_PORT", "5353"),
            ("MY_SVC_PORT_5353_UDP_ADDR", "fd00:10:96::a"),
        ]);
        assert_eq!(got.len(), 13);
        assert_eq!(got, want);
    }

    #[test]
    fn redis_master_example() {
        let services = [service(
            "default",
            "redis-master",
            Some("10.0.0.11"),
            &[("", "TCP", 6379)],
        )];
        let got = service_env("default", &services, true);
        let want = pairs(&[
            ("REDIS_MASTER_SERVICE_HOST", "10.0.0.11"),
            ("REDIS_MASTER_SERVICE_PORT", "6379"),
            ("REDIS_MASTER_PORT", "tcp://10.0.0.11:6379"),
            ("REDIS_MASTER_PORT_6379_TCP", "tcp://10.0.0.11:6379"),
            ("REDIS_MASTER_PORT_6379_TCP_PROTO", "tcp"),
            ("REDIS_MASTER_PORT_6379_TCP_PORT", "6379"),
            ("REDIS_MASTER_PORT_6379_TCP_ADDR", "10.0.0.11"),
        ]);
        assert_eq!(got, want);
    }

    fn kubernetes_services() -> Vec<Service> {
        vec![
            service(
                "default",
                "kubernetes",
                Some("10.96.0.1"),
                &[("https", "TCP", 443)],
            ),
            service("default", "web", Some("10.96.0.20"), &[("", "TCP", 80)]),
            service("other", "db", Some("10.96.0.30"), &[("", "TCP", 5432)]),
            service("app", "api", Some("10.96.0.40"), &[("", "TCP", 8080)]),
        ]
    }

    fn names(env: &[(String, String)]) -> Vec<&str> {
        env.iter().map(|(k, _)| k.as_str()).collect()
    }

    #[test]
    fn kubernetes_from_default_always_included() {
        let env = service_env("app", &kubernetes_services(), true);
        let got = names(&env);
        assert!(got.contains(&"KUBERNETES_SERVICE_HOST"));
        assert!(got.contains(&"KUBERNETES_SERVICE_PORT_HTTPS"));
        assert!(got.contains(&"API_SERVICE_HOST"));
        // Other namespaces' Services, and default's other Services, are not visible.
        assert!(
            !got.iter()
                .any(|k| k.starts_with("WEB_") || k.starts_with("DB_"))
        );
        let host = env.iter().find(|(k, _)| k == "KUBERNETES_SERVICE_HOST");
        assert_eq!(host.unwrap().1, "10.96.0.1");
    }

    #[test]
    fn pod_in_default_sees_default_services() {
        let env = service_env("default", &kubernetes_services(), true);
        let got = names(&env);
        assert!(got.contains(&"KUBERNETES_SERVICE_HOST"));
        assert!(got.contains(&"WEB_SERVICE_HOST"));
        assert!(
            !got.iter()
                .any(|k| k.starts_with("API_") || k.starts_with("DB_"))
        );
    }

    #[test]
    fn kubernetes_in_pod_namespace_overrides_default() {
        // Either order of the input list: the pod namespace's Service wins.
        let own = service("app", "kubernetes", Some("10.96.5.5"), &[("", "TCP", 8443)]);
        for own_first in [true, false] {
            let mut services = kubernetes_services();
            if own_first {
                services.insert(0, own.clone());
            } else {
                services.push(own.clone());
            }
            let env = service_env("app", &services, true);
            let get = |k: &str| env.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
            assert_eq!(get("KUBERNETES_SERVICE_HOST"), Some("10.96.5.5"));
            assert_eq!(get("KUBERNETES_SERVICE_PORT"), Some("8443"));
            assert_eq!(get("KUBERNETES_PORT"), Some("tcp://10.96.5.5:8443"));
            // Nothing of the default one leaks through.
            assert_eq!(get("KUBERNETES_SERVICE_PORT_HTTPS"), None);
            assert_eq!(get("KUBERNETES_PORT_443_TCP"), None);
        }
    }

    #[test]
    fn service_links_disabled_keeps_only_kubernetes() {
        let mut services = kubernetes_services();
        // Even a same-named Service in the pod's namespace is ignored without service links.
        services.push(service(
            "app",
            "kubernetes",
            Some("10.96.5.5"),
            &[("", "TCP", 8443)],
        ));
        let env = service_env("app", &services, false);
        let want = pairs(&[
            ("KUBERNETES_SERVICE_HOST", "10.96.0.1"),
            ("KUBERNETES_SERVICE_PORT", "443"),
            ("KUBERNETES_SERVICE_PORT_HTTPS", "443"),
            ("KUBERNETES_PORT", "tcp://10.96.0.1:443"),
            ("KUBERNETES_PORT_443_TCP", "tcp://10.96.0.1:443"),
            ("KUBERNETES_PORT_443_TCP_PROTO", "tcp"),
            ("KUBERNETES_PORT_443_TCP_PORT", "443"),
            ("KUBERNETES_PORT_443_TCP_ADDR", "10.96.0.1"),
        ]);
        assert_eq!(env, want);
        // In the default namespace too.
        let env = service_env("default", &kubernetes_services(), false);
        assert_eq!(env, want);
    }

    #[test]
    fn headless_kubernetes_in_default_is_skipped() {
        let services = [service(
            "default",
            "kubernetes",
            Some("None"),
            &[("", "TCP", 443)],
        )];
        assert!(service_env("app", &services, false).is_empty());
    }

    #[test]
    fn dual_stack_uses_primary_cluster_ip_only() {
        let mut svc = service("ns", "dual", Some("10.96.0.9"), &[("", "TCP", 80)]);
        svc.spec.as_mut().unwrap().cluster_ips =
            Some(vec!["10.96.0.9".into(), "fd00:10:96::9".into()]);
        let env = service_env("ns", &[svc], true);
        assert!(env.iter().all(|(_, v)| !v.contains("fd00")));
        assert_eq!(env.len(), 7);
    }

    #[test]
    fn count_per_service() {
        // 2 + named ports + 1 + 4 × ports.
        let svc = service(
            "ns",
            "multi",
            Some("10.0.0.1"),
            &[("a", "TCP", 1), ("b", "UDP", 2), ("c", "SCTP", 3)],
        );
        assert_eq!(service_env("ns", &[svc], true).len(), 2 + 3 + 1 + 4 * 3);
    }

    #[test]
    fn no_ports_gives_nothing() {
        let svc = service("ns", "bare", Some("10.0.0.1"), &[]);
        assert!(service_env("ns", &[svc], true).is_empty());
    }
}
