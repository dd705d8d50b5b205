//! kube's `library/ip.go` and `library/cidr.go`: `net.IP` and `net.CIDR` values, parsed as
//! Go's `netip.ParseAddr`/`ParsePrefix` do (no zones, no IPv4-mapped IPv6, no leading zeros),
//! with their error texts.

use std::any::Any;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use cel::common::types::{CelInt, CelString, STRING_TYPE, Type};
use cel::common::value::{CowVal, StaticVal, Val};
use cel::{DeclarationError, Env, ExecutionError};

use super::library::{arg, boolean, fail, no_overload, owned, str_arg, string};

pub(crate) static IP_TYPE: Type = Type::new_unspecified_type("net.IP");
pub(crate) static CIDR_TYPE: Type = Type::new_unspecified_type("net.CIDR");

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct IpVal(pub(crate) IpAddr);

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct CidrVal {
    pub(crate) addr: IpAddr,
    pub(crate) bits: u8,
}

impl Val for IpVal {
    fn get_type(&self) -> &Type {
        &IP_TYPE
    }
    fn cel_type() -> &'static Type {
        &IP_TYPE
    }
    fn equals(&self, other: &dyn Val) -> bool {
        other.downcast_ref::<IpVal>() == Some(self)
    }
    fn clone_as_boxed<'v>(&self) -> Box<dyn Val + 'v> {
        Box::new(self.clone())
    }
    fn as_any(&self) -> Option<&dyn Any> {
        Some(self)
    }
}

impl StaticVal for IpVal {}

impl Val for CidrVal {
    fn get_type(&self) -> &Type {
        &CIDR_TYPE
    }
    fn cel_type() -> &'static Type {
        &CIDR_TYPE
    }
    fn equals(&self, other: &dyn Val) -> bool {
        other.downcast_ref::<CidrVal>() == Some(self)
    }
    fn clone_as_boxed<'v>(&self) -> Box<dyn Val + 'v> {
        Box::new(self.clone())
    }
    fn as_any(&self) -> Option<&dyn Any> {
        Some(self)
    }
}

impl StaticVal for CidrVal {}

impl std::fmt::Display for CidrVal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.addr, self.bits)
    }
}

pub(crate) fn display(v: &dyn Val) -> Option<String> {
    if let Some(ip) = v.downcast_ref::<IpVal>() {
        return Some(ip.0.to_string());
    }
    v.downcast_ref::<CidrVal>().map(ToString::to_string)
}

pub(crate) fn register(env: &mut Env) -> Result<(), DeclarationError> {
    let ip = || IP_TYPE.to_owned();
    let cidr = || CIDR_TYPE.to_owned();
    env.add_type(ip())?;
    env.add_type(cidr())?;
    env.add_overload("ip", "string_to_ip", vec![STRING_TYPE], to_ip)?;
    env.add_overload("isIP", "is_ip", vec![STRING_TYPE], is_ip)?;
    env.add_overload("ip.isCanonical", "ip_is_canonical", vec![STRING_TYPE], is_canonical)?;
    env.add_overload("string", "ip_to_string", vec![ip()], to_string)?;
    env.add_member_overload("family", "ip_family", ip(), vec![], family)?;
    env.add_member_overload("isUnspecified", "ip_is_unspecified", ip(), vec![], is_unspecified)?;
    env.add_member_overload("isLoopback", "ip_is_loopback", ip(), vec![], is_loopback)?;
    env.add_member_overload(
        "isLinkLocalMulticast",
        "ip_is_link_local_multicast",
        ip(),
        vec![],
        is_link_local_multicast,
    )?;
    env.add_member_overload(
        "isLinkLocalUnicast",
        "ip_is_link_local_unicast",
        ip(),
        vec![],
        is_link_local_unicast,
    )?;
    env.add_member_overload(
        "isGlobalUnicast",
        "ip_is_global_unicast",
        ip(),
        vec![],
        is_global_unicast,
    )?;
    env.add_overload("cidr", "string_to_cidr", vec![STRING_TYPE], to_cidr)?;
    env.add_overload("isCIDR", "is_cidr", vec![STRING_TYPE], is_cidr)?;
    env.add_overload("string", "cidr_to_string", vec![cidr()], to_string)?;
    env.add_member_overload(
        "containsIP",
        "cidr_contains_ip_string",
        cidr(),
        vec![STRING_TYPE],
        contains_ip,
    )?;
    env.add_member_overload("containsIP", "cidr_contains_ip_ip", cidr(), vec![ip()], contains_ip)?;
    env.add_member_overload(
        "containsCIDR",
        "cidr_contains_cidr_string",
        cidr(),
        vec![STRING_TYPE],
        contains_cidr,
    )?;
    env.add_member_overload(
        "containsCIDR",
        "cidr_contains_cidr",
        cidr(),
        vec![cidr()],
        contains_cidr,
    )?;
    env.add_member_overload("ip", "cidr_ip", cidr(), vec![], cidr_ip)?;
    env.add_member_overload("prefixLength", "cidr_prefix_length", cidr(), vec![], prefix_length)?;
    env.add_member_overload("masked", "cidr_masked", cidr(), vec![], masked)?;
    Ok(())
}

/// Go's `netip.ParseAddr` error text.
fn addr_error(input: &str, msg: &str, at: Option<&str>) -> String {
    match at {
        Some(at) => format!("ParseAddr({input:?}): {msg} (at {at:?})"),
        None => format!("ParseAddr({input:?}): {msg}"),
    }
}

/// Go's `parseIPv4`, for its error messages.
fn parse_v4(input: &str, s: &str) -> Result<Ipv4Addr, String> {
    let b = s.as_bytes();
    let mut fields = [0u8; 4];
    let (mut val, mut digits, mut pos) = (0u32, 0, 0);
    for (i, &c) in b.iter().enumerate() {
        if c.is_ascii_digit() {
            if digits == 1 && val == 0 {
                return Err(addr_error(input, "IPv4 field has octet with leading zero", None));
            }
            val = val * 10 + u32::from(c - b'0');
            digits += 1;
            if val > 255 {
                return Err(addr_error(input, "IPv4 field has value >255", None));
            }
        } else if c == b'.' {
            if i == 0 || i == b.len() - 1 || b[i - 1] == b'.' {
                return Err(addr_error(
                    input,
                    "IPv4 field must have at least one digit",
                    Some(&s[i..]),
                ));
            }
            if pos == 3 {
                return Err(addr_error(input, "IPv4 address too long", None));
            }
            fields[pos] = val as u8;
            pos += 1;
            val = 0;
            digits = 0;
        } else {
            return Err(addr_error(input, "unexpected character", Some(&s[i..])));
        }
    }
    if pos < 3 {
        return Err(addr_error(input, "IPv4 address too short", None));
    }
    fields[3] = val as u8;
    Ok(Ipv4Addr::from(fields))
}

/// `netip.ParseAddr`: an address and its zone, if any.
fn parse_addr(s: &str) -> Result<(IpAddr, bool), String> {
    for (i, c) in s.char_indices() {
        match c {
            '.' => return parse_v4(s, s).map(|a| (IpAddr::V4(a), false)),
            ':' => {
                let (addr, zone) = match s.split_once('%') {
                    Some((a, z)) => (a, Some(z)),
                    None => (s, None),
                };
                if zone == Some("") {
                    return Err(addr_error(s, "zone must be a non-empty string", None));
                }
                return addr
                    .parse::<Ipv6Addr>()
                    .map(|a| (IpAddr::V6(a), zone.is_some()))
                    .map_err(|_| addr_error(s, "unable to parse IP", None));
            }
            '%' if i == 0 => return Err(addr_error(s, "missing IPv6 address", None)),
            _ => {}
        }
    }
    Err(addr_error(s, "unable to parse IP", None))
}

/// kube's `parseIPAddr`: `netip.ParseAddr` without zones or IPv4-mapped IPv6 addresses.
pub(crate) fn parse_ip(s: &str) -> Result<IpAddr, String> {
    let (addr, zoned) = parse_addr(s)
        .map_err(|e| format!("IP Address {s:?} parse error during conversion from string: {e}"))?;
    if zoned {
        return Err(format!("IP address {s:?} with zone value is not allowed"));
    }
    if let IpAddr::V6(v6) = addr
        && v6.to_ipv4_mapped().is_some()
    {
        return Err(format!("IPv4-mapped IPv6 address {s:?} is not allowed"));
    }
    Ok(addr)
}

/// `netip.ParsePrefix`, with its error texts.
fn parse_prefix(s: &str) -> Result<CidrVal, String> {
    let err = |msg: String| format!("netip.ParsePrefix({s:?}): {msg}");
    let Some((addr, bits)) = s.rsplit_once('/') else { return Err(err("no '/'".into())) };
    let (ip, zoned) = parse_addr(addr).map_err(err)?;
    if zoned {
        return Err(err("IPv6 zones cannot be present in a prefix".into()));
    }
    let bad_bits = || err(format!("bad bits after slash: {bits:?}"));
    if bits.is_empty()
        || !bits.bytes().all(|b| b.is_ascii_digit())
        || (bits.len() > 1 && bits.starts_with('0'))
    {
        return Err(bad_bits());
    }
    let n: u32 = bits.parse().map_err(|_| bad_bits())?;
    let max = if ip.is_ipv4() { 32 } else { 128 };
    if n > max {
        return Err(err("prefix length out of range".into()));
    }
    Ok(CidrVal { addr: ip, bits: n as u8 })
}

/// kube's `parseCIDR`.
pub(crate) fn parse_cidr(s: &str) -> Result<CidrVal, String> {
    let prefix = parse_prefix(s)
        .map_err(|e| format!("network address parse error during conversion from string: {e}"))?;
    if let IpAddr::V6(v6) = prefix.addr
        && v6.to_ipv4_mapped().is_some()
    {
        return Err(format!("IPv4-mapped IPv6 address {s:?} is not allowed"));
    }
    Ok(prefix)
}

fn ip_arg<'x>(
    args: &'x [CowVal<'_, '_>],
    i: usize,
    function: &str,
) -> Result<&'x IpAddr, ExecutionError> {
    arg(args, i)?.downcast_ref::<IpVal>().map(|v| &v.0).ok_or_else(|| no_overload(function, args))
}

fn cidr_arg<'x>(
    args: &'x [CowVal<'_, '_>],
    i: usize,
    function: &str,
) -> Result<&'x CidrVal, ExecutionError> {
    arg(args, i)?.downcast_ref::<CidrVal>().ok_or_else(|| no_overload(function, args))
}

fn to_ip<'b, 'v>(args: Vec<CowVal<'b, 'v>>) -> Result<CowVal<'b, 'v>, ExecutionError> {
    let s = str_arg(&args, 0, "ip")?;
    parse_ip(s).map(|a| CowVal::owned(IpVal(a))).map_err(|e| fail("ip", e))
}

fn is_ip<'b, 'v>(args: Vec<CowVal<'b, 'v>>) -> Result<CowVal<'b, 'v>, ExecutionError> {
    boolean(parse_ip(str_arg(&args, 0, "isIP")?).is_ok())
}

fn is_canonical<'b, 'v>(args: Vec<CowVal<'b, 'v>>) -> Result<CowVal<'b, 'v>, ExecutionError> {
    let s = str_arg(&args, 0, "ip.isCanonical")?;
    let addr = parse_ip(s).map_err(|e| fail("ip.isCanonical", e))?;
    boolean(addr.to_string() == s)
}

fn to_string<'b, 'v>(args: Vec<CowVal<'b, 'v>>) -> Result<CowVal<'b, 'v>, ExecutionError> {
    let v = arg(&args, 0)?;
    match display(v) {
        Some(s) => string(s),
        None => Err(no_overload("string", &args)),
    }
}

fn family<'b, 'v>(args: Vec<CowVal<'b, 'v>>) -> Result<CowVal<'b, 'v>, ExecutionError> {
    let ip = ip_arg(&args, 0, "family")?;
    owned(CelInt::from(if ip.is_ipv4() { 4 } else { 6 }))
}

fn is_unspecified<'b, 'v>(args: Vec<CowVal<'b, 'v>>) -> Result<CowVal<'b, 'v>, ExecutionError> {
    boolean(ip_arg(&args, 0, "isUnspecified")?.is_unspecified())
}

fn is_loopback<'b, 'v>(args: Vec<CowVal<'b, 'v>>) -> Result<CowVal<'b, 'v>, ExecutionError> {
    boolean(ip_arg(&args, 0, "isLoopback")?.is_loopback())
}

fn link_local_multicast(ip: &IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => v4.octets()[..3] == [224, 0, 0],
        IpAddr::V6(v6) => v6.segments()[0] & 0xff0f == 0xff02,
    }
}

fn link_local_unicast(ip: &IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => v4.octets()[..2] == [169, 254],
        IpAddr::V6(v6) => v6.segments()[0] & 0xffc0 == 0xfe80,
    }
}

fn is_link_local_multicast<'b, 'v>(
    args: Vec<CowVal<'b, 'v>>,
) -> Result<CowVal<'b, 'v>, ExecutionError> {
    boolean(link_local_multicast(ip_arg(&args, 0, "isLinkLocalMulticast")?))
}

fn is_link_local_unicast<'b, 'v>(
    args: Vec<CowVal<'b, 'v>>,
) -> Result<CowVal<'b, 'v>, ExecutionError> {
    boolean(link_local_unicast(ip_arg(&args, 0, "isLinkLocalUnicast")?))
}

/// Go's `netip.Addr.IsGlobalUnicast` (private ranges count as global, as in package net).
fn global_unicast(ip: &IpAddr) -> bool {
    if let IpAddr::V4(v4) = ip
        && v4.is_broadcast()
    {
        return false;
    }
    !ip.is_unspecified() && !ip.is_loopback() && !ip.is_multicast() && !link_local_unicast(ip)
}

fn is_global_unicast<'b, 'v>(args: Vec<CowVal<'b, 'v>>) -> Result<CowVal<'b, 'v>, ExecutionError> {
    boolean(global_unicast(ip_arg(&args, 0, "isGlobalUnicast")?))
}

fn to_cidr<'b, 'v>(args: Vec<CowVal<'b, 'v>>) -> Result<CowVal<'b, 'v>, ExecutionError> {
    let s = str_arg(&args, 0, "cidr")?;
    parse_cidr(s).map(CowVal::owned).map_err(|e| {
        fail("cidr", format!("network address parse error during conversion from string: {e}"))
    })
}

fn is_cidr<'b, 'v>(args: Vec<CowVal<'b, 'v>>) -> Result<CowVal<'b, 'v>, ExecutionError> {
    boolean(parse_cidr(str_arg(&args, 0, "isCIDR")?).is_ok())
}

/// `addr` with every bit past the first `bits` cleared.
fn mask(addr: &IpAddr, bits: u8) -> IpAddr {
    match addr {
        IpAddr::V4(v4) => {
            let m = if bits == 0 { 0 } else { u32::MAX << (32 - u32::from(bits)) };
            IpAddr::V4(Ipv4Addr::from(u32::from(*v4) & m))
        }
        IpAddr::V6(v6) => {
            let m = if bits == 0 { 0 } else { u128::MAX << (128 - u32::from(bits)) };
            IpAddr::V6(Ipv6Addr::from(u128::from(*v6) & m))
        }
    }
}

fn contains(cidr: &CidrVal, ip: &IpAddr) -> bool {
    cidr.addr.is_ipv4() == ip.is_ipv4() && mask(&cidr.addr, cidr.bits) == mask(ip, cidr.bits)
}

fn contains_ip<'b, 'v>(args: Vec<CowVal<'b, 'v>>) -> Result<CowVal<'b, 'v>, ExecutionError> {
    let cidr = cidr_arg(&args, 0, "containsIP")?;
    let other = arg(&args, 1)?;
    let ip = match other.downcast_ref::<CelString>() {
        Some(s) => parse_ip(s.inner()).map_err(|e| fail("containsIP", e))?,
        None => *ip_arg(&args, 1, "containsIP")?,
    };
    boolean(contains(cidr, &ip))
}

fn contains_cidr<'b, 'v>(args: Vec<CowVal<'b, 'v>>) -> Result<CowVal<'b, 'v>, ExecutionError> {
    let cidr = cidr_arg(&args, 0, "containsCIDR")?;
    let other = match arg(&args, 1)?.downcast_ref::<CelString>() {
        Some(s) => parse_cidr(s.inner()).map_err(|e| {
            fail(
                "containsCIDR",
                format!("network address parse error during conversion from string: {e}"),
            )
        })?,
        None => cidr_arg(&args, 1, "containsCIDR")?.clone(),
    };
    boolean(contains(cidr, &other.addr) && cidr.bits <= other.bits)
}

fn cidr_ip<'b, 'v>(args: Vec<CowVal<'b, 'v>>) -> Result<CowVal<'b, 'v>, ExecutionError> {
    owned(IpVal(cidr_arg(&args, 0, "ip")?.addr))
}

fn prefix_length<'b, 'v>(args: Vec<CowVal<'b, 'v>>) -> Result<CowVal<'b, 'v>, ExecutionError> {
    owned(CelInt::from(i64::from(cidr_arg(&args, 0, "prefixLength")?.bits)))
}

fn masked<'b, 'v>(args: Vec<CowVal<'b, 'v>>) -> Result<CowVal<'b, 'v>, ExecutionError> {
    let cidr = cidr_arg(&args, 0, "masked")?;
    owned(CidrVal { addr: mask(&cidr.addr, cidr.bits), bits: cidr.bits })
}
