#!/usr/bin/env bash
# Installs what weft's demo and tests need on Debian 12 (as root). Rust itself must already be installed
# (rustup); Debian 12's own rustc is too old.
set -euo pipefail
# strongSwan (charon, swanctl, and the openssl/gcm/curve25519 plugins) is the IPsec interop peer; nftables
# makes the NAT an IPsec test crosses; etcd and FRR are the control-plane peers (issue 9); openssl makes the
# certificates of the TLS tests; scapy forges the packets the conntrack tests send (an out-of-window reset);
# python3-openvswitch is the second OVSDB client (Open vSwitch's Python IDL) the OVSDB tests drive.
packages=(iproute2 iputils-ping iperf3 tshark tcpdump python3 ethtool procps openvswitch-switch openvswitch-testcontroller curl git
  strongswan-charon strongswan-swanctl libcharon-extra-plugins libstrongswan-standard-plugins libstrongswan-extra-plugins
  nftables etcd-server etcd-client frr openssl python3-scapy python3-openvswitch)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "installing: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
if ! command -v cargo >/dev/null; then
  [ -x "$HOME/.cargo/bin/cargo" ] && export PATH="$HOME/.cargo/bin:$PATH"
fi
command -v cargo >/dev/null || { echo "cargo not found: install Rust with rustup first" >&2; exit 1; }
