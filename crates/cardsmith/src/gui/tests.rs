//! The wizard clicked through by visible text in iced_test's simulator, with the bundled
//! sample catalog and files as targets. Each screen's update is tested on its own, and the
//! whole flow runs real jobs through the window's sink (`work`), the tasks the app returns
//! run as the iced runtime would run them. Every language has every string.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::MutexGuard;
use std::time::Duration;

use cardsmith_catalog::{load, Http};
use cardsmith_engine::Phase;
use iced::widget::Id;
use iced::Task;
use iced_test::{Error, Simulator};

use super::app::{App, Message};
use super::context::{CatalogState, Inspected, OsChoice, StorageChoice};
use super::screen::{self, customize, options, Page, Screen};
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
    wizard_on(super::host::Host::default())
}

/// The same, on a computer that suggests `host`.
fn wizard_on(host: super::host::Host) -> (MutexGuard<'static, ()>, App) {
    let guard = one_locale_at_a_time();
    rust_i18n::set_locale("en");
    let (mut app, _) = App::new("en".into(), Some(repo()), host);
    let http = Http::new(Duration::from_secs(5)).unwrap();
    let loaded = load(Some(&repo()), &http, None).expect("the sample catalog loads");
    app.ctx.catalog = CatalogState::Ready(Box::new(loaded));
    (guard, app)
}

/// The wizard's view in a simulated window as tall as the longest screen.
fn simulator(view: iced::Element<'_, Message>) -> Simulator<'_, Message> {
    Simulator::with_size(iced::Settings::default(), (1000.0, 1800.0), view)
}

/// Runs what `update` returned as the runtime would: every message it produces goes back
/// to the app (a job's updates until it ends), and so on.
fn run(app: &mut App, task: Task<Message>) {
    let Some(stream) = iced_runtime::task::into_stream(task) else {
        return;
    };
    let actions: Vec<_> =
        iced::futures::executor::block_on(iced::futures::StreamExt::collect::<Vec<_>>(stream));
    for action in actions {
        if let iced_runtime::Action::Output(message) = action {
            let next = app.update(message);
            run(app, next);
        }
    }
}

/// Clicks the widget showing `label` and feeds the resulting messages to the app, running
/// what they start.
fn click(app: &mut App, label: &str) -> Result<(), Error> {
    let mut ui = simulator(app.view());
    ui.click(label)?;
    let messages: Vec<Message> = ui.into_messages().collect();
    assert!(!messages.is_empty(), "clicking {label:?} did nothing");
    for m in messages {
        let task = app.update(m);
        run(app, task);
    }
    Ok(())
}

/// Types into the text input `field`.
fn type_into(app: &mut App, field: &'static str, text: &str) -> Result<(), Error> {
    let mut ui = simulator(app.view());
    ui.click(Id::new(field))?;
    ui.typewrite(text);
    for m in ui.into_messages() {
        let _ = app.update(m);
    }
    Ok(())
}

fn shows(app: &App, text: &str) -> bool {
    simulator(app.view()).find(text).is_ok()
}

fn page(app: &App) -> Page {
    app.screen.page()
}

/// The settings editor's state (the editor must be shown).
fn editor(app: &mut App) -> &mut customize::State {
    match &mut app.screen {
        Screen::Customize(s) => s,
        _ => panic!("not on the customisation screen"),
    }
}

/// Opens the settings editor directly.
fn open_editor(app: &mut App) {
    app.go(Page::Customize);
    let _ = app.update(Message::Customize(customize::Message::Edit));
}

fn choose_everything(app: &mut App, target: &Path) -> Result<(), Error> {
    click(app, "CHOOSE DEVICE")?;
    assert_eq!(page(app), Page::Device);
    click(app, "Raspberry Pi 4")?;
    assert_eq!(app.sel.device.as_deref(), Some("Raspberry Pi 4"));
    assert!(
        shows(app, "Raspberry Pi 4"),
        "the start screen names the device"
    );

    click(app, "CHOOSE OS")?;
    assert_eq!(page(app), Page::Os);
    assert!(shows(app, "Other demos ›"), "categories are listed");
    click(app, "cardsmith demo (systemd)")?;
    assert!(shows(app, "cardsmith demo (systemd)"));

    click(app, "CHOOSE STORAGE")?;
    assert_eq!(page(app), Page::Storage);
    type_into(app, "file-path", &target.display().to_string())?;
    click(app, "Use this file")?;
    assert_eq!(page(app), Page::Start);
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
    assert_eq!(page(&app), Page::Customize);
    click(&mut app, "EDIT SETTINGS")?;
    type_into(&mut app, "hostname", "bad_name")?;
    click(&mut app, "SAVE")?;
    assert!(
        editor(&mut app).editing,
        "a bad host name keeps the editor open"
    );
    assert!(
        shows(&app, "hostname \"bad_name\" is not valid: only letters a-z, digits and hyphens are allowed (no dots, spaces or underscores)"),
        "the message stands next to the field"
    );
    editor(&mut app).form.hostname.clear();
    type_into(&mut app, "hostname", "lab-pi")?;
    click(&mut app, "SAVE")?;
    assert!(!editor(&mut app).editing);
    click(&mut app, "YES")?;
    assert_eq!(page(&app), Page::Confirm);
    assert!(shows(&app, &format!("the file {}", target.display())));
    assert!(shows(
        &app,
        "The OS customisation settings will be applied."
    ));
    assert!(shows(&app, "This card's host name: lab-pi"));
    let Some(Job::Write(job)) = app.sel.job(&app.ctx) else {
        panic!("a write")
    };
    assert!(matches!(&job.source, Source::Os(e) if e.name == "cardsmith demo (systemd)"));
    assert_eq!(job.targets, vec![Destination::File(target.clone())]);
    assert!(job.verify && job.force && job.permission.yes);
    assert_eq!(
        job.settings.as_ref().and_then(|s| s.hostname.as_deref()),
        Some("lab-pi")
    );
    Ok(())
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

/// Checks a written file: the demo image byte for byte but for the boot partition, which
/// holds the settings (read back by mtools, not by cardsmith) naming `hostname`.
fn check_written(target: &Path, hostname: &str) {
    let written = std::fs::read(target).unwrap();
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
    let script = mtype(target, start, "firstrun.sh");
    assert!(script.contains(hostname), "{script}");
}

#[test]
fn the_whole_flow_writes_a_card_file_and_another_with_the_next_host_name() -> Result<(), Error> {
    let dir = tempfile::tempdir().unwrap();
    let first = dir.path().join("node-a.img");
    let second = dir.path().join("node-b.img");
    let (_locale, mut app) = wizard();
    choose_everything(&mut app, &first)?;
    click(&mut app, "NEXT")?;
    click(&mut app, "EDIT SETTINGS")?;
    type_into(&mut app, "hostname", "node{n:02}")?;
    click(&mut app, "SAVE")?;
    assert!(!editor(&mut app).editing, "{:?}", editor(&mut app).errors);
    click(&mut app, "YES")?;
    assert!(shows(&app, "This card's host name: node00"));
    // WRITE starts the job; `click` runs it to its end as the runtime would.
    click(&mut app, "WRITE")?;
    assert_eq!(page(&app), Page::Done);
    assert!(shows(&app, "Done"));
    let Screen::Done(done) = &app.screen else {
        unreachable!()
    };
    let Some(Report::Write(report)) = &done.ended.report else {
        panic!("{}", done.ended.text)
    };
    assert!(report.verified);
    assert_eq!(report.customized, Some("systemd"));
    assert!(shows(&app, &done.ended.text.clone()), "what was written");
    assert!(shows(&app, "This card's host name: node00"), "what was set");
    check_written(&first, "node00");

    // The next card: same OS and settings, the counter one on, a target of its own.
    click(&mut app, "WRITE ANOTHER CARD")?;
    assert_eq!(page(&app), Page::Storage);
    assert!(
        matches!(&app.sel.os, Some(OsChoice::Catalog { entry, .. }) if entry.name == "cardsmith demo (systemd)"),
        "the OS stays chosen"
    );
    type_into(&mut app, "file-path", &second.display().to_string())?;
    click(&mut app, "Use this file")?;
    assert_eq!(page(&app), Page::Start);
    click(&mut app, "NEXT")?;
    assert_eq!(page(&app), Page::Customize);
    click(&mut app, "YES")?;
    assert!(shows(&app, "This card's host name: node01"));
    click(&mut app, "WRITE")?;
    assert_eq!(page(&app), Page::Done);
    check_written(&second, "node01");
    check_written(&first, "node00");
    Ok(())
}

#[test]
fn progress_shows_a_bar_per_step_and_cancel_says_what_is_left() -> Result<(), Error> {
    let dir = tempfile::tempdir().unwrap();
    let (_locale, mut app) = wizard();
    let job = WriteJob {
        settings: Some(Default::default()),
        ..WriteJob::to_all(
            demo_os(),
            vec![Destination::File(dir.path().join("card.img"))],
        )
    };
    let cancel = cardsmith_engine::CancelToken::new();
    app.screen = Screen::Progress(screen::progress::State::new(
        &Job::Write(Box::new(job)),
        cancel.clone(),
    ));
    for step in [
        "Downloading and writing",
        "Verifying",
        "Putting the settings on the boot partition",
    ] {
        assert!(shows(&app, step), "{step}");
    }
    assert!(shows(&app, "Cancelling removes the unfinished image file."));
    let _ = app.update(Message::Job(Update::Event(Event::Progress {
        phase: Phase::Write,
        bytes_done: 25 << 20,
        bytes_total: Some(100 << 20),
        rate: 50_000_000,
    })));
    assert!(shows(&app, "25% · 26.2 MB · 50.0 MB/s · 2 s left"));
    // Nothing more comes for 100 s (a stalled download): the rate falls with the clock.
    let later = std::time::Instant::now() + Duration::from_secs(100);
    let _ = app.update(Message::Progress(screen::progress::Message::Tick(later)));
    assert!(shows(&app, "25% · 26.2 MB · 0.3 MB/s · 300 s left"));
    let _ = app.update(Message::Job(Update::Event(Event::Progress {
        phase: Phase::Verify,
        bytes_done: 50 << 20,
        bytes_total: Some(100 << 20),
        rate: 100_000_000,
    })));
    assert!(shows(&app, "Done"), "the write step is over");
    assert!(shows(&app, "50% · 52.4 MB · 100.0 MB/s · 1 s left"));
    assert!(shows(&app, "Waiting"), "customising is still to come");
    click(&mut app, "CANCEL")?;
    assert!(cancel.is_cancelled(), "Cancel really stops the job");
    assert!(shows(&app, "Cancelling…"));
    let error = "cancelled (Ctrl-C, or Cancel in the window)";
    let _ = app.update(ended(error, true, Some(Left::FileRemoved)));
    assert!(shows(&app, "Cancelled"));
    assert!(shows(&app, "The unfinished image file was removed."));

    // A card is left zeroed; a backup keeps nothing.
    let drive = crate::testing::card(32_000_000_000);
    let to_card = WriteJob::to_all(
        demo_os(),
        vec![Destination::Drive {
            path: drive.path.clone(),
            confirmed: drive.identity(),
        }],
    );
    app.screen = Screen::Progress(screen::progress::State::new(
        &Job::Write(Box::new(to_card)),
        cardsmith_engine::CancelToken::new(),
    ));
    assert!(shows(
        &app,
        "Cancelling leaves the card with its first MiB zeroed, so it boots nothing half-written."
    ));
    let backup = ReadJob {
        source: drive.path.clone(),
        output: dir.path().join("b.img"),
        allocated_only: false,
        force: false,
        all_blocks: false,
        confirmed: None,
        rescue: false,
        shrink: None,
    };
    app.screen = Screen::Progress(screen::progress::State::new(
        &Job::Read(backup),
        cardsmith_engine::CancelToken::new(),
    ));
    assert!(shows(&app, "Reading the card"));
    assert!(shows(
        &app,
        "Cancelling keeps no unfinished backup; the card is only read and stays as it is."
    ));

    let long = "SHA-256 of the download is 00aa, not 11bb as published; nothing was written to the start of the target. The download is corrupt, or the catalog is wrong";
    app.screen = Screen::Progress(screen::progress::State::new(
        &Job::Write(Box::new(WriteJob::to_all(
            demo_os(),
            vec![Destination::File(dir.path().join("x.img"))],
        ))),
        cardsmith_engine::CancelToken::new(),
    ));
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

    let cancel = cardsmith_engine::CancelToken::new();
    let job = Job::Write(Box::new(WriteJob::to_all(
        demo_os(),
        vec![Destination::File("/nonexistent/x.img".into())],
    )));
    app.screen = Screen::Progress(screen::progress::State::new(&job, cancel.clone()));
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
        ..WriteJob::to_all(demo_os(), vec![Destination::File(target.clone())])
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
    assert!(end.report.is_some(), "no success: {}", end.text);
    assert!(end.text.contains("verified"), "{}", end.text);
    check_written(&target, "wizard-pi");
}

/// Runs a job as the window does (through its sink; `confirmed` is the drive the window
/// asked about), and returns everything it reported, its end last.
fn window_job(job: Job, confirmed: Option<cardsmith_drives::Identity>) -> Vec<Update> {
    let updates = super::work::spawn(
        job,
        cardsmith_engine::CancelToken::new(),
        confirmed.into_iter().collect(),
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

/// The keys the wizard's code asks for: every `t!("key"` in its sources.
fn keys_used() -> BTreeSet<String> {
    let mut used = BTreeSet::new();
    let mut dirs = vec![PathBuf::from(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/src/gui"
    ))];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                dirs.push(path);
                continue;
            }
            if path.ends_with("tests.rs") {
                continue;
            }
            let source = std::fs::read_to_string(&path).unwrap();
            for (at, _) in source.match_indices("t!(") {
                let before = source[..at].chars().next_back();
                if before.is_some_and(|c| c.is_alphanumeric() || c == '_') {
                    continue; // format!(, println!(, …
                }
                let rest = source[at + 3..].trim_start();
                if let Some(quoted) = rest.strip_prefix('"') {
                    used.insert(quoted.split('"').next().unwrap().to_owned());
                }
            }
        }
    }
    used
}

#[test]
fn every_language_has_every_string() {
    let dir = PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../../locales"));
    let english = keys(&dir.join("en.yml"));
    let files = std::fs::read_dir(&dir).unwrap().count();
    assert_eq!(files, super::LANGUAGES.len(), "a locale file per language");
    assert_eq!(super::LANGUAGES.len(), 25);
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
    // Every key the code asks for exists, and every key is asked for.
    let used = keys_used();
    let unknown: Vec<_> = used.difference(&english).collect();
    assert!(unknown.is_empty(), "en.yml lacks {unknown:?}");
    let unused: Vec<_> = english.difference(&used).collect();
    assert!(unused.is_empty(), "no code asks for {unused:?}");
}

#[test]
fn the_language_can_be_changed_in_the_app() -> Result<(), Error> {
    let (_locale, mut app) = wizard();
    app.go(Page::Options);
    let german = options::Language("de", "Deutsch");
    let _ = app.update(Message::Options(options::Message::Language(german)));
    app.go(Page::Start);
    assert!(shows(&app, "GERÄT WÄHLEN"));
    app.go(Page::Options);
    let korean = options::Language("ko", "한국어");
    let _ = app.update(Message::Options(options::Message::Language(korean)));
    assert_eq!(app.ctx.language, "ko");
    app.go(Page::Start);
    assert!(!shows(&app, "CHOOSE DEVICE"), "Korean is not English");
    app.go(Page::Options);
    let english = options::Language("en", "English");
    let _ = app.update(Message::Options(options::Message::Language(english)));
    app.go(Page::Start);
    assert!(shows(&app, "CHOOSE DEVICE"));
    Ok(())
}

#[test]
fn read_a_card_is_the_cli_read() -> Result<(), Error> {
    let (_locale, mut app) = wizard();
    click(&mut app, "READ A CARD")?;
    assert_eq!(page(&app), Page::Read);
    assert!(shows(&app, "Read a card into an image file"));
    assert!(shows(
        &app,
        "Backup file to create: .img (raw), .img.zst, .img.xz or .img.gz"
    ));
    let Screen::Read(read) = &app.screen else {
        unreachable!()
    };
    assert!(read.job(&app.ctx).is_none(), "nothing chosen yet");

    // Picking a drive proposes a zstd backup in the home folder; the toggle asks for only
    // the partitions. (No read is started here: the drive is made up.)
    let drive = crate::testing::card(32_000_000_000);
    app.ctx.drives = vec![drive.clone()];
    click(
        &mut app,
        &format!("{} — {}", drive.description(), drive.size_human),
    )?;
    let _ = app.update(Message::Read(screen::read::Message::AllocatedOnly(true)));
    let Screen::Read(read) = &app.screen else {
        unreachable!()
    };
    assert_eq!(read.source.as_deref(), Some(drive.name.as_str()));
    assert!(
        read.output
            .ends_with(&format!("{}-backup.img.zst", drive.name)),
        "{}",
        read.output
    );
    assert_eq!(
        read.job(&app.ctx).expect("ready to read"),
        ReadJob {
            source: drive.path.clone(),
            output: PathBuf::from(&read.output),
            allocated_only: true,
            force: false,
            all_blocks: false,
            confirmed: Some(drive.identity()),
            rescue: false,
            shrink: None,
        }
    );

    // The job behind READ, here from a file, its end shown as the window shows it.
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
        all_blocks: false,
        confirmed: None,
        rescue: false,
        shrink: None,
    };
    let updates = window_job(Job::Read(job.clone()), None);
    let Some(Update::Ended(end)) = updates.last() else {
        panic!("no end: {updates:?}");
    };
    let Some(Report::Read(report)) = &end.report else {
        panic!("no success: {}", end.text);
    };
    assert_eq!(std::fs::read(&out).unwrap(), data);
    let sha = report.sha256.clone();
    app.screen = Screen::Progress(screen::progress::State::new(
        &Job::Read(job),
        cardsmith_engine::CancelToken::new(),
    ));
    for u in updates {
        let _ = app.update(Message::Job(u));
    }
    assert!(shows(&app, "Done"));
    let Screen::Done(done) = &app.screen else {
        unreachable!()
    };
    assert!(done.ended.text.contains(&sha), "{}", done.ended.text);
    assert!(
        !shows(&app, "WRITE ANOTHER CARD"),
        "a backup is not a write"
    );
    Ok(())
}

#[test]
fn icons_resolve_against_the_catalog_and_fall_back_to_a_tile() -> Result<(), Error> {
    let (_locale, mut app) = wizard();
    let urls = super::app::icon_urls(app.ctx.loaded().unwrap());
    assert_eq!(urls.len(), 1, "{urls:?}");
    let (name, location) = &urls[0];
    assert!(name.ends_with("os-list-sample/demo-icon.png"), "{name}");
    let cardsmith_catalog::Location::Path(path) = location else {
        panic!("{location:?}")
    };
    assert!(path.exists(), "{}", path.display());
    // Before (or without) the icon, the entry shows a tile with its initial.
    click(&mut app, "CHOOSE OS")?;
    assert!(shows(&app, "C"), "the demo's tile");
    Ok(())
}

#[test]
fn erase_needs_a_drive_and_skips_the_settings() -> Result<(), Error> {
    let dir = tempfile::tempdir().unwrap();
    let (_locale, mut app) = wizard();
    click(&mut app, "CHOOSE OS")?;
    click(&mut app, "Erase")?;
    assert_eq!(app.sel.os, Some(OsChoice::Erase));
    click(&mut app, "CHOOSE STORAGE")?;
    type_into(
        &mut app,
        "file-path",
        &dir.path().join("x.img").display().to_string(),
    )?;
    click(&mut app, "Use this file")?;
    assert!(!app.sel.ready(), "a file cannot be erased as a card");
    assert!(app.sel.job(&app.ctx).is_none());
    // With a drive, NEXT goes straight to the confirmation.
    let drive = crate::testing::card(32_000_000_000);
    app.sel.storage = Some(StorageChoice::Drives(vec![drive.clone()]));
    click(&mut app, "NEXT")?;
    assert_eq!(page(&app), Page::Confirm);
    assert!(shows(&app, "Erase and format as FAT32:"));
    assert!(
        matches!(app.sel.job(&app.ctx), Some(Job::Erase(e)) if e.targets[0].confirmed == Some(drive.identity()))
    );
    Ok(())
}

#[test]
fn a_chosen_drive_that_changes_or_leaves_must_be_chosen_again() {
    let drive = crate::testing::card(32_000_000_000);
    let (_locale, mut app) = wizard();
    let choose = |app: &mut App| {
        app.ctx.drives = vec![drive.clone()];
        app.sel.storage = Some(StorageChoice::Drives(vec![drive.clone()]));
        app.go(Page::Confirm);
    };
    choose(&mut app);
    let mut mounted = drive.clone();
    mounted.filesystem = None;
    let _ = app.update(Message::Drive(Box::new(cardsmith_drives::Event::Changed(
        mounted,
    ))));
    assert!(
        app.sel.storage.is_some(),
        "a mount change is the same drive"
    );
    assert_eq!(page(&app), Page::Confirm);
    let mut other = drive.clone();
    other.size += 4096;
    other.serial = Some("ANOTHER-CARD".into());
    let _ = app.update(Message::Drive(Box::new(cardsmith_drives::Event::Changed(
        other,
    ))));
    assert!(
        app.sel.storage.is_none(),
        "another card in the reader is not the one confirmed"
    );
    assert_eq!(page(&app), Page::Start);
    choose(&mut app);
    let _ = app.update(Message::Drive(Box::new(cardsmith_drives::Event::Removed(
        drive.clone(),
    ))));
    assert!(app.sel.storage.is_none());
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

fn storage(app: &mut App) -> &mut screen::storage::State {
    match &mut app.screen {
        Screen::Storage(s) => s,
        _ => panic!("not on the storage screen"),
    }
}

#[test]
fn a_file_path_that_is_a_drive_is_refused_and_the_drive_list_offered() -> Result<(), Error> {
    let dir = tempfile::tempdir().unwrap();
    let (_locale, mut app) = wizard();
    let card = crate::testing::card(32_000_000_000);
    app.ctx.drives = vec![card.clone()];
    let node = device_node(dir.path(), "sdz", card.dev);
    let link = dir.path().join("by-id-link");
    std::os::unix::fs::symlink(&node, &link).unwrap();
    click(&mut app, "CHOOSE STORAGE")?;
    for path in [&node, &link] {
        storage(&mut app).file_path.clear();
        type_into(&mut app, "file-path", &path.display().to_string())?;
        click(&mut app, "Use this file")?;
        assert_eq!(app.sel.storage, None, "{} taken as a file", path.display());
        assert_eq!(page(&app), Page::Storage);
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
        app.sel.storage,
        Some(StorageChoice::Drives(vec![card.clone()]))
    );
    assert_eq!(page(&app), Page::Start);

    // A device the list does not show, and one that may never be written.
    app.go(Page::Storage);
    storage(&mut app).file_path = node.display().to_string();
    app.ctx.drives.clear();
    let use_file = || Message::Storage(screen::storage::Message::UseFile);
    let _ = app.update(use_file());
    assert!(shows(
        &app,
        "It is not among the drives cardsmith lists: choose a drive from the list, or a file path."
    ));
    let mut root = crate::testing::system_drive(500_000_000_000);
    root.dev = card.dev;
    root.not_offered = vec![cardsmith_drives::Reason::Root {
        uses: vec!["/".into()],
    }];
    app.ctx.drives = vec![root];
    let _ = app.update(use_file());
    assert!(shows(
        &app,
        "That drive cannot be written: system drive: it holds the running system (/)"
    ));
    // A plain file is still a file.
    storage(&mut app).file_path.clear();
    let file = dir.path().join("card.img");
    type_into(&mut app, "file-path", &file.display().to_string())?;
    click(&mut app, "Use this file")?;
    assert_eq!(app.sel.storage, Some(StorageChoice::File(file)));
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
            ..WriteJob::to_all(demo_os(), vec![Destination::File(PathBuf::from(&target))])
        };
        let events = window_job(Job::Write(Box::new(job)), None);
        let Some(Update::Ended(end)) = events.last() else {
            panic!("no end: {events:?}");
        };
        assert!(end.report.is_none(), "{target} was written: {events:?}");
        assert_eq!(end.left, Some(Left::Untouched));
        assert!(
            end.text.contains("is a block device, not an image file: nothing was written. Choose it in the drive list"),
            "{}", end.text
        );
    }
    assert!(
        std::fs::read(&backing).unwrap().iter().all(|&b| b == 0xAA),
        "the card was written to"
    );
}

#[test]
fn the_window_answers_only_for_the_drive_it_confirmed() {
    use crate::job::{Ask, Needed, Sink};
    let card = crate::testing::card(32_000_000_000);
    let (tx, _rx) = std::sync::mpsc::channel();
    let ask = |needed| Ask {
        question: "Write it?".into(),
        needed,
        drives: vec![card.identity()],
        name: card.name.clone(),
        verb: "erase",
    };
    let mut sink = super::work::WindowSink::new(tx.clone(), vec![card.identity()], false);
    assert_eq!(sink.consent(&ask(Needed::Yes)), Ok(()));
    assert!(sink.consent(&ask(Needed::Name)).is_err(), "no name typed");
    let mut typed = super::work::WindowSink::new(tx.clone(), vec![card.identity()], true);
    assert_eq!(typed.consent(&ask(Needed::Name)), Ok(()));
    let mut other = card.clone();
    other.serial = Some("ANOTHER".into());
    let mut elsewhere = super::work::WindowSink::new(tx.clone(), vec![other.identity()], true);
    let refused = elsewhere.consent(&ask(Needed::Yes)).unwrap_err();
    assert!(refused.contains("not the drive confirmed"), "{refused}");
    // A set of cards: the question must name only cards the window confirmed.
    let both = Ask {
        drives: vec![card.identity(), other.identity()],
        ..ask(Needed::Yes)
    };
    let mut set =
        super::work::WindowSink::new(tx.clone(), vec![other.identity(), card.identity()], false);
    assert_eq!(set.consent(&both), Ok(()));
    let mut one = super::work::WindowSink::new(tx, vec![card.identity()], false);
    assert!(
        one.consent(&both).is_err(),
        "a card the window did not confirm"
    );
}

#[test]
fn a_large_drive_is_warned_about_in_the_list_and_before_consent() -> Result<(), Error> {
    let (_locale, mut app) = wizard();
    let big = crate::testing::card(256_000_000_000);
    app.ctx.drives = vec![big.clone()];
    let warning = "Warning: this drive is 256 GB, larger than SD cards and USB sticks usually are. Make sure it is not a backup or data disk.";
    click(&mut app, "CHOOSE OS")?;
    click(&mut app, "cardsmith demo (systemd)")?;
    click(&mut app, "CHOOSE STORAGE")?;
    assert!(shows(&app, warning), "in the drive list");
    click(
        &mut app,
        &format!("{} — {}", big.description(), big.size_human),
    )?;
    click(&mut app, "NEXT")?;
    click(&mut app, "NO")?;
    assert_eq!(page(&app), Page::Confirm);
    assert!(shows(&app, warning), "on the confirmation, before WRITE");
    assert!(shows(&app, "WRITE"));
    Ok(())
}

#[test]
fn a_system_drive_needs_its_name_typed_before_write() -> Result<(), Error> {
    let (_locale, mut app) = wizard();
    let disk = crate::testing::fixed_disk(500_000_000_000);
    app.sel.os = Some(OsChoice::Erase);
    app.sel.storage = Some(StorageChoice::Drives(vec![disk.clone()]));
    app.go(Page::Confirm);
    let mut ui = simulator(app.view());
    ui.click("WRITE")?;
    assert_eq!(ui.into_messages().count(), 0, "WRITE waits for the name");
    type_into(&mut app, "typed-name", "sdx")?;
    let mut ui = simulator(app.view());
    ui.click("WRITE")?;
    assert_eq!(
        ui.into_messages().count(),
        0,
        "another name is not the name"
    );
    let Screen::Confirm(c) = &mut app.screen else {
        unreachable!()
    };
    c.typed_name = format!("/dev/{}", disk.name);
    assert!(c.confirmed(&app.sel));
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
        app.screen = Screen::Done(screen::done::State {
            kind,
            ended: Ended {
                report: None,
                text: "the error as the job says it".into(),
                cancelled,
                left: Some(left),
            },
            notes: Vec::new(),
            ejected: None,
        });
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
    use screen::done::crashed;
    assert!(crashed(Kind::Read).contains("The card was only read and is unchanged"));
    assert!(crashed(Kind::Erase).contains("half-erased"));
    assert!(crashed(Kind::Write).contains("(or image file) may be half-written"));
}

#[test]
fn typed_passwords_are_dropped_once_hashed_and_never_printed() -> Result<(), Error> {
    let (_locale, mut app) = wizard();
    open_editor(&mut app);
    type_into(&mut app, "user", "alice")?;
    type_into(&mut app, "password", "typed-secret-1")?;
    type_into(&mut app, "ssid", "home")?;
    type_into(&mut app, "wifi-password", "typed-wifi-2")?;
    use customize::FormEdit;
    let shown = format!(
        "{:?} {:?} {:?}",
        editor(&mut app).form,
        Message::Customize(customize::Message::Form(FormEdit::Password(
            "typed-secret-1".into()
        ))),
        Message::Customize(customize::Message::Form(FormEdit::WifiPassword(
            "typed-wifi-2".into()
        ))),
    );
    assert!(
        !shown.contains("typed-secret-1") && !shown.contains("typed-wifi-2"),
        "{shown}"
    );
    click(&mut app, "SAVE")?;
    assert!(!editor(&mut app).editing, "{:?}", editor(&mut app).errors);
    assert_eq!(
        editor(&mut app).form.password,
        "",
        "the typed password is not kept"
    );
    assert_eq!(editor(&mut app).form.wifi_password, "");
    let first = app.sel.settings.clone().unwrap();
    assert!(!format!("{first:?}").contains(&first.wifi[0].psk));

    // Back in the editor, the empty fields keep what was hashed...
    click(&mut app, "EDIT SETTINGS")?;
    assert!(shows(&app, "Saved (hashed): leave empty to keep it"));
    click(&mut app, "SAVE")?;
    assert_eq!(app.sel.settings.as_ref(), Some(&first));
    // ... also when the editor is opened again later (its form comes from the settings)...
    app.go(Page::Start);
    open_editor(&mut app);
    assert_eq!(editor(&mut app).form.user, "alice");
    assert_eq!(editor(&mut app).form.ssid, "home");
    click(&mut app, "SAVE")?;
    assert_eq!(app.sel.settings.as_ref(), Some(&first));
    // ... and after a save refused for another field and put right.
    click(&mut app, "EDIT SETTINGS")?;
    editor(&mut app).form.hostname = "bad_name".into();
    click(&mut app, "SAVE")?;
    assert!(editor(&mut app).editing);
    editor(&mut app).form.hostname.clear();
    click(&mut app, "SAVE")?;
    assert!(!editor(&mut app).editing, "{:?}", editor(&mut app).errors);
    assert_eq!(app.sel.settings.as_ref(), Some(&first));
    // ... but a Wi-Fi key belongs to its network: another name needs the password again.
    click(&mut app, "EDIT SETTINGS")?;
    editor(&mut app).form.ssid = "office".into();
    click(&mut app, "SAVE")?;
    assert!(editor(&mut app).editing);
    assert!(editor(&mut app)
        .error(customize::Field::WifiPassword)
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
fn use_custom(app: &mut App, path: &Path) -> Result<(), Error> {
    click(app, "CHOOSE OS")?;
    click(
        app,
        "Use custom: an image file (.img, .xz, .gz, .bz2, .zst, .zip)",
    )?;
    type_into(app, "custom-path", &path.display().to_string())?;
    let task = app.update(Message::Os(screen::os::Message::UseCustom));
    drop(task); // the worker's answer is delivered below, looked up here
    let os = app.sel.os.clone().unwrap();
    assert_eq!(app.ctx.inspection(Some(&os)), Some(&Inspected::Looking));
    let found = super::inspect::look_now(&os);
    let _ = app.update(Message::Inspected(
        super::inspect::key(&os),
        Box::new(found),
    ));
    Ok(())
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
    use_custom(&mut app, &image)?;
    assert!(
        matches!(
            app.ctx.inspection(app.sel.os.as_ref()),
            Some(Inspected::Found { format, .. }) if format == "systemd"
        ),
        "{:?}",
        app.ctx.inspection(app.sel.os.as_ref())
    );
    app.go(Page::Customize);
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
    let list = app.ctx.os_list(None);
    let entry = list
        .iter()
        .flat_map(|e| e.subitems.iter().flatten().chain(std::iter::once(e)))
        .find(|e| e.name == "cardsmith demo (cloud-init)")
        .unwrap()
        .clone();
    let os = OsChoice::Catalog {
        path: "demo".into(),
        entry: Box::new(entry),
    };
    match super::inspect::look_now(&os) {
        Inspected::Found { format, why, .. } => {
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
    use_custom(&mut app, &image)?;
    app.go(Page::Customize);
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
    assert!(!app.sel.apply_settings);
    Ok(())
}

#[test]
fn two_networks_and_fixed_addresses_are_set_in_the_editor() -> Result<(), Error> {
    let (_locale, mut app) = wizard();
    open_editor(&mut app);
    type_into(&mut app, "ssid", "home")?;
    type_into(&mut app, "wifi-password", "first-password")?;
    type_into(&mut app, "ssid-2", "office")?;
    type_into(&mut app, "wifi-password-2", "second-password")?;
    click(&mut app, "Options")?;
    type_into(&mut app, "static-ethernet", "192.168.1.0/24")?;
    click(&mut app, "SAVE")?;
    assert!(editor(&mut app).editing);
    assert!(shows(
        &app,
        "static IP \"192.168.1.0/24\" is not valid: 192.168.1.0 is the network's own or its broadcast address on a /24"
    ));
    editor(&mut app).form.static_ethernet.clear();
    type_into(
        &mut app,
        "static-ethernet",
        "192.168.1.50/24,192.168.1.1,1.1.1.1",
    )?;
    click(&mut app, "SAVE")?;
    assert!(!editor(&mut app).editing, "{:?}", editor(&mut app).errors);
    let s = app.sel.settings.clone().unwrap();
    let ssids: Vec<&[u8]> = s.wifi.iter().map(|w| w.ssid.as_slice()).collect();
    assert_eq!(ssids, [&b"home"[..], b"office"], "the first is preferred");
    assert_eq!(
        s.wifi[1].psk,
        cardsmith_customize::wifi_psk(b"office", b"second-password").unwrap()
    );
    assert_eq!(s.static_ip.len(), 1);
    assert_eq!(s.static_ip[0].cidr(), "192.168.1.50/24");
    assert_eq!(s.static_ip[0].dns, [std::net::Ipv4Addr::new(1, 1, 1, 1)]);
    // Opened again, the editor shows them as saved.
    app.go(Page::Customize);
    let f = &editor(&mut app).form;
    assert_eq!((f.ssid.as_str(), f.ssid2.as_str()), ("home", "office"));
    assert_eq!(f.static_ethernet, "192.168.1.50/24,192.168.1.1,1.1.1.1");
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
        wifi_ssid: None,
    };
    let (_locale, mut app) = wizard_on(host);
    open_editor(&mut app);
    let f = &editor(&mut app).form;
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
    assert!(f.ssid.is_empty(), "no network known yet");
    // NetworkManager's answer arrives: the open editor gets the network, no password.
    let _ = app.update(Message::HostWifi(Some(b"Cafe \xff Net".to_vec())));
    let f = &editor(&mut app).form;
    assert_eq!(f.ssid, "Cafe \u{fffd} Net");
    assert!(
        f.wifi_password.is_empty(),
        "its password is never suggested"
    );
    click(&mut app, "Services")?;
    click(&mut app, "Add my SSH keys (1 found in ~/.ssh)")?;
    assert_eq!(editor(&mut app).form.ssh_keys.trim(), key);
    assert!(editor(&mut app).form.ssh, "adding keys turns SSH on");
    assert!(
        !shows(&app, "Add my SSH keys (1 found in ~/.ssh)"),
        "nothing left to add"
    );
    // A form opened later starts with the network too.
    app.go(Page::Start);
    open_editor(&mut app);
    assert_eq!(editor(&mut app).form.ssid, "Cafe \u{fffd} Net");
    Ok(())
}

#[test]
fn offline_is_one_friendly_line_with_the_reason_behind_details() -> Result<(), Error> {
    let (_locale, mut app) = wizard();
    if let CatalogState::Ready(loaded) = &mut app.ctx.catalog {
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
    let loaded = app.ctx.loaded().unwrap().describe();
    assert!(loaded.contains("dns error"), "{loaded}");
    assert!(shows(&app, &loaded), "Details shows the whole reason");
    Ok(())
}

#[test]
fn passwords_are_hidden_until_shown() -> Result<(), Error> {
    let (_locale, mut app) = wizard();
    open_editor(&mut app);
    type_into(&mut app, "password", "visible-now")?;
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
    assert_eq!(page(&app), Page::Options);
    for label in [
        "Verify after writing",
        "Eject when done",
        "Clear download cache",
        "Language:",
    ] {
        assert!(shows(&app, label), "{label}");
    }
    click(&mut app, "Verify after writing")?;
    assert!(!app.ctx.verify);
    // The cache folder is a field of the jobs, not of the process's environment.
    let dir = tempfile::tempdir().unwrap();
    let Screen::Options(o) = &mut app.screen else {
        unreachable!()
    };
    o.cache_dir = dir.path().display().to_string();
    let _ = app.update(Message::Options(options::Message::UseCacheDir));
    assert_eq!(app.ctx.cache_dir.as_deref(), Some(dir.path()));
    assert!(std::env::var_os("CARDSMITH_CACHE").is_none());
    click(&mut app, "Back")?;
    assert_eq!(page(&app), Page::Start);
    app.sel.os = Some(OsChoice::Custom("/x.img".into()));
    app.sel.storage = Some(StorageChoice::File("/y.img".into()));
    let Some(Job::Write(job)) = app.sel.job(&app.ctx) else {
        panic!()
    };
    assert_eq!(job.cache_dir.as_deref(), Some(dir.path()));
    assert!(!job.verify);
    Ok(())
}

#[test]
fn time_zone_keymap_and_country_are_picked_from_searchable_lists() -> Result<(), Error> {
    let (_locale, mut app) = wizard();
    open_editor(&mut app);
    // The lists are exactly what the checks accept, so nothing picked can be refused.
    let p = &editor(&mut app).pickers;
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
    assert!(shows(&app, "Time zone (such as Europe/London)"));
    let _ = app.update(Message::Customize(customize::Message::Form(
        customize::FormEdit::Timezone("Asia/Tokyo".into()),
    )));
    click(&mut app, "SAVE")?;
    assert!(!editor(&mut app).editing, "{:?}", editor(&mut app).errors);
    assert_eq!(
        app.sel
            .settings
            .as_ref()
            .and_then(|s| s.timezone.as_deref()),
        Some("Asia/Tokyo")
    );
    Ok(())
}

#[test]
fn escape_goes_back_and_enter_presses_the_main_button() -> Result<(), Error> {
    let dir = tempfile::tempdir().unwrap();
    let (_locale, mut app) = wizard();
    for page_shown in [
        Page::Device,
        Page::Os,
        Page::Storage,
        Page::Read,
        Page::Options,
    ] {
        app.go(page_shown);
        let _ = app.update(Message::Escape);
        assert_eq!(page(&app), Page::Start, "Escape on {page_shown:?}");
    }
    // In the editor, Escape closes the editor first.
    open_editor(&mut app);
    let _ = app.update(Message::Escape);
    assert_eq!(page(&app), Page::Customize);
    assert!(!editor(&mut app).editing);
    let _ = app.update(Message::Escape);
    assert_eq!(page(&app), Page::Start);
    // Enter is NEXT once everything is chosen, and nothing before.
    let _ = app.update(Message::Enter);
    assert_eq!(page(&app), Page::Start);
    choose_everything(&mut app, &dir.path().join("e.img"))?;
    let _ = app.update(Message::Enter);
    assert_eq!(page(&app), Page::Customize);
    // Tab moves the focus (a widget operation for the runtime).
    assert!(app.update(Message::Focus(false)).units() > 0);
    Ok(())
}

#[test]
fn a_loaded_preset_fills_the_form_and_its_counter_moves_on() -> Result<(), Error> {
    let home = tempfile::tempdir().unwrap();
    let _config = EnvGuard::set("XDG_CONFIG_HOME", home.path());
    let (_locale, mut app) = wizard();
    let presets = cardsmith_customize::presets::Presets::open().unwrap();
    let saved = cardsmith_customize::Settings {
        hostname: Some("rack{n:02}".into()),
        counter: 7,
        timezone: Some("Europe/Paris".into()),
        ..Default::default()
    };
    presets.save("rack", &saved).unwrap();
    open_editor(&mut app);
    let _ = app.update(Message::Customize(customize::Message::PickPreset(
        "rack".into(),
    )));
    let f = &editor(&mut app).form;
    assert_eq!(
        (f.hostname.as_str(), f.timezone.as_str()),
        ("rack{n:02}", "Europe/Paris")
    );
    assert_eq!(app.sel.preset.as_deref(), Some("rack"));
    app.sel.os = Some(OsChoice::Custom("/x.img".into()));
    app.sel.storage = Some(StorageChoice::File("/y.img".into()));
    let Some(Job::Write(job)) = app.sel.job(&app.ctx) else {
        panic!()
    };
    assert_eq!(job.advance_preset.as_deref(), Some("rack"));
    assert_eq!(
        job.settings
            .as_ref()
            .unwrap()
            .hostname_now()
            .unwrap()
            .as_deref(),
        Some("rack07")
    );
    Ok(())
}

/// Sets an environment variable for one test, and puts it back.
struct EnvGuard(&'static str, Option<std::ffi::OsString>);

impl EnvGuard {
    fn set(name: &'static str, value: &Path) -> EnvGuard {
        let old = std::env::var_os(name);
        // SAFETY: the tests that change the environment hold the locale lock, one at a
        // time, and read it only through Presets::open on this thread.
        unsafe { std::env::set_var(name, value) };
        EnvGuard(name, old)
    }
}

impl Drop for EnvGuard {
    fn drop(&mut self) {
        // SAFETY: as in `set`.
        unsafe {
            match &self.1 {
                Some(v) => std::env::set_var(self.0, v),
                None => std::env::remove_var(self.0),
            }
        }
    }
}

/// Two cards the list offers, as the drive watcher reports them.
fn two_cards() -> (cardsmith_drives::Drive, cardsmith_drives::Drive) {
    let a = crate::testing::card(32_000_000_000);
    let mut b = a.clone();
    b.name = "sdy".into();
    b.path = PathBuf::from("/dev/sdy");
    b.serial = Some("000000000273".into());
    b.dev.minor += 16;
    (a, b)
}

#[test]
fn several_cards_are_ticked_confirmed_with_their_host_names_and_written_as_a_set(
) -> Result<(), Error> {
    let (_locale, mut app) = wizard();
    let (a, b) = two_cards();
    app.sel.settings = Some(cardsmith_customize::Settings {
        hostname: Some("node{n:02}".into()),
        counter: 7,
        ..Default::default()
    });
    app.sel.apply_settings = true;
    click(&mut app, "CHOOSE OS")?;
    click(&mut app, "cardsmith demo (systemd)")?;
    // One card: nothing to make a set of, so no tick boxes.
    app.ctx.drives = vec![a.clone()];
    click(&mut app, "CHOOSE STORAGE")?;
    let hint = "Tick several cards to write them all at once, each with its own host name.";
    assert!(!shows(&app, hint));
    app.ctx.drives = vec![a.clone(), b.clone()];
    assert!(shows(&app, hint));
    for name in ["sdz", "sdy"] {
        let _ = app.update(Message::Storage(screen::storage::Message::Check(
            name.into(),
            true,
        )));
    }
    click(&mut app, "WRITE TO 2 CARDS")?;
    assert_eq!(page(&app), Page::Start);
    assert!(
        shows(&app, "2 cards: sdz, sdy"),
        "the start screen names the set"
    );
    let Some(Job::Write(job)) = app.sel.job(&app.ctx) else {
        panic!("a write")
    };
    assert_eq!(
        job.targets,
        [&a, &b]
            .iter()
            .map(|d| Destination::Drive {
                path: d.path.clone(),
                confirmed: d.identity(),
            })
            .collect::<Vec<_>>()
    );
    app.go(Page::Confirm);
    assert!(shows(&app, "2 cards, written at once:"));
    for (d, name) in [(&a, "node07"), (&b, "node08")] {
        let line = format!(
            "• {} — {}",
            rust_i18n::t!(
                "confirm.drive",
                model = d.description(),
                size = d.size_human,
                path = d.path.display()
            ),
            rust_i18n::t!("confirm.hostname", name = name)
        );
        assert!(shows(&app, &line), "{line}");
    }
    // The window answers the job's one question for both cards, and only for them.
    let confirmed: Vec<_> = app.sel.drives().iter().map(|d| d.identity()).collect();
    assert_eq!(confirmed, [a.identity(), b.identity()]);

    // Each card has its row while they are written; one that fails says why.
    let cancel = cardsmith_engine::CancelToken::new();
    let mut progress = screen::progress::State::new(&Job::Write(job), cancel);
    let card_progress = |done| Event::Progress {
        phase: Phase::Write,
        bytes_done: done,
        bytes_total: Some(100 << 20),
        rate: 10_000_000,
    };
    progress.on_update(Update::Card(0, a.path.clone(), card_progress(50 << 20)));
    progress.on_update(Update::Card(1, b.path.clone(), card_progress(20 << 20)));
    progress.on_update(Update::Card(
        1,
        b.path.clone(),
        Event::CardDone {
            result: crate::job::CardResult::Failed,
            error: Some("write failed at byte 123 of /dev/sdy: Input/output error".into()),
        },
    ));
    app.screen = Screen::Progress(progress);
    assert!(shows(&app, "/dev/sdz · Writing"));
    assert!(shows(
        &app,
        "Failed: write failed at byte 123 of /dev/sdy: Input/output error"
    ));
    Ok(())
}

#[test]
fn a_set_ends_with_each_card_and_write_another_set_numbers_on() -> Result<(), Error> {
    use crate::job::{Card, CardResult, CardsReport};
    let (_locale, mut app) = wizard();
    let (a, b) = two_cards();
    app.ctx.drives = vec![a.clone(), b.clone()];
    app.sel.storage = Some(StorageChoice::Drives(vec![a.clone(), b.clone()]));
    app.sel.settings = Some(cardsmith_customize::Settings {
        hostname: Some("node{n:02}".into()),
        counter: 7,
        ..Default::default()
    });
    app.sel.apply_settings = true;
    let card = |d: &cardsmith_drives::Drive, host: &str, error: Option<&str>| Card {
        target: d.path.clone(),
        model: Some(d.description()),
        serial: d.serial.clone(),
        hostname: Some(host.into()),
        result: if error.is_some() {
            CardResult::Failed
        } else {
            CardResult::Written
        },
        error: error.map(str::to_owned),
        exit_code: error.map(|_| 1),
        left: error.map(|_| Left::Zeroed),
        bytes_written: 1 << 20,
        rate: 1 << 20,
        seconds: 1.0,
        report: None,
    };
    let report = Report::Cards(CardsReport::new(
        "write",
        vec![
            card(&a, "node07", None),
            card(&b, "node08", Some("Input/output error")),
        ],
    ));
    app.screen = Screen::Done(screen::done::State {
        kind: Kind::Write,
        ended: Ended {
            text: report.summary(),
            report: Some(report),
            cancelled: false,
            left: None,
        },
        notes: Vec::new(),
        ejected: None,
    });
    assert!(shows(&app, "1 of 2 cards failed"));
    assert!(shows(&app, "• /dev/sdz — node07 — Done"));
    assert!(shows(
        &app,
        "• /dev/sdy — node08 — failed: Input/output error"
    ));
    click(&mut app, "WRITE ANOTHER SET")?;
    assert_eq!(page(&app), Page::Storage);
    assert!(app.sel.storage.is_none(), "new cards are chosen");
    assert_eq!(
        app.sel.settings.as_ref().map(|s| s.counter),
        Some(9),
        "the next set starts after the numbers this one used"
    );
    Ok(())
}
