//! Backend choice for the userspace proxy: the IPVS scheduler family behind one small trait.
//!
//! When the proxy accepts a client connection for a service port it asks a [`Scheduler`] which
//! ready endpoint ([`Target`]) should serve it. [`build`] returns one of the nine schedulers that
//! kube-proxy's `--ipvs-scheduler` can name ([`SchedulerKind`]): round robin (`rr`, shuffled on
//! every endpoint change as kube-proxy's userspace `LoadBalancerRR` did), weighted round robin
//! (`wrr`), least connection (`lc`), weighted least connection (`wlc`), shortest expected delay
//! (`sed`), never queue (`nq`), source and destination hashing (`sh`, `dh`) and Maglev hashing
//! (`mh`). Schedulers are pure: they see the target list, the active connection counts and the
//! per-connection exclusions the caller hands them, never a socket or a clock. Rules shared by
//! all of them, as in Linux IPVS: a target of weight 0 is quiesced and never picked, a target
//! listed in [`PickContext::exclude`] is skipped, and `pick` returns `None` only when no target is
//! eligible. The hashing schedulers key on addresses through a fixed FNV-1a + murmur3-finaliser
//! hash, so a client maps to the same backend across restarts, releases and nodes.

use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::str::FromStr;

use rand::SeedableRng;
use rand::rngs::StdRng;
use rand::seq::SliceRandom;

#[cfg(test)]
mod tests;

/// One backend of a service port.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Target {
    pub addr: SocketAddr,
    pub weight: u32,
}

/// What a pick may look at.
#[derive(Clone, Copy, Debug)]
pub struct PickContext<'a> {
    /// The client's address (source hashing, Maglev).
    pub client: IpAddr,
    /// The service address the client connected to (destination hashing).
    pub service: IpAddr,
    /// Active connections per target, same order as the last `set_targets`. A missing entry
    /// (a slice shorter than the target list) counts as 0.
    pub active: &'a [u32],
    /// Targets that already failed for this connection and must not be picked again.
    pub exclude: &'a [usize],
}

impl PickContext<'_> {
    fn active_of(&self, index: usize) -> u32 {
        self.active.get(index).copied().unwrap_or(0)
    }
}

/// Chooses a backend for each new connection of one service port.
pub trait Scheduler: Send + fmt::Debug {
    fn kind(&self) -> SchedulerKind;
    /// Replaces the target set (called when endpoints change).
    fn set_targets(&mut self, targets: &[Target]);
    /// Index of the chosen target, or None when no eligible target exists (none, all excluded,
    /// or all weight 0).
    fn pick(&mut self, ctx: &PickContext<'_>) -> Option<usize>;
}

/// Builds a scheduler; `seed` makes rr's shuffle and any randomness reproducible in tests.
pub fn build(kind: SchedulerKind, seed: u64) -> Box<dyn Scheduler> {
    match kind {
        SchedulerKind::Rr => Box::new(RoundRobin::new(seed)),
        SchedulerKind::Wrr => Box::new(WeightedRoundRobin::default()),
        SchedulerKind::Lc => Box::new(LeastLoad::new(LoadPolicy::LeastConnection)),
        SchedulerKind::Wlc => Box::new(LeastLoad::new(LoadPolicy::WeightedLeastConnection)),
        SchedulerKind::Sed => Box::new(LeastLoad::new(LoadPolicy::ShortestExpectedDelay)),
        SchedulerKind::Nq => Box::new(LeastLoad::new(LoadPolicy::NeverQueue)),
        SchedulerKind::Sh => Box::new(HashTable::new(HashKey::Source)),
        SchedulerKind::Dh => Box::new(HashTable::new(HashKey::Destination)),
        SchedulerKind::Mh => Box::new(Maglev::default()),
    }
}

fn is_eligible(targets: &[Target], ctx: &PickContext<'_>, index: usize) -> bool {
    targets[index].weight > 0 && !ctx.exclude.contains(&index)
}

fn any_eligible(targets: &[Target], ctx: &PickContext<'_>) -> bool {
    (0..targets.len()).any(|i| is_eligible(targets, ctx, i))
}

fn gcd(mut a: u32, mut b: u32) -> u32 {
    while b != 0 {
        (a, b) = (b, a % b);
    }
    a
}

/// Greatest common divisor of the non-zero weights (0 when every weight is 0).
fn weight_gcd(targets: &[Target]) -> u32 {
    targets.iter().map(|t| t.weight).fold(0, gcd)
}

// === impl SchedulerKind ===

/// The scheduler names kube-proxy accepts for `--ipvs-scheduler`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum SchedulerKind {
    /// Round robin; kube-proxy's default when no scheduler is configured.
    #[default]
    Rr,
    Wrr,
    Lc,
    Wlc,
    Sh,
    Dh,
    Sed,
    Nq,
    Mh,
}

const VALID_NAMES: &str = "rr, wrr, lc, wlc, sh, dh, sed, nq, mh";

impl SchedulerKind {
    pub const ALL: [SchedulerKind; 9] = [
        SchedulerKind::Rr,
        SchedulerKind::Wrr,
        SchedulerKind::Lc,
        SchedulerKind::Wlc,
        SchedulerKind::Sh,
        SchedulerKind::Dh,
        SchedulerKind::Sed,
        SchedulerKind::Nq,
        SchedulerKind::Mh,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            SchedulerKind::Rr => "rr",
            SchedulerKind::Wrr => "wrr",
            SchedulerKind::Lc => "lc",
            SchedulerKind::Wlc => "wlc",
            SchedulerKind::Sh => "sh",
            SchedulerKind::Dh => "dh",
            SchedulerKind::Sed => "sed",
            SchedulerKind::Nq => "nq",
            SchedulerKind::Mh => "mh",
        }
    }
}

impl fmt::Display for SchedulerKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A scheduler name that is not one of [`SchedulerKind::ALL`].
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("unknown scheduler {name:?}: expected one of {VALID_NAMES}")]
pub struct ParseSchedulerKindError {
    name: String,
}

impl ParseSchedulerKindError {
    /// The rejected name.
    pub fn name(&self) -> &str {
        &self.name
    }
}

impl FromStr for SchedulerKind {
    type Err = ParseSchedulerKindError;

    /// Exact, lower-case names as IPVS spells them; no aliases, so a typo fails at start-up
    /// instead of silently meaning something else.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        SchedulerKind::ALL
            .into_iter()
            .find(|kind| kind.as_str() == s)
            .ok_or_else(|| ParseSchedulerKindError { name: s.to_owned() })
    }
}

// === impl RoundRobin ===

/// `rr`: kube-proxy userspace `LoadBalancerRR` semantics. The order is shuffled whenever the set
/// of endpoints changes, so that many proxies (one per node) that all see the same endpoint list
/// do not all start on the same backend; then it rotates.
#[derive(Debug)]
struct RoundRobin {
    rng: StdRng,
    targets: Vec<Target>,
    /// Target indices in rotation order.
    order: Vec<usize>,
    /// Position in `order` of the next target to try.
    next: usize,
}

impl RoundRobin {
    fn new(seed: u64) -> Self {
        Self {
            rng: StdRng::seed_from_u64(seed),
            targets: Vec::new(),
            order: Vec::new(),
            next: 0,
        }
    }

    /// Target indices sorted by address; stable, so duplicate addresses keep their order.
    fn by_addr(targets: &[Target]) -> Vec<usize> {
        let mut indices: Vec<usize> = (0..targets.len()).collect();
        indices.sort_by_key(|&i| targets[i].addr);
        indices
    }
}

impl Scheduler for RoundRobin {
    fn kind(&self) -> SchedulerKind {
        SchedulerKind::Rr
    }

    fn set_targets(&mut self, targets: &[Target]) {
        let old = Self::by_addr(&self.targets);
        let new = Self::by_addr(targets);
        let same_set = old.len() == new.len()
            && old
                .iter()
                .zip(&new)
                .all(|(&o, &n)| self.targets[o].addr == targets[n].addr);
        if same_set {
            // Like kube-proxy, an update that keeps the same endpoints (a resync, a reorder or a
            // weight change) keeps the rotation; the caller's order may differ, so map each old
            // index to the new index of the same address.
            let mut remap = vec![0; targets.len()];
            for (&o, &n) in old.iter().zip(&new) {
                remap[o] = n;
            }
            for slot in &mut self.order {
                *slot = remap[*slot];
            }
        } else {
            self.order = (0..targets.len()).collect();
            self.order.shuffle(&mut self.rng);
            self.next = 0;
        }
        self.targets = targets.to_vec();
    }

    fn pick(&mut self, ctx: &PickContext<'_>) -> Option<usize> {
        let n = self.order.len();
        // A skipped (excluded or quiesced) target loses its turn: the rotation resumes after the
        // target actually chosen, as in IPVS rr.
        for step in 0..n {
            let position = (self.next + step) % n;
            let index = self.order[position];
            if is_eligible(&self.targets, ctx, index) {
                self.next = (position + 1) % n;
                return Some(index);
            }
        }
        None
    }
}

// === impl WeightedRoundRobin ===

/// `wrr`: IPVS's interleaved weighted round robin. Laps over the targets with a bar
/// (`current_weight`) that starts at the largest weight and drops by the weights' gcd after each
/// lap; a target is chosen when its weight reaches the bar. Over one cycle of `sum(w) / gcd`
/// picks each target is chosen `w / gcd` times, interleaved rather than in bursts.
#[derive(Debug, Default)]
struct WeightedRoundRobin {
    targets: Vec<Target>,
    /// Index of the target examined last.
    cursor: usize,
    /// The bar; 0 means "start a new cycle at the largest weight".
    current_weight: u32,
    max_weight: u32,
    gcd: u32,
}

impl Scheduler for WeightedRoundRobin {
    fn kind(&self) -> SchedulerKind {
        SchedulerKind::Wrr
    }

    fn set_targets(&mut self, targets: &[Target]) {
        if targets == self.targets {
            return;
        }
        self.targets = targets.to_vec();
        self.max_weight = targets.iter().map(|t| t.weight).max().unwrap_or(0);
        self.gcd = weight_gcd(targets);
        // The next pick wraps to index 0 and starts a fresh cycle, as IPVS does on a change.
        self.cursor = targets.len().saturating_sub(1);
        self.current_weight = 0;
    }

    fn pick(&mut self, ctx: &PickContext<'_>) -> Option<usize> {
        let n = self.targets.len();
        let max_eligible = (0..n)
            .filter(|&i| is_eligible(&self.targets, ctx, i))
            .map(|i| self.targets[i].weight)
            .max()?;
        // Terminates within two laps: once the bar is at most `max_eligible`, the heaviest
        // eligible target qualifies.
        loop {
            self.cursor = (self.cursor + 1) % n;
            if self.cursor == 0 {
                self.current_weight = self.current_weight.saturating_sub(self.gcd);
                if self.current_weight == 0 {
                    self.current_weight = self.max_weight;
                }
                // Bars above every eligible weight (the heaviest targets are excluded) would only
                // yield empty laps; IPVS walks them one by one, which with weights like 10000:1
                // costs thousands of laps. Every weight is a multiple of the gcd, so
                // `max_eligible` is itself a bar of the cycle and jumping there picks the same.
                self.current_weight = self.current_weight.min(max_eligible);
            }
            let index = self.cursor;
            if is_eligible(&self.targets, ctx, index)
                && self.targets[index].weight >= self.current_weight
            {
                return Some(index);
            }
        }
    }
}

// === impl LeastLoad ===

/// The connection-count schedulers, which differ only in the cost they minimise.
#[derive(Clone, Copy, Debug)]
enum LoadPolicy {
    /// `lc`: fewest active connections; weight only decides eligibility.
    LeastConnection,
    /// `wlc`: fewest active connections per unit of weight.
    WeightedLeastConnection,
    /// `sed`: least `(active + 1) / weight`, the delay a new connection expects.
    ShortestExpectedDelay,
    /// `nq`: the first idle target if any, else as `sed`.
    NeverQueue,
}

/// `lc`, `wlc`, `sed` and `nq`, as in IPVS. IPVS's overhead is `active * 256 + inactive`; the
/// proxy only counts active connections, so the overhead is the active count (the factor 256
/// cancels in the comparisons). Costs are compared as fractions by cross-multiplying in `u64`
/// (`(u32::MAX + 1) * u32::MAX` fits), so there is no rounding.
///
/// Ties (and `nq`'s choice among idle targets) go to the first candidate at or after a cursor
/// that moves past every pick, where IPVS takes the lowest index. The proxy counts a connection
/// as active only once its backend connect succeeds, so connections arriving together all see
/// the same counts; with lowest-index ties a burst onto idle backends would land on one of them.
#[derive(Debug)]
struct LeastLoad {
    policy: LoadPolicy,
    targets: Vec<Target>,
    /// Where the next scan starts.
    next: usize,
}

impl LeastLoad {
    fn new(policy: LoadPolicy) -> Self {
        Self {
            policy,
            targets: Vec::new(),
            next: 0,
        }
    }

    fn least_loaded(&self, ctx: &PickContext<'_>) -> Option<usize> {
        let n = self.targets.len();
        // (index, cost numerator, cost denominator)
        let mut best: Option<(usize, u64, u64)> = None;
        for index in (0..n).map(|step| (self.next + step) % n) {
            if !is_eligible(&self.targets, ctx, index) {
                continue;
            }
            let active = u64::from(ctx.active_of(index));
            let weight = u64::from(self.targets[index].weight);
            let (num, den) = match self.policy {
                LoadPolicy::LeastConnection => (active, 1),
                LoadPolicy::WeightedLeastConnection => (active, weight),
                LoadPolicy::ShortestExpectedDelay => (active + 1, weight),
                LoadPolicy::NeverQueue if active == 0 => return Some(index),
                LoadPolicy::NeverQueue => (active + 1, weight),
            };
            let better = match best {
                None => true,
                Some((_, best_num, best_den)) => num * best_den < best_num * den,
            };
            if better {
                best = Some((index, num, den));
            }
        }
        best.map(|(index, _, _)| index)
    }
}

impl Scheduler for LeastLoad {
    fn kind(&self) -> SchedulerKind {
        match self.policy {
            LoadPolicy::LeastConnection => SchedulerKind::Lc,
            LoadPolicy::WeightedLeastConnection => SchedulerKind::Wlc,
            LoadPolicy::ShortestExpectedDelay => SchedulerKind::Sed,
            LoadPolicy::NeverQueue => SchedulerKind::Nq,
        }
    }

    fn set_targets(&mut self, targets: &[Target]) {
        self.targets = targets.to_vec();
        self.next = 0;
    }

    fn pick(&mut self, ctx: &PickContext<'_>) -> Option<usize> {
        let index = self.least_loaded(ctx)?;
        self.next = (index + 1) % self.targets.len();
        Some(index)
    }
}

// === stable hashing ===

const FNV_OFFSET_BASIS: u64 = 0xcbf2_9ce4_8422_2325;
const FNV_PRIME: u64 = 0x0000_0100_0000_01b3;

fn fnv1a(mut hash: u64, bytes: &[u8]) -> u64 {
    for &byte in bytes {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(FNV_PRIME);
    }
    hash
}

/// MurmurHash3's 64-bit finaliser. FNV-1a alone mixes its last input byte poorly into the low
/// bits, and the tables below index by `hash % len`, so neighbouring client addresses would
/// cluster.
fn fmix64(mut k: u64) -> u64 {
    k ^= k >> 33;
    k = k.wrapping_mul(0xff51_afd7_ed55_8ccd);
    k ^= k >> 33;
    k = k.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    k ^ (k >> 33)
}

/// A hash of `ip` (and `port`) that never changes across runs, releases or machines: `std`'s
/// `DefaultHasher` promises none of that, and every proxy must map a client the same way.
/// `salt` gives independent hashes of the same key (fallback probes, Maglev's two hashes).
/// IPv4-mapped IPv6 addresses hash as their IPv4 address, so a client keeps its backend whether
/// it reached a dual-stack or an IPv4 socket.
fn stable_hash(salt: u64, ip: IpAddr, port: Option<u16>) -> u64 {
    let mut hash = fnv1a(FNV_OFFSET_BASIS, &salt.to_le_bytes());
    hash = match ip.to_canonical() {
        IpAddr::V4(v4) => fnv1a(hash, &v4.octets()),
        IpAddr::V6(v6) => fnv1a(hash, &v6.octets()),
    };
    if let Some(port) = port {
        hash = fnv1a(hash, &port.to_be_bytes());
    }
    fmix64(hash)
}

/// Rehashes a hashing scheduler tries when the key's own slot holds an ineligible target, before
/// scanning targets in order. IPVS sh and mh rehash with an offset (`IP_VS_SVC_F_SCHED_*_FALLBACK`)
/// so that the clients of an unavailable backend spread over the others instead of piling onto
/// one neighbour; the scan bounds the cost when nearly everything is excluded and guarantees a
/// pick whenever any target is eligible, even one that holds no slot (IPVS then gives up).
const FALLBACK_REHASHES: u64 = 16;

/// Looks `key` up in a slot table of target indices, falling back deterministically (the same
/// key, targets and exclusions always give the same answer).
fn lookup(table: &[u32], targets: &[Target], ctx: &PickContext<'_>, key: IpAddr) -> Option<usize> {
    if table.is_empty() {
        return None;
    }
    let slot = |probe: u64| table[(stable_hash(probe, key, None) % table.len() as u64) as usize];
    let home = slot(0) as usize;
    if is_eligible(targets, ctx, home) {
        return Some(home);
    }
    if !any_eligible(targets, ctx) {
        return None;
    }
    (1..=FALLBACK_REHASHES)
        .map(|probe| slot(probe) as usize)
        .chain((1..targets.len()).map(|step| (home + step) % targets.len()))
        .find(|&index| is_eligible(targets, ctx, index))
}

// === impl HashTable ===

/// Which address a [`HashTable`] scheduler keys on.
#[derive(Clone, Copy, Debug)]
enum HashKey {
    /// `sh`: the client address.
    Source,
    /// `dh`: the service address. A Kubernetes service port has one address per family (plus
    /// external and node addresses), so `dh` pins all its traffic on an address to one backend;
    /// that is what IPVS dh does, and why it suits caches rather than spreading load.
    Destination,
}

/// Smallest bucket table: IPVS's default (`IP_VS_SH_TAB_BITS` = 8).
const HASH_TABLE_MIN_BUCKETS: usize = 256;
/// Largest bucket table, so one service port's table stays small (256 KiB of `u32`).
const HASH_TABLE_MAX_BUCKETS: usize = 1 << 16;
/// Buckets per unit of weight, so a large target set still spreads evenly; IPVS's fixed 256
/// buckets give some of 300 backends no bucket at all.
const BUCKETS_PER_TURN: usize = 64;

/// `sh` and `dh`: IPVS's bucket table. Buckets are dealt round robin; under `sh` a target takes
/// `weight / gcd` consecutive buckets per round (`dh` ignores weights, as IPVS does). A weight-0
/// target keeps one bucket per round, like IPVS, so quiescing a backend moves only its own clients
/// (to the fallback) and leaves every other bucket where it was. Any other change re-deals the
/// table and moves most keys: IPVS sh is not consistent hashing (use `mh` for that). Weight ratios
/// beyond the table's resolution saturate, as in IPVS.
#[derive(Debug)]
struct HashTable {
    key: HashKey,
    targets: Vec<Target>,
    buckets: Vec<u32>,
}

impl HashTable {
    fn new(key: HashKey) -> Self {
        Self {
            key,
            targets: Vec::new(),
            buckets: Vec::new(),
        }
    }

    fn deal(&self) -> Vec<u32> {
        let n = self.targets.len();
        if n == 0 {
            return Vec::new();
        }
        let unit = weight_gcd(&self.targets).max(1);
        let turns: Vec<u32> = self
            .targets
            .iter()
            .map(|t| match self.key {
                HashKey::Source => (t.weight / unit).max(1),
                HashKey::Destination => 1,
            })
            .collect();
        let total_turns = turns
            .iter()
            .fold(0usize, |sum, &t| sum.saturating_add(t as usize));
        let size = total_turns
            .saturating_mul(BUCKETS_PER_TURN)
            .checked_next_power_of_two()
            .unwrap_or(HASH_TABLE_MAX_BUCKETS)
            .clamp(HASH_TABLE_MIN_BUCKETS, HASH_TABLE_MAX_BUCKETS);
        let mut buckets = Vec::with_capacity(size);
        let (mut target, mut dealt) = (0, 0);
        while buckets.len() < size {
            // Target counts are bounded by memory far below u32::MAX.
            buckets.push(target as u32);
            dealt += 1;
            if dealt >= turns[target] {
                target = (target + 1) % n;
                dealt = 0;
            }
        }
        buckets
    }
}

impl Scheduler for HashTable {
    fn kind(&self) -> SchedulerKind {
        match self.key {
            HashKey::Source => SchedulerKind::Sh,
            HashKey::Destination => SchedulerKind::Dh,
        }
    }

    fn set_targets(&mut self, targets: &[Target]) {
        if targets == self.targets {
            return;
        }
        self.targets = targets.to_vec();
        self.buckets = self.deal();
    }

    fn pick(&mut self, ctx: &PickContext<'_>) -> Option<usize> {
        let key = match self.key {
            HashKey::Source => ctx.client,
            HashKey::Destination => ctx.service,
        };
        lookup(&self.buckets, &self.targets, ctx, key)
    }
}

// === impl Maglev ===

/// Maglev table sizes. Each is prime, so every skip in `1..M` walks all M slots (a target's
/// preference list is a full permutation). The first is IPVS mh's default (4093); the table is
/// sized for at least [`MAGLEV_SLOTS_PER_TARGET`] slots per target, up to 65537.
///
/// The size is a step function of the target count rather than "the next prime above 100 × n"
/// because changing M reshuffles every key: with steps, removing a target moves only its own
/// clients except when the count crosses 40|41, 81|82, 163|164 or 327|328. Starting at 4093
/// rather than 251 keeps the common scale-down (3 → 2 replicas) consistent, at 16 KiB per
/// service port.
const MAGLEV_TABLE_SIZES: [usize; 5] = [4093, 8191, 16381, 32749, 65537];
/// The Maglev paper's rule of thumb for keeping the slot imbalance between targets near 1%.
const MAGLEV_SLOTS_PER_TARGET: usize = 100;
/// Salts of the two hashes of a target's address that give its preference list.
const MAGLEV_OFFSET_SALT: u64 = 0x6d61_676c_6576_6f66;
const MAGLEV_SKIP_SALT: u64 = 0x6d61_676c_6576_736b;

fn maglev_table_size(targets: usize) -> usize {
    let wanted = targets.saturating_mul(MAGLEV_SLOTS_PER_TARGET);
    MAGLEV_TABLE_SIZES
        .into_iter()
        .find(|&size| size >= wanted)
        .unwrap_or(MAGLEV_TABLE_SIZES[MAGLEV_TABLE_SIZES.len() - 1])
}

/// `mh`: Maglev consistent hashing on the client address (Eisenbud et al., NSDI 2016; IPVS
/// `ip_vs_mh`). Each target's preference list over the table depends only on its own address,
/// so when a target leaves, the others keep almost all their slots and only about 1/n of the
/// clients move. Targets take turns claiming their next preferred free slot; a target claims
/// `weight / gcd` slots per turn.
///
/// Quiescing is IPVS's `last_weight` rule: a target whose weight drops to 0 keeps the slots of
/// its last positive weight and is skipped at lookup, so draining a backend moves only its own
/// clients (to the fallback) and no one else; a target that arrives with weight 0 claims none.
#[derive(Debug, Default)]
struct Maglev {
    targets: Vec<Target>,
    /// Weight each target claims slots with: its weight, or its last positive one when quiesced.
    claim_weights: Vec<u32>,
    table: Vec<u32>,
}

impl Maglev {
    fn carry_claim_weights(&self, targets: &[Target]) -> Vec<u32> {
        targets
            .iter()
            .map(|t| match t.weight {
                0 => self
                    .targets
                    .iter()
                    .position(|old| old.addr == t.addr)
                    .map_or(0, |old| self.claim_weights[old]),
                weight => weight,
            })
            .collect()
    }

    fn populate(&self) -> Vec<u32> {
        let unit = self.claim_weights.iter().copied().fold(0, gcd);
        if unit == 0 {
            // Empty, or no target ever had a positive weight.
            return Vec::new();
        }
        let size = maglev_table_size(self.targets.len());
        let preferences: Vec<(u64, u64)> = self
            .targets
            .iter()
            .map(|t| {
                let (ip, port) = (t.addr.ip(), Some(t.addr.port()));
                let offset = stable_hash(MAGLEV_OFFSET_SALT, ip, port) % size as u64;
                let skip = stable_hash(MAGLEV_SKIP_SALT, ip, port) % (size as u64 - 1) + 1;
                (offset, skip)
            })
            .collect();
        let mut claimed = vec![0u64; self.targets.len()];
        let mut table = vec![u32::MAX; size];
        let mut filled = 0;
        // Every claim fills a slot, so this ends after `size` claims however large the weights.
        while filled < size {
            for (index, &weight) in self.claim_weights.iter().enumerate() {
                let (offset, skip) = preferences[index];
                for _ in 0..weight / unit {
                    // A free slot exists (filled < size) and the preference list is a full
                    // permutation, so this finds one.
                    loop {
                        let slot = ((offset + claimed[index] * skip) % size as u64) as usize;
                        claimed[index] += 1;
                        if table[slot] == u32::MAX {
                            // Target counts are bounded by memory far below u32::MAX.
                            table[slot] = index as u32;
                            filled += 1;
                            break;
                        }
                    }
                    if filled == size {
                        return table;
                    }
                }
            }
        }
        table
    }
}

impl Scheduler for Maglev {
    fn kind(&self) -> SchedulerKind {
        SchedulerKind::Mh
    }

    fn set_targets(&mut self, targets: &[Target]) {
        if targets == self.targets {
            return;
        }
        self.claim_weights = self.carry_claim_weights(targets);
        self.targets = targets.to_vec();
        self.table = self.populate();
    }

    fn pick(&mut self, ctx: &PickContext<'_>) -> Option<usize> {
        lookup(&self.table, &self.targets, ctx, ctx.client)
    }
}
