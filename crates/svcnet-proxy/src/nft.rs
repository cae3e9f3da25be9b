//! svcnet's own nftables table, replaced atomically with `nft -f -`. The proxy touches no
//! other table.

use std::fmt::Write as _;
use std::net::IpAddr;
use std::process::Stdio;

use tokio::io::AsyncWriteExt;

use crate::model::Protocol;

pub const TABLE: &str = "svcnet";

/// One virtual address the rules act on.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Vip {
    pub ip: IpAddr,
    pub port: u16,
    pub protocol: Protocol,
}

/// What to do with new connections to a VIP.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum VipAction {
    /// Send to the local proxy port (userspace mode).
    Redirect(u16),
    /// No ready endpoints: refuse at once (TCP RST, ICMP port unreachable).
    Reject,
}

fn daddr(ip: IpAddr) -> String {
    match ip {
        IpAddr::V4(v4) => format!("ip daddr {v4}"),
        IpAddr::V6(v6) => format!("ip6 daddr {v6}"),
    }
}

/// The whole table as an `nft -f` script that replaces any previous version atomically.
pub fn render(rules: &[(Vip, VipAction)]) -> String {
    let mut s = String::new();
    // Creating then deleting makes the delete valid whether or not the table existed; the
    // script is one transaction, so packets never see a half-written table.
    let _ = writeln!(
        s,
        "table inet {TABLE}\ndelete table inet {TABLE}\ntable inet {TABLE} {{"
    );
    for (chain, hook, priority) in [
        ("nat-prerouting", "prerouting", "dstnat"),
        ("nat-output", "output", "-100"),
    ] {
        let _ = writeln!(
            s,
            "  chain {chain} {{\n    type nat hook {hook} priority {priority}; policy accept;"
        );
        for (vip, action) in rules {
            if let VipAction::Redirect(port) = action {
                let _ = writeln!(
                    s,
                    "    {} {} dport {} redirect to :{port}",
                    daddr(vip.ip),
                    vip.protocol.nft(),
                    vip.port
                );
            }
        }
        let _ = writeln!(s, "  }}");
    }
    // Refusals happen before NAT (priority dstnat - 10), on prerouting for pods and output for
    // local clients: served ports pass, anything else addressed to a live VIP (a port without
    // endpoints, or a port the Service does not have) is refused at once, as kube-proxy's
    // no-endpoint and cluster-ips-check rules do. (A reject in the forward hook answers TCP but
    // its ICMP never reaches a pod on the same bridge, so prerouting it is.)
    let mut live: Vec<IpAddr> = rules.iter().map(|(v, _)| v.ip).collect();
    live.sort();
    live.dedup();
    for (chain, hook) in [
        ("filter-prerouting", "prerouting"),
        ("filter-output", "output"),
    ] {
        let _ = writeln!(
            s,
            "  chain {chain} {{\n    type filter hook {hook} priority -110; policy accept;"
        );
        for (vip, action) in rules {
            if matches!(action, VipAction::Redirect(_)) {
                let _ = writeln!(
                    s,
                    "    {} {} dport {} accept",
                    daddr(vip.ip),
                    vip.protocol.nft(),
                    vip.port
                );
            }
        }
        // Only new connections: packets of established ones (to a backend that just became
        // unready, or on a port just removed) keep flowing through the proxy.
        for ip in &live {
            let _ = writeln!(
                s,
                "    ct state new {} meta l4proto tcp reject with tcp reset",
                daddr(*ip)
            );
            let _ = writeln!(
                s,
                "    ct state new {} reject with icmpx type port-unreachable",
                daddr(*ip)
            );
        }
        let _ = writeln!(s, "  }}");
    }
    s.push_str("}\n");
    s
}

#[derive(Debug, thiserror::Error)]
pub enum NftError {
    #[error("cannot run nft (is the nftables package installed?): {0}")]
    Spawn(std::io::Error),
    #[error("nft rejected the ruleset: {0}")]
    Rejected(String),
}

/// Applies a script with `nft -f -`.
pub async fn apply(script: &str) -> Result<(), NftError> {
    let mut child = tokio::process::Command::new("nft")
        .args(["-f", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(NftError::Spawn)?;
    let mut stdin = child.stdin.take().expect("piped stdin");
    stdin
        .write_all(script.as_bytes())
        .await
        .map_err(NftError::Spawn)?;
    drop(stdin);
    let out = child.wait_with_output().await.map_err(NftError::Spawn)?;
    if out.status.success() {
        Ok(())
    } else {
        Err(NftError::Rejected(
            String::from_utf8_lossy(&out.stderr).trim().to_owned(),
        ))
    }
}

/// Removes svcnet's table, if present.
pub async fn delete_table() -> Result<(), NftError> {
    apply(&format!("table inet {TABLE}\ndelete table inet {TABLE}\n")).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_redirects_and_rejects() {
        let rules = vec![
            (
                Vip {
                    ip: "10.96.0.10".parse().unwrap(),
                    port: 80,
                    protocol: Protocol::Tcp,
                },
                VipAction::Redirect(40000),
            ),
            (
                Vip {
                    ip: "10.96.0.11".parse().unwrap(),
                    port: 53,
                    protocol: Protocol::Udp,
                },
                VipAction::Reject,
            ),
            (
                Vip {
                    ip: "fd00::a".parse().unwrap(),
                    port: 443,
                    protocol: Protocol::Tcp,
                },
                VipAction::Reject,
            ),
        ];
        let s = render(&rules);
        assert!(s.starts_with("table inet svcnet\ndelete table inet svcnet\n"));
        assert_eq!(
            s.matches("ip daddr 10.96.0.10 tcp dport 80 redirect to :40000")
                .count(),
            2
        );
        assert_eq!(
            s.matches("ct state new ip daddr 10.96.0.11 reject with icmpx type port-unreachable")
                .count(),
            2
        );
        assert_eq!(
            s.matches("ct state new ip6 daddr fd00::a meta l4proto tcp reject with tcp reset")
                .count(),
            2
        );
        // The redirected port passes; other ports of that VIP are refused.
        assert_eq!(
            s.matches("ip daddr 10.96.0.10 tcp dport 80 accept").count(),
            2
        );
        assert_eq!(
            s.matches("ct state new ip daddr 10.96.0.10 meta l4proto tcp reject with tcp reset")
                .count(),
            2
        );
        assert!(!s.contains("dport 53 redirect"));
    }
}
