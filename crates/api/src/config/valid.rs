//! A configuration that passed validation, with every option string parsed once.
//!
//! [`Valid::new`] checks a [`Config`] whole and keeps, next to it, what its options mean: each tunnel's
//! [`TunnelSpec`], its IPsec settings, the VTEPs it floods to, its Geneve options, each bridge's control
//! plane. weftd holds a `Valid` and reads those specs; nothing outside validation parses an option string
//! again, so an option cannot mean one thing to the check and another to its user, and an error cannot be
//! dropped on the way (a `Valid` has none left).

use super::*;

/// What one port's options say (all empty for ports that are not tunnels).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PortSpec {
    /// The tunnel, for VXLAN, Geneve and GRE ports.
    pub tunnel: Option<TunnelSpec>,
    /// `options:psk` / `psk_file` and the `ipsec_*` options.
    pub ipsec: Option<IpsecSpec>,
    /// Every VTEP flooded frames go to: the remotes, then each default FDB entry's `dst`.
    pub flood_remotes: Vec<IpAddr>,
    /// The encoded Geneve options the port sends.
    pub geneve_options: Vec<u8>,
    /// `options:proxy=true`: neighbour suppression answers for this tunnel.
    pub proxy: bool,
    /// `options:dev`: the underlay interface of a multicast group.
    pub dev: Option<String>,
}

/// A bridge's control plane and its settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CpSpec {
    Etcd(EtcdSpec),
    Evpn(EvpnSpec),
}

impl CpSpec {
    pub fn kind(&self) -> ControlPlane {
        match self {
            CpSpec::Etcd(_) => ControlPlane::Etcd,
            CpSpec::Evpn(_) => ControlPlane::Evpn,
        }
    }
}

/// What one bridge's settings say; `ports` follows the bridge's `ports` in order.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct BridgeSpec {
    pub control_plane: Option<CpSpec>,
    pub ports: Vec<PortSpec>,
}

/// A checked configuration and its parsed specs. It reads as the [`Config`] it holds (`Deref`); it can
/// only be made by [`Valid::new`], so holding one means the check passed.
#[derive(Debug, Clone)]
pub struct Valid {
    config: Config,
    bridges: Vec<BridgeSpec>,
}

impl Valid {
    /// Checks `config` whole ([`Config::validate`]) and parses its options once.
    pub fn new(config: Config) -> Result<Self, ConfigError> {
        let bridges = config.check()?;
        Ok(Valid { config, bridges })
    }

    /// The configuration itself.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// The specs of each bridge, with the bridge.
    pub fn bridges(&self) -> impl Iterator<Item = (&BridgeConfig, &BridgeSpec)> {
        self.config.bridges.iter().zip(&self.bridges)
    }

    /// The specs of bridge `name`.
    pub fn bridge_spec(&self, name: &str) -> Option<(&BridgeConfig, &BridgeSpec)> {
        self.bridges().find(|(b, _)| b.name == name)
    }

    /// Every port of every bridge, with its bridge and its specs.
    pub fn ports(&self) -> impl Iterator<Item = (&BridgeConfig, &PortConfig, &PortSpec)> {
        self.bridges().flat_map(|(b, s)| b.ports.iter().zip(&s.ports).map(move |(p, ps)| (b, p, ps)))
    }

    /// Port `name` (of any bridge), with its bridge and specs.
    pub fn port(&self, name: &str) -> Option<(&BridgeConfig, &PortConfig, &PortSpec)> {
        self.ports().find(|(_, p, _)| p.name == name)
    }

    /// Every tunnel port with its spec.
    pub fn tunnels(&self) -> impl Iterator<Item = (&BridgeConfig, &PortConfig, &TunnelSpec)> {
        self.ports().filter_map(|(b, p, s)| s.tunnel.as_ref().map(|t| (b, p, t)))
    }
}

impl std::ops::Deref for Valid {
    type Target = Config;
    fn deref(&self) -> &Config {
        &self.config
    }
}

impl Default for Valid {
    /// The empty configuration (no bridges), which is valid.
    fn default() -> Self {
        Valid { config: Config::default(), bridges: Vec::new() }
    }
}

impl PartialEq for Valid {
    /// Two checked configurations are equal when their configurations are (the specs follow from them).
    fn eq(&self, other: &Self) -> bool {
        self.config == other.config
    }
}

impl PortConfig {
    /// Parses everything this port's options say, as a member of `bridge`.
    pub(super) fn spec(&self, bridge: &BridgeConfig) -> Result<PortSpec, ConfigError> {
        let Some(mut tunnel) = self.tunnel_options()? else {
            return Ok(PortSpec::default());
        };
        let ipsec = self.ipsec()?;
        tunnel.ipsec = ipsec.as_ref().map(|i| i.shape);
        // Room for the options a TLV map lets flows put into a Geneve packet (the MTU leaves it free).
        if tunnel.encap == Encap::Geneve && !bridge.tlv_map.is_empty() {
            if usize::from(tunnel.options_len) > crate::tlv::STATIC_OPTIONS_MAX {
                return Err(ConfigError::BadSetting(format!(
                    "port {:?}: a Geneve port of a bridge with a TLV map sends at most {} bytes of \
                     options:geneve_opts (it has {})",
                    self.name,
                    crate::tlv::STATIC_OPTIONS_MAX,
                    tunnel.options_len
                )));
            }
            tunnel.md_room = crate::tlv::room(&bridge.tlv_map);
        }
        Ok(PortSpec {
            tunnel: Some(tunnel),
            ipsec,
            flood_remotes: self.flood_remotes(bridge)?,
            geneve_options: self.geneve_options()?,
            proxy: self.proxy(),
            dev: self.options.get("dev").cloned(),
        })
    }
}
