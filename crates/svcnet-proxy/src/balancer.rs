//! Per service port backend choice: the scheduler, active connection counts, and ClientIP
//! session affinity. Pure apart from the time passed in, so affinity expiry is testable.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use crate::scheduler::{self, PickContext, Scheduler, SchedulerKind, Target};

#[derive(Debug)]
pub struct Balancer {
    targets: Vec<Target>,
    active: Vec<u32>,
    scheduler: Box<dyn Scheduler>,
    affinity_timeout: Option<Duration>,
    affinity: HashMap<IpAddr, (SocketAddr, Instant)>,
    /// The affinity table is swept of expired entries when it grows past this.
    sweep_at: usize,
    service: IpAddr,
}

const MIN_SWEEP: usize = 1024;

impl Balancer {
    pub fn new(kind: SchedulerKind, seed: u64, service: IpAddr) -> Self {
        Self {
            targets: Vec::new(),
            active: Vec::new(),
            scheduler: scheduler::build(kind, seed),
            affinity_timeout: None,
            affinity: HashMap::new(),
            sweep_at: MIN_SWEEP,
            service,
        }
    }

    /// Replaces the backends; affinity entries of removed backends are dropped, counts of
    /// kept ones carry over. Turning affinity off forgets every entry.
    pub fn update(&mut self, addrs: &[SocketAddr], affinity: Option<Duration>) {
        let new: Vec<Target> = addrs
            .iter()
            .map(|a| Target {
                addr: *a,
                weight: 1,
            })
            .collect();
        if new != self.targets {
            let active = new
                .iter()
                .map(|t| {
                    self.targets
                        .iter()
                        .position(|o| o.addr == t.addr)
                        .map_or(0, |i| self.active[i])
                })
                .collect();
            self.active = active;
            self.scheduler.set_targets(&new);
            self.targets = new;
            let targets = &self.targets;
            self.affinity
                .retain(|_, (addr, _)| targets.iter().any(|t| t.addr == *addr));
        }
        if affinity.is_none() {
            self.affinity.clear();
        }
        self.affinity_timeout = affinity;
    }

    /// Chooses a backend for a new connection from `client`, skipping `exclude`d addresses
    /// (backends that already failed for this connection).
    pub fn pick(
        &mut self,
        client: IpAddr,
        exclude: &[SocketAddr],
        now: Instant,
    ) -> Option<SocketAddr> {
        if let Some(timeout) = self.affinity_timeout
            && let Some((addr, last)) = self.affinity.get(&client).copied()
        {
            let alive = self.targets.iter().any(|t| t.addr == addr);
            if now.saturating_duration_since(last) < timeout && alive && !exclude.contains(&addr) {
                self.affinity.insert(client, (addr, now));
                return Some(addr);
            }
            self.affinity.remove(&client);
        }
        let excluded: Vec<usize> = exclude
            .iter()
            .filter_map(|a| self.targets.iter().position(|t| t.addr == *a))
            .collect();
        let ctx = PickContext {
            client,
            service: self.service,
            active: &self.active,
            exclude: &excluded,
        };
        let idx = self.scheduler.pick(&ctx)?;
        let addr = self.targets[idx].addr;
        if let Some(timeout) = self.affinity_timeout {
            self.affinity.insert(client, (addr, now));
            // Clients that never come back would otherwise stay forever.
            if self.affinity.len() > self.sweep_at {
                self.affinity
                    .retain(|_, (_, last)| now.saturating_duration_since(*last) < timeout);
                self.sweep_at = (self.affinity.len() * 2).max(MIN_SWEEP);
            }
        }
        Some(addr)
    }

    /// Forgets `client`'s affinity (after its backend failed).
    pub fn forget(&mut self, client: IpAddr) {
        self.affinity.remove(&client);
    }

    pub fn connection_opened(&mut self, addr: SocketAddr) {
        if let Some(i) = self.targets.iter().position(|t| t.addr == addr) {
            self.active[i] += 1;
        }
    }

    pub fn connection_closed(&mut self, addr: SocketAddr) {
        if let Some(i) = self.targets.iter().position(|t| t.addr == addr) {
            self.active[i] = self.active[i].saturating_sub(1);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addrs(n: u8) -> Vec<SocketAddr> {
        (1..=n)
            .map(|i| SocketAddr::from(([10, 0, 0, i], 80)))
            .collect()
    }

    #[test]
    fn affinity_sticks_expires_and_follows_backend_removal() {
        let mut b = Balancer::new(SchedulerKind::Rr, 1, "10.96.0.1".parse().unwrap());
        b.update(&addrs(3), Some(Duration::from_secs(10)));
        let client: IpAddr = "10.244.1.9".parse().unwrap();
        let t0 = Instant::now();
        let first = b.pick(client, &[], t0).unwrap();
        for s in 1..20 {
            assert_eq!(
                b.pick(client, &[], t0 + Duration::from_secs(s / 4))
                    .unwrap(),
                first
            );
        }
        // Idle longer than the timeout: the entry is gone and round robin moves on.
        let later = t0 + Duration::from_secs(100);
        let picks: Vec<_> = (0..3)
            .map(|i| {
                b.forget(client);
                b.pick(client, &[], later + Duration::from_secs(i)).unwrap()
            })
            .collect();
        assert!(picks.iter().any(|p| *p != first), "{picks:?}");
        // Removing the pinned backend drops the entry.
        let pinned = b.pick(client, &[], later).unwrap();
        let rest: Vec<_> = addrs(3).into_iter().filter(|a| *a != pinned).collect();
        b.update(&rest, Some(Duration::from_secs(10)));
        assert_ne!(b.pick(client, &[], later).unwrap(), pinned);
    }

    #[test]
    fn expired_affinity_entries_are_swept() {
        let mut b = Balancer::new(SchedulerKind::Rr, 1, "10.96.0.1".parse().unwrap());
        b.update(&addrs(2), Some(Duration::from_secs(10)));
        let t0 = Instant::now();
        for i in 0..2000u32 {
            let client = IpAddr::from(std::net::Ipv4Addr::from(0x0a00_0000 + i));
            b.pick(client, &[], t0);
        }
        let later = t0 + Duration::from_secs(60);
        for i in 0..(MIN_SWEEP as u32 * 3) {
            let client = IpAddr::from(std::net::Ipv4Addr::from(0x0b00_0000 + i));
            b.pick(client, &[], later);
        }
        assert!(
            b.affinity.len() <= MIN_SWEEP * 3,
            "{} entries kept",
            b.affinity.len()
        );
        assert!(
            !b.affinity
                .keys()
                .any(|ip| matches!(ip, IpAddr::V4(v) if v.octets()[0] == 10)),
            "expired clients swept"
        );
    }

    #[test]
    fn switching_affinity_off_and_on_converges() {
        let mut b = Balancer::new(SchedulerKind::Rr, 2, "10.96.0.1".parse().unwrap());
        let client: IpAddr = "10.244.1.9".parse().unwrap();
        let now = Instant::now();
        b.update(&addrs(3), Some(Duration::from_secs(60)));
        b.pick(client, &[], now).unwrap();
        b.update(&addrs(3), None);
        let spread: std::collections::HashSet<_> =
            (0..6).map(|_| b.pick(client, &[], now).unwrap()).collect();
        assert_eq!(spread.len(), 3, "no affinity: round robin");
        b.update(&addrs(3), Some(Duration::from_secs(60)));
        let again = b.pick(client, &[], now).unwrap();
        assert!((0..10).all(|_| b.pick(client, &[], now).unwrap() == again));
    }

    #[test]
    fn excluded_backends_are_skipped_and_empty_sets_give_none() {
        let mut b = Balancer::new(SchedulerKind::Rr, 3, "10.96.0.1".parse().unwrap());
        let client: IpAddr = "10.244.1.9".parse().unwrap();
        assert_eq!(b.pick(client, &[], Instant::now()), None);
        let all = addrs(2);
        b.update(&all, None);
        assert_eq!(b.pick(client, &all[..1], Instant::now()), Some(all[1]));
        assert_eq!(b.pick(client, &all, Instant::now()), None);
    }
}
