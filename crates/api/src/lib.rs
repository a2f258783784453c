//! Types shared by weftd and the weft CLI: the configuration model with its validation, and the messages
//! exchanged over the control socket.
#![deny(unsafe_code)]

pub mod config;
pub mod flow;
pub mod fuzz;
pub mod group;
pub mod meter;
pub mod of10;
pub mod ofp;
pub mod ovsdb;
pub mod proto;
pub mod reply;
pub mod tlv;

pub use config::{
    BridgeConfig, Config, ConfigError, ControlPlane, Encap, EtcdSpec, EvpnSpec, IfaceType, Inherit, IpsecShape,
    IpsecSpec, PortConfig, StaticFdb, TunnelSpec,
};
pub use proto::{Request, Response};
