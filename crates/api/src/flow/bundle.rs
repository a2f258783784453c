//! `bundle(…)` and `bundle_load(…)`: one member port out of a list, chosen by a hash of the flow among the
//! members whose link is up — `active_backup` (the first live one) or `hrw` (highest random weight, so one
//! flow keeps its member while that member lives). `bundle` outputs to it, `bundle_load` writes its port
//! number into a field (OFPP_NONE, 0xffff, when no member lives). OVS's NXAST_BUNDLE and NXAST_BUNDLE_LOAD.

use super::*;

/// Members one bundle may list.
pub const MAX_MEMBERS: usize = 8;

/// What the hash covers (OVS's NX_HASH_FIELDS_*; the symmetric ones are the same both ways).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum HashFields {
    EthSrc,
    SymmetricL4,
    SymmetricL3L4,
    SymmetricL3L4Udp,
    NwSrc,
    NwDst,
    SymmetricL3,
}

const NAMES: [(HashFields, &str); 7] = [
    (HashFields::EthSrc, "eth_src"),
    (HashFields::SymmetricL4, "symmetric_l4"),
    (HashFields::SymmetricL3L4, "symmetric_l3l4"),
    (HashFields::SymmetricL3L4Udp, "symmetric_l3l4+udp"),
    (HashFields::NwSrc, "nw_src"),
    (HashFields::NwDst, "nw_dst"),
    (HashFields::SymmetricL3, "symmetric_l3"),
];

impl HashFields {
    pub fn name(self) -> &'static str {
        NAMES.iter().find(|n| n.0 == self).map_or("?", |n| n.1)
    }

    /// OVS's number for it on the wire.
    pub fn wire(self) -> u16 {
        NAMES.iter().position(|n| n.0 == self).unwrap_or(0) as u16
    }

    pub fn from_wire(v: u16) -> Option<HashFields> {
        NAMES.get(usize::from(v)).map(|n| n.0)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Bundle {
    pub fields: HashFields,
    pub basis: u16,
    /// `hrw`, else `active_backup`.
    pub hrw: bool,
    /// OpenFlow port numbers, `n` of them.
    pub members: [u32; MAX_MEMBERS],
    pub n: u8,
    /// `bundle_load`'s destination; `None`: `bundle` (an output).
    pub dst: Option<SubField>,
}

impl Bundle {
    pub fn members(&self) -> &[u32] {
        &self.members[..usize::from(self.n)]
    }
}

/// `FIELDS, BASIS, ALGORITHM, ofport, [DST,] members:P,…` (`slaves:` too, OVS's older word).
pub(super) fn parse(
    act: &str,
    arg: &str,
    load: bool,
    resolve: &dyn Fn(&str, &str) -> Result<u32, FlowError>,
) -> Result<Bundle, FlowError> {
    let parts: Vec<&str> = arg.splitn(if load { 6 } else { 5 }, ',').map(str::trim).collect();
    let want = if load { 6 } else { 5 };
    if parts.len() != want {
        return Err(err(act, format!("expected {want} arguments")));
    }
    let fields = NAMES
        .iter()
        .find(|n| n.1 == parts[0])
        .map(|n| n.0)
        .ok_or_else(|| err(act, format!("{:?}: unknown fields for the hash", parts[0])))?;
    let basis = num(act, parts[1], 0xffff)? as u16;
    let hrw = match parts[2] {
        "hrw" => true,
        "active_backup" => false,
        other => return Err(err(act, format!("{other:?}: the algorithm is active_backup or hrw"))),
    };
    if parts[3] != "ofport" {
        return Err(err(act, format!("{:?}: members are named by ofport", parts[3])));
    }
    let dst = if load { Some(fields::sub_field(act, parts[4])?) } else { None };
    if dst.is_some_and(|d| !d.field.writable()) {
        return Err(err(act, "weft cannot write that field"));
    }
    let list = parts[want - 1]
        .strip_prefix("members:")
        .or_else(|| parts[want - 1].strip_prefix("slaves:"))
        .ok_or_else(|| err(act, "the last argument is members:PORT,…"))?;
    // OVS also takes the list in brackets (`members:[2,3]`).
    let list = list.strip_prefix('[').and_then(|l| l.strip_suffix(']')).unwrap_or(list);
    let mut b = Bundle { fields, basis, hrw, members: [0; MAX_MEMBERS], n: 0, dst };
    for p in list.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        if usize::from(b.n) == MAX_MEMBERS {
            return Err(err(act, format!("weft takes at most {MAX_MEMBERS} members")));
        }
        b.members[usize::from(b.n)] = resolve(act, p)?;
        b.n += 1;
    }
    Ok(b)
}

impl fmt::Display for Bundle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let alg = if self.hrw { "hrw" } else { "active_backup" };
        match self.dst {
            None => write!(f, "bundle({},{},{alg},ofport,members:", self.fields.name(), self.basis)?,
            Some(d) => write!(f, "bundle_load({},{},{alg},ofport,{d},members:", self.fields.name(), self.basis)?,
        }
        for (i, m) in self.members().iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            write!(f, "{m}")?;
        }
        f.write_str(")")
    }
}

/// `multipath(FIELDS, BASIS, ALGORITHM, N_LINKS, ARG, DST[a..b])`: a link number 0..N_LINKS-1 chosen by a
/// hash of the flow, written into DST (OVS's NXAST_MULTIPATH). ALGORITHM `modulo_n`, `hash_threshold`, `hrw`
/// (highest random weight, up to 64 links; beyond, as `hash_threshold`, as OVS) or `iter_hash`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Multipath {
    pub fields: HashFields,
    pub basis: u16,
    /// OVS's NX_MP_ALG_*: 0 modulo_n, 1 hash_threshold, 2 hrw, 3 iter_hash.
    pub algorithm: u16,
    pub n_links: u32,
    pub arg: u32,
    pub dst: SubField,
}

const ALGORITHMS: [&str; 4] = ["modulo_n", "hash_threshold", "hrw", "iter_hash"];

pub(super) fn parse_multipath(act: &str, arg: &str) -> Result<Multipath, FlowError> {
    let parts: Vec<&str> = arg.split([',', ' ']).filter(|p| !p.is_empty()).collect();
    let [fields, basis, algorithm, n_links, a, dst] = parts[..] else {
        return Err(err(act, "not enough arguments to multipath action"));
    };
    let fields = NAMES
        .iter()
        .find(|n| n.1 == fields)
        .map(|n| n.0)
        .ok_or_else(|| err(act, format!("unknown fields `{fields}'")))?;
    let algorithm = ALGORITHMS
        .iter()
        .position(|n| *n == algorithm)
        .ok_or_else(|| err(act, format!("unknown algorithm `{algorithm}'")))? as u16;
    let n_links = num(act, n_links, 65_536)? as u32;
    if n_links == 0 {
        return Err(err(act, "n_links 0 is not in valid range 1 to 65536"));
    }
    let dst = fields::sub_field(act, dst)?;
    if !dst.field.writable() {
        return Err(err(act, "weft cannot write that field"));
    }
    if dst.nbits < 16 && n_links > 1 << dst.nbits {
        return Err(err(act, format!("{}-bit destination field has fewer values than n_links {n_links}", dst.nbits)));
    }
    let basis = num(act, basis, 0xffff)? as u16;
    Ok(Multipath { fields, basis, algorithm, n_links, arg: num(act, a, u128::from(u32::MAX))? as u32, dst })
}

impl Multipath {
    pub fn algorithm_name(&self) -> &'static str {
        ALGORITHMS.get(usize::from(self.algorithm)).copied().unwrap_or("<unknown>")
    }
}

impl fmt::Display for Multipath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (fl, alg) = (self.fields.name(), self.algorithm_name());
        write!(f, "multipath({fl},{},{alg},{},{},{})", self.basis, self.n_links, self.arg, self.dst)
    }
}
