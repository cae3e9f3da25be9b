//! `svcnet dns` and `svcnet env`: cluster DNS, and the kubelet's service environment
//! variables for a namespace.

use std::net::SocketAddr;

use anyhow::{Context, bail};
use clap::Args;
use k8s_openapi::api::core::v1::Service;
use kube::api::{Api, ListParams};
use svcnet_dns::{DnsConfig, PodsMode};

use crate::api_client::ApiArgs;
use crate::proxy_cmd::optional_addr;

#[derive(Args, Clone, Debug)]
pub struct DnsArgs {
    #[command(flatten)]
    api: ApiArgs,
    /// UDP and TCP address to answer on.
    #[arg(long, default_value = "0.0.0.0:53")]
    listen: SocketAddr,
    /// The cluster domain.
    #[arg(long, default_value = "cluster.local")]
    cluster_domain: String,
    /// TTL of cluster answers, seconds (0-3600).
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u32).range(0..=3600))]
    ttl: u32,
    /// Pod records: disabled, insecure or verified.
    #[arg(long, default_value = "disabled", value_parser = parse_pods)]
    pods: PodsMode,
    /// Upstream servers for other names, IP[:PORT],… (default: the nameservers in /etc/resolv.conf).
    #[arg(long, value_delimiter = ',', conflicts_with = "no_forward")]
    upstream: Vec<String>,
    /// Answer cluster names only; everything else gets REFUSED.
    #[arg(long)]
    no_forward: bool,
    /// Address for /health, /ready and /metrics (empty to disable).
    #[arg(long, default_value = "127.0.0.1:8181")]
    health_listen: String,
}

fn parse_pods(s: &str) -> Result<PodsMode, String> {
    match s {
        "disabled" => Ok(PodsMode::Disabled),
        "insecure" => Ok(PodsMode::Insecure),
        "verified" => Ok(PodsMode::Verified),
        other => Err(format!(
            "{other:?} is not one of disabled, insecure, verified"
        )),
    }
}

fn parse_upstream(s: &str) -> anyhow::Result<SocketAddr> {
    let s = s.trim();
    if let Ok(a) = s.parse::<SocketAddr>() {
        return Ok(a);
    }
    let ip: std::net::IpAddr = s
        .parse()
        .with_context(|| format!("--upstream: {s:?} is not IP[:PORT]"))?;
    Ok(SocketAddr::new(ip, 53))
}

/// The upstreams to use; never our own address (that would be a forwarding loop).
pub fn upstreams(given: &[String], listen: SocketAddr) -> anyhow::Result<Vec<SocketAddr>> {
    let list = if given.is_empty() {
        svcnet_dns::read_resolv_conf("/etc/resolv.conf")
    } else {
        given
            .iter()
            .map(|s| parse_upstream(s))
            .collect::<anyhow::Result<_>>()?
    };
    let looping = |u: &SocketAddr| {
        u.port() == listen.port()
            && (u.ip() == listen.ip() || listen.ip().is_unspecified() && u.ip().is_loopback())
    };
    let (skip, keep): (Vec<_>, Vec<_>) = list.into_iter().partition(looping);
    for s in skip {
        tracing::warn!(upstream = %s, "ignoring an upstream that is this server itself");
    }
    Ok(keep)
}

pub fn config(args: &DnsArgs) -> anyhow::Result<DnsConfig> {
    let health_listen = optional_addr("health-listen", &args.health_listen)?;
    let upstreams = if args.no_forward {
        Vec::new()
    } else {
        upstreams(&args.upstream, args.listen)?
    };
    if !args.no_forward && upstreams.is_empty() {
        tracing::warn!("no upstream servers: names outside the cluster will get REFUSED");
    }
    Ok(DnsConfig {
        listen: args.listen,
        zone: args.cluster_domain.clone(),
        ttl: args.ttl,
        pods_mode: args.pods,
        upstreams,
        forward: !args.no_forward,
        health_listen,
    })
}

pub async fn run(args: DnsArgs) -> anyhow::Result<()> {
    let shutdown = crate::signals::Shutdown::install()?;
    let config = config(&args)?;
    let Some(client) = shutdown.unless(args.api.connect()).await else {
        return Ok(());
    };
    svcnet_dns::run(client?, config, shutdown.wait())
        .await
        .context("DNS server")?;
    Ok(())
}

#[derive(Args, Clone, Debug)]
pub struct EnvArgs {
    #[command(flatten)]
    api: ApiArgs,
    /// The pod's namespace.
    #[arg(long, short = 'n', default_value = "default")]
    namespace: String,
    /// Output: env (NAME=value lines) or json.
    #[arg(long, default_value = "env")]
    format: String,
    /// As a pod with enableServiceLinks: false (only the kubernetes Service).
    #[arg(long)]
    no_service_links: bool,
}

pub async fn env(args: EnvArgs) -> anyhow::Result<()> {
    if !matches!(args.format.as_str(), "env" | "json") {
        bail!("--format must be env or json");
    }
    let client = args.api.connect().await?;
    let mut services: Vec<Service> = Api::<Service>::namespaced(client.clone(), &args.namespace)
        .list(&ListParams::default())
        .await
        .with_context(|| format!("listing Services in {}", args.namespace))?
        .items;
    if args.namespace != "default"
        && let Some(k) = Api::<Service>::namespaced(client, "default")
            .get_opt("kubernetes")
            .await?
    {
        services.push(k);
    }
    let vars =
        svcnet_core::envvars::service_env(&args.namespace, &services, !args.no_service_links);
    if args.format == "json" {
        let map: serde_json::Map<String, serde_json::Value> =
            vars.into_iter().map(|(k, v)| (k, v.into())).collect();
        println!("{}", serde_json::to_string_pretty(&map)?);
    } else {
        for (k, v) in vars {
            println!("{k}={v}");
        }
    }
    Ok(())
}
