//! The algorithms weft negotiates, over ring: PRFs (HMAC-SHA2), prf+ (RFC 7296 §2.13), AES-GCM with a 16-byte
//! ICV (RFC 4106 for ESP, RFC 5282 for IKE) and the Diffie-Hellman groups x25519 (RFC 8031), ECP-256
//! (RFC 5903) and MODP-2048 (RFC 3526).

use crate::modp::Modp2048;
use ring::aead::{self, Aad, LessSafeKey, Nonce, UnboundKey};
use ring::agreement;
use ring::rand::{SecureRandom, SystemRandom};

/// Transform IDs (IANA "IKEv2 Parameters").
pub mod id {
    pub const ENCR_AES_GCM_16: u16 = 20;
    pub const PRF_HMAC_SHA2_256: u16 = 5;
    pub const PRF_HMAC_SHA2_384: u16 = 6;
    pub const PRF_HMAC_SHA2_512: u16 = 7;
    pub const DH_MODP_2048: u16 = 14;
    pub const DH_ECP_256: u16 = 19;
    pub const DH_X25519: u16 = 31;
    pub const ESN_NONE: u16 = 0;
}

/// Bytes of the AES-GCM salt that follows the key in keying material (RFC 4106 §8.1, RFC 5282 §7.1).
pub const SALT_LEN: usize = 4;
/// Bytes of the explicit IV in each packet, and of the ICV.
pub const IV_LEN: usize = 8;
pub const ICV_LEN: usize = 16;

pub fn random(out: &mut [u8]) {
    // The system generator fails only if the kernel's getrandom does, which is not recoverable.
    #[allow(clippy::expect_used)]
    SystemRandom::new().fill(out).expect("the kernel's random generator failed");
}

/// A negotiated pseudo-random function.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Prf {
    Sha256,
    Sha384,
    Sha512,
}

impl Prf {
    pub fn from_id(id: u16) -> Option<Prf> {
        match id {
            id::PRF_HMAC_SHA2_256 => Some(Prf::Sha256),
            id::PRF_HMAC_SHA2_384 => Some(Prf::Sha384),
            id::PRF_HMAC_SHA2_512 => Some(Prf::Sha512),
            _ => None,
        }
    }
    pub fn id(self) -> u16 {
        match self {
            Prf::Sha256 => id::PRF_HMAC_SHA2_256,
            Prf::Sha384 => id::PRF_HMAC_SHA2_384,
            Prf::Sha512 => id::PRF_HMAC_SHA2_512,
        }
    }
    fn algorithm(self) -> ring::hmac::Algorithm {
        match self {
            Prf::Sha256 => ring::hmac::HMAC_SHA256,
            Prf::Sha384 => ring::hmac::HMAC_SHA384,
            Prf::Sha512 => ring::hmac::HMAC_SHA512,
        }
    }
    /// Output (and preferred key) length.
    pub fn out_len(self) -> usize {
        match self {
            Prf::Sha256 => 32,
            Prf::Sha384 => 48,
            Prf::Sha512 => 64,
        }
    }
    pub fn name(self) -> &'static str {
        match self {
            Prf::Sha256 => "PRF_HMAC_SHA2_256",
            Prf::Sha384 => "PRF_HMAC_SHA2_384",
            Prf::Sha512 => "PRF_HMAC_SHA2_512",
        }
    }

    /// prf(key, data parts concatenated).
    pub fn prf(self, key: &[u8], parts: &[&[u8]]) -> Vec<u8> {
        let k = ring::hmac::Key::new(self.algorithm(), key);
        let mut ctx = ring::hmac::Context::with_key(&k);
        for p in parts {
            ctx.update(p);
        }
        ctx.sign().as_ref().to_vec()
    }

    /// prf+(key, seed) truncated to `len` bytes: T1 = prf(K, S | 0x01), Tn = prf(K, Tn-1 | S | n).
    pub fn prf_plus(self, key: &[u8], seed: &[u8], len: usize) -> Vec<u8> {
        let mut out = Vec::with_capacity(len + self.out_len());
        let mut t: Vec<u8> = Vec::new();
        let mut n = 1u8;
        while out.len() < len {
            t = self.prf(key, &[&t, seed, &[n]]);
            out.extend_from_slice(&t);
            n = n.wrapping_add(1);
        }
        out.truncate(len);
        out
    }
}

/// An AES-GCM-16 key with its salt, for one direction.
pub struct Gcm {
    key: LessSafeKey,
    salt: [u8; SALT_LEN],
    /// Key bytes and salt, kept for `weft ipsec show --keys`.
    material: Vec<u8>,
}

impl std::fmt::Debug for Gcm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Gcm({} bits)", (self.material.len() - SALT_LEN) * 8)
    }
}

/// The message did not decrypt: wrong key, or changed on the way.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tampered;

impl Gcm {
    /// `material`: key (16 or 32 bytes) then the 4-byte salt.
    pub fn new(material: &[u8]) -> Option<Gcm> {
        let alg = match material.len().checked_sub(SALT_LEN)? {
            16 => &aead::AES_128_GCM,
            32 => &aead::AES_256_GCM,
            _ => return None,
        };
        let (k, s) = material.split_at(material.len() - SALT_LEN);
        let key = LessSafeKey::new(UnboundKey::new(alg, k).ok()?);
        let mut salt = [0u8; SALT_LEN];
        salt.copy_from_slice(s);
        Some(Gcm { key, salt, material: material.to_vec() })
    }

    pub fn key_bits(&self) -> usize {
        (self.material.len() - SALT_LEN) * 8
    }
    pub fn material(&self) -> &[u8] {
        &self.material
    }

    fn nonce(&self, iv: [u8; IV_LEN]) -> Nonce {
        let mut n = [0u8; 12];
        n[..SALT_LEN].copy_from_slice(&self.salt);
        n[SALT_LEN..].copy_from_slice(&iv);
        Nonce::assume_unique_for_key(n)
    }

    /// Encrypts `data` in place; returns the ICV.
    pub fn seal(&self, iv: [u8; IV_LEN], aad: &[u8], data: &mut [u8]) -> [u8; ICV_LEN] {
        let mut icv = [0u8; ICV_LEN];
        // Sealing fails only for inputs over GCM's 64 GiB limit; packets are at most 64 KiB.
        if let Ok(tag) = self.key.seal_in_place_separate_tag(self.nonce(iv), Aad::from(aad), data) {
            icv.copy_from_slice(tag.as_ref());
        }
        icv
    }

    /// Decrypts `data` (ciphertext followed by the ICV) in place; the plaintext is `data[..len - 16]`.
    pub fn open(&self, iv: [u8; IV_LEN], aad: &[u8], data: &mut [u8]) -> Result<usize, Tampered> {
        let len = data.len().checked_sub(ICV_LEN).ok_or(Tampered)?;
        self.key.open_in_place(self.nonce(iv), Aad::from(aad), data).map_err(|_| Tampered)?;
        Ok(len)
    }
}

/// Keying material bytes for AES-GCM with `bits`-bit keys.
pub fn gcm_material_len(bits: u16) -> usize {
    usize::from(bits / 8) + SALT_LEN
}

/// One side of a Diffie-Hellman exchange.
pub enum Dh {
    X25519(agreement::EphemeralPrivateKey, Vec<u8>),
    Ecp256(agreement::EphemeralPrivateKey, Vec<u8>),
    Modp2048(Box<Modp2048>, Vec<u8>),
}

impl std::fmt::Debug for Dh {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Dh({})", group_name(self.group()))
    }
}

pub fn group_name(group: u16) -> &'static str {
    match group {
        id::DH_X25519 => "CURVE_25519",
        id::DH_ECP_256 => "ECP_256",
        id::DH_MODP_2048 => "MODP_2048",
        _ => "unknown",
    }
}

pub fn group_supported(group: u16) -> bool {
    matches!(group, id::DH_X25519 | id::DH_ECP_256 | id::DH_MODP_2048)
}

impl Dh {
    pub fn new(group: u16) -> Option<Dh> {
        let rng = SystemRandom::new();
        Some(match group {
            id::DH_X25519 => {
                let k = agreement::EphemeralPrivateKey::generate(&agreement::X25519, &rng).ok()?;
                let public = k.compute_public_key().ok()?.as_ref().to_vec();
                Dh::X25519(k, public)
            }
            id::DH_ECP_256 => {
                let k = agreement::EphemeralPrivateKey::generate(&agreement::ECDH_P256, &rng).ok()?;
                // RFC 5903 §7: x then y, without the uncompressed-point prefix.
                let public = k.compute_public_key().ok()?.as_ref()[1..].to_vec();
                Dh::Ecp256(k, public)
            }
            id::DH_MODP_2048 => {
                let mut secret = [0u8; 32];
                random(&mut secret);
                let m = Modp2048::new(secret);
                let public = m.public().to_vec();
                Dh::Modp2048(Box::new(m), public)
            }
            _ => return None,
        })
    }

    pub fn group(&self) -> u16 {
        match self {
            Dh::X25519(..) => id::DH_X25519,
            Dh::Ecp256(..) => id::DH_ECP_256,
            Dh::Modp2048(..) => id::DH_MODP_2048,
        }
    }

    pub fn public(&self) -> &[u8] {
        match self {
            Dh::X25519(_, p) | Dh::Ecp256(_, p) | Dh::Modp2048(_, p) => p,
        }
    }

    /// The shared secret g^ir; `None` when the peer's value is invalid for the group.
    pub fn agree(self, peer: &[u8]) -> Option<Vec<u8>> {
        match self {
            Dh::X25519(k, _) => {
                let p = agreement::UnparsedPublicKey::new(&agreement::X25519, peer);
                agreement::agree_ephemeral(k, &p, |s| s.to_vec()).ok()
            }
            Dh::Ecp256(k, _) => {
                if peer.len() != 64 {
                    return None;
                }
                let mut point = Vec::with_capacity(65);
                point.push(4);
                point.extend_from_slice(peer);
                let p = agreement::UnparsedPublicKey::new(&agreement::ECDH_P256, &point);
                agreement::agree_ephemeral(k, &p, |s| s.to_vec()).ok()
            }
            Dh::Modp2048(m, _) => m.agree(peer).map(|s| s.to_vec()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn unhex(s: &str) -> Vec<u8> {
        (0..s.len()).step_by(2).map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap()).collect()
    }

    #[test]
    fn hmac_sha256_rfc4231_case_2() {
        let out = Prf::Sha256.prf(b"Jefe", &[b"what do ya want ", b"for nothing?"]);
        assert_eq!(out, unhex("5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"));
    }

    #[test]
    fn prf_plus_chains_blocks() {
        let k = [1u8; 32];
        let out = Prf::Sha256.prf_plus(&k, b"seed", 80);
        let t1 = Prf::Sha256.prf(&k, &[b"seed", &[1]]);
        let t2 = Prf::Sha256.prf(&k, &[&t1, b"seed", &[2]]);
        let t3 = Prf::Sha256.prf(&k, &[&t2, b"seed", &[3]]);
        assert_eq!(out[..32], t1[..]);
        assert_eq!(out[32..64], t2[..]);
        assert_eq!(out[64..], t3[..16]);
    }

    #[test]
    fn gcm_round_trip_and_tamper() {
        let g = Gcm::new(&[9u8; 20]).unwrap();
        let mut data = b"hello, tunnel".to_vec();
        let icv = g.seal([1; 8], b"aad", &mut data);
        assert_ne!(&data[..], b"hello, tunnel");
        let mut sealed = data.clone();
        sealed.extend_from_slice(&icv);
        let mut ok = sealed.clone();
        assert_eq!(g.open([1; 8], b"aad", &mut ok), Ok(13));
        assert_eq!(&ok[..13], b"hello, tunnel");
        let mut bad = sealed.clone();
        bad[3] ^= 1;
        assert_eq!(g.open([1; 8], b"aad", &mut bad), Err(Tampered));
        let mut bad_aad = sealed;
        assert_eq!(g.open([1; 8], b"aaD", &mut bad_aad), Err(Tampered));
        assert!(Gcm::new(&[0; 19]).is_none());
        assert_eq!(Gcm::new(&[0; 36]).unwrap().key_bits(), 256);
    }

    #[test]
    fn dh_groups_agree() {
        for g in [id::DH_X25519, id::DH_ECP_256, id::DH_MODP_2048] {
            let a = Dh::new(g).unwrap();
            let b = Dh::new(g).unwrap();
            let (pa, pb) = (a.public().to_vec(), b.public().to_vec());
            assert_eq!(a.agree(&pb).unwrap(), b.agree(&pa).unwrap(), "group {g}");
        }
        assert!(Dh::new(id::DH_ECP_256).unwrap().agree(&[0u8; 64]).is_none());
        assert!(Dh::new(1).is_none());
    }
}
