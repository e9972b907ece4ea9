//! cardsmith-drives finds the drives an image may be written to, refuses the ones it must
//! not be written to, and opens the chosen one safely.
//!
//! The principal type is [`Snapshot`]: the system's block devices at one moment, read from
//! sysfs, `/proc/self/mountinfo`, `/proc/swaps` and udev's database, each whole drive turned
//! into a [`Drive`] that says what it is (bus, size, model, serial, partitions, mounts) and
//! whether it is *offered*: removable, writable and not part of the running system. Drives
//! that are not offered carry their [`Reason`]s; some reasons forbid writing outright (the
//! drive holding `/`, eMMC boot areas, zram, optical drives, read-only media), a system drive
//! needs the caller's explicit permission.
//!
//! Writing a drive goes: [`Snapshot::find`] the path the user named, [`Drive::check_writable`],
//! [`Snapshot::check_not_holding`] the source image, let the user confirm, [`unmount_all`],
//! then [`open_for_writing`], which re-checks the drive's [`Identity`] (hot-plug can give the
//! name to another disk meanwhile) and opens it with O_EXCL|O_DIRECT. A process that may not
//! open or unmount the device itself goes through UDisks2 (see [`Access`]), which asks
//! polkit.
//!
//! Reading a drive (a backup) goes through [`open_for_reading`]: read-only, exclusive and
//! O_DIRECT, nothing unmounted; a drive in use is opened shared and the caller is told what
//! uses it, so it can warn.
//!
//! [`Watcher`] reports drives appearing, leaving and changing, for the GUI.
//!
//! [`wifi::connected_ssid`] asks NetworkManager which Wi-Fi network the computer is on, so the
//! GUI can suggest it when customising an image (never a password: only the SSID is read).
//!
//! This crate does not write images (that is cardsmith-engine, which is handed the opened
//! file), does not prompt, and does not print. Linux only for now: sysfs, mountinfo, ioctls
//! and UDisks2.

mod drive;
mod error;
mod mounts;
mod open;
mod probe;
mod snapshot;
mod udisks;
mod watch;
pub mod wifi;

pub use drive::{
    human_size, Bus, DevNum, Drive, Kind, Partition, Reason, Volume, Warning, LARGE_DRIVE,
};
pub use error::Error;
pub use open::{
    check_same, open_for_reading, open_for_writing, power_off, unmount_all, Access, Identity,
    ReadHandle,
};
pub use snapshot::{Snapshot, Sources};
pub use udisks::UDisks;
pub use watch::{Event, Watcher};
