//! From a chosen drive to an open file descriptor: refuse what must not be written, unmount
//! what is mounted, check the drive is still the one the user confirmed, open it exclusively.

use std::ffi::CString;
use std::fs::{File, OpenOptions};
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::drive::{DevNum, Drive, Kind};
use crate::mounts::depth;
use crate::snapshot::Snapshot;
use crate::udisks::UDisks;
use crate::Error;

const BLKGETSIZE64: libc::c_ulong = 0x8008_1272;

/// What the user saw and confirmed. Right before opening, the device must still match it:
/// hot-plugging can hand a device name to another disk between choosing and writing.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Identity {
    pub path: PathBuf,
    pub dev: DevNum,
    pub size: u64,
    pub model: Option<String>,
    pub serial: Option<String>,
    pub backing_file: Option<PathBuf>,
}

impl Drive {
    pub fn identity(&self) -> Identity {
        Identity {
            path: self.path.clone(),
            dev: self.dev,
            size: self.size,
            model: self.model.clone(),
            serial: self.serial.clone(),
            backing_file: self.backing_file.clone(),
        }
    }

    /// Refuses a drive that must not be written: the root drive, eMMC boot areas, zram, RAM
    /// disks, optical drives, empty readers, read-only media; and a system drive unless
    /// `allow_system` (the caller then makes the user type the drive's name).
    pub fn check_writable(&self, allow_system: bool) -> Result<(), Error> {
        if let Some(reason) = self.not_offered.iter().find(|r| r.forbids_writing()) {
            return Err(Error::Refused {
                path: self.path.clone(),
                reason: reason.clone(),
            });
        }
        match self.system_uses() {
            Some(uses) if !allow_system => Err(Error::SystemDrive {
                path: self.path.clone(),
                uses: uses.to_vec(),
            }),
            _ => Ok(()),
        }
    }
}

impl Snapshot {
    /// Refuses to write `drive` when the source image is stored on it. `dev` is the device
    /// the image file's filesystem is on (or the device itself, for a device as source);
    /// `file` its path, when it has one, to follow loop and overlay layers.
    pub fn check_not_holding(
        &self,
        drive: &Drive,
        dev: DevNum,
        file: Option<&Path>,
        describe: &str,
    ) -> Result<(), Error> {
        let mut under = self.drives_under(dev);
        if let Some(file) = file {
            under.extend(self.drives_under_file(file));
        }
        if under.contains(&drive.name) {
            return Err(Error::HoldsSource {
                path: drive.path.clone(),
                image: describe.to_owned(),
            });
        }
        Ok(())
    }
}

/// How this process reaches block devices: opening directly when it may (root, or a member
/// of the device's group), unmounting directly only as root; UDisks2 for the rest.
pub struct Access {
    root: bool,
    open_directly: bool,
    udisks: Option<UDisks>,
}

impl Access {
    /// Decides for `device`. Fails, saying how to proceed, when this process may not open
    /// it and UDisks2 is not there to ask.
    pub fn for_device(device: &Path) -> Result<Access, Error> {
        // SAFETY: geteuid cannot fail.
        let root = unsafe { libc::geteuid() } == 0;
        if root {
            return Ok(Access {
                root,
                open_directly: true,
                udisks: None,
            });
        }
        if may_open(device) {
            return Ok(Access {
                root,
                open_directly: true,
                udisks: UDisks::connect().ok(),
            });
        }
        match UDisks::connect() {
            Ok(udisks) => Ok(Access {
                root,
                open_directly: false,
                udisks: Some(udisks),
            }),
            Err(detail) => Err(Error::UDisksUnavailable {
                doing: "writing",
                path: device.to_owned(),
                detail,
            }),
        }
    }
}

fn may_open(device: &Path) -> bool {
    may_access(device, libc::R_OK | libc::W_OK)
}

fn may_access(device: &Path, mode: libc::c_int) -> bool {
    let Ok(c) = CString::new(device.as_os_str().as_bytes()) else {
        return false;
    };
    // SAFETY: access(2) with a valid NUL-terminated path.
    unsafe { libc::access(c.as_ptr(), mode) == 0 }
}

/// Unmounts every filesystem on `drive` and its partitions, deepest mount point first, and
/// returns the mount points that were unmounted. The drive must still be the one the user
/// confirmed (else another disk's filesystems would be unmounted). A partition used by a
/// device-mapper or RAID volume is refused (its holder must be closed by the user), as is a
/// busy mount point.
pub fn unmount_all(drive: &Drive, access: &Access) -> Result<Vec<PathBuf>, Error> {
    let volumes = drive
        .partitions
        .iter()
        .map(|p| (&p.path, &p.volume))
        .chain(drive.filesystem.iter().map(|v| (&drive.path, v)));
    for (path, volume) in volumes {
        if let Some(holder) = volume.used_by.first() {
            return Err(Error::InUse {
                path: path.clone(),
                by: holder.clone(),
            });
        }
    }
    let snapshot = Snapshot::capture()?;
    let fresh = snapshot.find(&drive.path)?;
    check_same(&drive.identity(), &fresh.identity())?;
    let mut mounts: Vec<(PathBuf, PathBuf)> = snapshot
        .mounts_on(fresh)
        .into_iter()
        .map(|(m, device)| (m.mountpoint.clone(), device))
        .collect();
    mounts.sort_by_key(|(point, _)| std::cmp::Reverse(depth(point)));
    let mut done = Vec::new();
    for (mountpoint, device) in mounts {
        match &access.udisks {
            _ if access.root => umount(&mountpoint)?,
            Some(udisks) => udisks.unmount(&device).map_err(|e| match e {
                Error::MountBusy { .. } => Error::MountBusy {
                    mountpoint: mountpoint.clone(),
                },
                other => other,
            })?,
            None => {
                return Err(Error::Unmount {
                    mountpoint,
                    detail: "unmounting needs root, or UDisks2 to ask".into(),
                })
            }
        }
        done.push(mountpoint);
    }
    let left = Snapshot::capture()?;
    if let Some((m, _)) = left.mounts_on(left.find(&drive.path)?).first() {
        return Err(Error::MountBusy {
            mountpoint: m.mountpoint.clone(),
        });
    }
    Ok(done)
}

fn umount(mountpoint: &Path) -> Result<(), Error> {
    let c = CString::new(mountpoint.as_os_str().as_bytes()).map_err(|_| Error::Unmount {
        mountpoint: mountpoint.to_owned(),
        detail: "the path holds a NUL byte".into(),
    })?;
    // SAFETY: umount2(2) with a valid NUL-terminated path and no flags.
    if unsafe { libc::umount2(c.as_ptr(), 0) } == 0 {
        return Ok(());
    }
    let e = io::Error::last_os_error();
    Err(match e.raw_os_error() {
        Some(libc::EBUSY) => Error::MountBusy {
            mountpoint: mountpoint.to_owned(),
        },
        _ => Error::Unmount {
            mountpoint: mountpoint.to_owned(),
            detail: e.to_string(),
        },
    })
}

/// Checks the device still is the one in `confirmed`, then opens it read-write, exclusively
/// (O_EXCL) and bypassing the page cache (O_DIRECT), and checks the opened descriptor again:
/// the path could be renamed between the check and the open.
pub fn open_for_writing(confirmed: &Identity, access: &Access) -> Result<File, Error> {
    let now = Snapshot::capture()?;
    check_same(confirmed, &now.find(&confirmed.path)?.identity())?;
    let path = &confirmed.path;
    let flags = libc::O_EXCL | libc::O_DIRECT | libc::O_CLOEXEC;
    let file = match &access.udisks {
        Some(udisks) if !access.open_directly => File::from(udisks.open(path, "rw", flags)?),
        _ => OpenOptions::new()
            .read(true)
            .write(true)
            .custom_flags(flags)
            .open(path)
            .map_err(|e| open_error(path, e))?,
    };
    let meta = file.metadata().map_err(|e| open_error(path, e))?;
    let opened = Identity {
        dev: DevNum::from_raw(meta.rdev()),
        size: device_size(&file).map_err(|e| open_error(path, e))?,
        ..confirmed.clone()
    };
    check_same(confirmed, &opened)?;
    Ok(file)
}

/// A block device opened to be read (for a backup).
pub struct ReadHandle {
    pub file: File,
    /// Whether the device is held exclusively while it is read. It is not when something
    /// on it is in use (mounted, swap, a device-mapper holder): the kernel then refuses an
    /// exclusive open, and the caller warns that a filesystem in use may change meanwhile.
    pub exclusive: bool,
    /// What uses the device, when it is not held exclusively.
    pub in_use: Vec<String>,
}

/// Opens the block device `path` read-only, exclusively and with O_DIRECT, directly or
/// through UDisks2; nothing is unmounted (see [`ReadHandle::exclusive`]). With `confirmed`,
/// the device must still be that drive.
pub fn open_for_reading(path: &Path, confirmed: Option<&Identity>) -> Result<ReadHandle, Error> {
    let snapshot = Snapshot::capture()?;
    let name = snapshot.node_name_for_path(path)?;
    if let Some(confirmed) = confirmed {
        check_same(confirmed, &snapshot.find(path)?.identity())?;
    }
    // SAFETY: geteuid cannot fail.
    let root = unsafe { libc::geteuid() } == 0;
    let udisks = if root || may_access(path, libc::R_OK) {
        None
    } else {
        Some(
            UDisks::connect().map_err(|detail| Error::UDisksUnavailable {
                doing: "reading",
                path: path.to_owned(),
                detail,
            })?,
        )
    };
    let open = |flags: i32| -> Result<File, Error> {
        let flags = flags | libc::O_DIRECT | libc::O_CLOEXEC;
        match &udisks {
            Some(udisks) => Ok(File::from(udisks.open(path, "r", flags)?)),
            None => OpenOptions::new()
                .read(true)
                .custom_flags(flags)
                .open(path)
                .map_err(|e| open_error(path, e)),
        }
    };
    let (file, exclusive, in_use) = match open(libc::O_EXCL) {
        Ok(file) => (file, true, Vec::new()),
        Err(Error::Busy { .. }) => {
            let in_use = snapshot.users_of(&name);
            if in_use.is_empty() {
                return Err(Error::BusyReading {
                    path: path.to_owned(),
                });
            }
            (open(0)?, false, in_use)
        }
        Err(e) => return Err(e),
    };
    let meta = file.metadata().map_err(|e| open_error(path, e))?;
    let expected = snapshot.dev_of(&name);
    if Some(DevNum::from_raw(meta.rdev())) != expected {
        return Err(Error::Changed {
            path: path.to_owned(),
            what: format!(
                "the device opened is {} rather than {}",
                DevNum::from_raw(meta.rdev()),
                expected.map_or("?".into(), |d| d.to_string())
            ),
        });
    }
    Ok(ReadHandle {
        file,
        exclusive,
        in_use,
    })
}

/// Refuses when `now` is not the drive the user confirmed (`confirmed`), naming what changed.
pub fn check_same(confirmed: &Identity, now: &Identity) -> Result<(), Error> {
    let mut changes = Vec::new();
    if confirmed.dev != now.dev {
        changes.push(format!(
            "device number {} is now {}",
            confirmed.dev, now.dev
        ));
    }
    if confirmed.size != now.size {
        changes.push(format!(
            "size {} bytes is now {} bytes",
            confirmed.size, now.size
        ));
    }
    let fields = [
        ("model", &confirmed.model, &now.model),
        ("serial", &confirmed.serial, &now.serial),
    ];
    for (what, was, is) in fields {
        if was != is {
            changes.push(format!("{what} {was:?} is now {is:?}"));
        }
    }
    if confirmed.backing_file != now.backing_file {
        changes.push(format!(
            "backing file {:?} is now {:?}",
            confirmed.backing_file, now.backing_file
        ));
    }
    if changes.is_empty() {
        Ok(())
    } else {
        Err(Error::Changed {
            path: confirmed.path.clone(),
            what: changes.join("; "),
        })
    }
}

fn open_error(path: &Path, e: io::Error) -> Error {
    let path = path.to_owned();
    match e.raw_os_error() {
        Some(libc::EBUSY) => Error::Busy { path },
        Some(libc::EROFS) => Error::ReadOnly { path },
        _ => Error::Open { path, source: e },
    }
}

fn device_size(file: &File) -> io::Result<u64> {
    let mut size: u64 = 0;
    // SAFETY: BLKGETSIZE64 writes one u64 through the pointer.
    if unsafe { libc::ioctl(file.as_raw_fd(), BLKGETSIZE64, &mut size) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(size)
}

/// Powers off the drive through UDisks2, so it can be pulled out safely.
pub fn power_off(drive: &Drive) -> Result<(), Error> {
    match UDisks::connect() {
        Ok(udisks) => udisks.power_off(&drive.path),
        Err(_) if drive.kind == Kind::Loop => Err(Error::NothingToPowerOff {
            path: drive.path.clone(),
            what: "loop device (a file, not hardware)",
        }),
        Err(detail) => Err(Error::PowerOffUnavailable {
            path: drive.path.clone(),
            detail,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id() -> Identity {
        Identity {
            path: "/dev/sdb".into(),
            dev: DevNum {
                major: 8,
                minor: 16,
            },
            size: 31_914_983_424,
            model: Some("STORAGE DEVICE".into()),
            serial: Some("000000000272".into()),
            backing_file: None,
        }
    }

    #[test]
    fn any_change_of_identity_is_named() {
        assert!(check_same(&id(), &id()).is_ok());
        let other = Identity {
            dev: DevNum {
                major: 8,
                minor: 32,
            },
            serial: Some("AA01".into()),
            ..id()
        };
        let err = check_same(&id(), &other).unwrap_err().to_string();
        assert!(err.contains("device number 8:16 is now 8:32"), "{err}");
        assert!(err.contains("serial"), "{err}");
        assert!(!err.contains("size"), "{err}");
    }
}
