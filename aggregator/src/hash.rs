//! A stable 128-bit hash of a line's identity and the Bloom filter over those hashes.
//!
//! Both are persisted in the aggregator's state, so they must not change between
//! releases or processes: no `std` hasher (its algorithm is unspecified), but a fixed
//! mix of FNV-1a and the murmur3 finaliser written out here.

/// The identity of an invoice line (contract §2.1) hashed to 128 bits: two independent
/// 64-bit halves. Collisions among 10⁹ identities have probability ≈ 10⁻²⁰.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct IdentityHash {
    /// High half: picks the index bucket and seeds the Bloom filter's probes.
    pub hi: u64,
    /// Low half: the Bloom filter's probe stride.
    pub lo: u64,
}

const FNV_PRIME: u64 = 0x0000_0100_0000_01b3;

fn fmix64(mut k: u64) -> u64 {
    k ^= k >> 33;
    k = k.wrapping_mul(0xff51_afd7_ed55_8ccd);
    k ^= k >> 33;
    k = k.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    k ^ (k >> 33)
}

fn fnv(seed: u64, parts: &[&[u8]]) -> u64 {
    let mut h = seed;
    for p in parts {
        // Length-prefixed so ("ab", "c") and ("a", "bc") differ.
        for b in (p.len() as u64).to_le_bytes().iter().chain(p.iter()) {
            h ^= u64::from(*b);
            h = h.wrapping_mul(FNV_PRIME);
        }
    }
    fmix64(h)
}

impl IdentityHash {
    /// Hashes (`distributor_id`, `invoice_id`, `line_no`).
    pub fn of(distributor_id: &str, invoice_id: &str, line_no: i64) -> Self {
        let line = line_no.to_le_bytes();
        let parts: [&[u8]; 3] = [distributor_id.as_bytes(), invoice_id.as_bytes(), &line];
        Self {
            hi: fnv(0xcbf2_9ce4_8422_2325, &parts),
            lo: fnv(0x6c62_272e_07bb_0142, &parts),
        }
    }

    /// The index bucket of this identity among `buckets`.
    pub fn bucket(&self, buckets: u32) -> u32 {
        (self.hi % u64::from(buckets)) as u32
    }
}

/// A Bloom filter over identity hashes: "definitely never seen" or "maybe seen".
/// Sized at 16 bits per expected key with 8 probes (false positives ≈ 0.05 %).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bloom {
    bits: Vec<u64>,
    probes: u32,
}

/// Bits per key the filter is sized for.
pub const BLOOM_BITS_PER_KEY: u64 = 16;

impl Bloom {
    /// An empty filter for `capacity` keys (at least 4096).
    pub fn with_capacity(capacity: u64) -> Self {
        let bits = capacity.max(4096) * BLOOM_BITS_PER_KEY;
        Self {
            bits: vec![0; bits.div_ceil(64) as usize],
            probes: 8,
        }
    }

    /// How many keys the filter was sized for.
    pub fn capacity(&self) -> u64 {
        self.bits.len() as u64 * 64 / BLOOM_BITS_PER_KEY
    }

    fn positions(&self, h: &IdentityHash) -> impl Iterator<Item = usize> {
        let m = self.bits.len() as u64 * 64;
        let (start, stride) = (h.hi, h.lo | 1);
        (0..u64::from(self.probes))
            .map(move |i| (start.wrapping_add(i.wrapping_mul(stride)) % m) as usize)
    }

    /// Adds a key.
    pub fn insert(&mut self, h: &IdentityHash) {
        let pos: Vec<usize> = self.positions(h).collect();
        for p in pos {
            self.bits[p / 64] |= 1 << (p % 64);
        }
    }

    /// False when the key was certainly never inserted.
    pub fn may_contain(&self, h: &IdentityHash) -> bool {
        self.positions(h)
            .all(|p| self.bits[p / 64] & (1 << (p % 64)) != 0)
    }

    /// The filter as bytes: probes (u32 LE) then the bit words (u64 LE).
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(4 + self.bits.len() * 8);
        out.extend_from_slice(&self.probes.to_le_bytes());
        for w in &self.bits {
            out.extend_from_slice(&w.to_le_bytes());
        }
        out
    }

    /// Reads [`Bloom::to_bytes`]; `None` when the bytes are not such a filter.
    pub fn from_bytes(b: &[u8]) -> Option<Self> {
        if b.len() < 12 || !(b.len() - 4).is_multiple_of(8) {
            return None;
        }
        let probes = u32::from_le_bytes(b[..4].try_into().ok()?);
        let bits = b[4..]
            .chunks_exact(8)
            .map(|c| u64::from_le_bytes(c.try_into().expect("8 bytes")))
            .collect();
        Some(Self { bits, probes })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hash_is_stable_and_separates_parts() {
        let a = IdentityHash::of("D01", "FV/1", 1);
        assert_eq!(a, IdentityHash::of("D01", "FV/1", 1));
        assert_ne!(a, IdentityHash::of("D01", "FV/1", 2));
        assert_ne!(
            IdentityHash::of("ab", "c", 0),
            IdentityHash::of("a", "bc", 0)
        );
        // Pinned (computed independently): the index on disk depends on these values
        // never changing between releases.
        let pinned = IdentityHash::of("D01", "FV/2026/11/0001", 1);
        assert_eq!(
            (pinned.hi, pinned.lo),
            (0xcb75_70bd_aff6_48fd, 0xd369_e59f_bc7d_6140)
        );
    }

    #[test]
    fn bloom_has_no_false_negatives_and_few_false_positives() {
        let mut b = Bloom::with_capacity(10_000);
        for i in 0..10_000 {
            b.insert(&IdentityHash::of("D", &format!("I{i}"), i));
        }
        for i in 0..10_000 {
            assert!(b.may_contain(&IdentityHash::of("D", &format!("I{i}"), i)));
        }
        let fp = (0..100_000)
            .filter(|i| b.may_contain(&IdentityHash::of("E", &format!("I{i}"), *i)))
            .count();
        assert!(fp < 200, "false positives {fp} of 100000");
        let round = Bloom::from_bytes(&b.to_bytes()).unwrap();
        assert_eq!(round, b);
        assert!(Bloom::from_bytes(b"xx").is_none());
    }
}
