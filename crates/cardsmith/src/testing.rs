//! Made-up drives for tests of the rules and screens: no test needs (or touches) a real
//! disk of this machine to see how a removable card, a fixed disk or a system drive is
//! treated.

use std::path::PathBuf;

use cardsmith_drives::{human_size, Bus, DevNum, Drive, Kind, Reason, Warning, LARGE_DRIVE};

/// A USB card reader's card of `size` bytes, named `sdz` (no such device here), with the
/// verdicts the drives crate would give a drive that size.
pub fn card(size: u64) -> Drive {
    let mut warnings = Vec::new();
    if size > LARGE_DRIVE {
        warnings.push(Warning::Large { size });
    }
    Drive {
        name: "sdz".into(),
        path: PathBuf::from("/dev/sdz"),
        dev: DevNum {
            major: 8,
            minor: 400,
        },
        size,
        size_human: human_size(size),
        vendor: Some("Generic".into()),
        model: Some("STORAGE DEVICE".into()),
        serial: Some("000000000272".into()),
        bus: Bus::Usb,
        kind: Kind::Disk,
        removable: true,
        hotplug: true,
        read_only: false,
        backing_file: None,
        filesystem: None,
        partitions: Vec::new(),
        offered: true,
        not_offered: Vec::new(),
        warnings,
    }
}

/// A second internal SATA disk: neither removable nor hot-pluggable.
pub fn fixed_disk(size: u64) -> Drive {
    Drive {
        bus: Bus::Sata,
        removable: false,
        hotplug: false,
        offered: false,
        not_offered: vec![Reason::Fixed],
        model: Some("Samsung SSD 870".into()),
        ..card(size)
    }
}

/// A drive that holds /home of the running system.
pub fn system_drive(size: u64) -> Drive {
    Drive {
        not_offered: vec![
            Reason::System {
                uses: vec!["/home".into()],
            },
            Reason::Fixed,
        ],
        ..fixed_disk(size)
    }
}
