//! Hostile inputs without a fuzzing framework: valid seeds mutated the ways fuzzers do it
//! (bit flips, bytes set to edge values, bytes inserted, removed or repeated, pieces of
//! one seed spliced into another, little- and big-endian numbers overwritten with 0, 1,
//! the largest values), from a fixed seed, so a failure repeats. Each input is handed to
//! the parser under `catch_unwind`; a panic (an overflow, an index out of bounds, an
//! `unwrap` on hostile data) fails the test with the input saved beside it.

use std::panic::{catch_unwind, AssertUnwindSafe};

/// A small fast generator (xorshift64*): the same inputs on every run.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed.max(1))
    }

    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// A number below `n` (0 when `n` is 0).
    pub fn below(&mut self, n: usize) -> usize {
        if n == 0 {
            0
        } else {
            (self.next() % n as u64) as usize
        }
    }
}

const EDGES: [u64; 8] = [
    0,
    1,
    0x7F,
    0xFF,
    0x7FFF_FFFF,
    0xFFFF_FFFF,
    0x7FFF_FFFF_FFFF_FFFF,
    u64::MAX,
];

/// One to four mutations of `input` (with `other` for splicing), at most `max_len` long.
pub fn mutate(rng: &mut Rng, input: &[u8], other: &[u8], max_len: usize) -> Vec<u8> {
    let mut data = input.to_vec();
    for _ in 0..1 + rng.below(4) {
        let len = data.len();
        match rng.below(8) {
            0 if len > 0 => {
                let i = rng.below(len);
                data[i] ^= 1 << rng.below(8);
            }
            1 if len > 0 => {
                let i = rng.below(len);
                data[i] = [0, 0xFF, 0x7F, 0x80, b'0', b'"', b'<', b'\n'][rng.below(8)];
            }
            2 => {
                let i = rng.below(len + 1);
                let n = 1 + rng.below(16);
                let byte = (rng.next() & 0xFF) as u8;
                data.splice(i..i, std::iter::repeat_n(byte, n));
            }
            3 if len > 0 => {
                let i = rng.below(len);
                let n = (1 + rng.below(64)).min(len - i);
                data.drain(i..i + n);
            }
            4 if len > 0 => {
                // Repeat a piece (a list entry, a table row) in place.
                let i = rng.below(len);
                let n = (1 + rng.below(256)).min(len - i);
                let piece = data[i..i + n].to_vec();
                data.splice(i..i, piece);
            }
            5 if !other.is_empty() => {
                let i = rng.below(len + 1);
                let j = rng.below(other.len());
                let n = (1 + rng.below(512)).min(other.len() - j);
                data.splice(i..i, other[j..j + n].iter().copied());
            }
            6 if len >= 8 => {
                // A number field: 1, 2, 4 or 8 bytes at any offset, either byte order.
                let width = [1, 2, 4, 8][rng.below(4)];
                let i = rng.below(len - width + 1);
                let value = EDGES[rng.below(EDGES.len())].wrapping_add(rng.below(3) as u64);
                let bytes = if rng.below(2) == 0 {
                    value.to_le_bytes()
                } else {
                    value.to_be_bytes()
                };
                let bytes = if rng.below(2) == 0 {
                    &bytes[..width]
                } else {
                    &bytes[8 - width..]
                };
                data[i..i + width].copy_from_slice(bytes);
            }
            7 if len > 0 => {
                data.truncate(rng.below(len));
            }
            _ => {}
        }
    }
    data.truncate(max_len);
    data
}

/// Hands `count` inputs made from `seeds` (each seed itself first) to `parse`; fails, with
/// the input saved to `target/hostile-NAME.bin`, on the first that panics.
pub fn hostile(
    name: &str,
    seeds: &[Vec<u8>],
    count: usize,
    max_len: usize,
    mut parse: impl FnMut(&[u8]),
) {
    assert!(!seeds.is_empty(), "{name}: no seed");
    let mut rng = Rng::new(0xC0FF_EE00 ^ name.len() as u64 ^ count as u64);
    let hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(|_| {}));
    let mut failure = None;
    for n in 0..count {
        let input = if n < seeds.len() {
            seeds[n].clone()
        } else {
            let seed = &seeds[rng.below(seeds.len())];
            let other = &seeds[rng.below(seeds.len())];
            mutate(&mut rng, seed, other, max_len)
        };
        if let Err(panic) = catch_unwind(AssertUnwindSafe(|| parse(&input))) {
            let what = panic
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_default();
            failure = Some((n, input, what));
            break;
        }
    }
    std::panic::set_hook(hook);
    if let Some((n, input, what)) = failure {
        let saved = std::env::temp_dir().join(format!("hostile-{name}.bin"));
        let _ = std::fs::write(&saved, &input);
        panic!(
            "{name}: input {n} of {count} panicked ({what}); it is saved in {}",
            saved.display()
        );
    }
}
