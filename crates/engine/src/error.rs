//! The engine's error type: every variant says what failed, where, and what to do next.

use std::io;
use std::path::PathBuf;

use crate::format::Format;

/// Everything that can stop a write, a verify or a hash.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A file or device could not be opened.
    #[error("cannot open {path}: {source}")]
    Open {
        /// What was opened.
        path: PathBuf,
        /// Why not.
        source: io::Error,
    },

    /// Reading the image or a target failed.
    #[error("cannot read {what} at byte {offset}: {source}")]
    Read {
        /// What was read (a path or a URL).
        what: String,
        /// Where in it.
        offset: u64,
        /// Why it failed.
        source: io::Error,
    },

    /// Writing to the target failed (at the first sector that failed, when it could be
    /// pinned down).
    #[error("write failed at byte {offset} of {path}: {source}")]
    Write {
        /// The target.
        path: PathBuf,
        /// Where on it.
        offset: u64,
        /// Why it failed.
        source: io::Error,
    },

    /// Every request to the device fails, even for its first and last sectors: it was
    /// pulled out, or it or its reader failed.
    #[error(
        "the card stopped answering: {path} fails every request now (while {doing} at byte \
         {offset}: {source}). It was pulled out, or the card or its reader failed; try another \
         reader or card"
    )]
    StoppedAnswering {
        /// The device.
        path: PathBuf,
        /// "writing", "reading".
        doing: &'static str,
        /// Where the request that failed first was.
        offset: u64,
        /// Why it failed.
        source: io::Error,
    },

    /// A sector of the target could not be read back to verify it.
    #[error(
        "verification could not read byte {offset} of {path}: {source}. The card did not keep \
         what was written to it there (a failing card, or a bad reader or cable)"
    )]
    VerifyUnreadable {
        /// The target.
        path: PathBuf,
        /// The first sector that could not be read.
        offset: u64,
        /// Why not.
        source: io::Error,
    },

    /// The target did not take the data: flushing it failed.
    #[error(
        "{path} did not take what was written (flushing failed: {source}): the card may be \
         failing, or was pulled out. Try another card or reader"
    )]
    Flush {
        /// The target.
        path: PathBuf,
        /// Why flushing failed.
        source: io::Error,
    },

    /// A device request (an ioctl such as reading its size) failed.
    #[error("{what} on {path} failed: {source}")]
    Device {
        /// The request.
        what: &'static str,
        /// The device.
        path: PathBuf,
        /// Why it failed.
        source: io::Error,
    },

    /// The compressed data cannot be decoded.
    #[error(
        "the {format} data is corrupt or truncated: decoding failed at compressed byte \
         {compressed_offset} (image byte {image_offset}): {detail}. Download the image again."
    )]
    Corrupt {
        /// The container that failed to decode.
        format: Format,
        /// Compressed bytes read before the failure.
        compressed_offset: u64,
        /// Image bytes decoded before the failure.
        image_offset: u64,
        /// The decoder's own words.
        detail: String,
    },

    /// The image decodes to nothing.
    #[error("the image is empty: there is nothing to write")]
    EmptyImage,

    /// The image is larger than the target.
    #[error(
        "the image ({}{image}) does not fit on {path} ({target}); use a larger card",
        if *.exact { "" } else { "at least " },
        image = crate::units::bytes(*.image),
        target = crate::units::bytes(*.target)
    )]
    ImageTooLarge {
        /// The target.
        path: PathBuf,
        /// The image's size in bytes (or its lower bound).
        image: u64,
        /// Whether `image` is exact rather than a lower bound.
        exact: bool,
        /// The target's size in bytes.
        target: u64,
    },

    /// The image does not have the SHA-256 given.
    #[error(
        "SHA-256 mismatch: expected {expected}, but the image hashes to {decoded}{}; \
         nothing was written to the start of the target. Download the image again or check the checksum.",
        match .stored { Some(s) => format!(" (and the file as stored to {s})"), None => String::new() }
    )]
    ChecksumMismatch {
        /// The SHA-256 given (hex).
        expected: String,
        /// The decoded image's SHA-256 (hex).
        decoded: String,
        /// The SHA-256 of the file as stored, when it was computed too.
        stored: Option<String>,
    },

    /// The download or the image does not have the catalog's SHA-256.
    #[error(
        "SHA-256 of the {what} is {actual}, not {expected} as published; nothing was written \
         to the start of the target. The download is corrupt, or the catalog is wrong"
    )]
    PublishedChecksumMismatch {
        /// "download" or "image".
        what: &'static str,
        /// The published SHA-256 (hex).
        expected: String,
        /// The SHA-256 computed (hex).
        actual: String,
    },

    /// Reading the target back found other bytes than the image.
    #[error("verification failed: {path} differs from the image {detail}")]
    VerifyMismatch {
        /// The target.
        path: PathBuf,
        /// The first byte that differs, when it could be pinned down.
        offset: Option<u64>,
        /// Where and how they differ, in words.
        detail: String,
    },

    /// The target is write-protected.
    #[error("{path} is read-only: {hint}")]
    ReadOnly {
        /// The target.
        path: PathBuf,
        /// What to do about it.
        hint: &'static str,
    },

    /// The target may not be opened by this user.
    #[error("permission denied opening {path}: {hint}")]
    PermissionDenied {
        /// The target.
        path: PathBuf,
        /// What to do about it.
        hint: &'static str,
    },

    /// The device is mounted or held open by another program.
    #[error(
        "{path} is busy: one of its partitions is mounted or another program holds it open. \
         Unmount its partitions (for example with `udisksctl unmount -b PARTITION`) and try again"
    )]
    Busy {
        /// The device.
        path: PathBuf,
    },

    /// A target file holds data and `--force` was not given.
    #[error("{path} already exists and is not empty; pass --force to overwrite it")]
    TargetExists {
        /// The file.
        path: PathBuf,
    },

    /// A block device was named as a file target: devices are opened as drives, checked.
    #[error("{path} is a block device: it must be checked and opened as a drive first")]
    DeviceNotOpened {
        /// The device.
        path: PathBuf,
    },

    /// The target is something else (a directory, a socket…).
    #[error("{path} is neither a block device nor a regular file")]
    NotATarget {
        /// The path.
        path: PathBuf,
    },

    /// A backup was asked to go somewhere that is not a file.
    #[error(
        "{path} is {kind}, not a backup file: a backup goes into a file (and its .sha256 beside \
         it); choose a file path, such as ~/card-backup.img.zst"
    )]
    OutputNotAFile {
        /// The path given.
        path: PathBuf,
        /// What it is ("a block device", "a directory").
        kind: &'static str,
    },

    /// The target holds the image being written.
    #[error("the image {source_desc} is stored on {target}: writing would destroy the image while it is read")]
    SameStorage {
        /// The image, as named.
        source_desc: String,
        /// The target holding it.
        target: PathBuf,
    },

    /// The zip archive holds no single image.
    #[error(
        "the zip archive holds no single image; it contains: {}. Extract the one you want and write that",
        .entries.join(", ")
    )]
    ZipAmbiguous {
        /// The archive's files.
        entries: Vec<String>,
    },

    /// The zip archive cannot be read (the reader's words).
    #[error("the zip archive is corrupt or truncated ({0}); download it again")]
    ZipInvalid(String),

    /// A zip archive arrived as a stream; its directory is at its end.
    #[error("a zip archive cannot be streamed from {source_desc}; save it to a file first")]
    ZipStreamed {
        /// Where it came from.
        source_desc: String,
    },

    /// Standard input was named as the image but is a terminal.
    #[error("standard input is a terminal; pipe an image into cardsmith or name an image file")]
    StdinIsTerminal,

    /// `--allocated-only` on a device without a usable partition table.
    #[error("{path}: --allocated-only needs a partition table, but {detail}. Read the whole device without --allocated-only")]
    NoPartitionTable {
        /// The device.
        path: PathBuf,
        /// What is wrong with its table.
        detail: String,
    },

    /// A block map (`.bmap`) that cannot be used: what is wrong with it.
    #[error("the block map {what} cannot be used: {detail}")]
    Bmap {
        /// The map's file or URL.
        what: String,
        /// What is wrong, naming the element.
        detail: String,
    },

    /// A backup's output file exists and `--force` was not given.
    #[error("{path} already exists; pass --force to replace it (it stays as it is until the new image is complete)")]
    OutputExists {
        /// The file.
        path: PathBuf,
    },

    /// The output's name asks for a format that cannot be written.
    #[error("{path}: {detail}")]
    OutputFormat {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        detail: String,
    },

    /// The output would not fit where it goes.
    #[error(
        "not enough space for {path}: the image needs {needed}, the disk holding it has {free} free. \
         Choose another place, or a compressed format (.img.zst, .img.xz)",
        needed = crate::units::bytes(*.needed),
        free = crate::units::bytes(*.free)
    )]
    NoSpace {
        /// The file to be written.
        path: PathBuf,
        /// Bytes it needs.
        needed: u64,
        /// Bytes free where it goes.
        free: u64,
    },

    /// The disk filled up while the output was written.
    #[error(
        "the disk holding {path} is full: it filled up after {written} of the image had been \
         written. Nothing was kept; free some space or choose another place",
        written = crate::units::bytes(*.written)
    )]
    OutputFull {
        /// The file.
        path: PathBuf,
        /// Image bytes written before the disk filled.
        written: u64,
    },

    /// The output is too large for the filesystem it goes on.
    #[error(
        "{path}: the filesystem there cannot hold a file this large (FAT32 stops at 4 GiB); \
         choose a compressed format (.img.zst) or a disk formatted with ext4, exFAT or NTFS"
    )]
    FileTooLarge {
        /// The file.
        path: PathBuf,
    },

    /// The [`CancelToken`](crate::CancelToken) fired.
    #[error("cancelled (Ctrl-C, or Cancel in the window)")]
    Cancelled,
}

impl Error {
    /// A failed read of `what` at `offset`.
    pub fn read(what: impl Into<String>, offset: u64, source: io::Error) -> Error {
        Error::Read {
            what: what.into(),
            offset,
            source,
        }
    }
}
