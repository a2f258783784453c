#![no_main]

// BGP messages into an established session (OPEN, UPDATE with EVPN routes, NOTIFICATION, ...) and etcd watch
// responses and keys: everything the control plane reads from the network.
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    weft_control::bgp::fuzz_input(data);
    weft_control::etcd::fuzz_input(data);
});
