//! The jobs as a sink sees them: the exact events of a write, in order.

use std::path::Path;

use cardsmith_engine::{CancelToken, Phase};

use super::{Ask, Destination, Event, Left, Report, Sink, Source, WriteJob};

/// Keeps every event; answers every question no (a test must not be asked).
#[derive(Default)]
struct Recorder {
    events: Vec<Event>,
    asked: Vec<Ask>,
}

impl Sink for Recorder {
    fn event(&mut self, event: Event) {
        self.events.push(event);
    }

    fn consent(&mut self, ask: &Ask) -> Result<(), String> {
        self.asked.push(ask.clone());
        Err("no".into())
    }
}

/// An image of `len` bytes that no two chunks share (so a misplaced chunk shows).
fn image(dir: &Path, len: usize) -> std::path::PathBuf {
    let path = dir.join("os.img");
    let data: Vec<u8> = (0..len)
        .map(|i| (i / 4096 % 251) as u8 ^ (i as u8))
        .collect();
    std::fs::write(&path, data).unwrap();
    path
}

/// Progress with its rate left out (it depends on the clock).
fn timeless(events: &[Event]) -> Vec<Event> {
    events
        .iter()
        .cloned()
        .map(|e| match e {
            Event::Progress {
                phase,
                bytes_done,
                bytes_total,
                ..
            } => Event::Progress {
                phase,
                bytes_done,
                bytes_total,
                rate: 0,
            },
            other => other,
        })
        .collect()
}

fn progress(phase: Phase, mib: u64, total_mib: u64) -> Event {
    Event::Progress {
        phase,
        bytes_done: mib << 20,
        bytes_total: Some(total_mib << 20),
        rate: 0,
    }
}

#[test]
fn a_file_write_reports_exactly_these_events() {
    let dir = tempfile::tempdir().unwrap();
    let img = image(dir.path(), 20 << 20);
    // A checksum file beside the image is found and checked, as sha256sum wrote it.
    let sums = std::process::Command::new("sha256sum")
        .arg("os.img")
        .current_dir(dir.path())
        .output()
        .expect("sha256sum");
    std::fs::write(dir.path().join("os.img.sha256"), &sums.stdout).unwrap();
    let sha256 = String::from_utf8_lossy(&sums.stdout)[..64].to_owned();
    let target = dir.path().join("card.img");
    let mut sink = Recorder::default();
    let job = WriteJob::to_all(
        Source::File(img.clone()),
        vec![Destination::File(target.clone())],
    );
    let report = job.run(&CancelToken::new(), &mut sink).expect("written");

    let mut expected = vec![Event::ChecksumFile {
        path: dir.path().join("os.img.sha256"),
        sha256: sha256.clone(),
    }];
    expected.extend((1..=5).map(|i| progress(Phase::Write, 4 * i, 20)));
    expected.push(progress(Phase::Finish, 20, 20));
    expected.extend((1..=5).map(|i| progress(Phase::Verify, 4 * i, 20)));
    assert_eq!(timeless(&sink.events), expected);
    assert!(sink.asked.is_empty(), "a new file is not asked about");
    let Report::Write(w) = &report else {
        panic!("{report:?}")
    };
    assert_eq!(w.bytes, 20 << 20);
    assert!(w.verified);
    assert_eq!(w.sha256_matched, Some("image"));
    assert_eq!(
        std::fs::read(&target).unwrap(),
        std::fs::read(&img).unwrap()
    );
    assert_eq!(
        report.summary(),
        format!(
            "Wrote 20.0 MiB (20971520 bytes) to {} and verified it; SHA-256 matched the image.",
            target.display()
        )
    );
    // The JSON result is the report, tagged with its command.
    let json = serde_json::to_value(&report).unwrap();
    assert_eq!(json["command"], "write");
    assert_eq!(json["sha256_matched"], "image");
    assert_eq!(
        serde_json::to_value(&sink.events[0]).unwrap(),
        serde_json::json!({ "event": "checksum_file",
                            "path": dir.path().join("os.img.sha256"), "sha256": sha256 })
    );
}

#[test]
fn an_existing_file_is_replaced_only_with_consent() {
    let dir = tempfile::tempdir().unwrap();
    let img = image(dir.path(), 1 << 20);
    let target = dir.path().join("card.img");
    std::fs::write(&target, b"keep me").unwrap();
    let mut sink = Recorder::default();
    let job = WriteJob {
        force: true,
        ..WriteJob::to_all(Source::File(img), vec![Destination::File(target.clone())])
    };
    let error = job.run(&CancelToken::new(), &mut sink).unwrap_err();
    assert_eq!(sink.asked.len(), 1);
    let ask = &sink.asked[0];
    assert_eq!((ask.verb, ask.drives.is_empty()), ("replace", true));
    assert!(
        ask.question.contains("Its contents will be replaced"),
        "{}",
        ask.question
    );
    assert_eq!(error.to_string(), "no");
    assert!(!error.is_cancelled());
    assert_eq!(error.left, Left::Untouched);
    assert_eq!(std::fs::read(&target).unwrap(), b"keep me");
}

#[test]
fn a_cancelled_write_says_so_and_removes_its_file() {
    let dir = tempfile::tempdir().unwrap();
    let img = image(dir.path(), 8 << 20);
    let target = dir.path().join("card.img");
    let cancel = CancelToken::new();
    cancel.cancel();
    let mut sink = Recorder::default();
    let job = WriteJob::to_all(Source::File(img), vec![Destination::File(target.clone())]);
    let error = job.run(&cancel, &mut sink).unwrap_err();
    assert!(error.is_cancelled(), "{error}");
    assert_eq!(error.left, Left::FileRemoved);
    assert!(!target.exists());
}

#[test]
fn settings_go_on_after_verify_and_are_reported() {
    let dir = tempfile::tempdir().unwrap();
    let demo = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../os-list-sample/demo-systemd.img.xz"
    );
    let target = dir.path().join("card.img");
    let settings = cardsmith_customize::Settings {
        hostname: Some("job-pi".into()),
        ..Default::default()
    };
    let mut sink = Recorder::default();
    let job = WriteJob {
        settings: Some(settings),
        init_format: Some("systemd".into()),
        ..WriteJob::to_all(
            Source::File(demo.into()),
            vec![Destination::File(target.clone())],
        )
    };
    let report = job.run(&CancelToken::new(), &mut sink).expect("written");
    let phases: Vec<Phase> = sink
        .events
        .iter()
        .filter_map(|e| match e {
            Event::Progress { phase, .. } => Some(*phase),
            _ => None,
        })
        .fold(Vec::new(), |mut seen, p| {
            if seen.last() != Some(&p) {
                seen.push(p);
            }
            seen
        });
    assert_eq!(phases, [Phase::Write, Phase::Finish, Phase::Verify]);
    let Some(Event::Customized(c)) = sink.events.last() else {
        panic!("{:?}", sink.events.last())
    };
    assert_eq!(c.init_format, "systemd");
    assert_eq!(c.hostname.as_deref(), Some("job-pi"));
    let Report::Write(w) = report else { panic!() };
    assert_eq!(w.customized, Some("systemd"));
    assert_eq!(
        w.settings.as_ref().map(|s| s.files.clone()),
        Some(c.files.clone())
    );
}
