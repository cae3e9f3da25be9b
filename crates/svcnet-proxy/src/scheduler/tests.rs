use std::collections::{HashMap, HashSet};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use proptest::collection::vec;
use proptest::prelude::*;
use rand::{Rng, SeedableRng};

use super::*;

const SERVICE: IpAddr = IpAddr::V4(Ipv4Addr::new(10, 96, 0, 10));
const CLIENT: IpAddr = IpAddr::V4(Ipv4Addr::new(10, 244, 1, 9));

fn addr(i: usize) -> SocketAddr {
    SocketAddr::from(([10, 0, (i / 250) as u8, (i % 250) as u8 + 1], 8080))
}

fn targets(weights: &[u32]) -> Vec<Target> {
    weights
        .iter()
        .enumerate()
        .map(|(i, &weight)| Target {
            addr: addr(i),
            weight,
        })
        .collect()
}

fn ctx<'a>(client: IpAddr, active: &'a [u32], exclude: &'a [usize]) -> PickContext<'a> {
    PickContext {
        client,
        service: SERVICE,
        active,
        exclude,
    }
}

fn scheduler(kind: SchedulerKind, targets: &[Target]) -> Box<dyn Scheduler> {
    let mut s = build(kind, 7);
    s.set_targets(targets);
    s
}

/// Picks `n` times with no load and no exclusions and counts picks per target index.
fn counts(s: &mut dyn Scheduler, n: usize) -> HashMap<usize, usize> {
    let mut counts = HashMap::new();
    for _ in 0..n {
        *counts
            .entry(s.pick(&ctx(CLIENT, &[], &[])).unwrap())
            .or_default() += 1;
    }
    counts
}

fn random_clients(n: usize, seed: u64) -> Vec<IpAddr> {
    let mut rng = StdRng::seed_from_u64(seed);
    (0..n)
        .map(|i| {
            if i % 4 == 0 {
                IpAddr::V6(Ipv6Addr::from(rng.random::<u128>()))
            } else {
                IpAddr::V4(Ipv4Addr::from(rng.random::<u32>()))
            }
        })
        .collect()
}

/// Target address each client lands on.
fn placement(s: &mut dyn Scheduler, targets: &[Target], clients: &[IpAddr]) -> Vec<SocketAddr> {
    clients
        .iter()
        .map(|&c| targets[s.pick(&ctx(c, &[], &[])).unwrap()].addr)
        .collect()
}

fn assert_even(placement: &[SocketAddr], targets: usize, tolerance: f64) {
    let mut counts: HashMap<SocketAddr, usize> = HashMap::new();
    for a in placement {
        *counts.entry(*a).or_default() += 1;
    }
    assert_eq!(counts.len(), targets, "{counts:?}");
    let even = placement.len() as f64 / targets as f64;
    for (a, &c) in &counts {
        let off = (c as f64 - even).abs() / even;
        assert!(
            off <= tolerance,
            "{a}: {c} picks, {even} expected ({counts:?})"
        );
    }
}

// === SchedulerKind ===

#[test]
fn kind_names_round_trip() {
    for kind in SchedulerKind::ALL {
        assert_eq!(kind.as_str().parse::<SchedulerKind>(), Ok(kind));
        assert_eq!(kind.to_string(), kind.as_str());
        assert_eq!(build(kind, 0).kind(), kind);
    }
    let names: HashSet<_> = SchedulerKind::ALL.iter().map(|k| k.as_str()).collect();
    assert_eq!(names.len(), 9);
    assert_eq!(SchedulerKind::default(), SchedulerKind::Rr);
}

#[test]
fn unknown_kind_error_lists_valid_names() {
    for bad in ["", "RR", "lblc", " rr", "round-robin"] {
        let err = bad.parse::<SchedulerKind>().unwrap_err();
        assert_eq!(err.name(), bad);
        let text = err.to_string();
        assert!(text.contains(&format!("{bad:?}")), "{text}");
        for kind in SchedulerKind::ALL {
            assert!(text.contains(kind.as_str()), "{text} lacks {kind}");
        }
    }
    let listed: Vec<&str> = VALID_NAMES.split(", ").collect();
    let all: Vec<&str> = SchedulerKind::ALL.iter().map(|k| k.as_str()).collect();
    assert_eq!(listed, all);
}

// === shared rules ===

#[test]
fn every_scheduler_returns_none_without_eligible_targets() {
    for kind in SchedulerKind::ALL {
        let mut s = build(kind, 1);
        assert_eq!(
            s.pick(&ctx(CLIENT, &[], &[])),
            None,
            "{kind} before set_targets"
        );
        s.set_targets(&[]);
        assert_eq!(s.pick(&ctx(CLIENT, &[], &[])), None, "{kind} empty");
        s.set_targets(&targets(&[1, 2, 3]));
        assert_eq!(
            s.pick(&ctx(CLIENT, &[0, 0, 0], &[0, 1, 2])),
            None,
            "{kind} all excluded"
        );
        s.set_targets(&targets(&[0, 0, 0]));
        assert_eq!(s.pick(&ctx(CLIENT, &[], &[])), None, "{kind} all weight 0");
        s.set_targets(&targets(&[0, 4, 0]));
        assert_eq!(
            s.pick(&ctx(CLIENT, &[], &[1])),
            None,
            "{kind} rest weight 0"
        );
        for _ in 0..5 {
            assert_eq!(
                s.pick(&ctx(CLIENT, &[], &[])),
                Some(1),
                "{kind} only one eligible"
            );
        }
    }
}

#[test]
fn shrinking_the_target_set_never_yields_a_stale_index() {
    for kind in SchedulerKind::ALL {
        let mut s = scheduler(kind, &targets(&[1; 8]));
        for _ in 0..5 {
            s.pick(&ctx(CLIENT, &[0; 8], &[]));
        }
        s.set_targets(&targets(&[1, 1]));
        for _ in 0..10 {
            assert!(s.pick(&ctx(CLIENT, &[0; 8], &[])).unwrap() < 2, "{kind}");
        }
    }
}

// === rr ===

#[test]
fn rr_spreads_exactly_evenly() {
    let mut s = scheduler(SchedulerKind::Rr, &targets(&[1, 1, 1]));
    let counts = counts(s.as_mut(), 300);
    assert_eq!(counts, HashMap::from([(0, 100), (1, 100), (2, 100)]));
}

#[test]
fn rr_shuffles_per_seed_and_reproducibly() {
    let order = |seed| {
        let mut s = build(SchedulerKind::Rr, seed);
        s.set_targets(&targets(&[1; 5]));
        (0..5)
            .map(|_| s.pick(&ctx(CLIENT, &[], &[])).unwrap())
            .collect::<Vec<_>>()
    };
    let orders: HashSet<Vec<usize>> = (0..16).map(order).collect();
    assert!(
        orders.len() > 1,
        "every seed gave the same order: {orders:?}"
    );
    for o in &orders {
        let mut sorted = o.clone();
        sorted.sort_unstable();
        assert_eq!(
            sorted,
            vec![0, 1, 2, 3, 4],
            "one lap visits each target once"
        );
    }
    assert_eq!(order(3), order(3));
}

#[test]
fn rr_reshuffles_only_when_the_set_changes() {
    let ts = targets(&[1, 1, 1, 1]);
    let mut s = scheduler(SchedulerKind::Rr, &ts);
    let lap: Vec<SocketAddr> = (0..4)
        .map(|_| ts[s.pick(&ctx(CLIENT, &[], &[])).unwrap()].addr)
        .collect();
    s.pick(&ctx(CLIENT, &[], &[]));
    // The same endpoints in another order: the rotation carries on, by address.
    let reversed: Vec<Target> = ts.iter().rev().cloned().collect();
    s.set_targets(&reversed);
    let next: Vec<SocketAddr> = (0..4)
        .map(|_| reversed[s.pick(&ctx(CLIENT, &[], &[])).unwrap()].addr)
        .collect();
    assert_eq!(next, [lap[1], lap[2], lap[3], lap[0]]);
    // A different set starts a fresh, evenly spread lap.
    let mut grown = ts.clone();
    grown.push(Target {
        addr: addr(9),
        weight: 1,
    });
    s.set_targets(&grown);
    let counts = counts(s.as_mut(), 50);
    assert!(counts.values().all(|&c| c == 10), "{counts:?}");
}

#[test]
fn rr_skips_excluded_and_quiesced_targets() {
    let mut s = scheduler(SchedulerKind::Rr, &targets(&[1, 1, 0, 1]));
    let mut seen = HashMap::new();
    for _ in 0..200 {
        let i = s.pick(&ctx(CLIENT, &[], &[1])).unwrap();
        *seen.entry(i).or_insert(0) += 1;
    }
    assert_eq!(seen, HashMap::from([(0, 100), (3, 100)]));
}

// === wrr ===

#[test]
fn wrr_is_proportional_over_a_cycle() {
    let mut s = scheduler(SchedulerKind::Wrr, &targets(&[3, 2, 1]));
    assert_eq!(
        counts(s.as_mut(), 6),
        HashMap::from([(0, 3), (1, 2), (2, 1)])
    );
    assert_eq!(
        counts(s.as_mut(), 600),
        HashMap::from([(0, 300), (1, 200), (2, 100)])
    );
}

#[test]
fn wrr_interleaves_like_ipvs() {
    // The LVS documentation's example: weights A=4, B=3, C=2 give AABABCABC.
    let mut s = scheduler(SchedulerKind::Wrr, &targets(&[4, 3, 2]));
    let seq: String = (0..18)
        .map(|_| ["A", "B", "C"][s.pick(&ctx(CLIENT, &[], &[])).unwrap()])
        .collect();
    assert_eq!(seq, "AABABCABCAABABCABC");
}

#[test]
fn wrr_never_picks_weight_zero_and_steps_by_gcd() {
    let mut s = scheduler(SchedulerKind::Wrr, &targets(&[0, 20, 10, 0]));
    assert_eq!(counts(s.as_mut(), 3), HashMap::from([(1, 2), (2, 1)]));
    assert_eq!(counts(s.as_mut(), 300), HashMap::from([(1, 200), (2, 100)]));
}

#[test]
fn wrr_skips_excluded_heavy_target_quickly() {
    let mut s = scheduler(SchedulerKind::Wrr, &targets(&[u32::MAX, 1]));
    for _ in 0..10 {
        assert_eq!(s.pick(&ctx(CLIENT, &[], &[0])), Some(1));
    }
    assert_eq!(s.pick(&ctx(CLIENT, &[], &[])), Some(0));
}

// === lc, wlc, sed, nq ===

#[test]
fn lc_picks_the_least_loaded_and_rotates_ties() {
    let mut s = scheduler(SchedulerKind::Lc, &targets(&[1, 1, 1, 1]));
    assert_eq!(s.pick(&ctx(CLIENT, &[3, 1, 2, 1], &[])), Some(1));
    assert_eq!(s.pick(&ctx(CLIENT, &[3, 1, 2, 1], &[1])), Some(3));
    assert_eq!(s.pick(&ctx(CLIENT, &[3, 1, 2, 1], &[1, 3])), Some(2));
    // Weight only decides eligibility.
    let mut s = scheduler(SchedulerKind::Lc, &targets(&[1, 100, 0]));
    assert_eq!(s.pick(&ctx(CLIENT, &[1, 2, 0], &[])), Some(0));
    // Missing counts are 0.
    assert_eq!(s.pick(&ctx(CLIENT, &[1], &[])), Some(1));
    // A burst that sees the same counts is spread rather than piled on one target.
    for kind in [
        SchedulerKind::Lc,
        SchedulerKind::Wlc,
        SchedulerKind::Sed,
        SchedulerKind::Nq,
    ] {
        let mut s = scheduler(kind, &targets(&[1, 1, 1]));
        let burst: Vec<usize> = (0..6)
            .map(|_| s.pick(&ctx(CLIENT, &[0, 0, 0], &[])).unwrap())
            .collect();
        assert_eq!(burst, [0, 1, 2, 0, 1, 2], "{kind}");
    }
}

#[test]
fn wlc_divides_by_weight() {
    // 1/1 against 3/4: lc would pick target 0, wlc picks the heavier target 1.
    let ts = targets(&[1, 4]);
    let active = [1, 3];
    assert_eq!(
        scheduler(SchedulerKind::Lc, &ts).pick(&ctx(CLIENT, &active, &[])),
        Some(0)
    );
    assert_eq!(
        scheduler(SchedulerKind::Wlc, &ts).pick(&ctx(CLIENT, &active, &[])),
        Some(1)
    );
    // Filling up from idle, wlc keeps the load proportional to weight.
    let mut s = scheduler(SchedulerKind::Wlc, &targets(&[1, 2, 3]));
    let mut active = [0u32; 3];
    for _ in 0..600 {
        let i = s.pick(&ctx(CLIENT, &active, &[])).unwrap();
        active[i] += 1;
    }
    assert_eq!(active, [100, 200, 300]);
    // Large values compare exactly.
    let mut s = scheduler(SchedulerKind::Wlc, &targets(&[u32::MAX, u32::MAX - 1]));
    assert_eq!(
        s.pick(&ctx(CLIENT, &[u32::MAX, u32::MAX - 1], &[])),
        Some(0)
    );
}

#[test]
fn sed_counts_the_new_connection() {
    // Both idle: wlc sees a tie (0/1 = 0/2) and a fresh scheduler starts at index 0; sed sees
    // 1/1 > 1/2 and prefers the heavier target.
    let ts = targets(&[1, 2]);
    assert_eq!(
        scheduler(SchedulerKind::Wlc, &ts).pick(&ctx(CLIENT, &[0, 0], &[])),
        Some(0)
    );
    assert_eq!(
        scheduler(SchedulerKind::Sed, &ts).pick(&ctx(CLIENT, &[0, 0], &[])),
        Some(1)
    );
}

#[test]
fn nq_prefers_an_idle_target_where_sed_would_queue() {
    // sed: (1+1)/10 = 0.2 beats (0+1)/1 = 1, so it queues on the busy heavy target.
    let ts = targets(&[10, 1]);
    let active = [1, 0];
    assert_eq!(
        scheduler(SchedulerKind::Sed, &ts).pick(&ctx(CLIENT, &active, &[])),
        Some(0)
    );
    assert_eq!(
        scheduler(SchedulerKind::Nq, &ts).pick(&ctx(CLIENT, &active, &[])),
        Some(1)
    );
    // With nobody idle, nq is sed.
    let mut nq = scheduler(SchedulerKind::Nq, &ts);
    assert_eq!(nq.pick(&ctx(CLIENT, &[1, 1], &[])), Some(0));
    // An idle target that is excluded or quiesced does not count.
    assert_eq!(nq.pick(&ctx(CLIENT, &[1, 0], &[1])), Some(0));
    let mut nq = scheduler(SchedulerKind::Nq, &targets(&[10, 0]));
    assert_eq!(nq.pick(&ctx(CLIENT, &[1, 0], &[])), Some(0));
}

// === sh, dh, mh ===

#[test]
fn hashing_is_sticky_per_key() {
    for kind in [SchedulerKind::Sh, SchedulerKind::Dh, SchedulerKind::Mh] {
        let ts = targets(&[1; 5]);
        let mut s = scheduler(kind, &ts);
        for client in random_clients(50, 1) {
            let first = s.pick(&ctx(client, &[], &[])).unwrap();
            for load in 0..5 {
                // Load and a rebuilt scheduler with the same targets change nothing.
                assert_eq!(s.pick(&ctx(client, &[load; 5], &[])), Some(first), "{kind}");
            }
            let mut fresh = build(kind, 99);
            fresh.set_targets(&ts);
            assert_eq!(fresh.pick(&ctx(client, &[], &[])), Some(first), "{kind}");
        }
    }
}

#[test]
fn sh_and_mh_spread_clients_evenly() {
    let clients = random_clients(10_000, 2);
    for kind in [SchedulerKind::Sh, SchedulerKind::Mh] {
        let ts = targets(&[1; 4]);
        let mut s = scheduler(kind, &ts);
        assert_even(&placement(s.as_mut(), &ts, &clients), 4, 0.2);
    }
    // Sequential client addresses (one subnet) spread too.
    let subnet: Vec<IpAddr> = (0..4096u32)
        .map(|i| IpAddr::V4(Ipv4Addr::from(0x0af4_0000 + i)))
        .collect();
    for kind in [SchedulerKind::Sh, SchedulerKind::Mh] {
        let ts = targets(&[1; 3]);
        let mut s = scheduler(kind, &ts);
        assert_even(&placement(s.as_mut(), &ts, &subnet), 3, 0.2);
    }
}

#[test]
fn sh_and_mh_follow_weights() {
    let clients = random_clients(10_000, 3);
    for kind in [SchedulerKind::Sh, SchedulerKind::Mh] {
        let ts = targets(&[3, 1]);
        let mut s = scheduler(kind, &ts);
        let on_heavy = placement(s.as_mut(), &ts, &clients)
            .iter()
            .filter(|a| **a == ts[0].addr)
            .count();
        assert!((7000..8000).contains(&on_heavy), "{kind}: {on_heavy}");
    }
}

#[test]
fn sh_treats_ipv4_mapped_clients_as_ipv4() {
    let mut s = scheduler(SchedulerKind::Sh, &targets(&[1; 7]));
    for client in random_clients(200, 4) {
        if let IpAddr::V4(v4) = client {
            let mapped = IpAddr::V6(v4.to_ipv6_mapped());
            assert_eq!(
                s.pick(&ctx(client, &[], &[])),
                s.pick(&ctx(mapped, &[], &[]))
            );
        }
    }
}

#[test]
fn dh_keys_on_the_service_address() {
    let ts = targets(&[1; 4]);
    let mut s = scheduler(SchedulerKind::Dh, &ts);
    let pinned = s
        .pick(&PickContext {
            client: CLIENT,
            service: SERVICE,
            active: &[],
            exclude: &[],
        })
        .unwrap();
    for client in random_clients(100, 5) {
        assert_eq!(s.pick(&ctx(client, &[], &[])), Some(pinned));
    }
    let services = random_clients(4000, 6);
    let by_service: Vec<SocketAddr> = services
        .iter()
        .map(|&service| {
            let c = PickContext {
                client: CLIENT,
                service,
                active: &[],
                exclude: &[],
            };
            ts[s.pick(&c).unwrap()].addr
        })
        .collect();
    assert_even(&by_service, 4, 0.2);
}

#[test]
fn hashing_falls_back_deterministically_and_spreads_the_fallout() {
    let clients = random_clients(2000, 7);
    for kind in [SchedulerKind::Sh, SchedulerKind::Mh] {
        let ts = targets(&[1; 4]);
        let mut s = scheduler(kind, &ts);
        let before: Vec<usize> = clients
            .iter()
            .map(|&c| s.pick(&ctx(c, &[], &[])).unwrap())
            .collect();
        let mut fallout = HashMap::new();
        for (&c, &home) in clients.iter().zip(&before) {
            let excluded = [home];
            let fallback = s.pick(&ctx(c, &[], &excluded)).unwrap();
            assert_ne!(fallback, home, "{kind}");
            assert_eq!(s.pick(&ctx(c, &[], &excluded)), Some(fallback), "{kind}");
            if home == 0 {
                *fallout.entry(fallback).or_insert(0) += 1;
            }
            // Excluding some other target does not move this client.
            let other = [(home + 1) % 4];
            assert_eq!(s.pick(&ctx(c, &[], &other)), Some(home), "{kind}");
        }
        // Target 0's clients are shared among all three others, not dumped on one neighbour.
        assert_eq!(fallout.len(), 3, "{kind}: {fallout:?}");
        assert!(fallout.values().all(|&n| n > 50), "{kind}: {fallout:?}");
        // Down to one eligible target: the scan still finds it.
        for &c in clients.iter().take(50) {
            assert_eq!(s.pick(&ctx(c, &[], &[0, 1, 3])), Some(2), "{kind}");
        }
    }
}

#[test]
fn quiescing_a_target_moves_only_its_clients() {
    let clients = random_clients(5000, 8);
    for kind in [SchedulerKind::Sh, SchedulerKind::Dh, SchedulerKind::Mh] {
        let ts = targets(&[1; 5]);
        let mut s = scheduler(kind, &ts);
        let before = placement(s.as_mut(), &ts, &clients);
        let mut quiesced = ts.clone();
        quiesced[2].weight = 0;
        s.set_targets(&quiesced);
        let after = placement(s.as_mut(), &quiesced, &clients);
        for (b, a) in before.iter().zip(&after) {
            assert_ne!(*a, ts[2].addr, "{kind}");
            if *b != ts[2].addr {
                assert_eq!(a, b, "{kind}");
            }
        }
    }
}

#[test]
fn mh_quiesced_target_keeps_its_slots_but_one_added_at_zero_claims_none() {
    let clients = random_clients(3000, 10);
    let ts = targets(&[2, 1, 3, 1, 1]);
    let mut s = scheduler(SchedulerKind::Mh, &ts);
    let original = placement(s.as_mut(), &ts, &clients);
    // Drain target 2, then restore it: the table never changed.
    let mut drained = ts.clone();
    drained[2].weight = 0;
    s.set_targets(&drained);
    s.set_targets(&ts);
    assert_eq!(placement(s.as_mut(), &ts, &clients), original);
    // Arriving at weight 0 is the same as being absent.
    let mut fresh = scheduler(SchedulerKind::Mh, &drained);
    let absent: Vec<Target> = drained.iter().filter(|t| t.weight > 0).cloned().collect();
    let mut without = scheduler(SchedulerKind::Mh, &absent);
    assert_eq!(
        placement(fresh.as_mut(), &drained, &clients),
        placement(without.as_mut(), &absent, &clients)
    );
}

#[test]
fn mh_removal_moves_about_one_nth_of_clients() {
    let clients = random_clients(10_000, 9);
    for n in [3, 10, 40] {
        let ts = targets(&vec![1; n]);
        let mut s = scheduler(SchedulerKind::Mh, &ts);
        let before = placement(s.as_mut(), &ts, &clients);
        let removed = ts[n / 2].addr;
        let rest: Vec<Target> = ts.iter().filter(|t| t.addr != removed).cloned().collect();
        s.set_targets(&rest);
        let after = placement(s.as_mut(), &rest, &clients);
        let moved = before.iter().zip(&after).filter(|(b, a)| b != a).count();
        let on_removed = before.iter().filter(|b| **b == removed).count();
        assert!(moved >= on_removed);
        let limit = clients.len() as f64 * (2.0 / n as f64 + 0.01);
        assert!(
            (moved as f64) < limit,
            "{n} targets: {moved} of {} clients moved (removed target had {on_removed})",
            clients.len()
        );
    }
}

#[test]
fn maglev_table_sizes_are_prime_and_roomy() {
    let is_prime = |m: usize| {
        m > 1
            && (2..)
                .take_while(|d| d * d <= m)
                .all(|d| !m.is_multiple_of(d))
    };
    for m in MAGLEV_TABLE_SIZES {
        assert!(is_prime(m), "{m}");
    }
    for n in [0, 1, 3, 40, 41, 100, 327, 328, 1000] {
        let m = maglev_table_size(n);
        assert!(m >= 100 * n || m == 65537, "{n}: {m}");
        assert!(m <= 65537);
    }
    assert_eq!(maglev_table_size(40), maglev_table_size(2));
}

#[test]
fn stable_hash_is_pinned() {
    // Every proxy, before and after an upgrade, must map a client to the same slot; a change
    // here reshuffles sh/dh/mh for every client in the cluster.
    assert_eq!(fnv1a(FNV_OFFSET_BASIS, b"a"), 0xaf63_dc4c_8601_ec8c);
    let h = stable_hash(0, CLIENT, None);
    assert_eq!(h, 0x946e_8d91_2319_41e2);
    assert_eq!(
        stable_hash(3, IpAddr::V6(Ipv6Addr::LOCALHOST), Some(443)),
        0xbdf8_5935_f4d8_29c2
    );
    assert_ne!(h, stable_hash(1, CLIENT, None));
    assert_ne!(h, stable_hash(0, CLIENT, Some(80)));
}

// === properties ===

fn kind_strategy() -> impl Strategy<Value = SchedulerKind> {
    (0..SchedulerKind::ALL.len()).prop_map(|i| SchedulerKind::ALL[i])
}

/// Targets with possibly repeated addresses (drawn from a small pool) and weights 0..4.
fn targets_strategy() -> impl Strategy<Value = Vec<Target>> {
    vec((0..6usize, 0..4u32), 0..8).prop_map(|ts| {
        ts.into_iter()
            .map(|(a, weight)| Target {
                addr: addr(a),
                weight,
            })
            .collect()
    })
}

proptest! {
    #[test]
    fn pick_returns_an_eligible_target_or_none(
        kind in kind_strategy(),
        seed in any::<u64>(),
        first in targets_strategy(),
        second in targets_strategy(),
        active in vec(0..5u32, 0..10),
        exclude in vec(0..10usize, 0..5),
        client in any::<u32>(),
        service in any::<u128>(),
    ) {
        let mut s = build(kind, seed);
        for ts in [&first, &second] {
            s.set_targets(ts);
            let c = PickContext {
                client: IpAddr::V4(Ipv4Addr::from(client)),
                service: IpAddr::V6(Ipv6Addr::from(service)),
                active: &active,
                exclude: &exclude,
            };
            let any = (0..ts.len()).any(|i| ts[i].weight > 0 && !exclude.contains(&i));
            for _ in 0..6 {
                match s.pick(&c) {
                    Some(i) => {
                        prop_assert!(i < ts.len());
                        prop_assert!(ts[i].weight > 0);
                        prop_assert!(!exclude.contains(&i));
                    }
                    None => prop_assert!(!any, "{kind} gave None with an eligible target"),
                }
            }
        }
    }

    #[test]
    fn wrr_cycle_matches_weights(weights in vec(0..6u32, 1..7)) {
        let ts = targets(&weights);
        let mut s = scheduler(SchedulerKind::Wrr, &ts);
        let gcd = weight_gcd(&ts);
        prop_assume!(gcd > 0);
        let cycle: u32 = weights.iter().map(|w| w / gcd).sum();
        for _ in 0..2 {
            let counts = counts(s.as_mut(), cycle as usize);
            for (i, w) in weights.iter().enumerate() {
                prop_assert_eq!(counts.get(&i).copied().unwrap_or(0), (w / gcd) as usize);
            }
        }
    }

    #[test]
    fn rr_spreads_evenly_around_exclusions(n in 1..8usize, excluded in vec(0..8usize, 0..3), laps in 1..5usize) {
        let mut s = scheduler(SchedulerKind::Rr, &targets(&vec![1; n]));
        let eligible = (0..n).filter(|i| !excluded.contains(i)).count();
        let mut counts = vec![0; n];
        for _ in 0..eligible * laps {
            counts[s.pick(&ctx(CLIENT, &[], &excluded)).unwrap()] += 1;
        }
        for (i, c) in counts.iter().enumerate() {
            prop_assert_eq!(*c, if excluded.contains(&i) { 0 } else { laps });
        }
    }
}
