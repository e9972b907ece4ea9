//! The sink side of the pipeline: a block device or a regular file, opened so that nothing
//! else writes to it while we do (O_EXCL), and so that reads come from the medium, not the
//! page cache (O_DIRECT).

use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::fs::{FileExt, FileTypeExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};

use crate::buffer::{round_up, AlignedBuf, ALIGN};
use crate::image::FileIdentity;
use crate::Error;

/// The first and last MiB are zeroed before writing, so a card whose write stops half-way
/// holds no partition table (and no backup GPT) and does not boot.
pub const SCRUB_LEN: u64 = 1 << 20;

/// The first, coarse step in which a failed request is tried again, before single blocks.
const PIN_STEP: usize = 64 << 10;

/// What trying a failed request again in smaller steps found.
enum Narrowed {
    /// Every step went through this time.
    Through,
    /// The device ended this many bytes into the request.
    Short(usize),
    /// The block this many bytes into the request fails, and why.
    Failed(usize, io::Error),
}

/// Linux block-device ioctls (from <linux/fs.h>).
mod ioctl {
    pub const BLKROGET: libc::c_ulong = 0x125E;
    pub const BLKRRPART: libc::c_ulong = 0x125F;
    pub const BLKGETSIZE64: libc::c_ulong = 0x8008_1272;
    pub const BLKSSZGET: libc::c_ulong = 0x1268;
    /// _IO(0x12, 119): discard a byte range (u64 start, u64 length).
    pub const BLKDISCARD: libc::c_ulong = 0x1277;
}

/// What kind of thing is being written to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TargetKind {
    /// A card, a USB drive, a loop device.
    BlockDevice,
    /// An image file.
    File,
}

/// An opened target.
#[derive(Debug)]
pub struct Target {
    path: PathBuf,
    file: File,
    kind: TargetKind,
    size: Option<u64>,
    direct: bool,
    created: bool,
    meta: fs::Metadata,
    /// Whether [`Target::prepare`] ran: from then on a failure scrubs the target.
    touched: AtomicBool,
    /// Whether nothing on it can pass for an image: a device's first MiB known to be zero,
    /// a file emptied or removed. A write into the first MiB clears it; a zeroing sets it.
    clean: AtomicBool,
}

/// Who the files cardsmith creates (image files, backups) belong to, and who may read them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct NewFiles {
    /// Readable and writable by the owner only (0600): the file holds secrets (password
    /// hashes, Wi-Fi keys, a card's own /etc/shadow).
    pub private: bool,
    /// Hand new files to this user and group (uid, gid): the person who ran cardsmith
    /// through sudo, so the backup in their home folder is theirs.
    pub owner: Option<(u32, u32)>,
}

impl NewFiles {
    /// The permissions a new file is created with (the umask still applies).
    pub(crate) fn mode(&self) -> u32 {
        if self.private {
            0o600
        } else {
            0o666
        }
    }

    /// Gives a newly created file to [`NewFiles::owner`], if one is set.
    pub(crate) fn hand_over(&self, file: &File, path: &Path) -> Result<(), Error> {
        let Some((uid, gid)) = self.owner else {
            return Ok(());
        };
        std::os::unix::fs::fchown(file, Some(uid), Some(gid)).map_err(|source| Error::Write {
            path: path.to_owned(),
            offset: 0,
            source,
        })
    }
}

/// Takes every permission away from group and others (a file about to hold secrets);
/// returns the mode it had when that changed anything.
pub fn make_private(file: &File, path: &Path) -> Result<Option<u32>, Error> {
    use std::os::unix::fs::PermissionsExt;
    let err = |source| Error::Write {
        path: path.to_owned(),
        offset: 0,
        source,
    };
    let mode = file.metadata().map_err(err)?.permissions().mode() & 0o7777;
    if mode & 0o077 == 0 {
        return Ok(None);
    }
    file.set_permissions(fs::Permissions::from_mode(mode & 0o7700))
        .map_err(err)?;
    Ok(Some(mode))
}

/// What a failed or cancelled write left on its target (see
/// [`Target::scrub_after_failure`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Leftover {
    /// Refused before anything was written: the target is as it was.
    Untouched,
    /// A device: its first MiB zeroed, so it boots nothing half-written.
    FirstMibZeroed,
    /// A file cardsmith created: removed.
    FileRemoved,
    /// A file cardsmith was told to overwrite: emptied.
    FileEmptied,
    /// Cleaning up failed too (a card pulled out, a write error in the first MiB): it may
    /// hold part of the image.
    PartlyWritten,
}

/// Switches O_DIRECT on or off for an open file (the flag belongs to the open file, so it
/// changes for every descriptor duplicated from it).
pub fn set_direct(file: &File, on: bool) -> io::Result<()> {
    let fd = file.as_raw_fd();
    // SAFETY: fcntl on a file descriptor we own, with integer arguments only.
    let flags = unsafe { libc::fcntl(fd, libc::F_GETFL) };
    if flags < 0 {
        return Err(io::Error::last_os_error());
    }
    let flags = if on {
        flags | libc::O_DIRECT
    } else {
        flags & !libc::O_DIRECT
    };
    // SAFETY: as above.
    if unsafe { libc::fcntl(fd, libc::F_SETFL, flags) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

fn device_size(file: &File) -> io::Result<u64> {
    let mut size: u64 = 0;
    // SAFETY: BLKGETSIZE64 writes one u64 through the pointer.
    if unsafe { libc::ioctl(file.as_raw_fd(), ioctl::BLKGETSIZE64, &mut size) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(size)
}

fn device_read_only(file: &File) -> io::Result<bool> {
    let mut ro: libc::c_int = 0;
    // SAFETY: BLKROGET writes one int through the pointer.
    if unsafe { libc::ioctl(file.as_raw_fd(), ioctl::BLKROGET, &mut ro) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(ro != 0)
}

/// What to tell a person when a device or a file cannot be opened for lack of rights, or
/// because it is read-only.
struct Hints {
    denied: &'static str,
    read_only: &'static str,
}

const DEVICE_READ_ONLY: &str =
    "the device is write-protected (the card's lock switch, or a read-only loop device)";

const FILE: Hints = Hints {
    denied: "you may not write there; choose a place you own",
    read_only: "its filesystem is mounted read-only; choose another place",
};

const READ: Hints = Hints {
    denied: "reading a disk needs root: run cardsmith as root (for example with sudo)",
    read_only: "",
};

/// Turns an open(2) failure into the error a person can act on.
fn open_error(path: &Path, e: io::Error, hints: &Hints) -> Error {
    let path = path.to_owned();
    match e.raw_os_error() {
        Some(libc::EACCES) | Some(libc::EPERM) => Error::PermissionDenied {
            path,
            hint: hints.denied,
        },
        Some(libc::EBUSY) => Error::Busy { path },
        Some(libc::EROFS) => Error::ReadOnly {
            path,
            hint: hints.read_only,
        },
        _ => Error::Open { path, source: e },
    }
}

impl Target {
    /// Opens a regular file to write an image into: created, or, when it exists and is not
    /// empty, overwritten only with `force`. A block device is refused: it must be checked
    /// and opened by the caller (see [`Target::from_device`]). `files` says who a new file
    /// belongs to and whether it is private (an existing file is left as it is: see
    /// [`make_private`]).
    pub fn open_for_write(path: &Path, force: bool, files: NewFiles) -> Result<Target, Error> {
        match fs::metadata(path) {
            Ok(meta) if meta.file_type().is_block_device() => Err(Error::DeviceNotOpened {
                path: path.to_owned(),
            }),
            Ok(meta) if meta.is_file() => {
                if meta.len() > 0 && !force {
                    return Err(Error::TargetExists {
                        path: path.to_owned(),
                    });
                }
                let file = OpenOptions::new()
                    .read(true)
                    .write(true)
                    .custom_flags(libc::O_CLOEXEC)
                    .open(path)
                    .map_err(|e| open_error(path, e, &FILE))?;
                Self::file_target(path, file, false)
            }
            Ok(_) => Err(Error::NotATarget {
                path: path.to_owned(),
            }),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                let file = OpenOptions::new()
                    .read(true)
                    .write(true)
                    .create_new(true)
                    .mode(files.mode())
                    .custom_flags(libc::O_CLOEXEC)
                    .open(path)
                    .map_err(|e| open_error(path, e, &FILE))?;
                let target = Self::file_target(path, file, true)?;
                if let Err(e) = files.hand_over(&target.file, path) {
                    target.abandon();
                    return Err(e);
                }
                Ok(target)
            }
            Err(e) => Err(open_error(path, e, &FILE)),
        }
    }

    /// Wraps a block device that the caller opened read-write, exclusively (O_EXCL) and
    /// after checking it is safe to erase (cardsmith-drives does both). Refuses a
    /// write-protected device.
    pub fn from_device(path: &Path, file: File) -> Result<Target, Error> {
        let device_err = |what| {
            move |source| Error::Device {
                what,
                path: path.to_owned(),
                source,
            }
        };
        if device_read_only(&file).map_err(device_err("checking write protection"))? {
            return Err(Error::ReadOnly {
                path: path.to_owned(),
                hint: DEVICE_READ_ONLY,
            });
        }
        Self::device(path, file)
    }

    /// A block device target: its size, and O_DIRECT switched on.
    fn device(path: &Path, file: File) -> Result<Target, Error> {
        let device_err = |what| {
            move |source| Error::Device {
                what,
                path: path.to_owned(),
                source,
            }
        };
        let size = device_size(&file).map_err(device_err("reading the device size"))?;
        let meta = file.metadata().map_err(device_err("reading metadata"))?;
        let direct = set_direct(&file, true).is_ok();
        Ok(Target {
            path: path.to_owned(),
            file,
            kind: TargetKind::BlockDevice,
            size: Some(size),
            direct,
            created: false,
            meta,
            touched: AtomicBool::new(false),
            clean: AtomicBool::new(false),
        })
    }

    /// Wraps a block device that the caller opened read-only to make a backup of it
    /// (cardsmith-drives opens it exclusively when nothing on it is mounted).
    pub fn reading_device(path: &Path, file: File) -> Result<Target, Error> {
        let target = Self::device(path, file)?;
        target.drop_cache();
        Ok(target)
    }

    /// Treats the device as holding only its first `real` bytes (what a capacity check
    /// found a counterfeit card keeps): nothing is written past them.
    pub fn limit_to(&mut self, real: u64) {
        self.size = self.size.map(|size| size.min(real));
    }

    /// The logical sector size partition tables count in: the device's, or 512 for a file.
    pub fn sector_size(&self) -> u64 {
        if self.kind == TargetKind::File {
            return 512;
        }
        let mut size: libc::c_int = 0;
        // SAFETY: BLKSSZGET writes one int through the pointer.
        match unsafe { libc::ioctl(self.file.as_raw_fd(), ioctl::BLKSSZGET, &mut size) } {
            0 if size >= 512 => size as u64,
            _ => 512,
        }
    }

    fn file_target(path: &Path, file: File, created: bool) -> Result<Target, Error> {
        let meta = file.metadata().map_err(|source| Error::Open {
            path: path.to_owned(),
            source,
        })?;
        // What was opened, not what the path looked like a moment before: a path swapped
        // for a link to a device in between is still not a file to write into.
        if meta.file_type().is_block_device() {
            return Err(Error::DeviceNotOpened {
                path: path.to_owned(),
            });
        }
        if !meta.is_file() {
            return Err(Error::NotATarget {
                path: path.to_owned(),
            });
        }
        // Some filesystems (tmpfs) refuse O_DIRECT; those files are written through the cache
        // and have it dropped before they are read back.
        let direct = set_direct(&file, true).is_ok();
        Ok(Target {
            path: path.to_owned(),
            file,
            kind: TargetKind::File,
            size: None,
            direct,
            created,
            meta,
            touched: AtomicBool::new(false),
            clean: AtomicBool::new(false),
        })
    }

    /// Opens a target to read it back (for `verify`); nothing is locked or changed.
    pub fn open_for_read(path: &Path) -> Result<Target, Error> {
        let file = File::open(path).map_err(|e| open_error(path, e, &READ))?;
        let meta = file.metadata().map_err(|source| Error::Open {
            path: path.to_owned(),
            source,
        })?;
        let (kind, size) = if meta.file_type().is_block_device() {
            let size = device_size(&file).map_err(|source| Error::Device {
                what: "reading the device size",
                path: path.to_owned(),
                source,
            })?;
            (TargetKind::BlockDevice, size)
        } else if meta.is_file() {
            (TargetKind::File, meta.len())
        } else {
            return Err(Error::NotATarget {
                path: path.to_owned(),
            });
        };
        let direct = set_direct(&file, true).is_ok();
        let target = Target {
            path: path.to_owned(),
            file,
            kind,
            size: Some(size),
            direct,
            created: false,
            meta,
            touched: AtomicBool::new(false),
            clean: AtomicBool::new(false),
        };
        target.drop_cache();
        Ok(target)
    }

    /// Where the target is.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The open file, for editing what was written (the boot partition) afterwards.
    pub fn file(&self) -> &File {
        &self.file
    }

    /// A device or a file.
    pub fn kind(&self) -> TargetKind {
        self.kind
    }

    /// The capacity of a block device, or the length of a file opened for reading; `None` for
    /// a file being written (it grows as needed).
    pub fn size(&self) -> Option<u64> {
        self.size
    }

    /// Whether reads bypass the page cache (O_DIRECT) rather than rely on dropping it.
    pub fn reads_bypass_cache(&self) -> bool {
        self.direct
    }

    /// Refuses a source that lives on this target: the same file, the device itself, a file
    /// on one of its partitions, or the backing file of a loop device.
    pub fn check_not_source(
        &self,
        source: Option<FileIdentity>,
        describe: &str,
    ) -> Result<(), Error> {
        let Some(id) = source else { return Ok(()) };
        let same = match self.kind {
            TargetKind::File => id.dev == self.meta.dev() && id.ino == self.meta.ino(),
            TargetKind::BlockDevice => {
                let rdev = self.meta.rdev();
                id.rdev == Some(rdev) || on_device(id.dev, rdev) || backs_loop(rdev, id)
            }
        };
        if same {
            return Err(Error::SameStorage {
                source_desc: describe.to_owned(),
                target: self.path.clone(),
            });
        }
        Ok(())
    }

    /// Clears what could make a half-written target look valid: the first and last MiB of a
    /// device (partition tables, a backup GPT), the old contents of a file.
    pub fn prepare(&self) -> Result<(), Error> {
        self.touched.store(true, Ordering::SeqCst);
        match (self.kind, self.size) {
            (TargetKind::BlockDevice, Some(size)) => {
                let len = SCRUB_LEN.min(size);
                self.zero(0, len)?;
                self.zero(size - len, len)?;
                // On the medium, not in a cache: a card that refuses every write from here
                // on still starts with these zeros.
                self.sync()
            }
            _ => self.empty(),
        }
    }

    /// Zeroes `len` bytes at `offset`; the first MiB zeroed makes the target clean.
    fn zero(&self, offset: u64, len: u64) -> Result<(), Error> {
        let zeros = AlignedBuf::new(len as usize);
        self.write_raw(&zeros[..len as usize], offset)?;
        if offset == 0 && len >= SCRUB_LEN.min(self.size.unwrap_or(0)) {
            self.clean.store(true, Ordering::SeqCst);
        }
        Ok(())
    }

    /// Something is about to be written to the start of the target other than through
    /// [`Target::write_at`] (formatting through [`Target::file`]): it no longer counts as
    /// zeroed there.
    pub fn start_written_elsewhere(&self) {
        self.clean.store(false, Ordering::SeqCst);
    }

    /// Tells a card that bytes `offset..offset + len` hold nothing (BLKDISCARD), so its
    /// controller may erase them ahead of the next write. `Ok(false)`: the device (or a
    /// file target) does not take discards; nothing happened.
    pub(crate) fn discard(&self, offset: u64, len: u64) -> Result<bool, Error> {
        if self.kind != TargetKind::BlockDevice || len == 0 {
            return Ok(false);
        }
        let range: [u64; 2] = [offset, len];
        // SAFETY: BLKDISCARD reads two u64 through the pointer, which lives for the call.
        let done = unsafe { libc::ioctl(self.file.as_raw_fd(), ioctl::BLKDISCARD, &range) };
        if done == 0 {
            return Ok(true);
        }
        let e = io::Error::last_os_error();
        match e.raw_os_error() {
            Some(libc::EOPNOTSUPP) | Some(libc::ENOTTY) | Some(libc::EINVAL) => Ok(false),
            _ => Err(Error::Write {
                path: self.path.clone(),
                offset,
                source: e,
            }),
        }
    }

    /// A file target at least `len` bytes long (a write that skipped the image's unused
    /// tail leaves it shorter): the rest reads as zeros and takes no space.
    pub(crate) fn ensure_len(&self, len: u64) -> Result<(), Error> {
        if self.kind != TargetKind::File {
            return Ok(());
        }
        let now = self.file.metadata().map(|m| m.len()).unwrap_or(0);
        if now < len {
            self.file.set_len(len).map_err(|source| Error::Write {
                path: self.path.clone(),
                offset: now,
                source,
            })?;
        }
        Ok(())
    }

    /// Truncates a file target to nothing.
    fn empty(&self) -> Result<(), Error> {
        self.file.set_len(0).map_err(|source| Error::Write {
            path: self.path.clone(),
            offset: 0,
            source,
        })?;
        self.clean.store(true, Ordering::SeqCst);
        Ok(())
    }

    /// Writes `data`, whose start is [`ALIGN`]-aligned, at `offset`. A tail shorter than an
    /// alignment unit (only at the image's end) goes through the cache.
    pub(crate) fn write_at(&self, data: &[u8], offset: u64) -> Result<(), Error> {
        if offset < SCRUB_LEN {
            self.clean.store(false, Ordering::SeqCst);
        }
        match self.write_raw(data, offset) {
            Err(Error::Write { source, .. }) if self.kind == TargetKind::BlockDevice => {
                self.pin_write(data, offset, source)
            }
            done => done,
        }
    }

    /// After a failed write of `data` at `offset`: writes it again in smaller and smaller
    /// steps to name the first block that fails (a bad sector), or finds that the card no
    /// longer answers at all. `Ok` when every step went through this time.
    fn pin_write(&self, data: &[u8], offset: u64, first: io::Error) -> Result<(), Error> {
        let narrowed = self.narrow(0, data.len(), first, |at, n| {
            match self.write_raw(&data[at..at + n], offset + at as u64) {
                Ok(()) => Ok(n),
                Err(Error::Write { source, .. }) => Err(source),
                Err(e) => Err(io::Error::other(e.to_string())),
            }
        });
        match narrowed {
            Narrowed::Through | Narrowed::Short(_) => Ok(()),
            Narrowed::Failed(at, source) => {
                let at = offset + at as u64;
                Err(self
                    .gone("writing", at, source)
                    .unwrap_or_else(|source| Error::Write {
                        path: self.path.clone(),
                        offset: at,
                        source,
                    }))
            }
        }
    }

    /// Tries bytes `start..end` of a failed request again in 64 KiB steps, then in blocks
    /// within the step that fails: few requests either way, however far into a 4 MiB
    /// chunk the bad sector is. `attempt(at, n)` makes one request and says how many bytes
    /// it got through (fewer only at the end of the device).
    fn narrow(
        &self,
        mut start: usize,
        mut end: usize,
        first: io::Error,
        mut attempt: impl FnMut(usize, usize) -> io::Result<usize>,
    ) -> Narrowed {
        let block = self.finest_step();
        for step in [PIN_STEP, block] {
            let mut at = start;
            while at < end {
                let n = (end - at).min(step);
                match attempt(at, n) {
                    Ok(done) if done < n => return Narrowed::Short(at + done),
                    Ok(_) => at += n,
                    Err(source) if step == block => return Narrowed::Failed(at, source),
                    Err(_) => break,
                }
            }
            if at >= end {
                return Narrowed::Through;
            }
            (start, end) = (at, (at + step).min(end));
        }
        Narrowed::Failed(start, first)
    }

    /// The smallest request a failing one is tried again in: a 4 KiB block (or the
    /// device's sector, when larger). Smaller O_DIRECT requests are not always passed on
    /// as they are (a FUSE-backed loop device buffers them), so a bad 512-byte sector is
    /// named by the 4 KiB block that holds it.
    fn finest_step(&self) -> usize {
        (self.sector_size() as usize).max(ALIGN)
    }

    /// After a request at `offset` failed with `source`: whether the card still answers
    /// at all (its first or last sector reads). `Ok(StoppedAnswering)` when it does not
    /// (pulled out, its reader failed); `Err(source)` back when it does.
    fn gone(
        &self,
        doing: &'static str,
        offset: u64,
        source: io::Error,
    ) -> Result<Error, io::Error> {
        let mut probe = AlignedBuf::new(ALIGN);
        let sector = self.sector_size();
        let last = self.size.unwrap_or(0).saturating_sub(sector) / sector * sector;
        let answers = [0, last]
            .iter()
            .any(|&at| self.file.read_at(&mut probe[..sector as usize], at).is_ok());
        if answers {
            return Err(source);
        }
        Ok(Error::StoppedAnswering {
            path: self.path.clone(),
            doing,
            offset,
            source,
        })
    }

    fn write_raw(&self, data: &[u8], offset: u64) -> Result<(), Error> {
        let aligned = data.len() & !(ALIGN - 1);
        let err = |at: u64| {
            let path = self.path.clone();
            move |source| Error::Write {
                path,
                offset: at,
                source,
            }
        };
        self.file
            .write_all_at(&data[..aligned], offset)
            .map_err(err(offset))?;
        if aligned < data.len() {
            let at = offset + aligned as u64;
            if self.direct {
                set_direct(&self.file, false).map_err(err(at))?;
            }
            self.file
                .write_all_at(&data[aligned..], at)
                .map_err(err(at))?;
            if self.direct {
                set_direct(&self.file, true).map_err(err(at))?;
            }
        }
        Ok(())
    }

    /// Reads up to `len` bytes at `offset` (aligned) into `buf`; fewer at the end of the target.
    pub(crate) fn read_at(
        &self,
        buf: &mut AlignedBuf,
        len: usize,
        offset: u64,
    ) -> Result<usize, Error> {
        let want = (round_up(len as u64) as usize).min(buf.len());
        match self.read_raw(&mut buf[..want], len, offset) {
            Err((got, source)) if self.kind == TargetKind::BlockDevice => {
                self.pin_read(&mut buf[..want], len, offset, got, source)
            }
            Err((got, source)) => Err(Error::read(
                self.path.display().to_string(),
                offset + got as u64,
                source,
            )),
            Ok(got) => Ok(got),
        }
    }

    /// Reads up to `len` bytes at `offset` into `buf`; on failure, how far it got and why.
    fn read_raw(
        &self,
        buf: &mut [u8],
        len: usize,
        offset: u64,
    ) -> Result<usize, (usize, io::Error)> {
        let mut got = 0;
        while got < len {
            match self.file.read_at(&mut buf[got..], offset + got as u64) {
                Ok(0) => break,
                Ok(n) => got += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err((got, e)),
            }
        }
        Ok(got.min(len))
    }

    /// After a read failed `got` bytes into `offset..offset + len`: reads the rest again in
    /// smaller and smaller steps to name the first block that fails, or finds that the
    /// card no longer answers. `Ok` when every step went through this time.
    fn pin_read(
        &self,
        buf: &mut [u8],
        len: usize,
        offset: u64,
        got: usize,
        first: io::Error,
    ) -> Result<usize, Error> {
        let start = got - got % self.finest_step();
        let narrowed = self.narrow(start, len, first, |at, n| {
            let whole = (round_up(n as u64) as usize).min(buf.len() - at);
            self.read_raw(&mut buf[at..at + whole], n, offset + at as u64)
                .map_err(|(_, source)| source)
        });
        match narrowed {
            Narrowed::Through => Ok(len),
            Narrowed::Short(got) => Ok(got),
            Narrowed::Failed(at, source) => {
                let at = offset + at as u64;
                Err(self.gone("reading", at, source).unwrap_or_else(|source| {
                    Error::read(self.path.display().to_string(), at, source)
                }))
            }
        }
    }

    /// Flushes everything written to the medium.
    pub(crate) fn sync(&self) -> Result<(), Error> {
        self.file.sync_all().map_err(|source| Error::Flush {
            path: self.path.clone(),
            source,
        })
    }

    /// Drops the target's cached pages, so that buffered reads must come from the medium.
    pub(crate) fn drop_cache(&self) {
        // SAFETY: advisory call on a descriptor we own.
        unsafe { libc::posix_fadvise(self.file.as_raw_fd(), 0, 0, libc::POSIX_FADV_DONTNEED) };
    }

    /// Asks the kernel to read the new partition table. Returns whether it did; loop devices
    /// without partition scanning decline, which is harmless.
    pub fn reread_partitions(&self) -> bool {
        self.kind == TargetKind::BlockDevice
            // SAFETY: BLKRRPART takes no argument.
            && unsafe { libc::ioctl(self.file.as_raw_fd(), ioctl::BLKRRPART) } == 0
    }

    /// Gives up on a target before anything was written: removes the file cardsmith created
    /// for it, if any.
    pub fn abandon(&self) {
        if self.created && fs::remove_file(&self.path).is_ok() {
            self.clean.store(true, Ordering::SeqCst);
        }
    }

    /// What a failed write left on this target: untouched when it failed before
    /// [`Target::prepare`], else what [`Target::scrub_after_failure`] made of it, or, when
    /// that failed as well, that it may hold part of the image.
    pub fn leftover(&self) -> Leftover {
        let clean = self.clean.load(Ordering::SeqCst);
        match self.kind {
            _ if !self.touched.load(Ordering::SeqCst) && !self.created => Leftover::Untouched,
            _ if !clean => Leftover::PartlyWritten,
            TargetKind::BlockDevice => Leftover::FirstMibZeroed,
            TargetKind::File if self.created => Leftover::FileRemoved,
            TargetKind::File => Leftover::FileEmptied,
        }
    }

    /// After a failed or cancelled write (or erase): makes sure what is left cannot pass for
    /// a good image. A device gets its first MiB zeroed again (and flushed); a file
    /// cardsmith created is removed, one it was told to overwrite is emptied. Whether that
    /// worked is what [`Target::leftover`] says.
    pub fn scrub_after_failure(&self) {
        // A device zeroed by `prepare` and not written there since (the first chunk goes
        // last) still starts with zeros when zeroing it again fails: a card that now
        // refuses every write.
        let zeroed = self.kind == TargetKind::BlockDevice && self.clean.load(Ordering::SeqCst);
        self.clean.store(false, Ordering::SeqCst);
        match self.kind {
            TargetKind::BlockDevice => {
                let len = SCRUB_LEN.min(self.size.unwrap_or(0));
                let again = self.zero(0, len).is_ok() && self.sync().is_ok();
                self.clean.store(again || zeroed, Ordering::SeqCst);
            }
            TargetKind::File if self.created => self.abandon(),
            TargetKind::File => {
                let _ = self.empty();
            }
        }
    }
}

/// The sysfs directory of a block device number, e.g. /sys/devices/.../block/sda/sda1.
fn sysfs_dir(dev: u64) -> Option<PathBuf> {
    let link = format!("/sys/dev/block/{}:{}", libc::major(dev), libc::minor(dev));
    fs::canonicalize(link).ok()
}

/// Whether the filesystem device `fs_dev` is the disk `disk` or one of its partitions.
fn on_device(fs_dev: u64, disk: u64) -> bool {
    match (sysfs_dir(fs_dev), sysfs_dir(disk)) {
        (Some(fs), Some(disk)) => fs.starts_with(disk),
        _ => fs_dev == disk,
    }
}

/// Whether `disk` is a loop device backed by the file `id`.
fn backs_loop(disk: u64, id: FileIdentity) -> bool {
    let Some(dir) = sysfs_dir(disk) else {
        return false;
    };
    let Ok(backing) = fs::read_to_string(dir.join("loop/backing_file")) else {
        return false;
    };
    fs::metadata(backing.trim_end())
        .map(|m| m.dev() == id.dev && m.ino() == id.ino)
        .unwrap_or(false)
}
