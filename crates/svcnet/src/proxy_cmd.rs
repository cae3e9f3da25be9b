//! `svcnet proxy`: flags as kube-proxy spells them, client set-up, and the mode choice.

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::{Context, bail};
use clap::Args;
use svcnet_proxy::scheduler::SchedulerKind;
use svcnet_proxy::userspace::{Userspace, UserspaceConfig};
use svcnet_proxy::{Dataplane, ProxyConfig};

use crate::api_client::ApiArgs;

#[derive(Args, Clone, Debug)]
pub struct ProxyArgs {
    #[command(flatten)]
    api: ApiArgs,
    /// This node's name.
    #[arg(long)]
    hostname_override: Option<String>,
    /// Dataplane: userspace (iptables, nftables and ipvs are not available yet).
    #[arg(long, default_value = "userspace")]
    proxy_mode: String,
    /// Backend choice in userspace mode: rr, wrr, lc, wlc, sh, dh, sed, nq, mh. Every endpoint
    /// has weight 1, so wrr acts as rr and wlc, sed and nq as lc.
    #[arg(long, default_value = "rr")]
    scheduler: SchedulerKind,
    /// How userspace mode moves TCP bytes: splice (zero-copy) or copy.
    #[arg(long, default_value = "splice")]
    relay: svcnet_proxy::userspace::Relay,
    /// Minimum time between syncs (e.g. 1s, 250ms).
    #[arg(long, default_value = "1s", value_parser = humantime::parse_duration)]
    min_sync_period: Duration,
    /// Full resync interval.
    #[arg(long, default_value = "30s", value_parser = humantime::parse_duration)]
    sync_period: Duration,
    /// Idle timeout of userspace UDP sessions.
    #[arg(long, default_value = "250ms", value_parser = humantime::parse_duration)]
    udp_timeout: Duration,
    /// `/healthz` address (empty to disable).
    #[arg(long, default_value = "0.0.0.0:10256")]
    healthz_bind_address: String,
    /// `/metrics` address (empty to disable).
    #[arg(long, default_value = "127.0.0.1:10249")]
    metrics_bind_address: String,
    /// Remove everything the proxy installed, then exit.
    #[arg(long)]
    cleanup: bool,
}

/// An `address:port` flag where the empty string means "disabled".
pub(crate) fn optional_addr(flag: &str, s: &str) -> anyhow::Result<Option<SocketAddr>> {
    if s.is_empty() {
        return Ok(None);
    }
    s.parse()
        .map(Some)
        .with_context(|| format!("--{flag}: {s:?} is not an address:port"))
}

fn dataplane(args: &ProxyArgs) -> anyhow::Result<Box<dyn Dataplane>> {
    match args.proxy_mode.as_str() {
        "userspace" => Ok(Box::new(Userspace::new(UserspaceConfig {
            scheduler: args.scheduler,
            relay: args.relay,
            udp_idle: args.udp_timeout,
            ..Default::default()
        }))),
        m @ ("iptables" | "nftables" | "ipvs") => {
            bail!("--proxy-mode {m} is not implemented yet; use --proxy-mode userspace")
        }
        other => bail!("--proxy-mode {other:?} is not one of userspace, iptables, nftables, ipvs"),
    }
}

pub async fn run(args: ProxyArgs) -> anyhow::Result<()> {
    let shutdown = crate::signals::Shutdown::install()?;
    let healthz = optional_addr("healthz-bind-address", &args.healthz_bind_address)?;
    let metrics = optional_addr("metrics-bind-address", &args.metrics_bind_address)?;
    let mut dp = dataplane(&args)?;
    if args.cleanup {
        dp.cleanup().await.context("cleaning up")?;
        println!("svcnet proxy: removed svcnet's rules");
        return Ok(());
    }
    let Some(client) = shutdown.unless(args.api.connect()).await else {
        return Ok(());
    };
    let client = client?;
    let node_name = args
        .hostname_override
        .clone()
        .or_else(|| {
            std::fs::read_to_string("/proc/sys/kernel/hostname")
                .ok()
                .map(|s| s.trim().to_owned())
        })
        .unwrap_or_default();
    let config = ProxyConfig {
        node_name,
        min_sync_period: args.min_sync_period,
        sync_period: args.sync_period,
        healthz,
        metrics,
    };
    svcnet_proxy::run(client, config, dp, shutdown.wait()).await?;
    Ok(())
}
