//! `weft decode` against tshark, field by field, on captures made by Linux and Open vSwitch; the tunnel tests
//! check the captures they make of weft's own Geneve, GRE, VLAN and IPv6-underlay traffic the same way.

use weft_interop::*;

fn captures() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../testdata/captures")
}

#[test]
fn shared_captures_decode_like_tshark() {
    if !prerequisites(&["tshark"]) {
        return;
    }
    for name in ["vxlan-linux", "vxlan-linux-mcast", "vxlan-ovs", "geneve-ovs", "gre-ovs"] {
        let (packets, values) = assert_decode_matches_tshark(&captures().join(format!("{name}.pcap")), &[]);
        assert!(packets >= 4 && values > packets * 20, "{name}: only {values} values in {packets} packets");
    }
}
