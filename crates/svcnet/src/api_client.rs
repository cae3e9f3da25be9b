//! How the node components (proxy, DNS, env) reach the API: `--kubeconfig` or `--master`,
//! as kube-proxy spells them, checked once at start so a wrong address is a clear error.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use clap::Args;

#[derive(Args, Clone, Debug)]
pub struct ApiArgs {
    /// Path to a kubeconfig for the API server.
    #[arg(long)]
    pub kubeconfig: Option<PathBuf>,
    /// The API server URL (overrides the kubeconfig's).
    #[arg(long)]
    pub master: Option<String>,
}

impl ApiArgs {
    /// A client that has answered a `/version` request.
    pub async fn connect(&self) -> anyhow::Result<kube::Client> {
        let mut config = match &self.kubeconfig {
            Some(path) => {
                let kc = kube::config::Kubeconfig::read_from(path)
                    .with_context(|| format!("reading kubeconfig {}", path.display()))?;
                kube::Config::from_custom_kubeconfig(
                    kc,
                    &kube::config::KubeConfigOptions::default(),
                )
                .await
                .with_context(|| format!("using kubeconfig {}", path.display()))?
            }
            None => match &self.master {
                Some(m) => kube::Config::new(
                    m.parse()
                        .with_context(|| format!("--master: {m:?} is not a URL"))?,
                ),
                None => kube::Config::infer().await.context(
                    "no --kubeconfig or --master, and no in-cluster or default kubeconfig",
                )?,
            },
        };
        if let Some(m) = &self.master {
            config.cluster_url = m
                .parse()
                .with_context(|| format!("--master: {m:?} is not a URL"))?;
        }
        let url = config.cluster_url.clone();
        let client = kube::Client::try_from(config).context("building the API client")?;
        tokio::time::timeout(Duration::from_secs(10), client.apiserver_version())
            .await
            .map_err(|_| anyhow::anyhow!("the API server at {url} did not answer within 10s"))?
            .with_context(|| format!("cannot reach the API server at {url}"))?;
        Ok(client)
    }
}
