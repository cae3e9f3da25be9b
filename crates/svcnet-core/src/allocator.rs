//! Cluster IP and NodePort allocators: bitmaps over a range with a static band (KEP-3070,
//! KEP-3668) so dynamic allocation prefers the upper part and leaves the lower part for users
//! who pick an address or port themselves.

use std::fmt;
use std::net::IpAddr;
use std::ops::RangeInclusive;

use ipnet::IpNet;
use rand::Rng;

/// The allocators' errors, with kube's texts (`ipallocator` and `portallocator`).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum AllocError {
    #[error("the provided IP ({ip}) is not in the valid range. The range of valid IPs is {range}")]
    IpNotInRange { ip: IpAddr, range: String },
    #[error("provided port is not in the valid range. The range of valid ports is {range}")]
    PortNotInRange { range: String },
    #[error("provided {what} is already allocated")]
    AlreadyAllocated { what: &'static str },
    #[error("range is full")]
    Full,
}

/// A fixed-size set of offsets `0..size` with O(size/64) search.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RangeBitmap {
    size: u64,
    /// Offsets below this form the static band, used by dynamic allocation only when the upper
    /// band is full.
    static_band: u64,
    words: Vec<u64>,
    used: u64,
}

impl RangeBitmap {
    pub fn new(size: u64, static_band: u64) -> Self {
        Self {
            size,
            static_band: static_band.min(size),
            words: vec![0; size.div_ceil(64) as usize],
            used: 0,
        }
    }
    pub fn size(&self) -> u64 {
        self.size
    }
    pub fn used(&self) -> u64 {
        self.used
    }
    pub fn is_set(&self, i: u64) -> bool {
        i < self.size && self.words[(i / 64) as usize] & (1 << (i % 64)) != 0
    }
    /// Marks `i`; false if it was already marked or is out of range.
    pub fn set(&mut self, i: u64) -> bool {
        if i >= self.size || self.is_set(i) {
            return false;
        }
        self.words[(i / 64) as usize] |= 1 << (i % 64);
        self.used += 1;
        true
    }
    /// Clears `i`; false if it was not marked.
    pub fn clear(&mut self, i: u64) -> bool {
        if !self.is_set(i) {
            return false;
        }
        self.words[(i / 64) as usize] &= !(1 << (i % 64));
        self.used -= 1;
        true
    }

    fn first_free_in(&self, range: RangeInclusive<u64>, start: u64) -> Option<u64> {
        let (lo, hi) = (*range.start(), *range.end());
        if lo > hi {
            return None;
        }
        let span = hi - lo + 1;
        let mut i = start;
        let mut scanned = 0;
        while scanned < span {
            let w = self.words[(i / 64) as usize];
            if w == u64::MAX && i.is_multiple_of(64) && i + 63 <= hi {
                scanned += 64;
                i += 64;
            } else {
                if w & (1 << (i % 64)) == 0 {
                    return Some(i);
                }
                scanned += 1;
                i += 1;
            }
            if i > hi {
                i = lo;
            }
        }
        None
    }

    /// Marks and returns a random free offset, upper band first.
    pub fn allocate_next(&mut self, rng: &mut impl Rng) -> Option<u64> {
        if self.used >= self.size {
            return None;
        }
        for band in [self.static_band..self.size, 0..self.static_band] {
            if band.is_empty() {
                continue;
            }
            let start = rng.random_range(band.clone());
            if let Some(i) = self.first_free_in(band.start..=band.end - 1, start) {
                self.set(i);
                return Some(i);
            }
        }
        None
    }
}

/// `min(max(16, size/16), 256)`: the KEP-3070 static band for Service IPs.
pub fn service_ip_static_band(size: u64) -> u64 {
    (size / 16).clamp(16, 256)
}

/// `min(max(16, size/32), 128)`: the KEP-3668 static band for NodePorts.
pub fn node_port_static_band(size: u64) -> u64 {
    (size / 32).clamp(16, 128)
}

/// Allocates addresses of one Service CIDR. The network address (and for IPv4 the broadcast
/// address) are never handed out; an IPv6 range is capped at 2^16 addresses.
#[derive(Clone, Debug)]
pub struct ClusterIpAllocator {
    cidr: IpNet,
    bitmap: RangeBitmap,
}

fn ip_to_u128(ip: IpAddr) -> u128 {
    match ip {
        IpAddr::V4(v4) => u32::from(v4).into(),
        IpAddr::V6(v6) => v6.into(),
    }
}

impl ClusterIpAllocator {
    pub fn new(cidr: IpNet) -> Self {
        let cidr = cidr.trunc();
        let host_bits = u32::from(cidr.max_prefix_len() - cidr.prefix_len());
        let total: u128 = if host_bits >= 127 {
            u128::MAX
        } else {
            1u128 << host_bits
        };
        let size: u128 = match cidr {
            IpNet::V4(_) => total.saturating_sub(2),
            IpNet::V6(_) => total.saturating_sub(1).min(1 << 16),
        };
        let size = size as u64;
        Self {
            cidr,
            bitmap: RangeBitmap::new(size, service_ip_static_band(size)),
        }
    }

    pub fn cidr(&self) -> IpNet {
        self.cidr
    }
    pub fn bitmap(&self) -> &RangeBitmap {
        &self.bitmap
    }

    fn offset_of(&self, ip: IpAddr) -> Result<u64, AllocError> {
        // Go's net.IPNet.Contains takes an IPv4-mapped address as the IPv4 one.
        let ip = crate::ip::canonical(ip);
        let not_in_range = || AllocError::IpNotInRange {
            ip,
            range: self.cidr.to_string(),
        };
        if !self.cidr.contains(&ip) {
            return Err(not_in_range());
        }
        let delta = ip_to_u128(ip) - ip_to_u128(self.cidr.network());
        if delta == 0 || delta > u128::from(self.bitmap.size()) {
            return Err(not_in_range());
        }
        Ok((delta - 1) as u64)
    }

    /// The address at `offset` (0 is the first usable address, e.g. 10.96.0.1).
    pub fn ip_at(&self, offset: u64) -> IpAddr {
        let n = ip_to_u128(self.cidr.network()) + 1 + u128::from(offset);
        match self.cidr {
            IpNet::V4(_) => IpAddr::V4((n as u32).into()),
            IpNet::V6(_) => IpAddr::V6(n.into()),
        }
    }

    /// Takes `ip` (an IPv4-mapped address counts as its IPv4 address).
    pub fn allocate(&mut self, ip: IpAddr) -> Result<(), AllocError> {
        let i = self.offset_of(ip)?;
        if self.bitmap.set(i) {
            Ok(())
        } else {
            Err(AllocError::AlreadyAllocated { what: "IP" })
        }
    }

    pub fn allocate_next(&mut self, rng: &mut impl Rng) -> Result<IpAddr, AllocError> {
        self.bitmap
            .allocate_next(rng)
            .map(|i| self.ip_at(i))
            .ok_or(AllocError::Full)
    }

    /// Frees `ip`; addresses outside the range are ignored.
    pub fn release(&mut self, ip: IpAddr) -> bool {
        self.offset_of(ip).is_ok_and(|i| self.bitmap.clear(i))
    }
}

/// A NodePort range such as `30000-32767`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PortRange {
    pub base: u16,
    pub size: u16,
}

impl PortRange {
    pub fn contains(&self, port: u16) -> bool {
        port >= self.base && u32::from(port) < u32::from(self.base) + u32::from(self.size)
    }
}

impl fmt::Display for PortRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}-{}",
            self.base,
            u32::from(self.base) + u32::from(self.size) - 1
        )
    }
}

impl std::str::FromStr for PortRange {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let (a, b) = s
            .split_once('-')
            .map(|(a, b)| (a.trim(), b.trim()))
            .unwrap_or((s.trim(), s.trim()));
        let parse = |x: &str| {
            x.parse::<u16>()
                .map_err(|_| format!("invalid port range {s:?}: {x:?} is not a port"))
        };
        let (lo, hi) = (parse(a)?, parse(b)?);
        if lo == 0 || hi < lo {
            return Err(format!(
                "invalid port range {s:?}: expected LOW-HIGH with 0 < LOW <= HIGH"
            ));
        }
        Ok(PortRange {
            base: lo,
            size: hi - lo + 1,
        })
    }
}

#[derive(Clone, Debug)]
pub struct NodePortAllocator {
    range: PortRange,
    bitmap: RangeBitmap,
}

impl NodePortAllocator {
    pub fn new(range: PortRange) -> Self {
        let size = u64::from(range.size);
        Self {
            range,
            bitmap: RangeBitmap::new(size, node_port_static_band(size)),
        }
    }
    pub fn bitmap(&self) -> &RangeBitmap {
        &self.bitmap
    }
    fn offset_of(&self, port: i32) -> Result<u64, AllocError> {
        match u16::try_from(port) {
            Ok(p) if self.range.contains(p) => Ok(u64::from(p - self.range.base)),
            _ => Err(AllocError::PortNotInRange {
                range: self.range.to_string(),
            }),
        }
    }
    pub fn allocate(&mut self, port: i32) -> Result<(), AllocError> {
        let i = self.offset_of(port)?;
        if self.bitmap.set(i) {
            Ok(())
        } else {
            Err(AllocError::AlreadyAllocated { what: "port" })
        }
    }
    pub fn allocate_next(&mut self, rng: &mut impl Rng) -> Result<i32, AllocError> {
        self.bitmap
            .allocate_next(rng)
            .map(|i| i32::from(self.range.base) + i as i32)
            .ok_or(AllocError::Full)
    }
    pub fn release(&mut self, port: i32) -> bool {
        self.offset_of(port).is_ok_and(|i| self.bitmap.clear(i))
    }
}

#[cfg(test)]
mod tests;
