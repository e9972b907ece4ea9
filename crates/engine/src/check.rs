//! `cardsmith check`: what a card really holds and how fast it is. A counterfeit card
//! claims more than its flash keeps: writes past its real capacity are lost, or land again
//! at its start (it "wraps"). Unique patterns written at spread offsets and read back show
//! both; sequential and 4 KiB random speeds are measured on the way. Writing is
//! destructive and only done when asked.

use std::time::Instant;

use crate::buffer::{AlignedBuf, ALIGN};
use crate::progress::{CancelToken, Phase, Progress};
use crate::target::Target;
use crate::Error;

/// What a check found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckReport {
    /// The size the card claims.
    pub claimed: u64,
    /// The bytes that keep what is written to them (1 MiB steps); `None` without writing.
    pub real: Option<u64>,
    /// Where writes start landing again at the card's start (a wrapping counterfeit).
    pub wraps_at: Option<u64>,
    /// Sequential write, bytes per second (with writing).
    pub write_rate: Option<u64>,
    /// Sequential read, bytes per second.
    pub read_rate: u64,
    /// 4 KiB reads at random places, per second.
    pub random_reads: u64,
    /// 4 KiB writes at random places, per second (with writing).
    pub random_writes: Option<u64>,
}

const MAGIC: &[u8; 16] = b"cardsmith check\0";
/// The refinement step of the real capacity.
const STEP: u64 = 1 << 20;
/// Bytes for the sequential speeds.
const SPEED_BYTES: u64 = 32 << 20;
/// Requests for the random speeds.
const RANDOM: usize = 128;

/// A small generator for patterns and places (xorshift64*).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
}

/// The 4 KiB pattern for `offset` in this run (`nonce`): who wrote it, where, and bytes
/// nothing else holds.
fn pattern(nonce: u64, offset: u64, buf: &mut [u8]) {
    buf[..16].copy_from_slice(MAGIC);
    buf[16..24].copy_from_slice(&nonce.to_le_bytes());
    buf[24..32].copy_from_slice(&offset.to_le_bytes());
    let mut rng = Rng((nonce ^ offset.rotate_left(17)) | 1);
    for word in buf[32..ALIGN].chunks_mut(8) {
        word.copy_from_slice(&rng.next().to_le_bytes());
    }
}

/// Whose pattern (of this run) a block holds: the offset it was written for.
fn written_for(nonce: u64, block: &[u8]) -> Option<u64> {
    if &block[..16] != MAGIC || block[16..24] != nonce.to_le_bytes() {
        return None;
    }
    let offset = u64::from_le_bytes(block[24..32].try_into().ok()?);
    let mut expected = AlignedBuf::new(ALIGN);
    pattern(nonce, offset, &mut expected);
    (expected[..ALIGN] == block[..ALIGN]).then_some(offset)
}

/// Checks `target`: with `write`, its real capacity (destroying what it holds) and write
/// speeds; always its read speeds.
pub fn check(
    target: &Target,
    write: bool,
    cancel: &CancelToken,
    progress: &mut dyn FnMut(Progress),
) -> Result<CheckReport, Error> {
    let claimed = target.size().unwrap_or(0);
    if claimed < 4 * STEP {
        return Err(Error::Device {
            what: "checking",
            path: target.path().to_owned(),
            source: std::io::Error::other("it holds less than 4 MiB"),
        });
    }
    let nonce = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(1, |d| d.as_nanos() as u64)
        | 1;
    let mut report = CheckReport {
        claimed,
        real: None,
        wraps_at: None,
        write_rate: None,
        read_rate: 0,
        random_reads: 0,
        random_writes: None,
    };
    let mut usable = claimed;
    if write {
        let (real, wraps_at) = capacity(target, nonce, cancel, progress)?;
        report.real = Some(real);
        report.wraps_at = wraps_at;
        usable = real;
        let span = SPEED_BYTES.min(usable);
        report.write_rate = Some(sequential(target, span, true, cancel, progress)?);
        report.random_writes = Some(random(target, usable, nonce, true, cancel)?);
    }
    let span = SPEED_BYTES.min(usable);
    report.read_rate = sequential(target, span, false, cancel, progress)?;
    report.random_reads = random(target, usable, nonce, false, cancel)?;
    if write {
        // The card now holds patterns: nothing that could boot.
        let zeros = AlignedBuf::new(STEP as usize);
        target.write_at(&zeros, 0)?;
        target.sync()?;
    }
    Ok(report)
}

/// Where the probes go: every multiple of a power of two (so that a wrap at any multiple
/// of it lands on a probe), and the last block.
fn probe_offsets(claimed: u64) -> Vec<u64> {
    let mut spacing = STEP;
    while claimed / spacing > 256 {
        spacing *= 2;
    }
    let mut offsets: Vec<u64> = (0..claimed / spacing).map(|k| k * spacing).collect();
    let last = (claimed - ALIGN as u64) / ALIGN as u64 * ALIGN as u64;
    if offsets.last() != Some(&last) {
        offsets.push(last);
    }
    offsets
}

/// Per probe whether it kept its pattern, and (offset, written_for) for each that holds
/// another's.
type Probed = (Vec<bool>, Vec<(u64, u64)>);

/// Writes `offsets`' patterns, then reads them back: the offsets whose block holds its own
/// pattern, and (offset, written_for) for each block that holds another's.
fn probe(
    target: &Target,
    nonce: u64,
    offsets: &[u64],
    cancel: &CancelToken,
) -> Result<Probed, Error> {
    let mut buf = AlignedBuf::new(ALIGN);
    // Highest first: on a card that wraps, each low block ends up holding its own pattern,
    // and a high one reads back the pattern of the low block it lands on.
    for &at in offsets.iter().rev() {
        cancel.check()?;
        pattern(nonce, at, &mut buf);
        target.write_at(&buf[..ALIGN], at)?;
    }
    target.sync()?;
    target.drop_cache();
    let mut kept = Vec::new();
    let mut moved = Vec::new();
    for &at in offsets {
        cancel.check()?;
        let got = match target.read_at(&mut buf, ALIGN, at) {
            Ok(got) => got,
            Err(Error::Read { .. }) => 0,
            Err(e) => return Err(e),
        };
        let holds = (got == ALIGN)
            .then(|| written_for(nonce, &buf[..ALIGN]))
            .flatten();
        kept.push(holds == Some(at));
        if let Some(other) = holds.filter(|&o| o != at) {
            moved.push((at, other));
        }
    }
    Ok((kept, moved))
}

/// The real capacity (whole MiB) and, for a card that wraps, where it wraps.
fn capacity(
    target: &Target,
    nonce: u64,
    cancel: &CancelToken,
    progress: &mut dyn FnMut(Progress),
) -> Result<(u64, Option<u64>), Error> {
    let claimed = target.size().unwrap_or(0);
    let offsets = probe_offsets(claimed);
    progress(Progress {
        phase: Phase::Write,
        bytes_done: 0,
        bytes_total: Some(claimed),
    });
    let (kept, moved) = probe(target, nonce, &offsets, cancel)?;
    // A high block reading back a low one's pattern: it is that low block.
    if let Some(wrap) = moved
        .iter()
        .filter(|(at, other)| other < at)
        .map(|(at, other)| at - other)
        .min()
    {
        return Ok((wrap, Some(wrap)));
    }
    let Some(first_lost) = kept.iter().position(|k| !k) else {
        return Ok((claimed, None));
    };
    if first_lost == 0 {
        return Ok((0, None));
    }
    // Writes are lost from somewhere between the last probe kept and this one.
    let (mut good, mut bad) = (offsets[first_lost - 1], offsets[first_lost]);
    while bad - good > STEP {
        cancel.check()?;
        let mid = (good + (bad - good) / 2) / STEP * STEP;
        let mid = if mid <= good { good + STEP } else { mid };
        let (kept, _) = probe(target, nonce ^ mid, &[mid], cancel)?;
        if kept[0] {
            good = mid;
        } else {
            bad = mid;
        }
        progress(Progress {
            phase: Phase::Write,
            bytes_done: good,
            bytes_total: Some(claimed),
        });
    }
    // Kept up to `good`, lost from `bad` on, with at most 1 MiB between them.
    Ok((bad, None))
}

/// Bytes per second writing (zeros) or reading `span` bytes from the start, in 4 MiB
/// requests.
fn sequential(
    target: &Target,
    span: u64,
    write: bool,
    cancel: &CancelToken,
    progress: &mut dyn FnMut(Progress),
) -> Result<u64, Error> {
    let chunk = 4 << 20;
    let mut buf = AlignedBuf::new(chunk);
    let started = Instant::now();
    let mut at = 0;
    while at < span {
        cancel.check()?;
        let len = ((span - at) as usize).min(chunk);
        if write {
            target.write_at(&buf[..len], at)?;
        } else {
            target.read_at(&mut buf, len, at)?;
        }
        at += len as u64;
        progress(Progress {
            phase: if write { Phase::Write } else { Phase::Read },
            bytes_done: at,
            bytes_total: Some(span),
        });
    }
    if write {
        target.sync()?;
    } else {
        target.drop_cache();
    }
    Ok((span as f64 / started.elapsed().as_secs_f64().max(1e-6)) as u64)
}

/// 4 KiB requests per second at random places below `usable`.
fn random(
    target: &Target,
    usable: u64,
    nonce: u64,
    write: bool,
    cancel: &CancelToken,
) -> Result<u64, Error> {
    let mut rng = Rng(nonce.rotate_left(7) | 1);
    let mut buf = AlignedBuf::new(ALIGN);
    let blocks = usable / ALIGN as u64;
    let started = Instant::now();
    for _ in 0..RANDOM {
        cancel.check()?;
        let at = rng.next() % blocks * ALIGN as u64;
        if write {
            target.write_at(&buf[..ALIGN], at)?;
        } else {
            target.read_at(&mut buf, ALIGN, at)?;
        }
    }
    if write {
        target.sync()?;
    }
    Ok((RANDOM as f64 / started.elapsed().as_secs_f64().max(1e-6)) as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn probes_lie_on_multiples_of_a_power_of_two_and_the_last_block() {
        let claimed = 64 << 30;
        let offsets = probe_offsets(claimed);
        assert!(offsets.len() <= 257, "{}", offsets.len());
        let spacing = offsets[1];
        assert!(spacing.is_power_of_two());
        // A card wrapping at 8 GiB: its probe at 8 GiB lands on the probe at 0.
        assert!(offsets.contains(&(8 << 30)));
        assert_eq!(*offsets.last().unwrap(), claimed - 4096);
    }

    #[test]
    fn a_pattern_says_whose_it_is_and_nothing_else_passes_for_one() {
        let mut buf = AlignedBuf::new(ALIGN);
        pattern(77, 1 << 30, &mut buf);
        assert_eq!(written_for(77, &buf), Some(1 << 30));
        assert_eq!(written_for(78, &buf), None, "another run's");
        buf[4000] ^= 1;
        assert_eq!(written_for(77, &buf), None, "a flipped bit");
    }
}
