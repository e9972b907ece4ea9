use std::io;
use std::path::PathBuf;

use crate::drive::Reason;

/// Why a drive cannot be listed, chosen, unmounted or opened; each message says what to do.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot inspect {path}: {source}")]
    Inspect { path: PathBuf, source: io::Error },

    #[error("{path} is not a block device")]
    NotBlockDevice { path: PathBuf },

    #[error("{path} is not a block device this system lists in /sys/block")]
    Unknown { path: PathBuf },

    #[error(
        "{path} is a partition of {drive}; an image is written to a whole drive, so name {drive}"
    )]
    IsPartition { path: PathBuf, drive: PathBuf },

    #[error("{path} is {what}; name a drive (see `cardsmith drives`)")]
    NotADrive { path: PathBuf, what: String },

    #[error("{path} cannot be written: {reason}")]
    Refused { path: PathBuf, reason: Reason },

    #[error(
        "{path} is a system drive: it holds {}; to erase it anyway pass --allow-system-drive \
         and type its name when asked",
        uses.join(", ")
    )]
    SystemDrive { path: PathBuf, uses: Vec<String> },

    #[error(
        "the image {image} is stored on {path}: writing would destroy the image while it is read"
    )]
    HoldsSource { path: PathBuf, image: String },

    #[error(
        "{path} changed since it was chosen ({what}); it may now be another disk: nothing was \
         written, choose the drive again"
    )]
    Changed { path: PathBuf, what: String },

    #[error("{path} is in use by {by}; close it first (for example `cryptsetup close`, `vgchange -an` or `mdadm --stop`)")]
    InUse { path: PathBuf, by: String },

    #[error(
        "{mountpoint} is busy and cannot be unmounted: close the programs using it (`fuser -vm \
         {mountpoint}` lists them); nothing was written"
    )]
    MountBusy { mountpoint: PathBuf },

    #[error("cannot unmount {mountpoint}: {detail}; nothing was written")]
    Unmount { mountpoint: PathBuf, detail: String },

    #[error(
        "{path} is busy: another program holds it open exclusively (a mount, an active swap, \
         another cardsmith, a partition editor); nothing was written"
    )]
    Busy { path: PathBuf },

    #[error("{path} is read-only (a card's lock switch, or a write-protected device)")]
    ReadOnly { path: PathBuf },

    #[error(
        "not authorized to {what} {path}: {detail}. Run cardsmith as root (for example with \
         sudo), or have your administrator allow UDisks2's polkit actions for it \
         (org.freedesktop.udisks2.open-device, filesystem-unmount-others, power-off-drive)"
    )]
    NotAuthorized {
        what: &'static str,
        path: PathBuf,
        detail: String,
    },

    #[error(
        "{doing} {path} as a normal user needs UDisks2, which is not available ({detail}). \
         Run cardsmith as root (for example `sudo cardsmith …`), or install and start udisks2 \
         (`sudo apt install udisks2`)"
    )]
    UDisksUnavailable {
        doing: &'static str,
        path: PathBuf,
        detail: String,
    },

    #[error(
        "{path} is busy: another program holds it open exclusively (a write in progress, a \
         partition editor); nothing was read"
    )]
    BusyReading { path: PathBuf },

    #[error("UDisks2 could not {what} {path}: {detail}")]
    UDisks {
        what: &'static str,
        path: PathBuf,
        detail: String,
    },

    #[error("cannot open {path}: {source}")]
    Open { path: PathBuf, source: io::Error },

    #[error(
        "{path} was not powered off: UDisks2 is not available ({detail}); everything was \
         flushed, so it can be removed"
    )]
    PowerOffUnavailable { path: PathBuf, detail: String },

    #[error("{path} has no drive to power off: it is a {what}")]
    NothingToPowerOff { path: PathBuf, what: &'static str },
}
