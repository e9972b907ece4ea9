//! cardsmith-engine puts disk images onto block devices and files, and checks them.
//!
//! The write path has four roles:
//!
//! ```text
//!   Image ──> decoder thread ──> writer (caller's thread) ──> Target
//!   (file or stdin,  (xz/gz/bz2/zst/zip,   │  first chunk held back      (block device with
//!    format from      pooled 4 MiB         │  until the SHA-256 matched)   O_DIRECT|O_EXCL,
//!    magic bytes)     aligned buffers)     └──> hasher thread (SHA-256)     or a file)
//! ```
//!
//! [`Image`] opens a source and finds its format and, where the container records it, its
//! decoded size. [`Target`] opens a device or file. [`write()`] zeroes the first and last MiB of
//! a device, streams the image through a fixed pool of buffers (memory does not grow with the
//! image), writes the first chunk last, flushes, and reads everything back with O_DIRECT to
//! compare per-chunk hashes. [`verify`] compares an image with a target byte for byte, and
//! [`hash`] hashes an image as `sha256sum` would hash it decompressed.
//!
//! Used blocks only: [`usage_of`] works out which bytes of a disk its filesystems use
//! (partition tables, ext2/3/4 bitmaps, FAT tables, swap headers; anything else whole), a
//! [`Bmap`] is bmaptool's block map of them (read in formats 1.x and 2.0, written in 2.0),
//! and with [`WriteOptions::map`] (or `map_as_it_streams`, which works the map out from
//! the metadata as the image streams past) a write moves and reads back only those
//! blocks; [`read()`] with `used_only` reads only them and writes the map beside the
//! backup; [`verify_blocks`] compares only them.
//!
//! Every job reports [`Progress`] through a callback and stops at the next chunk when its
//! [`CancelToken`] fires. On failure a device is left with its first MiB zeroed, so a
//! half-written card never boots.
//!
//! The engine does not find drives, decide which are safe to erase, prompt, or print: it is
//! handed an opened target and leaves policy to its callers.

#![warn(missing_docs)]

mod bmap;
mod buffer;
mod check;
mod error;
mod format;
mod hash;
mod image;
mod layout;
mod owners;
mod pipeline;
mod progress;
mod read;
mod scratch;
mod size;
mod target;
pub mod units;
mod usage;
mod verify;
mod write;

pub use bmap::{Bmap, BmapRange, RangeChecksum, BMAP_BLOCK};
pub use check::{check, CheckReport};
pub use error::Error;
pub use format::Format;
pub use hash::{hash, parse_sha256, to_hex, Algorithm, HashReport};
pub use image::{FileIdentity, Image, Input, OpenAs};
pub use layout::{last_partition, shrink_last_partition, Allocated, LastPartition, TableKind};
pub use owners::{held_in_bytes, held_in_file, Held};
pub use pipeline::CHUNK;
pub use progress::{CancelToken, Phase, Progress};
pub use read::{
    bmap_path, check_replaceable, checksum_path, read, OutputFormat, ReadOptions, ReadReport,
};
pub use scratch::{unpack, Unpacked};
pub use size::{ImageSize, SizeKind};
pub use target::{make_private, set_direct, Leftover, NewFiles, Target, TargetKind, SCRUB_LEN};
pub use usage::{usage_of, usage_of_file, Filesystem, PartUsage, Usage};
pub use verify::{verify, verify_blocks, Blocks as VerifyBlocks, VerifyReport};
pub use write::{write, write_many, ChecksumMatch, Step, WriteOptions, WriteReport};
