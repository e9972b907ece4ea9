//! Writing to a drive: everything between the path the user typed and an opened target.
//! Find the drive, refuse what must not be erased, ask, unmount, open exclusively.

use std::path::{Path, PathBuf};

use cardsmith_drives::{
    check_same, open_for_writing, unmount_all, Access, Bus, DevNum, Drive, Identity, Snapshot,
};
use cardsmith_engine::{Image, Input, Target};
use serde_json::json;

use super::confirm::{self, Consent};
use super::drives::list;
use super::report::Reporter;
use super::Failure;

/// What the user allowed on the command line (or in the wizard), for the verbs that change
/// a drive (write, erase, customize).
#[derive(clap::Args, Clone, Default)]
pub struct Permission {
    /// Do not ask for confirmation (required when standard input is not a terminal; not
    /// enough for a system drive or a fixed disk, whose name must be typed)
    #[arg(long, short = 'y')]
    pub yes: bool,
    /// Allow a drive the running system uses (/boot, /home, swap…); its name must still be
    /// typed at a prompt. The drive holding / is never changed.
    #[arg(long)]
    pub allow_system_drive: bool,
    /// The wizard asked for the drive's name and the user typed it.
    #[arg(skip)]
    pub name_typed: bool,
    /// The wizard's confirmation was for this drive: any other is refused.
    #[arg(skip)]
    pub window: Option<Identity>,
    /// The wizard runs the job: nothing is ever asked on a terminal, and a target the
    /// window chose as a file is never taken as a drive.
    #[arg(skip)]
    pub in_window: bool,
}

impl Permission {
    /// The wizard confirmed `confirmed` in its window (and had its name typed when needed).
    pub fn given_in_window(&mut self, name_typed: bool, confirmed: Option<Identity>) {
        self.yes = true;
        self.name_typed = name_typed;
        self.window = confirmed;
        self.in_window = true;
    }
}

/// What is about to happen to the drive: the sentence the question starts with, what it
/// does to the drive, and the source file (a drive holding it is refused).
pub struct Incoming {
    pub label: String,
    pub consequence: &'static str,
    /// What is done to the drive, as the prompt for its name says it ("erase", "change").
    pub verb: &'static str,
    pub image: Option<(DevNum, Option<PathBuf>, String)>,
}

/// What a write or erase does to the drive.
const ERASED: &str = "Everything on it will be erased.";

impl Incoming {
    pub fn image(image: &Image) -> Incoming {
        let source = image.identity().map(|id| {
            let (dev, file) = match (id.rdev, image.input()) {
                (Some(rdev), _) => (rdev, None),
                (None, Input::Path(path)) => (id.dev, std::fs::canonicalize(path).ok()),
                (None, Input::Stdin | Input::Url(_)) => (id.dev, None),
            };
            (DevNum::from_raw(dev), file, image.input().to_string())
        });
        Incoming {
            label: format!("Write {} ({} image) to", image.input(), image.format()),
            consequence: ERASED,
            verb: "erase",
            image: source,
        }
    }

    pub fn erase() -> Incoming {
        Incoming {
            label: "Erase".into(),
            consequence: ERASED,
            verb: "erase",
            image: None,
        }
    }

    pub fn customise() -> Incoming {
        Incoming {
            label: "Customise".into(),
            consequence: "Files on its boot partition will be replaced (first-boot settings).",
            verb: "change",
            image: None,
        }
    }
}

/// A drive, checked, confirmed, unmounted and opened.
pub struct OpenedDrive {
    pub drive: Drive,
    pub target: Target,
    pub unmounted: Vec<PathBuf>,
}

pub fn open(
    allowed: &Permission,
    target: &Path,
    incoming: &Incoming,
    reporter: &mut Reporter,
) -> Result<OpenedDrive, Failure> {
    if allowed.in_window && allowed.window.is_none() {
        // The window chose "save to image file"; a path that is (or leads to) a device
        // must be chosen in the drive list, where every rule above applies.
        return Err(Failure::Refused(format!(
            "{} is a block device, not an image file: nothing was written. Choose it in the \
             drive list instead (it is checked, named and confirmed there)",
            target.display()
        )));
    }
    let snapshot = Snapshot::capture()?;
    let drive = snapshot.find(target)?.clone();
    if let Some(confirmed) = &allowed.window {
        check_same(confirmed, &drive.identity())?;
    }
    drive.check_writable(allowed.allow_system_drive)?;
    if let Some((dev, file, describe)) = &incoming.image {
        snapshot.check_not_holding(&drive, *dev, file.as_deref(), describe)?;
    }
    let access = Access::for_device(&drive.path)?;
    ask(allowed, incoming, &drive, reporter)?;
    let unmounted = unmount_all(&drive, &access)?;
    for point in &unmounted {
        reporter.note(
            &format!("Unmounted {}", point.display()),
            json!({ "event": "unmounted", "mountpoint": point }),
        );
    }
    let identity = allowed.window.clone().unwrap_or_else(|| drive.identity());
    let file = open_for_writing(&identity, &access)?;
    let target = Target::from_device(&drive.path, file)?;
    Ok(OpenedDrive {
        drive,
        target,
        unmounted,
    })
}

/// What a person must do before a drive is changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Needed {
    /// Nothing more: `--yes` (or the window) consented, or the name was typed there.
    Nothing,
    /// Answer "yes" at a prompt.
    Yes,
    /// Type the drive's name at a prompt: a system drive or a fixed internal disk, which
    /// "yes" out of habit, or `--yes` in a script, must not erase.
    Name,
}

/// The one rule for every verb that changes a drive (write, erase, customize).
pub fn needed(allowed: &Permission, drive: &Drive) -> Needed {
    match (drive.needs_name_typed(), allowed.name_typed, allowed.yes) {
        (true, true, _) | (false, _, true) => Needed::Nothing,
        (true, false, _) => Needed::Name,
        (false, _, false) => Needed::Yes,
    }
}

/// The confirmation: names the drive and what is mounted from it. A system drive, or a
/// fixed internal disk, is changed only after its name is typed, whatever `--yes` says.
fn ask(
    allowed: &Permission,
    incoming: &Incoming,
    drive: &Drive,
    reporter: &mut Reporter,
) -> Result<(), Failure> {
    let mut what = vec![drive.size_human.clone(), drive.description()];
    if drive.bus != Bus::Virtual {
        what.push(drive.bus.to_string());
    }
    if let Some(serial) = &drive.serial {
        what.push(format!("serial {serial}"));
    }
    let mut question = format!(
        "{} {} ({})?\n{}",
        incoming.label,
        drive.path.display(),
        what.join(", "),
        incoming.consequence,
    );
    let mounted: Vec<PathBuf> = drive.mountpoints().cloned().collect();
    if !mounted.is_empty() {
        question += &format!("\nMounted now, and unmounted first: {}", list(&mounted));
    }
    let needed = needed(allowed, drive);
    if needed == Needed::Nothing {
        for warning in &drive.warnings {
            reporter.note(
                &format!("Warning: {warning}"),
                json!({ "event": "warning", "warning": warning }),
            );
        }
        return Ok(());
    }
    for warning in &drive.warnings {
        question += &format!("\nWarning: {warning}");
    }
    if let Some(uses) = drive.system_uses() {
        question += &format!(
            "\n{} is a SYSTEM DRIVE of this computer: it holds {}.",
            drive.path.display(),
            uses.join(", ")
        );
    } else if drive.is_fixed_disk() {
        question += &format!(
            "\n{} is a FIXED DISK inside this computer, not a card or a USB drive.",
            drive.path.display()
        );
    }
    if allowed.in_window {
        // The window asked; a worker thread must never wait on a terminal.
        return Err(Failure::Refused(format!(
            "{question}\nThe window did not ask for the drive's name; choose the drive again"
        )));
    }
    let (consent, no_terminal) = match needed {
        Needed::Name => (
            Consent::Name(&drive.name, incoming.verb),
            format!(
                "a system drive or fixed disk is {}d only after its name is typed at a prompt \
                 (--yes is not enough), and standard input is not a terminal",
                incoming.verb
            ),
        ),
        _ => (
            Consent::Yes,
            "standard input is not a terminal, so pass --yes".to_owned(),
        ),
    };
    confirm::obtain(&question, consent, &no_terminal).map_err(Failure::Refused)
}

#[cfg(test)]
mod tests {
    use super::{needed, Needed, Permission};
    use crate::testing::{card, fixed_disk, system_drive};

    fn given(yes: bool, allow_system_drive: bool) -> Permission {
        Permission {
            yes,
            allow_system_drive,
            ..Permission::default()
        }
    }

    #[test]
    fn yes_is_consent_for_a_card_but_never_for_a_fixed_or_system_disk() {
        let card = card(32_000_000_000);
        assert_eq!(needed(&given(false, false), &card), Needed::Yes);
        assert_eq!(needed(&given(true, false), &card), Needed::Nothing);
        for drive in [fixed_disk(500_000_000_000), system_drive(500_000_000_000)] {
            for permission in [given(false, false), given(true, false), given(true, true)] {
                assert_eq!(needed(&permission, &drive), Needed::Name, "{drive:?}");
            }
            // The window asked for the name and the user typed it.
            let mut window = given(false, true);
            window.given_in_window(true, Some(drive.identity()));
            assert_eq!(needed(&window, &drive), Needed::Nothing);
            let mut window = given(false, true);
            window.given_in_window(false, Some(drive.identity()));
            assert_eq!(needed(&window, &drive), Needed::Name);
        }
    }
}
