//! Growing a shrunk backup back on its first boot, with the mechanism the image's own OS
//! has, found by inspecting it:
//!
//! - Raspberry Pi OS Bookworm: `init=/usr/lib/raspberrypi-sys-mods/firstboot` on
//!   cmdline.txt. Its initramfs grows the root partition and filesystem when that word is
//!   there, and the first-boot script takes it off again (and makes new SSH host keys and
//!   a new disk id, as on a fresh card).
//! - Raspberry Pi OS Trixie: the `resize` word, on which its initramfs grows the root
//!   partition. The filesystem follows through cloud-init's resizefs, or systemd's growfs
//!   (rpi-resize.service), which only runs on a first boot (an empty /etc/machine-id).
//! - cloud-init with cloud-utils' growpart: its growpart and resizefs modules run on every
//!   boot in cloud-init's default configuration; nothing to change.
//! - Anything else: nothing is re-armed, and the answer says how to grow it by hand.

use std::fs::File;
use std::path::Path;

use crate::inspect::{Inspection, FIRSTBOOT};
use crate::{boot, survey, Error};

/// What grows the root filesystem on the first boot of the image.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Grower {
    /// Raspberry Pi OS Bookworm's `init=…/firstboot`.
    Firstboot,
    /// Raspberry Pi OS Trixie's `resize` word.
    ResizeWord,
    /// cloud-init's growpart and resizefs.
    CloudInit,
}

/// What [`rearm`] found and did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rearmed {
    /// What will grow the root on first boot, when anything will.
    pub grower: Option<Grower>,
    /// The word added to cmdline.txt, when one was.
    pub added: Option<String>,
    /// What happens on first boot, or why nothing will and what to do by hand.
    pub said: String,
}

/// Arms the image open in `file` (at `path`) to grow its root partition (number
/// `root_partition`) and filesystem to fill the card on its first boot, with its own OS's
/// mechanism; with `write` false, only says what it would do.
pub fn rearm(
    file: &File,
    path: &Path,
    root_partition: usize,
    write: bool,
) -> Result<Rearmed, Error> {
    let mut found = survey(file, path)?;
    let by_hand = format!(
        "after restoring, grow it by hand: `sudo parted /dev/mmcblk0 resizepart \
         {root_partition} 100%`, then `sudo resize2fs /dev/mmcblk0p{root_partition}`"
    );
    let not = |why: String| Rearmed {
        grower: None,
        added: None,
        said: format!("nothing will grow the root filesystem on first boot: {why}; {by_hand}"),
    };
    let Some(cmdline) = found.seeds[0].clone() else {
        return Ok(not("its boot partition has no cmdline.txt".into()));
    };
    let ins: &Inspection = match &found.inspection {
        Ok(ins) => ins,
        Err(why) => {
            return Ok(not(format!(
                "its root filesystem could not be read ({why})"
            )))
        }
    };
    let words = &ins.cmdline;
    let (grower, word, said) = if ins.firstboot && ins.grow_on_firstboot {
        match words.init.as_deref() {
            Some(FIRSTBOOT) => {}
            Some(other) => {
                return Ok(not(format!(
                    "its cmdline.txt already starts another init ({other}), which Raspberry \
                     Pi OS's first boot would replace"
                )))
            }
            None => {}
        }
        (
            Grower::Firstboot,
            words.init.is_none().then(|| format!("init={FIRSTBOOT}")),
            "Raspberry Pi OS's first boot (init=/usr/lib/raspberrypi-sys-mods/firstboot on \
             cmdline.txt) grows the root partition and filesystem to fill the card, then takes \
             the word off; like a fresh card's first boot, it also makes new SSH host keys \
             and a new disk id"
                .to_owned(),
        )
    } else if ins.grow_on_resize {
        let filesystem = if ins.cloud_init.is_some() {
            "cloud-init's resizefs then grows the filesystem".to_owned()
        } else if ins.rpi_resize {
            format!(
                "systemd grows the filesystem only on a first boot (an empty /etc/machine-id), \
                 which a restored backup is not: after it boots, run `sudo resize2fs \
                 /dev/mmcblk0p{root_partition}`"
            )
        } else {
            format!(
                "nothing grows the filesystem: after it boots, run `sudo resize2fs \
                 /dev/mmcblk0p{root_partition}`"
            )
        };
        (
            Grower::ResizeWord,
            (!words.resize).then(|| "resize".to_owned()),
            format!(
                "Raspberry Pi OS's initramfs grows the root partition on the `resize` word of \
                 cmdline.txt and takes the word off; {filesystem}"
            ),
        )
    } else if ins.cloud_init.is_some() && ins.growpart {
        (
            Grower::CloudInit,
            None,
            "cloud-init grows the root partition and filesystem on every boot (its growpart \
             and resizefs modules, on in its default configuration)"
                .to_owned(),
        )
    } else if ins.cloud_init.is_some() {
        return Ok(not(
            "it has cloud-init, but not cloud-utils' growpart, which its growpart module needs"
                .into(),
        ));
    } else {
        return Ok(not(
            "it has neither Raspberry Pi OS's first-boot resize nor cloud-init's growpart".into(),
        ));
    };
    if let (Some(word), true) = (&word, write) {
        let text = String::from_utf8_lossy(&cmdline).into_owned();
        let (line, rest) = text.split_at(text.find('\n').unwrap_or(text.len()));
        let new = format!("{} {word}{rest}", line.trim_end());
        boot::write_files(
            boot::Slice::new(&mut found.disk, found.span),
            &[("cmdline.txt".to_owned(), new.into_bytes())],
        )
        .map_err(|e| Error::Fat {
            path: path.to_owned(),
            what: "written",
            detail: e.to_string(),
        })?;
        found.disk.sync_all().map_err(|source| Error::Flush {
            path: path.to_owned(),
            source,
        })?;
    }
    Ok(Rearmed {
        grower: Some(grower),
        added: word,
        said,
    })
}
