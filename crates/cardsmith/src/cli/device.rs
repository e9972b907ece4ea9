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

/// What the user allowed on the command line (or in the wizard), for the verbs that erase
/// a drive (write, erase).
#[derive(clap::Args, Clone, Default)]
pub struct Permission {
    /// Do not ask for confirmation (required when standard input is not a terminal; not
    /// enough for a system drive or a fixed disk, whose name must be typed)
    #[arg(long, short = 'y')]
    pub yes: bool,
    /// Allow erasing a drive the running system uses (/boot, /home, swap…); its name must
    /// still be typed at a prompt. The drive holding / is never erased.
    #[arg(long)]
    pub allow_system_drive: bool,
    /// The wizard asked for the drive's name and the user typed it.
    #[arg(skip)]
    pub name_typed: bool,
    /// The wizard's confirmation was for this drive: any other is refused, and nothing is
    /// ever asked on a terminal.
    #[arg(skip)]
    pub window: Option<Identity>,
}

impl Permission {
    /// The wizard confirmed `confirmed` in its window (and had its name typed when needed).
    pub fn given_in_window(&mut self, name_typed: bool, confirmed: Option<Identity>) {
        self.yes = true;
        self.name_typed = name_typed;
        self.window = confirmed;
    }
}

/// What is about to land on the drive: the sentence the question uses, and the source file
/// (a drive holding it is refused).
pub struct Incoming {
    pub label: String,
    pub image: Option<(DevNum, Option<PathBuf>, String)>,
}

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
            image: source,
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

/// The confirmation: names the drive and what is mounted from it. A system drive, or a
/// fixed internal disk, is erased only after its name is typed, whatever `--yes` says.
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
        "{} {} ({})?\nEverything on it will be erased.",
        incoming.label,
        drive.path.display(),
        what.join(", "),
    );
    let mounted: Vec<PathBuf> = drive.mountpoints().cloned().collect();
    if !mounted.is_empty() {
        question += &format!("\nMounted now, and unmounted first: {}", list(&mounted));
    }
    let system = drive.system_uses();
    let must_type_name = system.is_some() || drive.is_fixed_disk();
    if allowed.yes && (!must_type_name || allowed.name_typed) {
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
    if let Some(uses) = system {
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
    if allowed.window.is_some() {
        // The window asked; a worker thread must never wait on a terminal.
        return Err(Failure::Refused(format!(
            "{question}\nThe window did not ask for the drive's name; choose the drive again"
        )));
    }
    let (consent, no_terminal) = if must_type_name {
        (
            Consent::Name(&drive.name),
            "a system drive or fixed disk is erased only after its name is typed at a prompt, \
             and standard input is not a terminal",
        )
    } else {
        (
            Consent::Yes,
            "standard input is not a terminal, so pass --yes",
        )
    };
    confirm::obtain(&question, consent, no_terminal).map_err(Failure::Refused)
}
