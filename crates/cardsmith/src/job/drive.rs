//! Changing a drive: everything between the path a job names and an opened target. Find
//! the drive, refuse what must not be erased, ask through the sink, unmount, open
//! exclusively.

use std::path::{Path, PathBuf};

use cardsmith_drives::{
    check_same, open_for_writing, unmount_all, Access, Bus, DevNum, Drive, Identity, Snapshot,
};
use cardsmith_engine::{Image, Input, Target};

use super::{Ask, Event, Failure, Run};

/// What the user allowed, for the jobs that change a drive (write, erase, customize).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Permission {
    /// Consent is already given for a card (`--yes`, or the window's confirmation); not
    /// enough for a system drive or a fixed disk, whose name must be typed.
    pub yes: bool,
    /// A drive the running system uses (/boot, /home, swap…) may be changed; its name must
    /// still be typed. The drive holding / is never changed.
    pub allow_system_drive: bool,
}

/// What is about to happen to the drive: the sentence the question starts with, what it
/// does to the drive, and the source file (a drive holding it is refused).
pub struct Incoming {
    pub label: String,
    pub consequence: &'static str,
    /// The same for several drives at once.
    pub for_each: &'static str,
    /// What is done to the drive, as the prompt for its name says it ("erase", "change").
    pub verb: &'static str,
    pub image: Option<(DevNum, Option<PathBuf>, String)>,
    /// The card is held to the capacity a check found (all but the check itself).
    pub held_to_checked: bool,
}

/// What a write or erase does to the drive.
const ERASED: &str = "Everything on it will be erased.";

impl Incoming {
    /// Writing `image` over the drive.
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
            for_each: "Everything on each of them will be erased.",
            verb: "erase",
            image: source,
            held_to_checked: true,
        }
    }

    /// Erasing the drive.
    pub fn erase() -> Incoming {
        Incoming {
            label: "Erase".into(),
            consequence: ERASED,
            for_each: "Everything on each of them will be erased.",
            verb: "erase",
            image: None,
            held_to_checked: true,
        }
    }

    /// Writing test patterns over the drive (`cardsmith check --write`).
    pub fn check() -> Incoming {
        Incoming {
            label: "Check the real capacity of".into(),
            consequence: "Test patterns are written across it: everything on it will be erased.",
            for_each: "Test patterns are written across each: everything on them will be erased.",
            verb: "erase",
            image: None,
            held_to_checked: false,
        }
    }

    /// Replacing first-boot files on the drive's boot partition.
    pub fn customise() -> Incoming {
        Incoming {
            label: "Customise".into(),
            consequence: "Files on its boot partition will be replaced (first-boot settings).",
            for_each: "Files on each boot partition will be replaced (first-boot settings).",
            verb: "change",
            image: None,
            held_to_checked: true,
        }
    }
}

/// A drive, checked, confirmed, unmounted and opened.
pub struct OpenedDrive {
    pub drive: Drive,
    pub target: Target,
    pub unmounted: Vec<PathBuf>,
}

/// Opens the drive at `path` for `incoming`: the drive `confirmed` (the window's choice)
/// and no other, when given.
pub fn open_drive(
    allowed: &Permission,
    path: &Path,
    confirmed: Option<&Identity>,
    incoming: &Incoming,
    run: &mut Run<'_>,
) -> Result<OpenedDrive, Failure> {
    let snapshot = Snapshot::capture()?;
    let checked = check_drive(&snapshot, allowed, path, confirmed, incoming)?;
    ask(allowed, incoming, &checked.drive, run)?;
    open_checked(checked, incoming, run)
}

/// A drive a job wants, among several.
#[derive(Debug, Clone, PartialEq)]
pub struct Wanted {
    pub path: PathBuf,
    /// The drive the user confirmed at that path, and no other (the window's choice).
    pub confirmed: Option<Identity>,
    /// What this card gets besides the image, as the confirmation lists it ("host name
    /// node01").
    pub gets: Option<String>,
}

/// A drive found and checked: not yet asked for, unmounted or opened.
pub struct Checked {
    pub drive: Drive,
    access: Access,
    confirmed: Option<Identity>,
}

/// Several drives for one job: every one is checked before any is asked for, so one that
/// must not be changed refuses the whole run before anything is touched (or, with
/// `skip_refused`, is left out and reported). Then one question lists them all (a system
/// drive or fixed disk still has its own name typed), and each is unmounted and opened,
/// its identity checked again. Each entry is the drive, or why it was left out.
pub fn open_drives(
    allowed: &Permission,
    wanted: &[Wanted],
    incoming: &Incoming,
    skip_refused: bool,
    run: &mut Run<'_>,
) -> Result<Vec<Result<OpenedDrive, Failure>>, Failure> {
    let snapshot = Snapshot::capture()?;
    let mut checked = Vec::new();
    for want in wanted {
        let found = check_drive(
            &snapshot,
            allowed,
            &want.path,
            want.confirmed.as_ref(),
            incoming,
        );
        match found {
            Ok(c) => checked.push(Ok(c)),
            Err(e) if skip_refused => {
                run.event(Event::warning(format!(
                    "Left out {}: {e}",
                    want.path.display()
                )));
                checked.push(Err(e));
            }
            Err(e) => {
                return Err(Failure::Refused(format!(
                    "{}: {e}\nNothing was written to any of the {} cards (--skip-refused \
                     writes the others)",
                    want.path.display(),
                    wanted.len()
                )))
            }
        }
    }
    let going: Vec<(&Checked, Option<&str>)> = checked
        .iter()
        .zip(wanted)
        .filter_map(|(c, w)| Some((c.as_ref().ok()?, w.gets.as_deref())))
        .collect();
    if going.is_empty() {
        return Err(Failure::Refused(
            "every card was refused: nothing was written".into(),
        ));
    }
    ask_all(allowed, incoming, &going, run)?;
    Ok(checked
        .into_iter()
        .map(|c| c.and_then(|c| open_checked(c, incoming, run)))
        .collect())
}

/// Finds the drive at `path` and applies every rule that needs no answer: the drive the
/// user confirmed, not the root drive (nor another system drive unless allowed), not the
/// one holding the image.
fn check_drive(
    snapshot: &Snapshot,
    allowed: &Permission,
    path: &Path,
    confirmed: Option<&Identity>,
    incoming: &Incoming,
) -> Result<Checked, Failure> {
    let drive = snapshot.find(path)?.clone();
    if let Some(confirmed) = confirmed {
        check_same(confirmed, &drive.identity())?;
    }
    drive.check_writable(allowed.allow_system_drive)?;
    if let Some((dev, file, describe)) = &incoming.image {
        snapshot.check_not_holding(&drive, *dev, file.as_deref(), describe)?;
    }
    let access = Access::for_device(&drive.path)?;
    Ok(Checked {
        drive,
        access,
        confirmed: confirmed.cloned(),
    })
}

/// Unmounts what is mounted from the drive and opens it exclusively, as the drive that was
/// checked (or confirmed) and no other.
fn open_checked(
    checked: Checked,
    incoming: &Incoming,
    run: &mut Run<'_>,
) -> Result<OpenedDrive, Failure> {
    let Checked {
        drive,
        access,
        confirmed,
    } = checked;
    let unmounted = unmount_all(&drive, &access)?;
    for point in &unmounted {
        run.event(Event::Unmounted {
            mountpoint: point.clone(),
        });
    }
    let identity = confirmed.unwrap_or_else(|| drive.identity());
    let file = open_for_writing(&identity, &access)?;
    let mut target = Target::from_device(&drive.path, file)?;
    if incoming.held_to_checked {
        super::checks::hold_to_real(&identity, &mut target, run);
    }
    Ok(OpenedDrive {
        drive,
        target,
        unmounted,
    })
}

/// Paths for people: "/media/a, /media/b".
pub fn list(paths: &[PathBuf]) -> String {
    paths
        .iter()
        .map(|p| p.display().to_string())
        .collect::<Vec<_>>()
        .join(", ")
}

/// What a person must do before a drive is changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Needed {
    /// Nothing more: consent was given with the job.
    Nothing,
    /// Answer "yes".
    Yes,
    /// Type the drive's name: a system drive or a fixed internal disk, which "yes" out of
    /// habit, or `--yes` in a script, must not erase.
    Name,
}

/// The one rule for every job that changes a drive (write, erase, customize).
pub fn needed(allowed: &Permission, drive: &Drive) -> Needed {
    match (drive.needs_name_typed(), allowed.yes) {
        (true, _) => Needed::Name,
        (false, true) => Needed::Nothing,
        (false, false) => Needed::Yes,
    }
}

/// The drive for people: "29.7 GiB, SanDisk Ultra, USB, serial 1234".
fn described(drive: &Drive) -> String {
    let mut what = vec![drive.size_human.clone(), drive.description()];
    if drive.bus != Bus::Virtual {
        what.push(drive.bus.to_string());
    }
    if let Some(serial) = &drive.serial {
        what.push(format!("serial {serial}"));
    }
    what.join(", ")
}

/// The warnings and the system-drive or fixed-disk sentence the question adds for `drive`.
fn cautions(drive: &Drive) -> String {
    let mut text = String::new();
    for warning in &drive.warnings {
        text += &format!("\nWarning: {warning}");
    }
    if let Some(uses) = drive.system_uses() {
        text += &format!(
            "\n{} is a SYSTEM DRIVE of this computer: it holds {}.",
            drive.path.display(),
            uses.join(", ")
        );
    } else if drive.is_fixed_disk() {
        text += &format!(
            "\n{} is a FIXED DISK inside this computer, not a card or a USB drive.",
            drive.path.display()
        );
    }
    text
}

/// The confirmation: names the drive and what is mounted from it. A system drive, or a
/// fixed internal disk, is changed only after its name is typed, whatever `--yes` says.
fn ask(
    allowed: &Permission,
    incoming: &Incoming,
    drive: &Drive,
    run: &mut Run<'_>,
) -> Result<(), Failure> {
    let mut question = format!(
        "{} {} ({})?\n{}",
        incoming.label,
        drive.path.display(),
        described(drive),
        incoming.consequence,
    );
    let mounted: Vec<PathBuf> = drive.mountpoints().cloned().collect();
    if !mounted.is_empty() {
        question += &format!("\nMounted now, and unmounted first: {}", list(&mounted));
    }
    let needed = needed(allowed, drive);
    if needed == Needed::Nothing {
        for warning in &drive.warnings {
            run.event(Event::warning(warning.to_string()));
        }
        return Ok(());
    }
    question += &cautions(drive);
    put(
        run,
        Ask {
            question,
            needed,
            drives: vec![drive.identity()],
            name: drive.name.clone(),
            verb: incoming.verb,
        },
    )
}

/// One question for several drives, each on a line of its own with what it gets. A drive
/// whose name must be typed (a system drive, a fixed disk) is asked for on its own first.
fn ask_all(
    allowed: &Permission,
    incoming: &Incoming,
    going: &[(&Checked, Option<&str>)],
    run: &mut Run<'_>,
) -> Result<(), Failure> {
    if let [(checked, _)] = going {
        return ask(allowed, incoming, &checked.drive, run);
    }
    for (checked, _) in going {
        if needed(allowed, &checked.drive) == Needed::Name {
            ask(allowed, incoming, &checked.drive, run)?;
        }
    }
    let mut question = format!("{} {} cards?", incoming.label, going.len());
    let mut mounted = Vec::new();
    for (checked, gets) in going {
        let drive = &checked.drive;
        question += &format!("\n  {} ({})", drive.path.display(), described(drive));
        if let Some(gets) = gets {
            question += &format!(": {gets}");
        }
        mounted.extend(drive.mountpoints().cloned());
    }
    question += &format!("\n{}", incoming.for_each);
    if !mounted.is_empty() {
        question += &format!("\nMounted now, and unmounted first: {}", list(&mounted));
    }
    if allowed.yes {
        for (checked, _) in going {
            for warning in &checked.drive.warnings {
                run.event(Event::warning(format!(
                    "{}: {warning}",
                    checked.drive.path.display()
                )));
            }
        }
        return Ok(());
    }
    for (checked, _) in going {
        question += &cautions(&checked.drive);
    }
    put(
        run,
        Ask {
            question,
            needed: Needed::Yes,
            drives: going.iter().map(|(c, _)| c.drive.identity()).collect(),
            name: String::new(),
            verb: incoming.verb,
        },
    )
}

/// Asks through the sink; Ctrl-C at the question ends cardsmith, not a job.
fn put(run: &mut Run<'_>, ask: Ask) -> Result<(), Failure> {
    run.sink.watching_cancel(false);
    let answer = run.sink.consent(&ask);
    run.sink.watching_cancel(true);
    answer.map_err(Failure::Refused)
}

#[cfg(test)]
mod tests {
    use super::{needed, Needed, Permission};
    use crate::testing::{card, fixed_disk, system_drive};

    fn given(yes: bool, allow_system_drive: bool) -> Permission {
        Permission {
            yes,
            allow_system_drive,
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
        }
    }
}
