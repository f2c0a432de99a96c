//! Data for the benchmarks and the ARM cost examples (which include this file by path):
//! deterministic pseudo-random values, so every run (and every machine) measures the same
//! inputs, without a dependency for it.

#![allow(dead_code)] // each benchmark uses a different part

/// The xorshift64 generator (shifts 13, 7, 17).
pub struct XorShift64(u64);

impl XorShift64 {
    /// A generator starting from `seed`, which must not be zero (zero stays zero).
    pub fn new(seed: u64) -> Self {
        assert_ne!(seed, 0, "xorshift never leaves a zero state");
        XorShift64(seed)
    }

    /// The next 64 pseudo-random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    /// `n` bytes.
    pub fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n).map(|_| self.next_u64() as u8).collect()
    }

    /// `n` int8 weight codes in `-127..=127`, as `napctl quantize` makes them.
    pub fn codes(&mut self, n: usize) -> Vec<i8> {
        (0..n)
            .map(|_| ((self.next_u64() % 255) as i32 - 127) as i8)
            .collect()
    }

    /// `n` values uniform in `lo..hi`, from the top 24 bits of each step (what an f32 holds).
    pub fn uniform(&mut self, n: usize, lo: f32, hi: f32) -> Vec<f32> {
        (0..n)
            .map(|_| (self.next_u64() >> 40) as f32 / (1u64 << 24) as f32 * (hi - lo) + lo)
            .collect()
    }
}
