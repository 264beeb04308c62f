//! Arguments of `hash_encode`, the first layer of a DHE (deep hash embedding): an id's `k`
//! universal hashes, each turned into a real number. The arithmetic is defined here once
//! ([`dhe_hash`]); every backend computes the same integers, and the `uniform` transform the
//! same floats, bit for bit.

use super::{KernelId, distinct, need};
use crate::device::DeviceError;
use serde::{Deserialize, Serialize};

/// The largest hash range `m`: `p < 2^23`, so WGSL's 32-bit arithmetic can multiply modulo `p`
/// eight bits at a time without overflow.
pub const MAX_HASH_RANGE: u32 = 1 << 22;

/// How a hash `h` in `0..m` becomes a real number (DHE's `transform`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum HashTransform {
    /// `(2h − (m − 1)) · (1 / (m − 1))`: `h / (m − 1) · 2 − 1` with one rounding, in [−1, 1].
    Uniform,
    /// Box–Muller over column pairs `(2c, 2c + 1)` on `U = (h + 1) / m`: N(0, 1) values.
    Gaussian,
}

impl HashTransform {
    /// The kernels' code for it.
    pub fn code(self) -> u32 {
        match self {
            HashTransform::Uniform => 0,
            HashTransform::Gaussian => 1,
        }
    }
}

/// The first prime above `m` (DHE's `p`).
pub fn first_prime_above(m: u32) -> u32 {
    let is_prime = |n: u32| n >= 2 && (2..).take_while(|d| d * d <= n).all(|d| n % d != 0);
    (m + 1..).find(|&n| is_prime(n)).unwrap_or(u32::MAX)
}

/// `((a·x + b) mod p) mod m` for a 64-bit id `x`, exactly (as with 128-bit products):
/// `a·x ≡ a·(x mod p) (mod p)`, and `a·(x mod p) < p²` fits 64 bits.
pub fn dhe_hash(x: u64, a: u32, b: u32, p: u32, m: u32) -> u32 {
    let (p64, xr) = (p as u64, x % p as u64);
    (((a as u64 * xr + b as u64) % p64) % m as u64) as u32
}

/// The shape of a `hash_encode` launch.
#[derive(Clone, Copy, Debug)]
pub struct HashShape {
    /// Ids (samples).
    pub batch: u32,
    /// Hashes per id: the output's columns (even for `gaussian`).
    pub k: u32,
    /// Hash range: `h < m`, `2 ≤ m ≤` [`MAX_HASH_RANGE`].
    pub m: u32,
    /// The prime of the hash family, `m < p` ([`first_prime_above`]).
    pub p: u32,
    /// How hashes become values.
    pub transform: HashTransform,
}

impl HashShape {
    /// The factor the transform multiplies by: `1 / (m − 1)` (uniform) or `1 / m` (gaussian),
    /// rounded once on the host so every backend multiplies by the same float.
    pub fn scale(&self) -> f32 {
        match self.transform {
            HashTransform::Uniform => (1.0 / (self.m as f64 - 1.0)) as f32,
            HashTransform::Gaussian => (1.0 / self.m as f64) as f32,
        }
    }

    /// Column pairs per id: each kernel invocation makes two columns.
    pub fn pairs(&self) -> u32 {
        self.k.div_ceil(2)
    }

    /// The kernels' shape words: batch, k, m, p, transform, then the scale's bits.
    pub fn words(&self) -> [u32; 6] {
        [
            self.batch,
            self.k,
            self.m,
            self.p,
            self.transform.code(),
            self.scale().to_bits(),
        ]
    }
}

/// Arguments of `hash_encode`: `out[i, j] = transform(dhe_hash(id_i, a_j, b_j, p, m))`.
pub struct HashEncode<'a, B> {
    /// `[batch × 2]` u32: each id's low then high 32 bits.
    pub ids: &'a B,
    /// `[k × 2]` u32: each hash's `a` (in `1..p`) then `b` (in `0..p`).
    pub coeffs: &'a B,
    /// `[batch × k]` f32 output.
    pub out: &'a B,
    /// Sizes, hash family and transform.
    pub shape: HashShape,
}

impl<B> HashEncode<'_, B> {
    /// Checks the shape (hash range, prime, pairs) and the buffer sizes against it.
    pub fn validate(&self, bytes: impl Fn(&B) -> u64) -> Result<(), DeviceError> {
        const K: &str = KernelId::HashEncode.name();
        let s = &self.shape;
        let bad = |message: String| Err(DeviceError::InvalidArgument { kernel: K, message });
        if !(2..=MAX_HASH_RANGE).contains(&s.m) {
            return bad(format!(
                "hash range m = {} is outside 2..={MAX_HASH_RANGE}",
                s.m
            ));
        }
        if s.p <= s.m || s.p >= 1 << 23 {
            return bad(format!("prime p = {} must lie in m + 1 .. 2^23", s.p));
        }
        if s.transform == HashTransform::Gaussian && s.k % 2 == 1 {
            return bad(format!(
                "gaussian pairs columns, so k must be even, got {}",
                s.k
            ));
        }
        let (b, k) = (s.batch as u64, s.k as u64);
        need(K, "ids", bytes(self.ids), 2 * b)?;
        need(K, "coeffs", bytes(self.coeffs), 2 * k)?;
        need(K, "out", bytes(self.out), b * k)?;
        distinct(K, self.out, &[self.ids, self.coeffs])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_hash_equals_the_128_bit_definition() {
        let p = first_prime_above(1_000_000);
        assert_eq!(p, 1_000_003);
        for (x, a, b) in [
            (0u64, 1u32, 0u32),
            (u64::MAX, p - 1, p - 1),
            (0xDEAD_BEEF_0123_4567, 987_654, 12_345),
            (1 << 40, 3, 7),
        ] {
            let exact = ((a as u128 * x as u128 + b as u128) % p as u128) % 1_000_000;
            assert_eq!(dhe_hash(x, a, b, p, 1_000_000) as u128, exact, "x={x}");
        }
        assert_eq!(first_prime_above(1), 2);
        assert_eq!(first_prime_above(MAX_HASH_RANGE), 4_194_319);
    }
}
