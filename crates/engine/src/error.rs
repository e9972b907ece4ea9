//! The engine's error type: every variant says what failed, where, and what to do next.

use std::io;
use std::path::PathBuf;

use crate::format::Format;

/// Everything that can stop a write, a verify or a hash.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot open {path}: {source}")]
    Open { path: PathBuf, source: io::Error },

    #[error("cannot read {what} at byte {offset}: {source}")]
    Read {
        what: String,
        offset: u64,
        source: io::Error,
    },

    #[error("cannot write to {path} at byte {offset}: {source}")]
    Write {
        path: PathBuf,
        offset: u64,
        source: io::Error,
    },

    #[error(
        "{path} did not take what was written (flushing failed: {source}): the card may be \
         failing, or was pulled out. Try another card or reader"
    )]
    Flush { path: PathBuf, source: io::Error },

    #[error("{what} on {path} failed: {source}")]
    Device {
        what: &'static str,
        path: PathBuf,
        source: io::Error,
    },

    #[error(
        "the {format} data is corrupt or truncated: decoding failed at compressed byte \
         {compressed_offset} (image byte {image_offset}): {detail}. Download the image again."
    )]
    Corrupt {
        format: Format,
        compressed_offset: u64,
        image_offset: u64,
        detail: String,
    },

    #[error("the image is empty: there is nothing to write")]
    EmptyImage,

    #[error(
        "the image ({}{image}) does not fit on {path} ({target}); use a larger card",
        if *.exact { "" } else { "at least " },
        image = crate::units::bytes(*.image),
        target = crate::units::bytes(*.target)
    )]
    ImageTooLarge {
        path: PathBuf,
        image: u64,
        exact: bool,
        target: u64,
    },

    #[error(
        "SHA-256 mismatch: expected {expected}, but the image hashes to {decoded}{}; \
         nothing was written to the start of the target. Download the image again or check the checksum.",
        match .stored { Some(s) => format!(" (and the file as stored to {s})"), None => String::new() }
    )]
    ChecksumMismatch {
        expected: String,
        decoded: String,
        stored: Option<String>,
    },

    #[error(
        "SHA-256 of the {what} is {actual}, not {expected} as published; nothing was written \
         to the start of the target. The download is corrupt, or the catalog is wrong"
    )]
    PublishedChecksumMismatch {
        what: &'static str,
        expected: String,
        actual: String,
    },

    #[error("verification failed: {path} differs from the image {detail}")]
    VerifyMismatch {
        path: PathBuf,
        /// The first byte that differs, when it could be pinned down.
        offset: Option<u64>,
        detail: String,
    },

    #[error("{path} is read-only: {hint}")]
    ReadOnly { path: PathBuf, hint: &'static str },

    #[error("permission denied opening {path}: {hint}")]
    PermissionDenied { path: PathBuf, hint: &'static str },

    #[error(
        "{path} is busy: one of its partitions is mounted or another program holds it open. \
         Unmount its partitions (for example with `udisksctl unmount -b PARTITION`) and try again"
    )]
    Busy { path: PathBuf },

    #[error("{path} already exists and is not empty; pass --force to overwrite it")]
    TargetExists { path: PathBuf },

    #[error("{path} is a block device: it must be checked and opened as a drive first")]
    DeviceNotOpened { path: PathBuf },

    #[error("{path} is neither a block device nor a regular file")]
    NotATarget { path: PathBuf },

    #[error(
        "{path} is {kind}, not a backup file: a backup goes into a file (and its .sha256 beside \
         it); choose a file path, such as ~/card-backup.img.zst"
    )]
    OutputNotAFile { path: PathBuf, kind: &'static str },

    #[error("the image {source_desc} is stored on {target}: writing would destroy the image while it is read")]
    SameStorage {
        source_desc: String,
        target: PathBuf,
    },

    #[error(
        "the zip archive holds no single image; it contains: {}. Extract the one you want and write that",
        .entries.join(", ")
    )]
    ZipAmbiguous { entries: Vec<String> },

    #[error("the zip archive is corrupt or truncated ({0}); download it again")]
    ZipInvalid(String),

    #[error("a zip archive cannot be streamed from {source_desc}; save it to a file first")]
    ZipStreamed { source_desc: String },

    #[error("standard input is a terminal; pipe an image into cardsmith or name an image file")]
    StdinIsTerminal,

    #[error("{path}: --allocated-only needs a partition table, but {detail}. Read the whole device without --allocated-only")]
    NoPartitionTable { path: PathBuf, detail: String },

    #[error("{path} already exists; pass --force to replace it (it stays as it is until the new image is complete)")]
    OutputExists { path: PathBuf },

    #[error("{path}: {detail}")]
    OutputFormat { path: PathBuf, detail: String },

    #[error(
        "not enough space for {path}: the image needs {needed}, the disk holding it has {free} free. \
         Choose another place, or a compressed format (.img.zst, .img.xz)",
        needed = crate::units::bytes(*.needed),
        free = crate::units::bytes(*.free)
    )]
    NoSpace {
        path: PathBuf,
        needed: u64,
        free: u64,
    },

    #[error(
        "the disk holding {path} is full: it filled up after {written} of the image had been \
         written. Nothing was kept; free some space or choose another place",
        written = crate::units::bytes(*.written)
    )]
    OutputFull { path: PathBuf, written: u64 },

    #[error(
        "{path}: the filesystem there cannot hold a file this large (FAT32 stops at 4 GiB); \
         choose a compressed format (.img.zst) or a disk formatted with ext4, exFAT or NTFS"
    )]
    FileTooLarge { path: PathBuf },

    #[error("cancelled (Ctrl-C, or Cancel in the window)")]
    Cancelled,
}

impl Error {
    pub fn read(what: impl Into<String>, offset: u64, source: io::Error) -> Error {
        Error::Read {
            what: what.into(),
            offset,
            source,
        }
    }
}
