//! Server-wide settings.

use std::time::Duration;

#[derive(Clone, Debug)]
pub struct Config {
    pub service_cidrs: Vec<ipnet::IpNet>,
    pub node_port_range: svcnet_core::allocator::PortRange,
    /// Address clients reach the API at; published in the `kubernetes` Service's endpoints.
    pub advertise: std::net::SocketAddr,
    pub max_body_bytes: usize,
    pub bookmark_interval: Duration,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            service_cidrs: vec!["10.96.0.0/12".parse().expect("valid CIDR")],
            node_port_range: "30000-32767".parse().expect("valid range"),
            advertise: "127.0.0.1:6443".parse().expect("valid address"),
            max_body_bytes: 3 * 1024 * 1024,
            bookmark_interval: Duration::from_secs(30),
        }
    }
}
