//! The wizard clicked through by visible text in iced_test's simulator, with the bundled
//! sample catalog and a file as target; the job itself runs for real through the window's
//! sink (`work`); every language has every string.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::MutexGuard;
use std::time::Duration;

use cardsmith_catalog::{load, Http};
use cardsmith_engine::Phase;
use iced::widget::Id;
use iced_test::{Error, Simulator};

use super::app::{App, Message};
use super::state::{CatalogState, Screen};
use super::work::{Ended, Job, Kind, Update};
use crate::job::{Destination, Event, Left, ReadJob, Report, Source, WriteJob};

fn repo() -> String {
    concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../os-list-sample/os_list.json"
    )
    .to_owned()
}

/// The tests share rust-i18n's one global locale: one at a time.
static LOCALE: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// Holds the locale for one test (a test that failed while holding it does not matter).
fn one_locale_at_a_time() -> MutexGuard<'static, ()> {
    LOCALE.lock().unwrap_or_else(|e| e.into_inner())
}

/// A wizard in English with the bundled catalog loaded, as if the worker had finished, and
/// the locale held until the guard is dropped (every view depends on it).
fn wizard() -> (MutexGuard<'static, ()>, App) {
    let guard = one_locale_at_a_time();
    rust_i18n::set_locale("en");
    let (mut app, _) = App::new("en".into(), Some(repo()), Default::default());
    let http = Http::new(Duration::from_secs(5)).unwrap();
    let loaded = load(Some(&repo()), &http, None).expect("the sample catalog loads");
    app.wizard.catalog = CatalogState::Ready(Box::new(loaded));
    (guard, app)
}

/// The wizard's view in a simulated window as tall as the longest screen.
fn simulator(view: iced::Element<'_, Message>) -> Simulator<'_, Message> {
    Simulator::with_size(iced::Settings::default(), (1000.0, 1600.0), view)
}

/// Clicks the widget showing `label` and feeds the resulting messages to the app.
fn click(app: &mut App, label: &str) -> Result<(), Error> {
    let mut ui = simulator(app.view());
    ui.click(label)?;
    let messages: Vec<Message> = ui.into_messages().collect();
    assert!(!messages.is_empty(), "clicking {label:?} did nothing");
    for m in messages {
        let _ = app.update(m);
    }
    Ok(())
}

/// Types into the text input `field`.
fn type_into(app: &mut App, field: Id, text: &str) -> Result<(), Error> {
    let mut ui = simulator(app.view());
    ui.click(field)?;
    ui.typewrite(text);
    for m in ui.into_messages() {
        let _ = app.update(m);
    }
    Ok(())
}

fn shows(app: &App, text: &str) -> bool {
    simulator(app.view()).find(text).is_ok()
}

fn choose_everything(app: &mut App, target: &Path) -> Result<(), Error> {
    click(app, "CHOOSE DEVICE")?;
    assert_eq!(app.wizard.screen, Screen::Device);
    click(app, "Raspberry Pi 4")?;
    assert_eq!(app.wizard.device.as_deref(), Some("Raspberry Pi 4"));
    assert!(
        shows(app, "Raspberry Pi 4"),
        "the start screen names the device"
    );

    click(app, "CHOOSE OS")?;
    assert_eq!(app.wizard.screen, Screen::Os);
    assert!(shows(app, "Other demos ›"), "categories are listed");
    click(app, "cardsmith demo (systemd)")?;
    assert!(shows(app, "cardsmith demo (systemd)"));

    click(app, "CHOOSE STORAGE")?;
    assert_eq!(app.wizard.screen, Screen::Storage);
    type_into(app, Id::new("file-path"), &target.display().to_string())?;
    click(app, "Use this file")?;
    assert_eq!(app.wizard.screen, Screen::Start);
    Ok(())
}

#[test]
fn a_user_clicks_through_to_the_confirmation() -> Result<(), Error> {
    let dir = tempfile::tempdir().unwrap();
    let target = dir.path().join("card.img");
    let (_locale, mut app) = wizard();
    let mut ui = simulator(app.view());
    for label in ["CHOOSE DEVICE", "CHOOSE OS", "CHOOSE STORAGE", "NEXT"] {
        assert!(ui.find(label).is_ok(), "the start screen shows {label}");
    }
    ui.click("NEXT")?;
    assert_eq!(
        ui.into_messages().count(),
        0,
        "NEXT waits until the three are chosen"
    );

    choose_everything(&mut app, &target)?;
    click(&mut app, "NEXT")?;
    assert_eq!(app.wizard.screen, Screen::AskCustomize);
    click(&mut app, "EDIT SETTINGS")?;
    type_into(&mut app, Id::new("hostname"), "bad_name")?;
    click(&mut app, "SAVE")?;
    assert_eq!(
        app.wizard.screen,
        Screen::Settings,
        "a bad host name keeps the editor open"
    );
    assert!(
        shows(&app, "hostname \"bad_name\" is not valid: only letters a-z, digits and hyphens are allowed (no dots, spaces or underscores)"),
        "the message stands next to the field"
    );
    app.wizard.form.hostname.clear();
    type_into(&mut app, Id::new("hostname"), "lab-pi")?;
    click(&mut app, "SAVE")?;
    assert_eq!(app.wizard.screen, Screen::AskCustomize);
    click(&mut app, "YES")?;
    assert_eq!(app.wizard.screen, Screen::Confirm);
    assert!(shows(&app, &format!("the file {}", target.display())));
    assert!(shows(
        &app,
        "The OS customisation settings will be applied."
    ));
    let Some(Job::Write(job)) = app.wizard.job() else {
        panic!("a write")
    };
    assert!(matches!(&job.source, Source::Os(e) if e.name == "cardsmith demo (systemd)"));
    assert_eq!(job.target, Destination::File(target.clone()));
    assert!(job.verify && job.force && job.permission.yes);
    assert_eq!(
        job.settings.as_ref().and_then(|s| s.hostname.as_deref()),
        Some("lab-pi")
    );
    Ok(())
}

#[test]
fn progress_events_cancel_and_errors_are_shown() -> Result<(), Error> {
    let dir = tempfile::tempdir().unwrap();
    let (_locale, mut app) = wizard();
    choose_everything(&mut app, &dir.path().join("card.img"))?;
    click(&mut app, "NEXT")?;
    click(&mut app, "NO")?;
    // Start the job by hand, so the test owns its events.
    app.wizard.running = Some(super::state::Running::default());
    let cancel = cardsmith_engine::CancelToken::new();
    app.wizard.cancel = Some(cancel.clone());
    app.wizard.screen = Screen::Progress;
    let _ = app.update(Message::Job(Update::Event(Event::Progress {
        phase: Phase::Write,
        bytes_done: 25 << 20,
        bytes_total: Some(100 << 20),
        rate: 50_000_000,
    })));
    assert!(shows(&app, "Downloading and writing"));
    assert!(shows(&app, "25% · 26.2 MB · 50.0 MB/s · 2 s left"));
    click(&mut app, "CANCEL")?;
    assert!(cancel.is_cancelled(), "Cancel really stops the job");
    assert!(shows(&app, "Cancelling…"));
    let error = "cancelled (Ctrl-C, or Cancel in the window)";
    let _ = app.update(ended(error, true, Some(Left::FileRemoved)));
    assert!(shows(&app, "Cancelled"));
    assert!(shows(&app, "The unfinished image file was removed."));
    assert!(
        !shows(&app, "The card was left with its first MiB zeroed: it boots nothing half-written. Write or erase it again before using it."),
        "a file target has no first MiB zeroed to speak of"
    );

    click(&mut app, "BACK TO START")?;
    app.wizard.running = Some(super::state::Running::default());
    let long = "SHA-256 of the download is 00aa, not 11bb as published; nothing was written to the start of the target. The download is corrupt, or the catalog is wrong";
    let _ = app.update(ended(long, false, None));
    assert!(shows(&app, "Writing failed"));
    assert!(shows(&app, long), "the error is shown in full");
    Ok(())
}

#[test]
fn closing_the_window_during_a_job_cancels_it_and_waits_for_it() {
    let (_locale, mut app) = wizard();
    // No job: the window closes at once (the exit task has one unit of work).
    assert_eq!(app.update(Message::CloseRequested).units(), 1);

    app.wizard.running = Some(super::state::Running::default());
    let cancel = cardsmith_engine::CancelToken::new();
    app.wizard.cancel = Some(cancel.clone());
    app.wizard.screen = Screen::Progress;
    let task = app.update(Message::CloseRequested);
    assert_eq!(task.units(), 0, "the window stays while the job stops");
    assert!(cancel.is_cancelled(), "closing cancels the job");
    assert!(shows(&app, "Cancelling…"));
    let task = app.update(Message::Job(Update::Event(Event::Progress {
        phase: Phase::Write,
        bytes_done: 1,
        bytes_total: None,
        rate: 0,
    })));
    assert_eq!(task.units(), 0);
    let task = app.update(ended("cancelled", true, Some(Left::Zeroed)));
    assert_eq!(task.units(), 1, "the program ends once the job has stopped");
}

#[test]
fn the_job_is_the_cli_write_and_reports_to_the_window() {
    let dir = tempfile::tempdir().unwrap();
    let target = dir.path().join("card.img");
    let settings = cardsmith_customize::Settings {
        hostname: Some("wizard-pi".into()),
        ..cardsmith_customize::Settings::default()
    };
    let job = WriteJob {
        settings: Some(settings),
        ..WriteJob::new(demo_os(), Destination::File(target.clone()))
    };
    let events = window_job(Job::Write(Box::new(job)), None);
    assert!(events.iter().any(|e| matches!(
        e,
        Update::Event(Event::Progress {
            phase: Phase::Verify,
            ..
        })
    )));
    assert!(
        events
            .iter()
            .any(|e| matches!(e, Update::Event(Event::Customized(c))
            if c.text.contains("hostname wizard-pi"))),
        "{events:?}"
    );
    let Some(Update::Ended(end)) = events.last() else {
        panic!("no end: {events:?}");
    };
    let text = &end.text;
    assert!(end.report.is_some(), "no success: {text}");
    assert!(text.contains("verified"), "{text}");
    // The file holds the demo image byte for byte, but for the boot partition, which holds
    // the settings (read back by mtools, not by cardsmith).
    let written = std::fs::read(&target).unwrap();
    let image = demo_image();
    assert_eq!(written.len(), image.len());
    let (start, len) = first_partition(&image);
    assert_eq!(
        written[..start],
        image[..start],
        "before the boot partition"
    );
    assert_eq!(
        written[start + len..],
        image[start + len..],
        "after the boot partition"
    );
    let script = mtype(&target, start, "firstrun.sh");
    assert!(script.contains("wizard-pi"), "{script}");
}

/// The bundled systemd demo image, decompressed by xz (not by cardsmith).
fn demo_image() -> Vec<u8> {
    let out = std::process::Command::new("xz")
        .args(["-dc"])
        .arg(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../os-list-sample/demo-systemd.img.xz"
        ))
        .output()
        .expect("xz (xz-utils) is needed");
    assert!(out.status.success());
    out.stdout
}

/// The first MBR partition's byte offset and length.
fn first_partition(image: &[u8]) -> (usize, usize) {
    let entry = &image[0x1BE..0x1CE];
    let lba = u32::from_le_bytes(entry[8..12].try_into().unwrap()) as usize;
    let sectors = u32::from_le_bytes(entry[12..16].try_into().unwrap()) as usize;
    (lba * 512, sectors * 512)
}

/// A file from the FAT partition at `offset` of `image`, as mtools reads it.
fn mtype(image: &Path, offset: usize, name: &str) -> String {
    let out = std::process::Command::new("mtype")
        .arg("-i")
        .arg(format!("{}@@{offset}", image.display()))
        .arg(format!("::{name}"))
        .env("MTOOLS_SKIP_CHECK", "1")
        .output()
        .expect("mtype (mtools) is needed");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Runs a job as the window does (through its sink; `confirmed` is the drive the window
/// asked about), and returns everything it reported, its end last.
fn window_job(job: Job, confirmed: Option<cardsmith_drives::Identity>) -> Vec<Update> {
    let updates = super::work::spawn(
        job,
        cardsmith_engine::CancelToken::new(),
        confirmed,
        false,
        "crashed".into(),
    );
    iced::futures::executor::block_on(iced::futures::StreamExt::collect(updates))
}

/// The bundled catalog's systemd demo OS.
fn demo_os() -> Source {
    let http = Http::new(Duration::from_secs(5)).unwrap();
    let loaded = load(Some(&repo()), &http, None).expect("the sample catalog loads");
    let (_, entry) =
        cardsmith_catalog::find_os(&loaded.catalog.os_list, "cardsmith demo (systemd)")
            .expect("the demo OS");
    Source::Os(Box::new(entry.clone()))
}

/// A job's end as the worker sends it.
fn ended(text: &str, cancelled: bool, left: Option<Left>) -> Message {
    Message::Job(Update::Ended(Box::new(Ended {
        report: None,
        text: text.into(),
        cancelled,
        left,
    })))
}

/// The keys of a flat `key: "value"` locale file.
fn keys(path: &Path) -> BTreeSet<String> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .filter_map(|l| l.split_once(':').map(|(k, _)| k.trim().to_owned()))
        .filter(|k| !k.starts_with('_') && !k.is_empty())
        .collect()
}

#[test]
fn every_language_has_every_string() {
    let dir = PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../../locales"));
    let english = keys(&dir.join("en.yml"));
    for (code, _) in super::LANGUAGES {
        let file = dir.join(format!("{code}.yml"));
        assert!(file.exists(), "no {}", file.display());
        let have = keys(&file);
        let missing: Vec<_> = english.difference(&have).collect();
        let extra: Vec<_> = have.difference(&english).collect();
        assert!(
            missing.is_empty() && extra.is_empty(),
            "{code}: missing {missing:?}, unknown {extra:?}"
        );
        // rust-i18n fills %{name}; a bare {name} would be shown as it is.
        let text = std::fs::read_to_string(&file).unwrap();
        for line in text.lines() {
            let bare = line
                .match_indices('{')
                .any(|(at, _)| !line[..at].ends_with('%'));
            assert!(!bare, "{code}: a placeholder without % in {line:?}");
        }
    }
    // Every key the code asks for exists.
    let source =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/src/gui/app.rs")).unwrap();
    let mut used = 0;
    for (at, _) in source.match_indices("t!(\"") {
        let before = source[..at].chars().next_back();
        if before.is_some_and(|c| c.is_alphanumeric() || c == '_') {
            continue; // format!(", println!(", …
        }
        let key = source[at + 4..].split('"').next().unwrap();
        assert!(
            english.contains(key),
            "the code uses {key:?}, which en.yml lacks"
        );
        used += 1;
    }
    assert!(used > 50, "found only {used} translated strings");
}

#[test]
fn the_language_can_be_changed_in_the_app() -> Result<(), Error> {
    let (_locale, mut app) = wizard();
    let _ = app.update(Message::Language(super::app::Language("de", "Deutsch")));
    assert!(shows(&app, "GERÄT WÄHLEN"));
    let _ = app.update(Message::Language(super::app::Language("en", "English")));
    assert!(shows(&app, "CHOOSE DEVICE"));
    Ok(())
}

#[test]
fn read_a_card_is_the_cli_read() -> Result<(), Error> {
    let (_locale, mut app) = wizard();
    click(&mut app, "READ A CARD")?;
    assert_eq!(app.wizard.screen, Screen::Read);
    assert!(shows(&app, "Read a card into an image file"));
    assert!(shows(
        &app,
        "Backup file to create: .img (raw), .img.zst, .img.xz or .img.gz"
    ));
    assert!(app.wizard.read_job().is_none(), "nothing chosen yet");

    // Picking a drive proposes a zstd backup in the home folder; the toggle asks for only
    // the partitions. (No read is started here: the drive is made up.)
    let drive = crate::testing::card(32_000_000_000);
    app.wizard.drives = vec![drive.clone()];
    let label = format!(
        "{} — {} ({})",
        drive.description(),
        drive.size_human,
        drive.path.display()
    );
    click(&mut app, &label)?;
    assert_eq!(app.wizard.read_source.as_deref(), Some(drive.name.as_str()));
    assert!(
        app.wizard
            .read_output
            .ends_with(&format!("{}-backup.img.zst", drive.name)),
        "{}",
        app.wizard.read_output
    );
    // (A toggler's label is not a text widget the simulator can find by its words.)
    let _ = app.update(Message::ReadAllocatedOnly(true));
    let job = app.wizard.read_job().expect("ready to read");
    assert_eq!(
        job,
        ReadJob {
            source: drive.path.clone(),
            output: PathBuf::from(&app.wizard.read_output),
            allocated_only: true,
            force: false,
            confirmed: Some(drive.identity()),
        }
    );
    app.wizard.drives.clear();
    app.wizard.read_source = None;

    // The job behind READ: `cardsmith read SOURCE OUTPUT`, here from a file.
    let dir = tempfile::tempdir().unwrap();
    let source = dir.path().join("card.bin");
    let data: Vec<u8> = (0..3_000_000u32).map(|i| (i % 251) as u8).collect();
    std::fs::write(&source, &data).unwrap();
    let out = dir.path().join("backup.img");
    let job = ReadJob {
        source: source.clone(),
        output: out.clone(),
        allocated_only: false,
        force: false,
        confirmed: None,
    };
    let events = window_job(Job::Read(job), None);
    let Some(Update::Ended(end)) = events.last() else {
        panic!("no end: {events:?}");
    };
    let Some(Report::Read(report)) = &end.report else {
        panic!("no success: {}", end.text);
    };
    assert_eq!(std::fs::read(&out).unwrap(), data);
    let sha = report.sha256.clone();
    let _ = app.update(Message::Go(Screen::Progress));
    app.wizard.running = Some(super::state::Running::default());
    for e in events {
        let _ = app.update(Message::Job(e));
    }
    assert!(shows(&app, "Done"));
    let text = app.wizard.outcome.as_ref().unwrap().text.clone();
    assert!(
        text.contains(&sha),
        "the done screen names the SHA-256: {text}"
    );
    Ok(())
}

#[test]
fn icons_resolve_against_the_catalog_and_fall_back_offline() {
    let (_locale, app) = wizard();
    let Some(loaded) = app.wizard.loaded() else {
        panic!("loaded")
    };
    let urls = super::app::icon_urls(loaded);
    assert_eq!(urls.len(), 1, "{urls:?}");
    let (name, location) = &urls[0];
    assert!(name.ends_with("os-list-sample/demo-icon.png"), "{name}");
    let cardsmith_catalog::Location::Path(path) = location else {
        panic!("{location:?}")
    };
    assert!(path.exists(), "{}", path.display());
}

#[test]
fn erase_needs_a_drive_and_skips_the_settings() -> Result<(), Error> {
    let dir = tempfile::tempdir().unwrap();
    let (_locale, mut app) = wizard();
    click(&mut app, "CHOOSE OS")?;
    click(&mut app, "Erase")?;
    assert_eq!(app.wizard.os, Some(super::state::OsChoice::Erase));
    click(&mut app, "CHOOSE STORAGE")?;
    type_into(
        &mut app,
        Id::new("file-path"),
        &dir.path().join("x.img").display().to_string(),
    )?;
    click(&mut app, "Use this file")?;
    assert!(!app.wizard.ready(), "a file cannot be erased as a card");
    assert!(app.wizard.job().is_none());
    Ok(())
}

#[test]
fn a_chosen_drive_that_changes_or_leaves_must_be_chosen_again() {
    let drive = crate::testing::card(32_000_000_000);
    let (_locale, mut app) = wizard();
    let choose = |app: &mut App| {
        app.wizard.drives = vec![drive.clone()];
        app.wizard.storage = Some(super::state::StorageChoice::Drive(Box::new(drive.clone())));
        app.wizard.typed_name = drive.name.clone();
        app.wizard.screen = Screen::Confirm;
    };
    choose(&mut app);
    let mut mounted = drive.clone();
    mounted.filesystem = None;
    let _ = app.update(Message::Drive(Box::new(cardsmith_drives::Event::Changed(
        mounted,
    ))));
    assert!(
        app.wizard.storage.is_some(),
        "a mount change is the same drive"
    );
    let mut other = drive.clone();
    other.size += 4096;
    other.serial = Some("ANOTHER-CARD".into());
    let _ = app.update(Message::Drive(Box::new(cardsmith_drives::Event::Changed(
        other,
    ))));
    assert!(
        app.wizard.storage.is_none(),
        "another card in the reader is not the one confirmed"
    );
    assert!(app.wizard.typed_name.is_empty());
    assert_eq!(app.wizard.screen, Screen::Start);
    choose(&mut app);
    let _ = app.update(Message::Drive(Box::new(cardsmith_drives::Event::Removed(
        drive.clone(),
    ))));
    assert!(app.wizard.storage.is_none());
}

/// A loop device over a file this test made, detached again when dropped.
struct TestLoop {
    dev: String,
}

impl TestLoop {
    fn attach(file: &Path) -> TestLoop {
        let out = std::process::Command::new("losetup")
            .args(["-f", "--show"])
            .arg(file)
            .output()
            .expect("losetup (mount) is needed");
        assert!(out.status.success(), "losetup: {out:?}");
        TestLoop {
            dev: String::from_utf8(out.stdout).unwrap().trim().to_owned(),
        }
    }
}

impl Drop for TestLoop {
    fn drop(&mut self) {
        let _ = std::process::Command::new("losetup")
            .args(["-d", &self.dev])
            .status();
    }
}

/// A block device node (never opened) in `dir`, with the made-up card's device number.
fn device_node(dir: &Path, name: &str, dev: cardsmith_drives::DevNum) -> PathBuf {
    let path = dir.join(name);
    let status = std::process::Command::new("mknod")
        .arg(&path)
        .arg("b")
        .arg(dev.major.to_string())
        .arg(dev.minor.to_string())
        .status()
        .expect("mknod (coreutils) is needed");
    assert!(
        status.success(),
        "mknod needs root, which the test command has"
    );
    path
}

#[test]
fn a_file_path_that_is_a_drive_is_refused_and_the_drive_list_offered() -> Result<(), Error> {
    let dir = tempfile::tempdir().unwrap();
    let (_locale, mut app) = wizard();
    let card = crate::testing::card(32_000_000_000);
    app.wizard.drives = vec![card.clone()];
    let node = device_node(dir.path(), "sdz", card.dev);
    let link = dir.path().join("by-id-link");
    std::os::unix::fs::symlink(&node, &link).unwrap();
    click(&mut app, "CHOOSE STORAGE")?;
    for path in [&node, &link] {
        app.wizard.file_path.clear();
        type_into(&mut app, Id::new("file-path"), &path.display().to_string())?;
        click(&mut app, "Use this file")?;
        assert_eq!(
            app.wizard.storage,
            None,
            "{} taken as a file",
            path.display()
        );
        assert_eq!(app.wizard.screen, Screen::Storage);
        assert!(shows(
            &app,
            &format!(
                "{} is a drive (a block device), not a file: it is never written as a file.",
                path.display()
            )
        ));
    }
    // The way on is the drive list, where the drive is named, warned about and confirmed.
    let offer = "Choose Generic STORAGE DEVICE (/dev/sdz) in the drive list";
    click(&mut app, offer)?;
    assert_eq!(
        app.wizard.storage,
        Some(super::state::StorageChoice::Drive(Box::new(card.clone())))
    );
    assert_eq!(app.wizard.screen, Screen::Start);

    // A device the list does not show, and one that may never be written.
    let _ = app.update(Message::Go(Screen::Storage));
    app.wizard.drives.clear();
    let _ = app.update(Message::UseFile);
    assert!(shows(
        &app,
        "It is not among the drives cardsmith lists: choose a drive from the list, or a file path."
    ));
    let mut root = crate::testing::system_drive(500_000_000_000);
    root.dev = card.dev;
    root.not_offered = vec![cardsmith_drives::Reason::Root {
        uses: vec!["/".into()],
    }];
    app.wizard.drives = vec![root];
    let _ = app.update(Message::UseFile);
    assert!(shows(
        &app,
        "That drive cannot be written: system drive: it holds the running system (/)"
    ));
    // A plain file is still a file.
    app.wizard.file_path.clear();
    let file = dir.path().join("card.img");
    type_into(&mut app, Id::new("file-path"), &file.display().to_string())?;
    click(&mut app, "Use this file")?;
    assert_eq!(
        app.wizard.storage,
        Some(super::state::StorageChoice::File(file))
    );
    Ok(())
}

#[test]
fn the_window_job_never_writes_a_block_device_given_as_a_file() {
    let dir = tempfile::tempdir().unwrap();
    let backing = dir.path().join("card.bin");
    std::fs::write(&backing, vec![0xAA; 8 << 20]).unwrap();
    let card = TestLoop::attach(&backing);
    let link = dir.path().join("link-to-card");
    std::os::unix::fs::symlink(&card.dev, &link).unwrap();
    for target in [card.dev.clone(), link.display().to_string()] {
        // The window chose "save to image file".
        let job = WriteJob {
            force: true,
            ..WriteJob::new(demo_os(), Destination::File(PathBuf::from(&target)))
        };
        let events = window_job(Job::Write(Box::new(job)), None);
        let Some(Update::Ended(end)) = events.last() else {
            panic!("no end: {events:?}");
        };
        assert!(end.report.is_none(), "{target} was written: {events:?}");
        assert_eq!(end.left, Some(Left::Untouched));
        let text = &end.text;
        assert!(
            text.contains("is a block device, not an image file: nothing was written. Choose it in the drive list"),
            "{text}"
        );
    }
    assert!(
        std::fs::read(&backing).unwrap().iter().all(|&b| b == 0xAA),
        "the card was written to"
    );
}

#[test]
fn a_large_drive_is_warned_about_in_the_list_and_before_consent() -> Result<(), Error> {
    let (_locale, mut app) = wizard();
    let big = crate::testing::card(256_000_000_000);
    app.wizard.drives = vec![big.clone()];
    let warning = "Warning: this drive is 256 GB, larger than SD cards and USB sticks usually are. Make sure it is not a backup or data disk.";
    click(&mut app, "CHOOSE OS")?;
    click(&mut app, "cardsmith demo (systemd)")?;
    click(&mut app, "CHOOSE STORAGE")?;
    assert!(shows(&app, warning), "in the drive list");
    app.wizard.pick_drive(&big.name);
    click(&mut app, "NEXT")?;
    click(&mut app, "NO")?;
    assert_eq!(app.wizard.screen, Screen::Confirm);
    assert!(shows(&app, warning), "on the confirmation, before WRITE");
    assert!(shows(&app, "WRITE"));
    Ok(())
}

#[test]
fn each_job_end_says_what_became_of_the_card_and_the_file() {
    let (_locale, mut app) = wizard();
    const SAID: [&str; 9] = [
        "Cancelled",
        "Reading failed",
        "Erasing failed",
        "Writing failed",
        "The card was only read and is unchanged. No unfinished backup was kept (an earlier file of that name is as it was).",
        "The card was left with its first MiB zeroed: it boots nothing half-written. Write or erase it again before using it.",
        "Nothing was written: the card (or file) is as it was.",
        "The image is written, but its first-boot settings are missing or incomplete: write it again, or customise it.",
        "Cleaning up failed too: the card or file may hold part of what was being written. Write or erase it again before using it.",
    ];
    let mut end = |kind: Kind, cancelled: bool, left: Left| -> Vec<&str> {
        app.wizard.last_kind = kind;
        app.wizard.running = Some(super::state::Running::default());
        let _ = app.update(ended("the error as the job says it", cancelled, Some(left)));
        SAID.into_iter().filter(|t| shows(&app, t)).collect()
    };
    assert_eq!(end(Kind::Read, true, Left::NothingKept), [SAID[0], SAID[4]]);
    assert_eq!(
        end(Kind::Read, false, Left::NothingKept),
        [SAID[1], SAID[4]]
    );
    assert_eq!(end(Kind::Erase, false, Left::Zeroed), [SAID[2], SAID[5]]);
    assert_eq!(end(Kind::Write, false, Left::Untouched), [SAID[3], SAID[6]]);
    assert_eq!(
        end(Kind::Write, false, Left::WithoutSettings),
        [SAID[3], SAID[7]]
    );
    assert_eq!(end(Kind::Write, true, Left::Zeroed), [SAID[0], SAID[5]]);
    assert_eq!(
        end(Kind::Write, false, Left::PartlyWritten),
        [SAID[3], SAID[8]]
    );
    // A job that ended without a word (a panic) is described by what it was.
    assert!(super::app::crashed(Kind::Read).contains("The card was only read and is unchanged"));
    assert!(super::app::crashed(Kind::Erase).contains("half-erased"));
    assert!(super::app::crashed(Kind::Write).contains("(or image file) may be half-written"));
}

#[test]
fn typed_passwords_are_dropped_once_hashed_and_never_printed() -> Result<(), Error> {
    let (_locale, mut app) = wizard();
    app.wizard.screen = Screen::Settings;
    type_into(&mut app, Id::new("user"), "alice")?;
    type_into(&mut app, Id::new("password"), "typed-secret-1")?;
    type_into(&mut app, Id::new("ssid"), "home")?;
    type_into(&mut app, Id::new("wifi-password"), "typed-wifi-2")?;
    let shown = format!(
        "{:?} {:?} {:?}",
        app.wizard.form,
        Message::Form(super::app::FormEdit::Password("typed-secret-1".into())),
        Message::Form(super::app::FormEdit::WifiPassword("typed-wifi-2".into())),
    );
    assert!(
        !shown.contains("typed-secret-1") && !shown.contains("typed-wifi-2"),
        "{shown}"
    );
    click(&mut app, "SAVE")?;
    assert_eq!(
        app.wizard.screen,
        Screen::AskCustomize,
        "{:?}",
        app.wizard.errors
    );
    assert_eq!(
        app.wizard.form.password, "",
        "the typed password is not kept"
    );
    assert_eq!(app.wizard.form.wifi_password, "");
    let first = app.wizard.settings.clone().unwrap();
    assert!(!format!("{first:?}").contains(&first.wifi[0].psk));

    // Back in the editor, the empty fields keep what was hashed...
    click(&mut app, "EDIT SETTINGS")?;
    assert!(shows(&app, "Saved (hashed): leave empty to keep it"));
    click(&mut app, "SAVE")?;
    assert_eq!(app.wizard.settings.as_ref(), Some(&first));
    // ... also after a save refused for another field and put right.
    click(&mut app, "EDIT SETTINGS")?;
    app.wizard.form.hostname = "bad_name".into();
    click(&mut app, "SAVE")?;
    assert_eq!(app.wizard.screen, Screen::Settings);
    app.wizard.form.hostname.clear();
    click(&mut app, "SAVE")?;
    assert_eq!(
        app.wizard.screen,
        Screen::AskCustomize,
        "{:?}",
        app.wizard.errors
    );
    assert_eq!(app.wizard.settings.as_ref(), Some(&first));
    // ... but a Wi-Fi key belongs to its network: another name needs the password again.
    click(&mut app, "EDIT SETTINGS")?;
    app.wizard.form.ssid = "office".into();
    click(&mut app, "SAVE")?;
    assert_eq!(app.wizard.screen, Screen::Settings);
    assert!(app
        .wizard
        .error(super::state::Field::WifiPassword)
        .is_some());
    Ok(())
}

#[test]
fn a_cached_web_catalog_naming_a_local_icon_is_not_read_from_disk() {
    // A copy cached by an older cardsmith keeps icons as the web catalog wrote them.
    let catalog = cardsmith_catalog::Catalog::from_json(
        br#"{"os_list": [
            {"name": "A", "url": "a.img", "icon": "file:///etc/hostname"},
            {"name": "B", "url": "b.img", "icon": "icons/b.png"}
        ]}"#,
    )
    .unwrap();
    let loaded = cardsmith_catalog::Loaded {
        catalog,
        asked: "https://example.org/lists/os.json".into(),
        origin: cardsmith_catalog::Origin::Cached {
            fetched_at: 0,
            error: "offline".into(),
        },
        notes: Vec::new(),
    };
    let urls = super::app::icon_urls(&loaded);
    let locations: Vec<String> = urls.iter().map(|(_, at)| at.to_string()).collect();
    assert_eq!(locations, ["https://example.org/lists/icons/b.png"]);
}

/// An image made by scripts/os-image with these files in its root filesystem.
fn os_image(dir: &Path, name: &str, files: &[(&str, &str)]) -> PathBuf {
    let root = dir.join(format!("{name}.root"));
    for (path, content) in files {
        let file = root.join(path);
        std::fs::create_dir_all(file.parent().unwrap()).unwrap();
        std::fs::write(&file, content).unwrap();
    }
    let image = dir.join(format!("{name}.img"));
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../../scripts/os-image");
    let out = std::process::Command::new(script)
        .args([image.to_str().unwrap(), "40", "8", root.to_str().unwrap()])
        .output()
        .expect("scripts/os-image (mtools, dosfstools, e2fsprogs, fdisk)");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    image
}

/// "Use custom" with `path`, and the inspection's answer delivered as the worker would.
fn use_custom(app: &mut App, path: &Path) {
    app.wizard.custom_path = path.display().to_string();
    let _ = app.update(Message::UseCustom);
    let os = app.wizard.os.clone().unwrap();
    assert_eq!(
        app.wizard.inspection(),
        Some(&super::state::Inspected::Looking)
    );
    let found = super::inspect::look_now(&os);
    let _ = app.update(Message::Inspected(
        super::inspect::key(&os),
        Box::new(found),
    ));
}

#[test]
fn the_chosen_image_is_looked_into_and_what_it_cannot_take_is_greyed_out() -> Result<(), Error> {
    let dir = tempfile::tempdir().unwrap();
    let image = os_image(
        dir.path(),
        "custom",
        &[
            ("etc/os-release", "PRETTY_NAME=\"My Distro 3\"\n"),
            (
                "etc/fstab",
                "/dev/mmcblk0p1 /boot/firmware vfat defaults 0 2\n",
            ),
            ("etc/passwd", "kim:x:1000:1000::/home/kim:/bin/sh\n"),
            ("usr/lib/systemd/systemd", ""),
            ("usr/sbin/NetworkManager", ""),
        ],
    );
    let (_locale, mut app) = wizard();
    use_custom(&mut app, &image);
    assert!(
        matches!(
            app.wizard.inspection(),
            Some(super::state::Inspected::Found { format, .. }) if format == "systemd"
        ),
        "{:?}",
        app.wizard.inspection()
    );
    app.wizard.screen = Screen::AskCustomize;
    assert!(shows(
        &app,
        "My Distro 3 takes settings as systemd (systemd runs firstrun.sh (no cloud-init)):"
    ));
    assert!(shows(&app, "• Wi-Fi: NetworkManager keyfile"));
    assert!(shows(
        &app,
        "• SSH: refused: the image has no openssh-server"
    ));
    click(&mut app, "EDIT SETTINGS")?;
    click(&mut app, "Services")?;
    assert!(shows(
        &app,
        "Not on this image: the image has no openssh-server"
    ));
    let mut ui = simulator(app.view());
    ui.click("Enable SSH")?;
    assert_eq!(ui.into_messages().count(), 0, "the SSH box is greyed out");
    // A catalog image on this computer is looked into too, with the catalog's format.
    let (_, entry) = app
        .wizard
        .os_entries()
        .into_iter()
        .find(|(p, _)| p.ends_with("cardsmith demo (cloud-init)"))
        .unwrap();
    let os = super::state::OsChoice::Catalog {
        path: "demo".into(),
        entry: Box::new(entry),
    };
    match super::inspect::look_now(&os) {
        super::state::Inspected::Found { format, why, .. } => {
            assert_eq!(format, "cloudinit-rpi");
            assert_eq!(why, "the catalog says cloudinit-rpi");
        }
        other => panic!("{other:?}"),
    }
    Ok(())
}

#[test]
fn an_image_that_takes_no_settings_cannot_be_customised_in_the_wizard() -> Result<(), Error> {
    let dir = tempfile::tempdir().unwrap();
    let image = os_image(
        dir.path(),
        "appliance",
        &[("etc/os-release", "NAME=\"LibreELEC\"\n")],
    );
    let (_locale, mut app) = wizard();
    use_custom(&mut app, &image);
    app.wizard.screen = Screen::AskCustomize;
    assert!(shows(
        &app,
        "This image cannot take first-boot settings: LibreELEC cannot take first-boot settings: it has neither systemd nor cloud-init, so nothing would apply them on its first boot; write it without settings"
    ));
    for label in ["EDIT SETTINGS", "YES"] {
        let mut ui = simulator(app.view());
        ui.click(label)?;
        assert_eq!(ui.into_messages().count(), 0, "{label} is greyed out");
    }
    click(&mut app, "NO")?;
    assert!(!app.wizard.apply_settings);
    Ok(())
}

#[test]
fn two_networks_and_fixed_addresses_are_set_in_the_editor() -> Result<(), Error> {
    let (_locale, mut app) = wizard();
    app.wizard.screen = Screen::Settings;
    type_into(&mut app, Id::new("ssid"), "home")?;
    type_into(&mut app, Id::new("wifi-password"), "first-password")?;
    type_into(&mut app, Id::new("ssid-2"), "office")?;
    type_into(&mut app, Id::new("wifi-password-2"), "second-password")?;
    click(&mut app, "Options")?;
    type_into(&mut app, Id::new("static-ethernet"), "192.168.1.0/24")?;
    click(&mut app, "SAVE")?;
    assert_eq!(app.wizard.screen, Screen::Settings);
    assert!(shows(
        &app,
        "static IP \"192.168.1.0/24\" is not valid: 192.168.1.0 is the network's own or its broadcast address on a /24"
    ));
    app.wizard.form.static_ethernet.clear();
    type_into(
        &mut app,
        Id::new("static-ethernet"),
        "192.168.1.50/24,192.168.1.1,1.1.1.1",
    )?;
    click(&mut app, "SAVE")?;
    assert_eq!(
        app.wizard.screen,
        Screen::AskCustomize,
        "{:?}",
        app.wizard.errors
    );
    let s = app.wizard.settings.clone().unwrap();
    let ssids: Vec<&[u8]> = s.wifi.iter().map(|w| w.ssid.as_slice()).collect();
    assert_eq!(ssids, [&b"home"[..], b"office"], "the first is preferred");
    assert_eq!(
        s.wifi[1].psk,
        cardsmith_customize::wifi_psk(b"office", b"second-password").unwrap()
    );
    assert_eq!(s.static_ip.len(), 1);
    assert_eq!(s.static_ip[0].cidr(), "192.168.1.50/24");
    assert_eq!(s.static_ip[0].dns, [std::net::Ipv4Addr::new(1, 1, 1, 1)]);
    Ok(())
}

#[test]
fn the_form_starts_from_this_computer_and_offers_its_ssh_keys() -> Result<(), Error> {
    let key = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIBtt1J9x7vU6sqiJ6mlQvhBPHTcJ1rYqRk4cR3EqsEkI me@laptop";
    let host = super::host::Host {
        timezone: Some("Europe/Vienna".into()),
        keymap: Some("de".into()),
        country: Some("AT".into()),
        user: Some("kim".into()),
        ssh_keys: vec![key.into()],
    };
    let (_locale, mut app) = wizard();
    app.wizard = super::state::Wizard::new("en".into(), host);
    let f = &app.wizard.form;
    assert_eq!(
        (
            f.timezone.as_str(),
            f.keymap.as_str(),
            f.country.as_str(),
            f.user.as_str()
        ),
        ("Europe/Vienna", "de", "AT", "kim")
    );
    assert!(
        f.ssh_keys.is_empty() && !f.ssh,
        "keys are offered, not added"
    );
    app.wizard.screen = Screen::Settings;
    click(&mut app, "Services")?;
    click(&mut app, "Add my SSH keys (1 found in ~/.ssh)")?;
    assert_eq!(app.wizard.form.ssh_keys.trim(), key);
    assert!(app.wizard.form.ssh, "adding keys turns SSH on");
    assert!(
        !shows(&app, "Add my SSH keys (1 found in ~/.ssh)"),
        "nothing left to add"
    );
    Ok(())
}

#[test]
fn offline_is_one_friendly_line_with_the_reason_behind_details() -> Result<(), Error> {
    let (_locale, mut app) = wizard();
    if let CatalogState::Ready(loaded) = &mut app.wizard.catalog {
        loaded.origin = cardsmith_catalog::Origin::Bundled {
            error: "dns error: failed to lookup address information".into(),
        };
    }
    assert!(shows(
        &app,
        "Offline: showing the sample catalog built into cardsmith."
    ));
    let raw = simulator(app.view())
        .find("dns error: failed to lookup address information")
        .is_ok();
    assert!(!raw, "the raw error is not on the start screen");
    click(&mut app, "Details")?;
    let loaded = app.wizard.loaded().unwrap().describe();
    assert!(loaded.contains("dns error"), "{loaded}");
    assert!(shows(&app, &loaded), "Details shows the whole reason");
    Ok(())
}

#[test]
fn write_another_card_keeps_the_os_and_settings_and_counts_on() -> Result<(), Error> {
    let (_locale, mut app) = wizard();
    let dir = tempfile::tempdir().unwrap();
    choose_everything(&mut app, &dir.path().join("first.img"))?;
    app.wizard.settings = Some(cardsmith_customize::Settings {
        hostname: Some("node{n:02}".into()),
        ..Default::default()
    });
    app.wizard.last_kind = Kind::Write;
    app.wizard.outcome = Some(super::state::Outcome {
        ok: true,
        text: "Wrote it.".into(),
        notes: Vec::new(),
        cancelled: false,
        left: None,
        report: None,
    });
    app.wizard.screen = Screen::Done;
    click(&mut app, "WRITE ANOTHER CARD")?;
    assert_eq!(app.wizard.screen, Screen::Storage, "a card of its own next");
    assert!(app.wizard.storage.is_none() && app.wizard.outcome.is_none());
    assert!(
        matches!(&app.wizard.os, Some(super::state::OsChoice::Catalog { entry, .. }) if entry.name == "cardsmith demo (systemd)"),
        "the OS stays chosen"
    );
    let settings = app.wizard.settings.as_ref().unwrap();
    assert_eq!(settings.hostname_now().unwrap().as_deref(), Some("node02"));
    Ok(())
}

#[test]
fn passwords_are_hidden_until_shown() -> Result<(), Error> {
    let (_locale, mut app) = wizard();
    app.wizard.screen = Screen::Settings;
    type_into(&mut app, Id::new("password"), "visible-now")?;
    assert!(!shows(&app, "visible-now"), "hidden while typed");
    click(&mut app, "Show passwords")?;
    assert!(shows(&app, "visible-now"), "shown on request");
    Ok(())
}

#[test]
fn options_live_on_their_own_screen_not_the_start_screen() -> Result<(), Error> {
    let (_locale, mut app) = wizard();
    assert!(
        !shows(&app, "Verify after writing"),
        "not on the start screen"
    );
    click(&mut app, "OPTIONS")?;
    assert_eq!(app.wizard.screen, Screen::Options);
    for label in [
        "Verify after writing",
        "Eject when done",
        "Clear download cache",
        "Language:",
    ] {
        assert!(shows(&app, label), "{label}");
    }
    click(&mut app, "Verify after writing")?;
    assert!(!app.wizard.verify);
    click(&mut app, "Back")?;
    assert_eq!(app.wizard.screen, Screen::Start);
    Ok(())
}

#[test]
fn time_zone_keymap_and_country_are_picked_from_searchable_lists() -> Result<(), Error> {
    let (_locale, mut app) = wizard();
    // The lists are exactly what the checks accept, so nothing picked can be refused.
    let p = &app.pickers;
    for (list, check) in [
        (
            &p.timezone,
            cardsmith_customize::validate::timezone as fn(&str) -> _,
        ),
        (&p.keymap, cardsmith_customize::validate::keymap),
        (&p.country, cardsmith_customize::validate::country),
    ] {
        assert!(list.options().len() > 20);
        for option in list.options() {
            assert!(check(option).is_ok(), "{option}");
        }
    }
    assert!(p.timezone.options().iter().any(|z| z == "Asia/Tokyo"));
    // (iced_test reaches a combo box's label but not the box, so the pick is delivered as
    // the box delivers it.)
    app.wizard.screen = Screen::Settings;
    assert!(shows(&app, "Time zone (such as Europe/London)"));
    let _ = app.update(Message::Form(super::app::FormEdit::Timezone(
        "Asia/Tokyo".into(),
    )));
    click(&mut app, "SAVE")?;
    assert_eq!(
        app.wizard.screen,
        Screen::AskCustomize,
        "{:?}",
        app.wizard.errors
    );
    assert_eq!(
        app.wizard.settings.as_ref().unwrap().timezone.as_deref(),
        Some("Asia/Tokyo")
    );
    Ok(())
}
