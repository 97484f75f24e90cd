//! Decoding fuzz bytes into sizes, flags and floating-point values.

/// A cursor over the fuzz input; reads past the end give zeros (so every input decodes).
#[derive(Debug, Clone)]
pub struct Bytes<'a> {
    data: &'a [u8],
    pos: usize,
}

/// Special values reachable from one byte (NaN, ±∞, huge, tiny, subnormal, zero, …).
const SPECIAL: [f64; 15] = [
    0.0,
    -0.0,
    f64::NAN,
    f64::INFINITY,
    f64::NEG_INFINITY,
    1e300,
    -1e300,
    1e-300,
    5e-324,
    f64::MAX,
    1e154,
    1e-154,
    1.0 + f64::EPSILON,
    1e16,
    -1e-8,
];

impl<'a> Bytes<'a> {
    /// A cursor at the start of `data`.
    pub fn new(data: &'a [u8]) -> Self {
        Self { data, pos: 0 }
    }
    /// Whether every byte has been read.
    pub fn is_empty(&self) -> bool {
        self.pos >= self.data.len()
    }
    /// The bytes not read yet.
    pub fn rest(&self) -> &'a [u8] {
        &self.data[self.pos.min(self.data.len())..]
    }
    /// The next byte (0 past the end).
    pub fn u8(&mut self) -> u8 {
        let b = self.data.get(self.pos).copied().unwrap_or(0);
        self.pos += 1;
        b
    }
    /// A value in `lo..=hi` from one byte.
    pub fn range(&mut self, lo: usize, hi: usize) -> usize {
        lo + (self.u8() as usize) % (hi - lo + 1)
    }
    /// A flag from one byte.
    pub fn flag(&mut self) -> bool {
        self.u8() & 1 == 1
    }
    /// A `u64` from eight bytes (little endian).
    pub fn u64(&mut self) -> u64 {
        let mut b = [0u8; 8];
        for x in &mut b {
            *x = self.u8();
        }
        u64::from_le_bytes(b)
    }
    /// An `f64`: most bytes give small multiples of 1/8 in `[-16, 16)` (well-conditioned
    /// data); `0xF0..=0xFE` give a special value (NaN, ±∞, 1e±300, subnormal, …) and `0xFF`
    /// reads eight raw bytes as the bit pattern.
    pub fn f64(&mut self) -> f64 {
        let tag = self.u8();
        match tag {
            0xFF => f64::from_bits(self.u64()),
            0xF0..=0xFE => SPECIAL[(tag - 0xF0) as usize % SPECIAL.len()],
            _ => (tag as i8) as f64 / 8.0,
        }
    }
    /// `n` values from [`f64`](Self::f64).
    pub fn f64s(&mut self, n: usize) -> Vec<f64> {
        (0..n).map(|_| self.f64()).collect()
    }
}

/// Encodes an `f64` so that [`Bytes::f64`] decodes it exactly (for building seed inputs).
pub fn encode_f64(x: f64, out: &mut Vec<u8>) {
    let small = x * 8.0;
    if small.fract() == 0.0
        && (-128.0..=111.0).contains(&small)
        && !(x == 0.0 && x.is_sign_negative())
    {
        let b = small as i8 as u8;
        if b < 0xF0 {
            out.push(b);
            return;
        }
    }
    out.push(0xFF);
    out.extend_from_slice(&x.to_bits().to_le_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encode_decode_round_trip() {
        for x in [
            0.0,
            1.0,
            -1.0,
            0.125,
            -16.0,
            13.875,
            3.3,
            f64::NAN,
            -0.0,
            1e300,
        ] {
            let mut v = Vec::new();
            encode_f64(x, &mut v);
            let y = Bytes::new(&v).f64();
            assert_eq!(x.to_bits(), y.to_bits(), "{x}");
        }
    }
}
