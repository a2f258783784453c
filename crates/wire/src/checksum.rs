//! The Internet checksum (RFC 1071) and the pseudo-headers of RFC 768 / RFC 8200 §8.1.

use std::net::{Ipv4Addr, Ipv6Addr};

/// One's-complement sum of `data` folded to 32 bits, not yet complemented. Odd lengths are padded with zero.
///
/// The data is read as little-endian 32-bit words added into eight independent 64-bit lanes (no carries to
/// chain, so the compiler turns the loop into vector adds), and the total is folded and swapped to network
/// order at the end: the one's-complement sum does not depend on byte order (RFC 1071 §2(B)) and the 64-bit
/// lanes collect the carries that the end-around fold adds back. This gives the same result as summing
/// big-endian 16-bit words, at a fraction of the cost.
pub fn sum(data: &[u8]) -> u32 {
    #[inline(always)]
    fn le32(c: &[u8]) -> u64 {
        u64::from(u32::from_le_bytes([c[0], c[1], c[2], c[3]]))
    }
    if data.len() < 128 {
        return short_sum(data);
    }
    // A lane takes less than 2^32 per 32-byte block, so it cannot overflow within 2^32 blocks; data longer
    // than a 1 GiB piece (2^25 blocks) is summed piece by piece.
    const PIECE: usize = 1 << 30;
    let mut total: u128 = 0;
    for piece in data.chunks(PIECE) {
        let mut lanes = [0u64; 8];
        let mut blocks = piece.chunks_exact(32);
        for c in &mut blocks {
            for (i, lane) in lanes.iter_mut().enumerate() {
                *lane += le32(&c[4 * i..4 * i + 4]);
            }
        }
        let mut words = blocks.remainder().chunks_exact(4);
        for c in &mut words {
            lanes[0] += le32(c);
        }
        let rest = words.remainder();
        if !rest.is_empty() {
            let mut last = [0u8; 4];
            last[..rest.len()].copy_from_slice(rest);
            lanes[1] += le32(&last);
        }
        total += lanes.iter().map(|&l| u128::from(l)).sum::<u128>();
    }
    fold_to_network(total)
}

/// The sum of a short buffer (headers, small packets): 64-bit words added with carry, without the setup and
/// the final reduction of the lanes.
fn short_sum(data: &[u8]) -> u32 {
    let mut acc: u128 = 0;
    let mut words = data.chunks_exact(8);
    for c in &mut words {
        acc += u128::from(u64::from_le_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]));
    }
    let rest = words.remainder();
    if !rest.is_empty() {
        let mut last = [0u8; 8];
        last[..rest.len()].copy_from_slice(rest);
        acc += u128::from(u64::from_le_bytes(last));
    }
    fold_to_network(acc)
}

/// Folds a sum of little-endian words 128 -> 64 -> 32 -> 16 bits (end-around carry each time) and swaps it to
/// network order.
fn fold_to_network(total: u128) -> u32 {
    let (lo, carry) = (total as u64).overflowing_add((total >> 64) as u64);
    let mut x = lo.wrapping_add(u64::from(carry));
    x = (x & 0xffff_ffff) + (x >> 32);
    x = (x & 0xffff_ffff) + (x >> 32);
    let mut y = (x & 0xffff) + (x >> 16);
    y = (y & 0xffff) + (y >> 16);
    y = (y & 0xffff) + (y >> 16);
    u32::from((y as u16).swap_bytes())
}

fn fold64(mut acc: u64) -> u32 {
    while acc > 0xffff_ffff {
        acc = (acc & 0xffff_ffff) + (acc >> 32);
    }
    acc as u32
}

/// Adds partial sums.
pub fn combine(a: u32, b: u32) -> u32 {
    fold64(u64::from(a) + u64::from(b))
}

/// Folds a partial sum to 16 bits and complements it: the value that goes on the wire.
pub fn finish(acc: u32) -> u16 {
    let mut acc = acc;
    while acc > 0xffff {
        acc = (acc & 0xffff) + (acc >> 16);
    }
    !(acc as u16)
}

/// The checksum of `data` as it goes on the wire.
pub fn checksum(data: &[u8]) -> u16 {
    finish(sum(data))
}

/// Partial sum of the IPv4 pseudo-header (RFC 768).
pub fn pseudo_v4(src: Ipv4Addr, dst: Ipv4Addr, protocol: u8, length: u16) -> u32 {
    let s = src.octets();
    let d = dst.octets();
    let words = [
        u16::from_be_bytes([s[0], s[1]]),
        u16::from_be_bytes([s[2], s[3]]),
        u16::from_be_bytes([d[0], d[1]]),
        u16::from_be_bytes([d[2], d[3]]),
        u16::from(protocol),
        length,
    ];
    words.iter().map(|w| u32::from(*w)).sum()
}

/// Partial sum of the IPv6 pseudo-header (RFC 8200 §8.1).
pub fn pseudo_v6(src: Ipv6Addr, dst: Ipv6Addr, next_header: u8, length: u32) -> u32 {
    let mut acc = combine(sum(&src.octets()), sum(&dst.octets()));
    acc = combine(acc, (length >> 16) + (length & 0xffff));
    combine(acc, u32::from(next_header))
}

#[cfg(test)]
mod tests {
    /// The textbook sum: big-endian 16-bit words, end-around carry.
    fn reference(data: &[u8]) -> u16 {
        let mut acc: u32 = 0;
        for p in data.chunks(2) {
            acc += u32::from(u16::from_be_bytes([p[0], *p.get(1).unwrap_or(&0)]));
            acc = (acc & 0xffff) + (acc >> 16);
        }
        !(acc as u16)
    }

    #[test]
    fn fast_sum_matches_the_reference() {
        let mut x: u32 = 12345;
        let data: Vec<u8> = (0..3000)
            .map(|_| {
                x = x.wrapping_mul(1_103_515_245).wrapping_add(12345);
                (x >> 16) as u8
            })
            .collect();
        for start in 0..9 {
            for len in (0..300).chain([1399, 1400, 1448, 2047, 2990]) {
                let d = &data[start..start + len];
                assert_eq!(checksum(d), reference(d), "start {start} len {len}");
            }
        }
        // All ones fill every lane to its largest value; odd lengths leave a padded last word.
        for len in [64, 127, 128, 129, 4095, 65_536, 65_537] {
            let ones = vec![0xffu8; len];
            assert_eq!(checksum(&ones), reference(&ones), "all ones, len {len}");
        }
    }

    use super::*;

    #[test]
    fn rfc1071_example() {
        // RFC 1071 §3: the sum of 0001 f203 f4f5 f6f7 is ddf2 (one's complement 220d).
        let data = [0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7];
        assert_eq!(finish(sum(&data)), !0xddf2);
    }

    #[test]
    fn odd_length_pads_with_zero() {
        assert_eq!(sum(&[0x12]), 0x1200);
        assert_eq!(sum(&[0x12, 0x34, 0x56]), 0x1234 + 0x5600);
    }

    #[test]
    fn long_buffers_match_the_simple_definition() {
        let data: Vec<u8> = (0..1001u32).map(|i| (i * 7 + 3) as u8).collect();
        let mut simple: u32 = 0;
        for p in data.chunks(2) {
            let w = if p.len() == 2 { u16::from_be_bytes([p[0], p[1]]) } else { u16::from(p[0]) << 8 };
            simple += u32::from(w);
        }
        assert_eq!(finish(sum(&data)), finish(simple));
    }
}
