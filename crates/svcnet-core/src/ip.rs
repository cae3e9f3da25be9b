//! IP address parsing the way kube-apiserver does it.
//!
//! Validation uses `netutils.ParseIPSloppy` and `ParseCIDRSloppy` (Go's pre-1.17 `net.ParseIP`,
//! which reads `010.0.0.1` as `10.0.0.1`), so such values are accepted and stored as given;
//! the Service warnings then use the strict `net/netip` parser ([`parse_addr_strict`],
//! [`parse_prefix_strict`]) to say that they will be refused one day. Family questions follow
//! Go's `net.IP.To4`: an IPv4-mapped IPv6 address (`::ffff:1.2.3.4`) counts as IPv4.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use crate::service::IpFamily;

/// Go's `dtoi`: a decimal prefix of `s`, with the number of bytes read.
fn dtoi(s: &[u8]) -> Option<(u32, usize)> {
    const BIG: u32 = 0xFF_FFFF;
    let mut n: u32 = 0;
    let mut i = 0;
    while i < s.len() && s[i].is_ascii_digit() {
        n = n * 10 + u32::from(s[i] - b'0');
        if n >= BIG {
            return None;
        }
        i += 1;
    }
    (i > 0).then_some((n, i))
}

/// Go's `xtoi`: a hexadecimal prefix of `s`, with the number of bytes read.
fn xtoi(s: &[u8]) -> Option<(u32, usize)> {
    const BIG: u32 = 0xFF_FFFF;
    let mut n: u32 = 0;
    let mut i = 0;
    while i < s.len() {
        let Some(d) = char::from(s[i]).to_digit(16) else {
            break;
        };
        n = n * 16 + d;
        if n >= BIG {
            return None;
        }
        i += 1;
    }
    (i > 0).then_some((n, i))
}

fn parse_v4_sloppy(mut s: &[u8]) -> Option<Ipv4Addr> {
    let mut p = [0u8; 4];
    for (i, octet) in p.iter_mut().enumerate() {
        if s.is_empty() {
            return None;
        }
        if i > 0 {
            if s[0] != b'.' {
                return None;
            }
            s = &s[1..];
        }
        let (n, c) = dtoi(s)?;
        *octet = u8::try_from(n).ok()?;
        s = &s[c..];
    }
    s.is_empty().then(|| Ipv4Addr::from(p))
}

fn parse_v6_sloppy(mut s: &[u8]) -> Option<Ipv6Addr> {
    let mut ip = [0u8; 16];
    let mut ellipsis: Option<usize> = None;
    if s.len() >= 2 && s[0] == b':' && s[1] == b':' {
        ellipsis = Some(0);
        s = &s[2..];
        if s.is_empty() {
            return Some(Ipv6Addr::UNSPECIFIED);
        }
    }
    let mut i = 0;
    while i < 16 {
        let (n, c) = xtoi(s)?;
        if n > 0xFFFF {
            return None;
        }
        if c < s.len() && s[c] == b'.' {
            if ellipsis.is_none() && i != 12 {
                return None;
            }
            if i + 4 > 16 {
                return None;
            }
            let v4 = parse_v4_sloppy(s)?;
            ip[i..i + 4].copy_from_slice(&v4.octets());
            s = &[];
            i += 4;
            break;
        }
        ip[i] = (n >> 8) as u8;
        ip[i + 1] = n as u8;
        i += 2;
        s = &s[c..];
        if s.is_empty() {
            break;
        }
        if s[0] != b':' || s.len() == 1 {
            return None;
        }
        s = &s[1..];
        if s[0] == b':' {
            if ellipsis.is_some() {
                return None;
            }
            ellipsis = Some(i);
            s = &s[1..];
            if s.is_empty() {
                break;
            }
        }
    }
    if !s.is_empty() {
        return None;
    }
    if i < 16 {
        let e = ellipsis?;
        let n = 16 - i;
        ip.copy_within(e..i, e + n);
        ip[e..e + n].fill(0);
    } else if ellipsis.is_some() {
        return None;
    }
    Some(Ipv6Addr::from(ip))
}

/// `netutils.ParseIPSloppy`: dotted quads may have leading zeros (read as decimal). A dotted
/// string gives [`IpAddr::V4`], a colon string [`IpAddr::V6`] (possibly IPv4-mapped).
pub fn parse_ip_sloppy(s: &str) -> Option<IpAddr> {
    for &b in s.as_bytes() {
        match b {
            b'.' => return parse_v4_sloppy(s.as_bytes()).map(IpAddr::V4),
            b':' => return parse_v6_sloppy(s.as_bytes()).map(IpAddr::V6),
            _ => {}
        }
    }
    None
}

/// `netutils.ParseCIDRSloppy`: the address as written and the prefix length.
pub fn parse_cidr_sloppy(s: &str) -> Option<(IpAddr, u8)> {
    let (addr, mask) = s.split_once('/')?;
    let (ip, bits) = match parse_v4_sloppy(addr.as_bytes()) {
        Some(v4) => (IpAddr::V4(v4), 32),
        None => (IpAddr::V6(parse_v6_sloppy(addr.as_bytes())?), 128),
    };
    let (n, c) = dtoi(mask.as_bytes())?;
    (c == mask.len() && n <= bits).then_some((ip, n as u8))
}

/// The address Go would work with: an IPv4-mapped IPv6 address becomes IPv4.
pub fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

/// The family as `netutils.IPFamilyOf` sees it (IPv4-mapped counts as IPv4).
pub fn family_of(ip: IpAddr) -> IpFamily {
    match canonical(ip) {
        IpAddr::V4(_) => IpFamily::V4,
        IpAddr::V6(_) => IpFamily::V6,
    }
}

/// The family of a string that may not be an IP (`netutils.IsIPv6String` is false for it).
pub fn family_of_str(s: &str) -> Option<IpFamily> {
    parse_ip_sloppy(s).map(family_of)
}

/// Go's `net.IP.IsLinkLocalUnicast`.
pub fn is_link_local_unicast(ip: IpAddr) -> bool {
    match canonical(ip) {
        IpAddr::V4(v4) => v4.octets()[..2] == [169, 254],
        IpAddr::V6(v6) => v6.octets()[0] == 0xfe && v6.octets()[1] & 0xc0 == 0x80,
    }
}

/// Go's `net.IP.IsLinkLocalMulticast`.
pub fn is_link_local_multicast(ip: IpAddr) -> bool {
    match canonical(ip) {
        IpAddr::V4(v4) => v4.octets()[..3] == [224, 0, 0],
        IpAddr::V6(v6) => v6.octets()[0] == 0xff && v6.octets()[1] & 0x0f == 0x02,
    }
}

/// Go's `net.IP.IsLoopback`.
pub fn is_loopback(ip: IpAddr) -> bool {
    canonical(ip).is_loopback()
}

/// Go's `net.IP.IsUnspecified`.
pub fn is_unspecified(ip: IpAddr) -> bool {
    canonical(ip).is_unspecified()
}

// === strict parsing (Go's net/netip), for warnings ===

fn quote(s: &str) -> String {
    crate::field::go_quote(s)
}

fn addr_error(input: &str, msg: &str, at: Option<&str>) -> String {
    match at {
        Some(at) if !at.is_empty() => {
            format!("ParseAddr({}): {msg} (at {})", quote(input), quote(at))
        }
        _ => format!("ParseAddr({}): {msg}", quote(input)),
    }
}

fn parse_v4_strict(s: &str) -> Result<Ipv4Addr, String> {
    let b = s.as_bytes();
    let mut fields = [0u8; 4];
    let (mut val, mut pos, mut dig_len) = (0u32, 0usize, 0usize);
    for i in 0..b.len() {
        if b[i].is_ascii_digit() {
            if dig_len == 1 && val == 0 {
                return Err(addr_error(
                    s,
                    "IPv4 field has octet with leading zero",
                    None,
                ));
            }
            val = val * 10 + u32::from(b[i] - b'0');
            dig_len += 1;
            if val > 255 {
                return Err(addr_error(s, "IPv4 field has value >255", None));
            }
        } else if b[i] == b'.' {
            if i == 0 || i == b.len() - 1 || b[i - 1] == b'.' {
                return Err(addr_error(
                    s,
                    "IPv4 field must have at least one digit",
                    Some(&s[i..]),
                ));
            }
            if pos == 3 {
                return Err(addr_error(s, "IPv4 address too long", None));
            }
            fields[pos] = val as u8;
            pos += 1;
            val = 0;
            dig_len = 0;
        } else {
            return Err(addr_error(s, "unexpected character", Some(&s[i..])));
        }
    }
    if pos < 3 {
        return Err(addr_error(s, "IPv4 address too short", None));
    }
    fields[3] = val as u8;
    Ok(Ipv4Addr::from(fields))
}

fn parse_v6_strict(input: &str) -> Result<Ipv6Addr, String> {
    let mut s = input;
    if let Some(i) = s.find('%') {
        if s[i + 1..].is_empty() {
            return Err(addr_error(input, "zone must be a non-empty string", None));
        }
        s = &s[..i];
    }
    let mut ip = [0u8; 16];
    let mut ellipsis: Option<usize> = None;
    if s.starts_with("::") {
        ellipsis = Some(0);
        s = &s[2..];
        if s.is_empty() {
            return Ok(Ipv6Addr::UNSPECIFIED);
        }
    }
    let mut i = 0;
    while i < 16 {
        let b = s.as_bytes();
        let mut off = 0;
        let mut acc: u32 = 0;
        while off < b.len() {
            let Some(d) = char::from(b[off]).to_digit(16) else {
                break;
            };
            acc = (acc << 4) + d;
            if acc > 0xFFFF {
                return Err(addr_error(input, "IPv6 field has value >=2^16", Some(s)));
            }
            off += 1;
        }
        if off == 0 {
            return Err(addr_error(
                input,
                "each colon-separated field must have at least one digit",
                Some(s),
            ));
        }
        if off < b.len() && b[off] == b'.' {
            if ellipsis.is_none() && i != 12 {
                return Err(addr_error(
                    input,
                    "embedded IPv4 address must replace the final 2 fields of the address",
                    Some(s),
                ));
            }
            if i + 4 > 16 {
                return Err(addr_error(
                    input,
                    "too many hex fields to fit an embedded IPv4 at the end of the address",
                    Some(s),
                ));
            }
            let v4 = parse_v4_strict(s).map_err(|e| addr_error(input, &e, Some(s)))?;
            ip[i..i + 4].copy_from_slice(&v4.octets());
            s = "";
            i += 4;
            break;
        }
        ip[i] = (acc >> 8) as u8;
        ip[i + 1] = acc as u8;
        i += 2;
        s = &s[off..];
        if s.is_empty() {
            break;
        }
        if !s.starts_with(':') {
            return Err(addr_error(
                input,
                "unexpected character, want colon",
                Some(s),
            ));
        } else if s.len() == 1 {
            return Err(addr_error(
                input,
                "colon must be followed by more characters",
                Some(s),
            ));
        }
        s = &s[1..];
        if s.starts_with(':') {
            if ellipsis.is_some() {
                return Err(addr_error(input, "multiple :: in address", Some(s)));
            }
            ellipsis = Some(i);
            s = &s[1..];
            if s.is_empty() {
                break;
            }
        }
    }
    if !s.is_empty() {
        return Err(addr_error(input, "trailing garbage after address", Some(s)));
    }
    if i < 16 {
        let Some(e) = ellipsis else {
            return Err(addr_error(input, "address string too short", None));
        };
        let n = 16 - i;
        ip.copy_within(e..i, e + n);
        ip[e..e + n].fill(0);
    } else if ellipsis.is_some() {
        return Err(addr_error(
            input,
            "the :: must expand to at least one field of zeros",
            Some(s),
        ));
    }
    Ok(Ipv6Addr::from(ip))
}

/// Go's `netip.ParseAddr`, with its error text. Zones are accepted and dropped.
pub fn parse_addr_strict(s: &str) -> Result<IpAddr, String> {
    for &b in s.as_bytes() {
        match b {
            b'.' => return parse_v4_strict(s).map(IpAddr::V4),
            b':' => return parse_v6_strict(s).map(IpAddr::V6),
            b'%' => return Err(addr_error(s, "missing IPv6 address", None)),
            _ => {}
        }
    }
    Err(addr_error(s, "unable to parse IP", None))
}

/// Go's `netip.Addr.String()` for an address [`parse_addr_strict`] returned.
pub fn netip_string(ip: IpAddr) -> String {
    // Rust prints IPv6 in RFC 5952 form with the `::ffff:a.b.c.d` special case, as netip does.
    ip.to_string()
}

/// Go's `netip.ParsePrefix`, with its error text: the address and the prefix length.
pub fn parse_prefix_strict(s: &str) -> Result<(IpAddr, u32), String> {
    let prefix = || format!("netip.ParsePrefix({})", quote(s));
    let Some(i) = s.rfind('/') else {
        return Err(format!("{}: no '/'", prefix()));
    };
    let ip = parse_addr_strict(&s[..i]).map_err(|e| format!("{}: {e}", prefix()))?;
    if ip.is_ipv6() && s[..i].contains('%') {
        return Err(format!(
            "{}: IPv6 zones cannot be present in a prefix",
            prefix()
        ));
    }
    let bits_str = &s[i + 1..];
    let bits = go_atoi(bits_str)
        .ok_or_else(|| format!("{}: bad bits after slash: {}", prefix(), quote(bits_str)))?;
    let max = if ip.is_ipv6() { 128 } else { 32 };
    if !(0..=max).contains(&bits) {
        return Err(format!("{}: prefix length out of range", prefix()));
    }
    Ok((ip, bits as u32))
}

/// `strconv.Atoi`: an optional sign and decimal digits that fit an `int`.
fn go_atoi(s: &str) -> Option<i64> {
    s.parse::<i64>().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v4(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn sloppy_parser_reads_leading_zeros_as_decimal() {
        assert_eq!(parse_ip_sloppy("010.096.000.010"), Some(v4("10.96.0.10")));
        assert_eq!(parse_ip_sloppy("10.96.0.256"), None);
        assert_eq!(parse_ip_sloppy("10.96.0"), None);
        assert_eq!(parse_ip_sloppy("10.96.0.1.2"), None);
        assert_eq!(parse_ip_sloppy(" 10.96.0.1"), None);
        assert_eq!(parse_ip_sloppy("abc"), None);
        assert_eq!(parse_ip_sloppy(""), None);
        assert_eq!(parse_ip_sloppy("2001:DB8::1"), Some(v4("2001:db8::1")));
        assert_eq!(parse_ip_sloppy("::"), Some(v4("::")));
        assert_eq!(
            parse_ip_sloppy("::ffff:010.1.2.3"),
            Some(v4("::ffff:10.1.2.3"))
        );
        assert_eq!(parse_ip_sloppy("1::2::3"), None);
        assert_eq!(parse_ip_sloppy("1:2:3:4:5:6:7:8::"), None);
        assert_eq!(parse_ip_sloppy("fe80::1%eth0"), None);
        assert_eq!(
            parse_ip_sloppy("1:2:3:4:5:6:1.2.3.4"),
            Some(v4("1:2:3:4:5:6:102:304"))
        );
    }

    #[test]
    fn mapped_addresses_count_as_ipv4() {
        assert_eq!(family_of_str("::ffff:10.96.0.1"), Some(IpFamily::V4));
        assert_eq!(family_of_str("fd00::1"), Some(IpFamily::V6));
        assert_eq!(family_of_str("x"), None);
        assert!(is_loopback(v4("::ffff:127.0.0.1")));
        assert!(is_link_local_unicast(v4("169.254.1.1")));
        assert!(is_link_local_unicast(v4("fe80::1")));
        assert!(is_link_local_multicast(v4("224.0.0.5")));
        assert!(!is_link_local_multicast(v4("239.1.1.1")));
        assert!(is_link_local_multicast(v4("ff02::1")));
        assert!(is_unspecified(v4("::ffff:0.0.0.0")));
    }

    #[test]
    fn sloppy_cidrs() {
        assert_eq!(parse_cidr_sloppy("010.0.0.0/8"), Some((v4("10.0.0.0"), 8)));
        assert_eq!(parse_cidr_sloppy("10.0.0.0/33"), None);
        assert_eq!(parse_cidr_sloppy("10.0.0.0"), None);
        assert_eq!(parse_cidr_sloppy("fd00::/64"), Some((v4("fd00::"), 64)));
        assert_eq!(parse_cidr_sloppy("fd00::/+64"), None);
    }

    #[test]
    fn strict_parser_errors_are_netips() {
        assert_eq!(
            parse_addr_strict("010.0.0.1").unwrap_err(),
            r#"ParseAddr("010.0.0.1"): IPv4 field has octet with leading zero"#
        );
        assert_eq!(
            parse_addr_strict("::ffff:010.0.0.1").unwrap_err(),
            r#"ParseAddr("::ffff:010.0.0.1"): ParseAddr("010.0.0.1"): IPv4 field has octet with leading zero (at "010.0.0.1")"#
        );
        assert_eq!(
            parse_prefix_strict("010.0.0.0/8").unwrap_err(),
            r#"netip.ParsePrefix("010.0.0.0/8"): ParseAddr("010.0.0.0"): IPv4 field has octet with leading zero"#
        );
        assert_eq!(parse_addr_strict("10.0.0.1"), Ok(v4("10.0.0.1")));
        assert_eq!(
            netip_string(parse_addr_strict("2001:DB8:0:0::1").unwrap()),
            "2001:db8::1"
        );
        assert_eq!(parse_prefix_strict("fd00::/64"), Ok((v4("fd00::"), 64)));
    }
}
