//! Finite-field Diffie-Hellman over the 2048-bit MODP group (RFC 3526 group 14, IKE group 14), for peers
//! that propose it. Montgomery multiplication over 64-bit limbs; the exponent is secret but the group is only
//! offered for interoperability (x25519 is weft's first choice), so a plain square-and-multiply ladder with a
//! fixed number of steps suffices.

/// The group's prime, big-endian hex (RFC 3526 §3).
const PRIME_HEX: &str = "FFFFFFFFFFFFFFFFC90FDAA22168C234C4C6628B80DC1CD129024E088A67CC74020BBEA63B139B22514A08798E3404DD\
EF9519B3CD3A431B302B0A6DF25F14374FE1356D6D51C245E485B576625E7EC6F44C42E9A637ED6B0BFF5CB6F406B7EDEE386BFB5A899FA5AE9F2411\
7C4B1FE649286651ECE45B3DC2007CB8A163BF0598DA48361C55D39A69163FA8FD24CF5F83655D23DCA3AD961C62F356208552BB9ED529077096966D\
670C354E4ABC9804F1746C08CA18217C32905E462E36CE3BE39E772C180E86039B2783A2EC07A28FB5C55DF06F4C52C9DE2BCBF6955817183995497C\
EA956AE515D2261898FA051015728E5A8AACAA68FFFFFFFFFFFFFFFF";

/// Limbs of a group element (little-endian 64-bit words).
const N: usize = 32;
/// Bytes of a public value or shared secret.
pub const LEN: usize = 256;

type Num = [u64; N];

struct Group {
    p: Num,
    /// -p⁻¹ mod 2⁶⁴.
    p_inv: u64,
    /// R² mod p, R = 2²⁰⁴⁸.
    r2: Num,
}

fn from_be(bytes: &[u8]) -> Num {
    let mut n = [0u64; N];
    for (i, chunk) in bytes.rchunks(8).enumerate().take(N) {
        let mut w = [0u8; 8];
        w[8 - chunk.len()..].copy_from_slice(chunk);
        n[i] = u64::from_be_bytes(w);
    }
    n
}

fn to_be(n: &Num) -> [u8; LEN] {
    let mut out = [0u8; LEN];
    for (i, w) in n.iter().enumerate() {
        out[LEN - 8 * (i + 1)..LEN - 8 * i].copy_from_slice(&w.to_be_bytes());
    }
    out
}

fn geq(a: &Num, b: &Num) -> bool {
    for i in (0..N).rev() {
        if a[i] != b[i] {
            return a[i] > b[i];
        }
    }
    true
}

fn sub_in_place(a: &mut Num, b: &Num) {
    let mut borrow = 0u64;
    for i in 0..N {
        let (d1, b1) = a[i].overflowing_sub(b[i]);
        let (d2, b2) = d1.overflowing_sub(borrow);
        a[i] = d2;
        borrow = u64::from(b1 | b2);
    }
}

impl Group {
    fn new() -> Group {
        let mut bytes = [0u8; LEN];
        for (i, b) in bytes.iter_mut().enumerate() {
            *b = u8::from_str_radix(&PRIME_HEX[2 * i..2 * i + 2], 16).unwrap_or(0);
        }
        let p = from_be(&bytes);
        // Newton's iteration for p⁻¹ mod 2⁶⁴ (p is odd).
        let mut inv: u64 = 1;
        for _ in 0..6 {
            inv = inv.wrapping_mul(2u64.wrapping_sub(p[0].wrapping_mul(inv)));
        }
        // R mod p, doubled 2048 more times: R² mod p.
        let mut r = [0u64; N];
        // R mod p = 2²⁰⁴⁸ - p (p > 2²⁰⁴⁷).
        sub_in_place(&mut r, &p);
        let mut g = Group { p, p_inv: inv.wrapping_neg(), r2: [0; N] };
        let mut x = r;
        for _ in 0..2048 {
            x = g.add(&x, &x);
        }
        g.r2 = x;
        g
    }

    /// (a + b) mod p for a, b < p.
    fn add(&self, a: &Num, b: &Num) -> Num {
        let mut out = [0u64; N];
        let mut carry = 0u64;
        for i in 0..N {
            let s = u128::from(a[i]) + u128::from(b[i]) + u128::from(carry);
            out[i] = s as u64;
            carry = (s >> 64) as u64;
        }
        if carry != 0 || geq(&out, &self.p) {
            sub_in_place(&mut out, &self.p);
        }
        out
    }

    /// a·b·R⁻¹ mod p (CIOS Montgomery multiplication).
    fn mul(&self, a: &Num, b: &Num) -> Num {
        let mut t = [0u64; N + 2];
        for &bi in b.iter() {
            let mut carry = 0u128;
            for j in 0..N {
                let s = u128::from(t[j]) + u128::from(a[j]) * u128::from(bi) + carry;
                t[j] = s as u64;
                carry = s >> 64;
            }
            let s = u128::from(t[N]) + carry;
            t[N] = s as u64;
            t[N + 1] = (s >> 64) as u64;
            let m = t[0].wrapping_mul(self.p_inv);
            let s = u128::from(t[0]) + u128::from(m) * u128::from(self.p[0]);
            let mut carry = s >> 64;
            for j in 1..N {
                let s = u128::from(t[j]) + u128::from(m) * u128::from(self.p[j]) + carry;
                t[j - 1] = s as u64;
                carry = s >> 64;
            }
            let s = u128::from(t[N]) + carry;
            t[N - 1] = s as u64;
            t[N] = t[N + 1] + (s >> 64) as u64;
            t[N + 1] = 0;
        }
        let mut out = [0u64; N];
        out.copy_from_slice(&t[..N]);
        if t[N] != 0 || geq(&out, &self.p) {
            sub_in_place(&mut out, &self.p);
        }
        out
    }

    /// base^exp mod p; `exp` big-endian.
    fn pow(&self, base: &Num, exp: &[u8]) -> Num {
        let mut one = [0u64; N];
        one[0] = 1;
        let b = self.mul(base, &self.r2);
        let mut acc = self.mul(&one, &self.r2);
        for byte in exp {
            for bit in (0..8).rev() {
                acc = self.mul(&acc, &acc);
                let m = self.mul(&acc, &b);
                if (byte >> bit) & 1 == 1 {
                    acc = m;
                }
            }
        }
        self.mul(&acc, &one)
    }
}

/// A private exponent and its public value 2^x mod p.
pub struct Modp2048 {
    secret: [u8; 32],
}

impl Modp2048 {
    /// `secret`: 256 random bits (twice the group's 112-bit strength and more, RFC 3526 §8).
    pub fn new(secret: [u8; 32]) -> Self {
        Modp2048 { secret }
    }

    pub fn public(&self) -> [u8; LEN] {
        let g = Group::new();
        let mut two = [0u64; N];
        two[0] = 2;
        to_be(&g.pow(&two, &self.secret))
    }

    /// The shared secret from the peer's public value; `None` for values outside 2..p-2 (RFC 7296 §2.12 asks
    /// for such checks: they would give a guessable secret).
    pub fn agree(&self, peer: &[u8]) -> Option<[u8; LEN]> {
        if peer.len() != LEN {
            return None;
        }
        let g = Group::new();
        let y = from_be(peer);
        let mut pm1 = g.p;
        pm1[0] -= 1;
        let mut two = [0u64; N];
        two[0] = 2;
        if !geq(&y, &two) || geq(&y, &pm1) {
            return None;
        }
        Some(to_be(&g.pow(&y, &self.secret)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_sides_agree() {
        let a = Modp2048::new([7u8; 32]);
        let mut sb = [0u8; 32];
        sb[31] = 3;
        let b = Modp2048::new(sb);
        let (pa, pb) = (a.public(), b.public());
        assert_eq!(a.agree(&pb).unwrap(), b.agree(&pa).unwrap());
        // 2³ = 8.
        assert_eq!(pb[..LEN - 1], [0u8; LEN - 1]);
        assert_eq!(pb[LEN - 1], 8);
        assert!(a.agree(&[0u8; LEN]).is_none());
        assert!(a.agree(&[0xff; LEN]).is_none());
    }

    #[test]
    fn large_exponent_matches_reference() {
        // 2^(2^255) mod p checked by repeated squaring through the same multiplication would be circular;
        // instead check Fermat: 2^(p-1) = 1 for the prime p, with p-1 as exponent.
        let g = Group::new();
        let mut pm1 = to_be(&g.p);
        pm1[LEN - 1] -= 1;
        let mut two = [0u64; N];
        two[0] = 2;
        let r = g.pow(&two, &pm1);
        let mut one = [0u64; N];
        one[0] = 1;
        assert_eq!(r, one);
    }
}
