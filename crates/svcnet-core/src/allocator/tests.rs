use super::*;
use proptest::prelude::*;
use rand::SeedableRng;
use rand::rngs::StdRng;
use std::collections::HashSet;

fn v4(s: &str) -> IpAddr {
    s.parse().unwrap()
}

#[test]
fn excludes_network_and_broadcast() {
    let mut a = ClusterIpAllocator::new("10.0.0.0/24".parse().unwrap());
    assert_eq!(a.bitmap().size(), 254);
    assert_eq!(a.ip_at(0), v4("10.0.0.1"));
    assert!(matches!(
        a.allocate(v4("10.0.0.0")),
        Err(AllocError::IpNotInRange { .. })
    ));
    assert!(matches!(
        a.allocate(v4("10.0.0.255")),
        Err(AllocError::IpNotInRange { .. })
    ));
    a.allocate(v4("10.0.0.254")).unwrap();
    let err = a.allocate(v4("10.0.1.1")).unwrap_err();
    assert_eq!(
        err.to_string(),
        "the provided IP (10.0.1.1) is not in the valid range. The range of valid IPs is 10.0.0.0/24"
    );
    // Go's IPNet.Contains reads an IPv4-mapped address as IPv4.
    a.allocate("::ffff:10.0.0.7".parse().unwrap()).unwrap();
    assert!(a.bitmap().is_set(6));
    assert!(a.release(v4("10.0.0.7")));
    assert_eq!(
        a.allocate(v4("10.0.0.254")).unwrap_err().to_string(),
        "provided IP is already allocated"
    );
}

#[test]
fn static_band_sizes_follow_kep_3070() {
    assert_eq!(service_ip_static_band(65534), 256);
    assert_eq!(service_ip_static_band(1022), 63);
    assert_eq!(service_ip_static_band(62), 16);
    assert_eq!(node_port_static_band(2768), 86);
}

#[test]
fn dynamic_allocation_fills_the_upper_band_first() {
    let mut a = ClusterIpAllocator::new("10.0.0.0/26".parse().unwrap()); // 62 usable, band 16
    let mut rng = StdRng::seed_from_u64(7);
    for _ in 0..46 {
        let ip = a.allocate_next(&mut rng).unwrap();
        let IpAddr::V4(v) = ip else { panic!() };
        assert!(
            v.octets()[3] > 16,
            "{ip} came from the static band too early"
        );
    }
    for _ in 0..16 {
        a.allocate_next(&mut rng).unwrap();
    }
    assert_eq!(a.allocate_next(&mut rng), Err(AllocError::Full));
}

#[test]
fn ipv6_range_is_capped() {
    let a = ClusterIpAllocator::new("fd00:10:96::/108".parse().unwrap());
    assert_eq!(a.bitmap().size(), 1 << 16);
    assert_eq!(a.ip_at(0), "fd00:10:96::1".parse::<IpAddr>().unwrap());
}

#[test]
fn node_ports() {
    let mut n = NodePortAllocator::new("30000-32767".parse().unwrap());
    n.allocate(30080).unwrap();
    assert_eq!(
        n.allocate(30080).unwrap_err().to_string(),
        "provided port is already allocated"
    );
    assert_eq!(
        n.allocate(40000).unwrap_err().to_string(),
        "provided port is not in the valid range. The range of valid ports is 30000-32767"
    );
    assert!(n.release(30080));
    n.allocate(30080).unwrap();
    assert!("5-1".parse::<PortRange>().is_err());
}

proptest! {
    /// Any sequence of allocations and releases never hands out an address twice, the
    /// used count matches, and a fresh allocator rebuilt from the live set (restart repair)
    /// agrees exactly.
    #[test]
    fn no_double_allocation_and_repair(ops in proptest::collection::vec((any::<bool>(), 0u64..30), 1..200), seed in any::<u64>()) {
        let cidr: IpNet = "10.1.0.0/27".parse().unwrap(); // 30 usable
        let mut a = ClusterIpAllocator::new(cidr);
        let mut rng = StdRng::seed_from_u64(seed);
        let mut live: HashSet<IpAddr> = HashSet::new();
        for (alloc, pick) in ops {
            if alloc {
                match a.allocate_next(&mut rng) {
                    Ok(ip) => prop_assert!(live.insert(ip), "double allocation of {}", ip),
                    Err(AllocError::Full) => prop_assert_eq!(live.len(), 30),
                    Err(e) => prop_assert!(false, "{}", e),
                }
            } else {
                let ip = a.ip_at(pick);
                prop_assert_eq!(a.release(ip), live.remove(&ip));
            }
            prop_assert_eq!(a.bitmap().used() as usize, live.len());
        }
        let mut repaired = ClusterIpAllocator::new(cidr);
        for ip in &live {
            repaired.allocate(*ip).unwrap();
        }
        prop_assert_eq!(repaired.bitmap(), a.bitmap());
    }

    #[test]
    fn node_port_full_range_then_clear_error(seed in any::<u64>()) {
        let mut n = NodePortAllocator::new("31000-31039".parse().unwrap());
        let mut rng = StdRng::seed_from_u64(seed);
        let mut seen = HashSet::new();
        for _ in 0..40 {
            let p = n.allocate_next(&mut rng).unwrap();
            prop_assert!((31000..=31039).contains(&p));
            prop_assert!(seen.insert(p));
        }
        prop_assert_eq!(n.allocate_next(&mut rng), Err(AllocError::Full));
    }
}
