//! PORT_MOD: a port's OpenFlow configuration (down, no-receive, no-forward, no-flood, no-packet-in), kept
//! in the bridge's configuration and carried out by the datapath core; every connection hears the change
//! (PORT_STATUS, reason MODIFY).

use super::*;
use weft_api::config::port_config;

/// A port's configuration bits: the internal port's (`name` is the bridge's) or another's.
pub(super) fn config_of(st: &dyn Daemon, bridge: &str, name: &str) -> u32 {
    let Some(b) = st.config().bridge(bridge) else { return 0 };
    if name == bridge {
        return b.local_of_config;
    }
    b.ports.iter().find(|p| p.name == name).map_or(0, |p| p.of_config)
}

/// Sets the bits of `mask` in port `port_no`'s configuration to those of `config`, checked as OVS checks a
/// PORT_MOD: the port must be the bridge's (BAD_PORT), `hw_addr` its address (BAD_HW_ADDR), the bits ones
/// weft carries out (BAD_CONFIG).
pub(super) fn port_mod(
    st: &mut dyn Daemon,
    bridge: &str,
    port_no: u32,
    hw_addr: [u8; 6],
    config: u32,
    mask: u32,
) -> Result<(), (u16, u16)> {
    use error::port_mod as code;
    let failed = |c: u16| (error::PORT_MOD_FAILED, c);
    let mut new = st.config().clone();
    let b = new.bridges.iter_mut().find(|b| b.name == bridge).ok_or(failed(code::BAD_PORT))?;
    let (name, ofport, bits) = if port_no == of::port::LOCAL {
        (b.name.clone(), crate::pipeline::OFPORT_LOCAL, &mut b.local_of_config)
    } else {
        let p = b.ports.iter_mut().find(|p| p.ofport == port_no).ok_or(failed(code::BAD_PORT))?;
        (p.name.clone(), p.ofport, &mut p.of_config)
    };
    if weft_sys::iface::mac(&name).unwrap_or([0; 6]) != hw_addr {
        return Err(failed(code::BAD_HW_ADDR));
    }
    if mask & !port_config::ALL != 0 {
        return Err(failed(code::BAD_CONFIG));
    }
    let was = *bits;
    *bits = (was & !mask) | (config & mask);
    if *bits == was {
        return Ok(());
    }
    let now = *bits;
    st.commit_config(new).map_err(|e| {
        tracing::warn!("OpenFlow port_mod failed: {e}");
        failed(code::BAD_PORT)
    })?;
    let status = port_status_msg(ofport, &name, st.link_down(&name), now);
    st.broadcast(bridge, &[status]);
    Ok(())
}

/// OFPT_PORT_STATUS (OpenFlow 1.3, reason MODIFY) for a port.
pub(super) fn port_status_msg(ofport: u32, name: &str, link_down: bool, config: u32) -> Vec<u8> {
    let mut m = Vec::new();
    let at = of::start(&mut m, msg::PORT_STATUS, 0);
    m.push(2); // OFPPR_MODIFY
    m.extend_from_slice(&[0; 7]);
    m.extend_from_slice(&port_desc(ofport, name, link_down, config));
    of::finish(&mut m, at);
    m
}
