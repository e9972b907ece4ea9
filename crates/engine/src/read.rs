//! Reading a card back into an image file: a backup.
//!
//! ```text
//!   device ──> reader thread ──> (patches) ──> SHA-256 ──> encoder ──> OUT.part ──rename──> OUT
//!   (O_DIRECT,   (4 MiB aligned    (allocated-only        (zstd/xz use      + OUT.sha256
//!    read-only)   buffers)          GPT headers)           their own threads)
//! ```
//!
//! The extension of the output picks the format (.img raw, .zst, .xz, .gz). Everything goes
//! to temporary files in the output's folder, which are renamed over the final names only
//! once the image is complete, flushed and its hash written: a full disk, a read error or a
//! cancel leaves no partial file, and an existing output is untouched (and replaced only with
//! `force`). `OUT.sha256`, in `sha256sum` format, names the uncompressed image.

use std::ffi::{CString, OsString};
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::mpsc::sync_channel;

use sha2::{Digest, Sha256};

use crate::bmap::{Bmap, RangeChecksum, RangeHashes};
use crate::buffer::{AlignedBuf, Pool, ALIGN};
use crate::hash::to_hex;
use crate::image::FileIdentity;
use crate::layout::{self, Allocated, TableKind};
use crate::owners::{self, Held};
use crate::pipeline::CHUNK;
use crate::progress::{CancelToken, Phase, Progress};
use crate::target::{NewFiles, Target};
use crate::Error;

/// The formats a backup can be written in, chosen by the output's extension.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutputFormat {
    /// The image as it is.
    Raw,
    /// `.zst`: zstd level 3, multi-threaded.
    Zstd,
    /// `.xz`: preset 6, multi-threaded and multi-block.
    Xz,
    /// `.gz`: gzip level 6.
    Gzip,
}

impl OutputFormat {
    /// `.zst`, `.xz` and `.gz` compress; any other name is a raw image. Formats cardsmith
    /// reads but does not write (.bz2, .zip) are refused rather than written raw under a
    /// misleading name.
    pub fn for_path(path: &Path) -> Result<OutputFormat, Error> {
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().to_lowercase())
            .unwrap_or_default();
        let ext = name.rsplit_once('.').map_or("", |(_, e)| e);
        match ext {
            "zst" | "zstd" => Ok(OutputFormat::Zstd),
            "xz" => Ok(OutputFormat::Xz),
            "gz" => Ok(OutputFormat::Gzip),
            "bz2" | "zip" | "7z" | "lz4" | "lzma" => Err(Error::OutputFormat {
                path: path.to_owned(),
                detail: format!(
                    "cardsmith does not write .{ext} backups; end the name with .img (raw), \
                     .img.zst, .img.xz or .img.gz"
                ),
            }),
            _ => Ok(OutputFormat::Raw),
        }
    }

    /// The format's short name ("raw", "zstd", "xz", "gzip").
    pub fn name(self) -> &'static str {
        match self {
            OutputFormat::Raw => "raw",
            OutputFormat::Zstd => "zstd",
            OutputFormat::Xz => "xz",
            OutputFormat::Gzip => "gzip",
        }
    }
}

/// How to read.
#[derive(Debug, Clone, Default)]
pub struct ReadOptions {
    /// Replace an existing output (and its .sha256 file).
    pub force: bool,
    /// Only up to the end of the last partition (see [`Allocated`]).
    pub allocated_only: bool,
    /// Read only the blocks the source's filesystems use (see [`crate::usage_of`]); the
    /// rest of the image is zeros (a hole in a raw file), and `OUT.bmap` (bmaptool's
    /// format 2.0, each range with its SHA-256) is written beside it.
    pub used_only: bool,
    /// Who the backup and its .sha256 belong to (see [`NewFiles::owner`]). The backup is
    /// always private (0600): it holds the card's password hashes and Wi-Fi keys.
    pub owner: Option<(u32, u32)>,
    /// Keep going past unreadable blocks: each failing request is read again 4 KiB at a
    /// time, unreadable blocks become zeros, and `OUT.badblocks` (a GNU ddrescue mapfile)
    /// lists them. A card that stops answering still stops the read.
    pub rescue: bool,
}

/// What a read produced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReadReport {
    /// Bytes of the (uncompressed) image.
    pub bytes: u64,
    /// Bytes of the output file as stored.
    pub stored: u64,
    /// SHA-256 of the uncompressed image.
    pub sha256: String,
    /// The format written.
    pub format: OutputFormat,
    /// The `sha256sum` file written beside the output.
    pub checksum_file: PathBuf,
    /// With `allocated_only`: the partition table and where its partitions end.
    pub allocated: Option<(TableKind, u64)>,
    /// The size of the device (or file) read from.
    pub source_size: u64,
    /// Bytes read from the source (all of `bytes`, or with `used_only` the used ones).
    pub read_bytes: u64,
    /// With `used_only`: the block map written beside the image.
    pub bmap_file: Option<PathBuf>,
    /// With `rescue`: the byte ranges that could not be read (zeros in the image), each
    /// with what it held: the partition table, or the files, folders and structures of
    /// the filesystem there.
    pub unreadable: Vec<(u64, u64, Held)>,
    /// With `rescue` and unreadable blocks: the ddrescue mapfile written beside the image.
    pub badblocks_file: Option<PathBuf>,
}

/// The `.bmap` file that goes with `out`: its name without a compression suffix
/// (`card.img.zst` gives `card.img.bmap`), where `bmaptool copy` looks for it.
pub fn bmap_path(out: &Path, format: OutputFormat) -> PathBuf {
    let name = uncompressed_name(out, format);
    let mut name = PathBuf::from(name).into_os_string();
    name.push(".bmap");
    out.with_file_name(name)
}

/// The `.sha256` file that goes with `out`.
pub fn checksum_path(out: &Path) -> PathBuf {
    let mut name = out.as_os_str().to_owned();
    name.push(".sha256");
    PathBuf::from(name)
}

/// Copies `source` (a device opened with [`Target::reading_device`], or a file opened with
/// [`Target::open_for_read`]) into the new image `out`, compressed as its name says.
pub fn read(
    source: &Target,
    out: &Path,
    options: &ReadOptions,
    cancel: &CancelToken,
    progress: &mut dyn FnMut(Progress),
) -> Result<ReadReport, Error> {
    read_from(source, source, out, options, cancel, progress)
}

/// Where the bytes come from: the target itself, or (in tests) a medium that fails.
trait Medium: Sync {
    fn read_at(&self, buf: &mut AlignedBuf, len: usize, offset: u64) -> Result<usize, Error>;
    fn path(&self) -> &Path;
}

impl Medium for Target {
    fn read_at(&self, buf: &mut AlignedBuf, len: usize, offset: u64) -> Result<usize, Error> {
        Target::read_at(self, buf, len, offset)
    }

    fn path(&self) -> &Path {
        Target::path(self)
    }
}

fn read_from(
    source: &Target,
    medium: &dyn Medium,
    out: &Path,
    options: &ReadOptions,
    cancel: &CancelToken,
    progress: &mut dyn FnMut(Progress),
) -> Result<ReadReport, Error> {
    let format = OutputFormat::for_path(out)?;
    let sums = checksum_path(out);
    for path in [out, &sums] {
        check_replaceable(path, options.force)?;
        if let Ok(meta) = fs::metadata(path) {
            source.check_not_source(Some(FileIdentity::of(&meta)), &path.display().to_string())?;
        }
    }
    let source_size = source.size().unwrap_or(0);
    let plan = if options.allocated_only {
        Some(layout::plan(source)?)
    } else {
        None
    };
    let total = plan.as_ref().map_or(source_size, Allocated::len);
    // The blocks to read: what the filesystems use, within the image, plus a new GPT's
    // tail (written from memory after the copy).
    // What the card's filesystems use: the blocks to read (used_only) and, for a rescue,
    // what an unreadable block belongs to (a card too damaged to say is described by
    // offsets alone).
    let usage = match (options.used_only, options.rescue) {
        (_, true) => Some(crate::usage::usage_despite_errors(source)),
        (true, false) => Some(crate::usage_of(source)?),
        (false, false) => None,
    };
    let map = if options.used_only {
        let usage = usage.clone().expect("worked out above");
        let mut ranges: Vec<(u64, u64)> = usage
            .ranges
            .iter()
            .map(|&(a, b)| (a, b.min(plan.as_ref().map_or(total, |p| p.copy))))
            .filter(|(a, b)| a < b)
            .collect();
        if let Some(p) = plan.as_ref().filter(|p| !p.tail.is_empty()) {
            ranges.push((p.copy, total));
        }
        let clipped = crate::Usage {
            size: total,
            ranges,
            table: usage.table,
            parts: usage.parts,
        };
        Some(Bmap::from_usage_unhashed(&clipped))
    } else {
        None
    };
    let bmap_file = map.as_ref().map(|_| bmap_path(out, format));
    if let Some(path) = &bmap_file {
        check_replaceable(path, options.force)?;
    }
    let dir = match out.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_owned(),
        _ => PathBuf::from("."),
    };
    if format == OutputFormat::Raw {
        if total >= 4 << 30 && on_fat(&dir) {
            return Err(Error::FileTooLarge {
                path: out.to_owned(),
            });
        }
        // Unused blocks are holes in a raw image: what has to fit is what is read.
        let needed = map.as_ref().map_or(total, |m| m.mapped_bytes().min(total));
        if let Some(free) = free_space(&dir).filter(|&free| free < needed) {
            return Err(Error::NoSpace {
                path: out.to_owned(),
                needed,
                free,
            });
        }
    }

    let mut temps = Temps::default();
    let private = NewFiles {
        private: true,
        owner: options.owner,
    };
    let shared = NewFiles {
        private: false,
        owner: options.owner,
    };
    let (image_tmp, file) = temps.create(out, private)?;
    let meta = file.metadata().map_err(|source| Error::Open {
        path: image_tmp.clone(),
        source,
    })?;
    // Refuse before reading: a file stored on the device being read (the same file, a file
    // on one of its partitions) would change under the read.
    source.check_not_source(Some(FileIdentity::of(&meta)), &out.display().to_string())?;

    let mut sink = Sink::new(format, Counting::new(file), total).map_err(|e| Error::Write {
        path: out.to_owned(),
        offset: 0,
        source: e,
    })?;
    let mut map = map;
    let bad = std::sync::Mutex::new(Vec::new());
    let (hash, read_bytes) = copy(
        medium,
        plan.as_ref(),
        map.as_mut(),
        total,
        &mut sink,
        out,
        options.rescue.then_some(&bad),
        cancel,
        progress,
    )?;
    let unreadable = joined(bad.into_inner().unwrap_or_default());
    let written = sink.written();
    let stored = sink
        .finish(cancel)
        .map_err(|e| sink_error(cancel, out, written, e))?;
    cancel.check()?;

    // The block map goes beside the image, under its final name once all is in place.
    let bmap_tmp = match (&map, &bmap_file) {
        (Some(map), Some(path)) => {
            let (tmp, mut f) = temps.create(path, shared)?;
            f.write_all(map.to_xml().as_bytes())
                .and_then(|()| f.sync_all())
                .map_err(|e| output_error(path, 0, e))?;
            Some(tmp)
        }
        _ => None,
    };
    let badblocks_file = (!unreadable.is_empty()).then(|| badblocks_path(out, format));
    let badblocks_tmp = match &badblocks_file {
        Some(path) => {
            check_replaceable(path, options.force)?;
            let (tmp, mut f) = temps.create(path, shared)?;
            f.write_all(mapfile(total, &unreadable).as_bytes())
                .and_then(|()| f.sync_all())
                .map_err(|e| output_error(path, 0, e))?;
            Some(tmp)
        }
        None => None,
    };
    let line = sha256sum_line(&hash, &uncompressed_name(out, format));
    let (sums_tmp, mut sums_file) = temps.create(&sums, shared)?;
    sums_file
        .write_all(&line)
        .and_then(|()| sums_file.sync_all())
        .map_err(|e| output_error(&sums, 0, e))?;
    drop(sums_file);

    // The checksum goes in first: an image never sits under its final name without it. An
    // old checksum being replaced (--force) is kept aside until the image is in place, so
    // a failure leaves the old pair as it was.
    cancel.check()?;
    let old_sums = if options.force && sums.exists() {
        let (aside, _) = temps.create(&sums, shared)?;
        fs::rename(&sums, &aside).map_err(|e| output_error(&sums, 0, e))?;
        Some(aside)
    } else {
        None
    };
    let placed =
        place(&sums_tmp, &sums, options.force).and_then(|()| place(&image_tmp, out, options.force));
    if let Err(e) = placed {
        match &old_sums {
            Some(aside) => {
                let _ = fs::rename(aside, &sums);
            }
            None => {
                if !sums_tmp.exists() {
                    let _ = fs::remove_file(&sums);
                }
            }
        }
        return Err(e);
    }
    if let Some(aside) = old_sums {
        let _ = fs::remove_file(aside);
    }
    if let (Some(tmp), Some(path)) = (&bmap_tmp, &bmap_file) {
        place(tmp, path, options.force)?;
    }
    if let (Some(tmp), Some(path)) = (&badblocks_tmp, &badblocks_file) {
        place(tmp, path, options.force)?;
    }
    temps.paths.clear();
    sync_dir(&dir);
    Ok(ReadReport {
        bytes: total,
        stored,
        sha256: hash,
        format,
        checksum_file: sums,
        allocated: plan.map(|p| (p.table, p.partitions_end)),
        source_size,
        read_bytes,
        bmap_file,
        unreadable: unreadable
            .iter()
            .zip(held(source, out, format, usage.as_ref(), &unreadable))
            .map(|(&(a, b), held)| (a, b, held))
            .collect(),
        badblocks_file,
    })
}

/// Only a regular file may be replaced, and only when asked: the error for `path`
/// otherwise.
pub fn check_replaceable(path: &Path, force: bool) -> Result<(), Error> {
    let not_a_file = |meta: &fs::Metadata| Error::OutputNotAFile {
        path: path.to_owned(),
        kind: file_kind(meta),
    };
    match fs::symlink_metadata(path) {
        Ok(meta) if !meta.is_file() && !meta.file_type().is_symlink() => Err(not_a_file(&meta)),
        Ok(_) => match fs::metadata(path) {
            Ok(meta) if !meta.is_file() => Err(not_a_file(&meta)),
            _ if !force => Err(Error::OutputExists {
                path: path.to_owned(),
            }),
            _ => Ok(()),
        },
        Err(_) => Ok(()),
    }
}

/// What a path that is not a regular file is, in words.
fn file_kind(meta: &fs::Metadata) -> &'static str {
    use std::os::unix::fs::FileTypeExt;
    let t = meta.file_type();
    if t.is_block_device() {
        "a block device (a drive)"
    } else if t.is_char_device() {
        "a character device"
    } else if t.is_dir() {
        "a folder"
    } else {
        "not a regular file"
    }
}

/// Reads the device on a thread of its own while this thread hashes, compresses and writes;
/// returns the image's SHA-256 and the bytes read from the device. With a map, only its
/// ranges are read (the rest of each chunk is zeros), and its ranges get their SHA-256.
#[allow(clippy::too_many_arguments)]
fn copy(
    source: &dyn Medium,
    plan: Option<&Allocated>,
    map: Option<&mut Bmap>,
    total: u64,
    sink: &mut Sink,
    out: &Path,
    rescue: Option<&std::sync::Mutex<Vec<(u64, u64)>>>,
    cancel: &CancelToken,
    progress: &mut dyn FnMut(Progress),
) -> Result<(String, u64), Error> {
    let copy_len = plan.map_or(total, |p| p.copy);
    let Pool { free, returns } = Pool::new(4, CHUNK);
    let (tx, rx) = sync_channel::<Chunk>(2);
    let mut hasher = Sha256::new();
    let pieces_of = |offset: u64, len: usize| match map.as_deref() {
        None => vec![(0, len)],
        Some(map) => crate::write::pieces(Some(map), offset, len),
    };
    let read_bytes = std::sync::atomic::AtomicU64::new(0);
    let mut digests = map
        .as_deref()
        .map(|m| RangeHashes::new(m, RangeChecksum::Sha256));
    std::thread::scope(|scope| {
        let read_bytes = &read_bytes;
        let pieces_of = &pieces_of;
        scope.spawn(move || {
            let mut offset = 0u64;
            let mut scratch = AlignedBuf::new(CHUNK);
            while offset < copy_len {
                let Ok(mut buf) = free.recv() else { return };
                let want = (copy_len - offset).min(CHUNK as u64) as usize;
                let pieces = pieces_of(offset, want);
                let whole = pieces.len() == 1 && pieces[0] == (0, want);
                let result = if whole {
                    cancel
                        .check()
                        .and_then(|()| source.read_at(&mut buf, want, offset))
                        .or_else(|e| rescued(source, &mut buf, want, offset, e, rescue))
                        .map_err(|e| first_bad_block(source, &mut buf, want, offset, e))
                        .and_then(|got| ended_early(source, got, want, offset + got as u64))
                        .inspect(|&got| {
                            read_bytes.fetch_add(got as u64, std::sync::atomic::Ordering::Relaxed);
                        })
                } else {
                    // Only the used parts are read; the rest of the chunk is zeros.
                    buf[..want].fill(0);
                    let mut outcome = cancel.check().map(|()| want);
                    for &(a, b) in &pieces {
                        let at = offset + a as u64;
                        outcome = outcome
                            .and_then(|_| source.read_at(&mut scratch, b - a, at))
                            .or_else(|e| rescued(source, &mut scratch, b - a, at, e, rescue))
                            .map_err(|e| first_bad_block(source, &mut scratch, b - a, at, e))
                            .and_then(|got| ended_early(source, got, b - a, at + got as u64))
                            .map(|_| want);
                        if outcome.is_err() {
                            break;
                        }
                        buf[a..b].copy_from_slice(&scratch[..b - a]);
                        read_bytes.fetch_add((b - a) as u64, std::sync::atomic::Ordering::Relaxed);
                    }
                    outcome
                };
                let stop = result.is_err();
                if tx.send(result.map(|got| (buf, got, offset))).is_err() || stop {
                    return;
                }
                offset += want as u64;
            }
        });
        // Taken by value: when this returns (also early, on an error), the channel and the
        // buffer returns close and the reader stops instead of waiting forever.
        consume(
            rx,
            returns,
            plan,
            copy_len,
            total,
            &mut hasher,
            digests.as_mut(),
            sink,
            out,
            cancel,
            progress,
        )
    })?;
    if let Some(tail) = plan.map(|p| &p.tail).filter(|t| !t.is_empty()) {
        cancel.check()?;
        hasher.update(tail);
        if let Some(d) = digests.as_mut() {
            d.feed(copy_len, tail);
        }
        sink.write_all(tail, cancel)
            .map_err(|e| sink_error(cancel, out, sink.written(), e))?;
        progress(Progress {
            phase: Phase::Read,
            bytes_done: total,
            bytes_total: Some(total),
        });
    }
    if let (Some(map), Some(d)) = (map, digests) {
        map.checksum = Some(RangeChecksum::Sha256);
        for (range, digest) in map.ranges.iter_mut().zip(d.finish()) {
            range.digest = digest;
        }
    }
    Ok((
        to_hex(&hasher.finalize()),
        read_bytes.load(std::sync::atomic::Ordering::Relaxed),
    ))
}

type Chunk = Result<(AlignedBuf, usize, u64), Error>;

#[allow(clippy::too_many_arguments)]
fn consume(
    chunks: std::sync::mpsc::Receiver<Chunk>,
    returns: std::sync::mpsc::SyncSender<AlignedBuf>,
    plan: Option<&Allocated>,
    copy_len: u64,
    total: u64,
    hasher: &mut Sha256,
    mut digests: Option<&mut RangeHashes>,
    sink: &mut Sink,
    out: &Path,
    cancel: &CancelToken,
    progress: &mut dyn FnMut(Progress),
) -> Result<(), Error> {
    let mut done = 0u64;
    while done < copy_len {
        let (mut buf, got, offset) = chunks.recv().expect("the reader sends until the end")?;
        cancel.check()?;
        if let Some(plan) = plan {
            plan.patch(offset, &mut buf[..got]);
        }
        hasher.update(&buf[..got]);
        if let Some(d) = digests.as_deref_mut() {
            d.feed(offset, &buf[..got]);
        }
        sink.write_all(&buf[..got], cancel)
            .map_err(|e| sink_error(cancel, out, sink.written(), e))?;
        done += got as u64;
        let _ = returns.send(buf);
        progress(Progress {
            phase: Phase::Read,
            bytes_done: done,
            bytes_total: Some(total),
        });
    }
    Ok(())
}

/// With a rescue: reads `want` bytes at `offset` again 4 KiB at a time from the block
/// `error` names, zeros where a block cannot be read, and notes those blocks. A card that
/// stopped answering (or any other error) still fails the read.
fn rescued(
    source: &dyn Medium,
    buf: &mut AlignedBuf,
    want: usize,
    offset: u64,
    error: Error,
    rescue: Option<&std::sync::Mutex<Vec<(u64, u64)>>>,
) -> Result<usize, Error> {
    let (Some(bad), Error::Read { offset: failed, .. }) = (rescue, &error) else {
        return Err(error);
    };
    let mut block = AlignedBuf::new(ALIGN);
    // What came before the block named as failing is in `buf` already (a target reads up
    // to it): a dying card is not asked for it again.
    let mut at = (failed.saturating_sub(offset) as usize).min(want) / ALIGN * ALIGN;
    while at < want {
        let len = (want - at).min(ALIGN);
        let here = offset + at as u64;
        match source.read_at(&mut block, len, here) {
            Ok(got) => {
                buf[at..at + got].copy_from_slice(&block[..got]);
                buf[at + got..at + len].fill(0);
                if got < len {
                    bad.lock()
                        .expect("not poisoned")
                        .push((here + got as u64, here + len as u64));
                }
            }
            Err(Error::Read { .. }) => {
                buf[at..at + len].fill(0);
                bad.lock()
                    .expect("not poisoned")
                    .push((here, here + len as u64));
            }
            Err(e) => return Err(e),
        }
        at += len;
    }
    Ok(want)
}

/// Ranges sorted and joined where they touch.
fn joined(mut ranges: Vec<(u64, u64)>) -> Vec<(u64, u64)> {
    ranges.sort_unstable();
    let mut out: Vec<(u64, u64)> = Vec::new();
    for (a, b) in ranges {
        match out.last_mut() {
            Some(last) if a <= last.1 => last.1 = last.1.max(b),
            _ => out.push((a, b)),
        }
    }
    out
}

/// The `.badblocks` file that goes with `out`: a GNU ddrescue mapfile, named like the
/// `.bmap` (without a compression suffix).
pub fn badblocks_path(out: &Path, format: OutputFormat) -> PathBuf {
    let mut name = PathBuf::from(uncompressed_name(out, format)).into_os_string();
    name.push(".badblocks");
    out.with_file_name(name)
}

/// A GNU ddrescue mapfile of `total` bytes: the unreadable ranges bad-sector (`-`), the
/// rest finished (`+`: read, or known to be unused and so zeros).
fn mapfile(total: u64, bad: &[(u64, u64)]) -> String {
    let mut text = String::from(
        "# Mapfile. Created by cardsmith read --rescue\n# current_pos  current_status  current_pass\n0x00000000     +               1\n#      pos        size  status\n",
    );
    let mut at = 0;
    for &(a, b) in bad {
        if a > at {
            text += &format!("0x{at:08X}  0x{:08X}  +\n", a - at);
        }
        text += &format!("0x{a:08X}  0x{:08X}  -\n", b - a);
        at = b;
    }
    if at < total {
        text += &format!("0x{at:08X}  0x{:08X}  +\n", total - at);
    }
    text
}

/// What each unreadable range held, read from the backup just written when it is a raw
/// image, else from the card with those ranges masked (never asked for again). The map
/// worked out before the copy places them; when the card's layout could not be read then
/// (a bad block among its metadata), it is worked out again with those blocks as zeros.
fn held(
    source: &Target,
    out: &Path,
    format: OutputFormat,
    usage: Option<&crate::Usage>,
    bad: &[(u64, u64)],
) -> Vec<Held> {
    if bad.is_empty() {
        return Vec::new();
    }
    let image = (format == OutputFormat::Raw)
        .then(|| File::open(out).ok())
        .flatten();
    let mut from_image = |offset: u64, len: usize| -> Result<Vec<u8>, Error> {
        use std::os::unix::fs::FileExt;
        let mut buf = vec![0u8; len];
        let image = image.as_ref().expect("only read when opened");
        image
            .read_exact_at(&mut buf, offset)
            .map_err(|e| Error::read(out.display().to_string(), offset, e))?;
        Ok(buf)
    };
    let mut card = |offset: u64, len: usize| layout::read_bytes(source, offset, len);
    let mut masked = owners::masked(&mut card, bad);
    let read: &mut layout::ReadFn<'_> = if image.is_some() {
        &mut from_image
    } else {
        &mut masked
    };
    // Worked out again from the rescued bytes: a partition whose metadata could not be
    // read before the copy (so all of it was copied) is looked at with its bad blocks
    // as zeros, so that the bad block itself can be named ("the block bitmap of group 3").
    let size = source.size().unwrap_or(0);
    match crate::usage::usage(read, size, source.sector_size())
        .ok()
        .or_else(|| usage.cloned())
    {
        Some(usage) => owners::held(read, &usage, bad),
        None => bad
            .iter()
            .map(|_| Held {
                place: "the card's layout could not be read".into(),
                what: Vec::new(),
            })
            .collect(),
    }
}

/// After a chunk failed to read: reads it again block by block to name the first block that
/// fails (a card's bad sector), rather than the start of the 4 MiB chunk.
fn first_bad_block(
    source: &dyn Medium,
    buf: &mut AlignedBuf,
    want: usize,
    offset: u64,
    chunk_error: Error,
) -> Error {
    let Error::Read { offset: failed, .. } = chunk_error else {
        return chunk_error;
    };
    // A target names the failing sector itself: from there on.
    let mut at = (failed.saturating_sub(offset) as usize).min(want) / ALIGN * ALIGN;
    while at < want {
        let len = (want - at).min(ALIGN);
        if let Err(e) = source.read_at(buf, len, offset + at as u64) {
            return e;
        }
        at += len;
    }
    chunk_error
}

/// A device that returns fewer bytes than its size is failing or was pulled out.
fn ended_early(source: &dyn Medium, got: usize, want: usize, at: u64) -> Result<usize, Error> {
    if got == want {
        return Ok(got);
    }
    Err(Error::read(
        source.path().display().to_string(),
        at,
        io::Error::new(
            io::ErrorKind::UnexpectedEof,
            format!(
                "the device ended early, {} bytes short (was it removed?)",
                want - got
            ),
        ),
    ))
}

fn output_error(out: &Path, written: u64, e: io::Error) -> Error {
    if e.raw_os_error() == Some(libc::EFBIG) {
        return Error::FileTooLarge {
            path: out.to_owned(),
        };
    }
    if e.raw_os_error() == Some(libc::ENOSPC) || e.raw_os_error() == Some(libc::EDQUOT) {
        Error::OutputFull {
            path: out.to_owned(),
            written,
        }
    } else {
        Error::Write {
            path: out.to_owned(),
            offset: written,
            source: e,
        }
    }
}

/// The name the image has once decompressed: `backup.img.zst` holds `backup.img`.
fn uncompressed_name(out: &Path, format: OutputFormat) -> OsString {
    let name = out.file_name().unwrap_or(out.as_os_str()).to_owned();
    if format == OutputFormat::Raw {
        return name;
    }
    let bytes = name.as_bytes();
    match bytes.iter().rposition(|&b| b == b'.') {
        Some(dot) if dot > 0 => OsString::from(std::ffi::OsStr::from_bytes(&bytes[..dot])),
        _ => name,
    }
}

/// A line as `sha256sum` writes it, with the name's bytes as they are; a name with a
/// backslash or a newline is escaped the way sha256sum does (a leading backslash marks
/// the line as escaped).
fn sha256sum_line(hash: &str, name: &std::ffi::OsStr) -> Vec<u8> {
    let name = name.as_bytes();
    let mut line = Vec::with_capacity(hash.len() + name.len() + 4);
    if name.iter().any(|b| matches!(b, b'\\' | b'\n' | b'\r')) {
        line.push(b'\\');
        line.extend_from_slice(hash.as_bytes());
        line.extend_from_slice(b"  ");
        for &b in name {
            match b {
                b'\\' => line.extend_from_slice(b"\\\\"),
                b'\n' => line.extend_from_slice(b"\\n"),
                b'\r' => line.extend_from_slice(b"\\r"),
                _ => line.push(b),
            }
        }
    } else {
        line.extend_from_slice(hash.as_bytes());
        line.extend_from_slice(b"  ");
        line.extend_from_slice(name);
    }
    line.push(b'\n');
    line
}

/// Temporary files beside the outputs, removed unless they were renamed into place.
#[derive(Default)]
struct Temps {
    paths: Vec<PathBuf>,
}

impl Temps {
    /// A new file `.NAME.PID-N.cardsmith-part` beside `beside`, created exclusively (a name
    /// left by a killed run is skipped, not reused).
    fn create(&mut self, beside: &Path, files: NewFiles) -> Result<(PathBuf, File), Error> {
        let name = beside.file_name().unwrap_or(beside.as_os_str());
        let mut attempt = 0u32;
        loop {
            let mut tmp = OsString::from(".");
            tmp.push(name);
            tmp.push(format!(".{}-{attempt}.cardsmith-part", std::process::id()));
            let path = beside.with_file_name(tmp);
            match OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(files.mode())
                .custom_flags(libc::O_CLOEXEC | libc::O_NOFOLLOW)
                .open(&path)
            {
                Ok(file) => {
                    self.paths.push(path.clone());
                    files.hand_over(&file, &path)?;
                    return Ok((path, file));
                }
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists && attempt < 64 => {
                    attempt += 1;
                }
                Err(e) if matches!(e.raw_os_error(), Some(libc::ENOSPC | libc::EDQUOT)) => {
                    return Err(output_error(beside, 0, e));
                }
                Err(source) => return Err(Error::Open { path, source }),
            }
        }
    }
}

impl Drop for Temps {
    fn drop(&mut self) {
        for path in &self.paths {
            let _ = fs::remove_file(path);
        }
    }
}

/// Renames `from` to `to`; without `force` never over an existing file, even one that
/// appeared while the device was read.
fn place(from: &Path, to: &Path, force: bool) -> Result<(), Error> {
    let err = |source| Error::Write {
        path: to.to_owned(),
        offset: 0,
        source,
    };
    if force {
        return fs::rename(from, to).map_err(err);
    }
    let c = |p: &Path| CString::new(p.as_os_str().as_bytes()).expect("paths hold no NUL");
    let (a, b) = (c(from), c(to));
    // SAFETY: renameat2(2) with valid NUL-terminated paths relative to the working directory.
    let r = unsafe {
        libc::renameat2(
            libc::AT_FDCWD,
            a.as_ptr(),
            libc::AT_FDCWD,
            b.as_ptr(),
            libc::RENAME_NOREPLACE,
        )
    };
    if r == 0 {
        return Ok(());
    }
    let e = io::Error::last_os_error();
    match e.raw_os_error() {
        Some(libc::EEXIST) => Err(Error::OutputExists {
            path: to.to_owned(),
        }),
        // Filesystems without RENAME_NOREPLACE: link(2) also refuses an existing name.
        Some(libc::EINVAL) | Some(libc::ENOSYS) => {
            fs::hard_link(from, to).map_err(|e| match e.kind() {
                io::ErrorKind::AlreadyExists => Error::OutputExists {
                    path: to.to_owned(),
                },
                _ => err(e),
            })?;
            let _ = fs::remove_file(from);
            Ok(())
        }
        _ => Err(err(e)),
    }
}

fn sync_dir(dir: &Path) {
    if let Ok(d) = File::open(dir) {
        let _ = d.sync_all();
    }
}

/// Whether `dir` is on a FAT filesystem (files stop at 4 GiB there).
fn on_fat(dir: &Path) -> bool {
    const MSDOS_SUPER_MAGIC: i64 = 0x4d44;
    let Ok(c) = CString::new(dir.as_os_str().as_bytes()) else {
        return false;
    };
    let mut st: libc::statfs = unsafe { std::mem::zeroed() };
    // SAFETY: statfs(2) fills the struct we own from a valid path.
    unsafe { libc::statfs(c.as_ptr(), &mut st) == 0 && st.f_type as i64 == MSDOS_SUPER_MAGIC }
}

pub(crate) fn free_space(dir: &Path) -> Option<u64> {
    let c = CString::new(dir.as_os_str().as_bytes()).ok()?;
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: statvfs(3) fills the struct we own from a valid path.
    if unsafe { libc::statvfs(c.as_ptr(), &mut st) } != 0 {
        return None;
    }
    Some(st.f_bavail as u64 * st.f_frsize as u64)
}

/// A writer that counts what reached the file.
struct Counting {
    file: File,
    written: u64,
}

impl Counting {
    fn new(file: File) -> Counting {
        Counting { file, written: 0 }
    }

    /// Writes `data`, leaving holes where whole 64 KiB blocks are zeros (a raw backup's
    /// unused space takes no room).
    fn write_sparse(&mut self, data: &[u8]) -> io::Result<()> {
        use std::io::{Seek, SeekFrom};
        const HOLE: usize = 64 << 10;
        for block in data.chunks(HOLE) {
            if block.len() == HOLE && block.iter().all(|&b| b == 0) {
                self.file.seek(SeekFrom::Current(HOLE as i64))?;
                self.written += HOLE as u64;
            } else {
                self.write_all(block)?;
            }
        }
        Ok(())
    }
}

impl Write for Counting {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.file.write(buf)?;
        self.written += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.file.flush()
    }
}

/// The output, through its encoder.
enum Sink {
    Raw(Counting),
    Zstd(zstd::stream::write::Encoder<'static, Counting>),
    Xz(XzSink),
    Gzip(flate2::write::GzEncoder<Counting>),
}

/// How long the xz encoder may block waiting for its threads before it returns to let a
/// cancel be seen.
const XZ_WAIT_MS: u32 = 100;

/// liblzma's multi-threaded encoder, driven here rather than through its `Write` wrapper:
/// that wrapper blocks until a whole block (24 MiB at preset 6) is compressed and, when
/// dropped, finishes the stream, so a Ctrl-C waited for every block in flight (9 s under
/// load). Here each call returns within [`XZ_WAIT_MS`], a cancel is checked between
/// calls, and dropping the stream abandons the threads' work.
struct XzSink {
    stream: liblzma::stream::Stream,
    out: Counting,
    buf: Vec<u8>,
}

impl XzSink {
    fn new(out: Counting, threads: u32) -> io::Result<XzSink> {
        // Multi-threaded xz writes many blocks with their sizes in their headers, so the
        // backup decodes in parallel later (as cardsmith write does).
        let stream = liblzma::stream::MtStreamBuilder::new()
            .threads(threads)
            .preset(6)
            .timeout_ms(XZ_WAIT_MS)
            .check(liblzma::stream::Check::Crc64)
            .encoder()
            .map_err(io::Error::other)?;
        Ok(XzSink {
            stream,
            out,
            buf: Vec::with_capacity(1 << 20),
        })
    }

    /// One call into liblzma: returns how much input it took and its status.
    fn step(
        &mut self,
        input: &[u8],
        action: liblzma::stream::Action,
        cancel: &CancelToken,
    ) -> io::Result<(usize, liblzma::stream::Status)> {
        if cancel.is_cancelled() {
            return Err(io::Error::new(io::ErrorKind::Interrupted, "cancelled"));
        }
        self.buf.clear();
        let before = self.stream.total_in();
        let status = self
            .stream
            .process_vec(input, &mut self.buf, action)
            .map_err(io::Error::from)?;
        if status == liblzma::stream::Status::MemNeeded {
            // No progress possible with the buffer given: a loop would spin.
            return Err(io::Error::other("the xz encoder made no progress"));
        }
        self.out.write_all(&self.buf)?;
        Ok(((self.stream.total_in() - before) as usize, status))
    }

    fn write_all(&mut self, mut data: &[u8], cancel: &CancelToken) -> io::Result<()> {
        while !data.is_empty() {
            let (took, _) = self.step(data, liblzma::stream::Action::Run, cancel)?;
            data = &data[took..];
        }
        Ok(())
    }

    fn finish(mut self, cancel: &CancelToken) -> io::Result<Counting> {
        loop {
            let (_, status) = self.step(&[], liblzma::stream::Action::Finish, cancel)?;
            if status == liblzma::stream::Status::StreamEnd {
                return Ok(self.out);
            }
        }
    }
}

impl Sink {
    fn new(format: OutputFormat, out: Counting, total: u64) -> io::Result<Sink> {
        let threads = std::thread::available_parallelism().map_or(1, |n| n.get()) as u32;
        Ok(match format {
            OutputFormat::Raw => Sink::Raw(out),
            OutputFormat::Zstd => {
                let mut enc = zstd::stream::write::Encoder::new(out, 3)?;
                enc.multithread(threads)?;
                enc.include_checksum(true)?;
                enc.set_pledged_src_size(Some(total))?;
                Sink::Zstd(enc)
            }
            OutputFormat::Xz => Sink::Xz(XzSink::new(out, threads)?),
            OutputFormat::Gzip => Sink::Gzip(flate2::write::GzEncoder::new(
                out,
                flate2::Compression::new(6),
            )),
        })
    }

    /// Feeds `data` to the encoder; a cancel stops a long wait on the encoder's threads.
    fn write_all(&mut self, data: &[u8], cancel: &CancelToken) -> io::Result<()> {
        match self {
            Sink::Raw(w) => w.write_sparse(data),
            Sink::Zstd(w) => w.write_all(data),
            Sink::Xz(w) => w.write_all(data, cancel),
            Sink::Gzip(w) => w.write_all(data),
        }
    }

    fn written(&self) -> u64 {
        match self {
            Sink::Raw(w) => w.written,
            Sink::Zstd(w) => w.get_ref().written,
            Sink::Xz(w) => w.out.written,
            Sink::Gzip(w) => w.get_ref().written,
        }
    }

    /// Ends the stream, flushes the file to the medium, returns its length.
    fn finish(self, cancel: &CancelToken) -> io::Result<u64> {
        let out = match self {
            Sink::Raw(w) => {
                // Zeros at the end were skipped: the file still has the image's length.
                w.file.set_len(w.written)?;
                w
            }
            Sink::Zstd(w) => w.finish()?,
            Sink::Xz(w) => w.finish(cancel)?,
            Sink::Gzip(w) => w.finish()?,
        };
        out.file.sync_all()?;
        Ok(out.written)
    }
}

/// An error from the output: a cancel noticed while waiting on the encoder, or I/O.
fn sink_error(cancel: &CancelToken, out: &Path, written: u64, e: io::Error) -> Error {
    if cancel.is_cancelled() {
        Error::Cancelled
    } else {
        output_error(out, written, e)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_extension_picks_the_format() {
        let f = |p: &str| OutputFormat::for_path(Path::new(p)).map_err(|e| e.to_string());
        assert_eq!(f("backup.img"), Ok(OutputFormat::Raw));
        assert_eq!(f("/x/backup.IMG.ZST"), Ok(OutputFormat::Zstd));
        assert_eq!(f("b.img.xz"), Ok(OutputFormat::Xz));
        assert_eq!(f("b.img.gz"), Ok(OutputFormat::Gzip));
        assert_eq!(f("card.bin"), Ok(OutputFormat::Raw));
        assert!(f("b.img.bz2").unwrap_err().contains(".img.zst"));
        assert!(f("b.zip").is_err());
    }

    #[test]
    fn checksum_lines_name_the_uncompressed_image() {
        let name = |p: &str, f| uncompressed_name(Path::new(p), f);
        assert_eq!(name("/a/b.img.zst", OutputFormat::Zstd), "b.img");
        assert_eq!(name("b.img", OutputFormat::Raw), "b.img");
        assert_eq!(name(".zst", OutputFormat::Zstd), ".zst");
        assert_eq!(
            sha256sum_line("ab", std::ffi::OsStr::new("b.img")),
            b"ab  b.img\n"
        );
        assert_eq!(
            sha256sum_line("ab", std::ffi::OsStr::new("a\\b\nc")),
            b"\\ab  a\\\\b\\nc\n"
        );
        let latin1 = std::ffi::OsStr::from_bytes(b"caf\xe9.img");
        assert_eq!(sha256sum_line("ab", latin1), b"ab  caf\xe9.img\n");
        assert_eq!(
            checksum_path(Path::new("x/b.img.xz")),
            Path::new("x/b.img.xz.sha256")
        );
    }

    /// Fails every read that covers the bad block at `at`, as a card with a bad sector does,
    /// naming the offset it was asked to read from (as the kernel's EIO does not say more).
    struct Failing<'a> {
        inner: &'a Target,
        at: u64,
    }

    impl Medium for Failing<'_> {
        fn read_at(&self, buf: &mut AlignedBuf, len: usize, offset: u64) -> Result<usize, Error> {
            if offset <= self.at && self.at < offset + len as u64 {
                return Err(Error::read(
                    self.inner.path().display().to_string(),
                    offset,
                    io::Error::from_raw_os_error(libc::EIO),
                ));
            }
            self.inner.read_at(buf, len, offset)
        }

        fn path(&self) -> &Path {
            self.inner.path()
        }
    }

    fn names(dir: &Path) -> Vec<String> {
        let mut names: Vec<String> = fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    }

    fn read_plain(card: &Target, out: &Path) -> Result<ReadReport, Error> {
        let options = ReadOptions::default();
        read(card, out, &options, &CancelToken::new(), &mut |_| {})
    }

    fn source(dir: &Path, len: usize) -> Target {
        let path = dir.join("card.bin");
        let data: Vec<u8> = (0..len).map(|i| (i * 7 % 251) as u8).collect();
        fs::write(&path, data).unwrap();
        Target::open_for_read(&path).unwrap()
    }

    #[test]
    fn a_read_error_names_the_offset_and_keeps_the_old_backup() {
        let dir = tempfile::tempdir().unwrap();
        let card = source(dir.path(), 3 * CHUNK);
        let out = dir.path().join("b.img.zst");
        fs::write(&out, b"old backup").unwrap();
        // The bad block is the second 4 KiB block of the second chunk: the error names it,
        // not the chunk's start.
        let failing = Failing {
            inner: &card,
            at: CHUNK as u64 + 4096,
        };
        let options = ReadOptions {
            force: true,
            allocated_only: false,
            used_only: false,
            rescue: false,
            owner: None,
        };
        let err = read_from(
            &card,
            &failing,
            &out,
            &options,
            &CancelToken::new(),
            &mut |_| {},
        )
        .unwrap_err();
        let text = err.to_string();
        assert!(
            text.contains(&format!("at byte {}", CHUNK + 4096)),
            "{text}"
        );
        assert!(text.contains("Input/output error"), "{text}");
        assert_eq!(fs::read(&out).unwrap(), b"old backup");
        assert_eq!(names(dir.path()), ["b.img.zst", "card.bin"]);
    }

    #[test]
    fn a_cancel_keeps_the_old_backup_and_leaves_no_file() {
        let dir = tempfile::tempdir().unwrap();
        // More chunks than the pool has buffers, so the reader cannot be done before the
        // first progress report cancels.
        let card = source(dir.path(), 16 * CHUNK);
        let out = dir.path().join("b.img.xz");
        fs::write(&out, b"old backup").unwrap();
        fs::write(checksum_path(&out), b"old sum").unwrap();
        let cancel = CancelToken::new();
        let mut seen = 0;
        let options = ReadOptions {
            force: true,
            allocated_only: false,
            used_only: false,
            rescue: false,
            owner: None,
        };
        let err = read(&card, &out, &options, &cancel, &mut |p| {
            seen = p.bytes_done;
            cancel.cancel();
        })
        .unwrap_err();
        assert!(matches!(err, Error::Cancelled), "{err}");
        assert!(seen > 0 && seen < 16 * CHUNK as u64, "{seen}");
        assert_eq!(
            names(dir.path()),
            ["b.img.xz", "b.img.xz.sha256", "card.bin"]
        );
        assert_eq!(fs::read(&out).unwrap(), b"old backup");
        assert_eq!(fs::read(checksum_path(&out)).unwrap(), b"old sum");

        // Replacing with --force: the new pair, and nothing aside left behind.
        read(&card, &out, &options, &CancelToken::new(), &mut |_| {}).unwrap();
        assert_eq!(
            names(dir.path()),
            ["b.img.xz", "b.img.xz.sha256", "card.bin"]
        );
        assert!(fs::read_to_string(checksum_path(&out))
            .unwrap()
            .ends_with("  b.img\n"));
    }

    #[test]
    fn each_format_holds_the_image_and_its_hash() {
        let dir = tempfile::tempdir().unwrap();
        let card = source(dir.path(), 2 * CHUNK + 512);
        let data = fs::read(card.path()).unwrap();
        let expected = to_hex(&Sha256::digest(&data));
        for name in ["b.img", "b.img.zst", "b.img.xz", "b.img.gz"] {
            let out = dir.path().join(name);
            let report = read_plain(&card, &out).unwrap();
            assert_eq!(report.sha256, expected, "{name}");
            assert_eq!(report.stored, fs::metadata(&out).unwrap().len(), "{name}");
            let image = crate::Image::open(&crate::Input::Path(out.clone()), crate::OpenAs::Detect)
                .unwrap();
            let hashed = crate::hash(
                image,
                crate::Algorithm::Sha256,
                &CancelToken::new(),
                &mut |_| {},
            )
            .unwrap();
            assert_eq!(hashed.hex, expected, "{name}");
            assert_eq!(
                fs::read_to_string(checksum_path(&out)).unwrap(),
                format!("{expected}  b.img\n"),
                "{name}"
            );
        }
        // Without force, neither the image nor a lone .sha256 is replaced.
        let out = dir.path().join("b.img.gz");
        let err = read_plain(&card, &out).unwrap_err();
        assert!(matches!(err, Error::OutputExists { .. }), "{err}");
        fs::remove_file(&out).unwrap();
        let err = read_plain(&card, &out).unwrap_err();
        assert!(
            err.to_string().contains("b.img.gz.sha256 already exists"),
            "{err}"
        );
    }
}
