//! One image written to several targets at once: each gets the image, each comes back to
//! the caller exactly once, one that is refused does not stop the others, and memory is
//! the pool's whatever the number of targets. Checked by cmp against the image.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use cardsmith_engine::{
    write_many, CancelToken, Error, Image, Input, NewFiles, OpenAs, Phase, Step, Target,
    WriteOptions,
};

fn image(dir: &Path, len: usize) -> PathBuf {
    let data: Vec<u8> = (0..len).map(|i| (i * 7 % 251) as u8).collect();
    let path = dir.join("os.img");
    fs::write(&path, data).unwrap();
    path
}

fn open(path: &Path) -> Target {
    let files = NewFiles {
        private: false,
        owner: None,
    };
    Target::open_for_write(path, true, files).unwrap()
}

/// What came back for each target: its outcome (`None`: stopped with the run), how many
/// times it came back, and its last write progress.
struct Heard {
    outcome: Option<Result<u64, String>>,
    returned: usize,
    written: u64,
}

fn fan_out(
    image: &Path,
    targets: Vec<Target>,
    cancel: &CancelToken,
) -> (Vec<Heard>, Result<(), Error>) {
    let img = Image::open(&Input::Path(image.to_owned()), OpenAs::Detect).unwrap();
    let mut heard: Vec<Heard> = (0..targets.len())
        .map(|_| Heard {
            outcome: None,
            returned: 0,
            written: 0,
        })
        .collect();
    let options = WriteOptions {
        verify: true,
        ..WriteOptions::default()
    };
    let run = write_many(img, targets, &options, cancel, &mut |i, step| match step {
        Step::Progress(p) if p.phase == Phase::Write => heard[i].written = p.bytes_done,
        Step::Progress(_) => {}
        Step::Finished(result, _) => {
            heard[i].returned += 1;
            heard[i].outcome = Some(result.map(|r| r.bytes).map_err(|e| e.to_string()));
        }
        Step::Stopped(_) => heard[i].returned += 1,
        Step::Stalled(_) => {}
    });
    (heard, run)
}

fn same(a: &Path, b: &Path) -> bool {
    Command::new("cmp")
        .arg(a)
        .arg(b)
        .status()
        .unwrap()
        .success()
}

#[test]
fn every_target_gets_the_image_and_comes_back_once() {
    let dir = tempfile::tempdir().unwrap();
    let image = image(dir.path(), 21 << 20);
    let paths: Vec<PathBuf> = (0..3)
        .map(|n| dir.path().join(format!("t{n}.img")))
        .collect();
    // The image itself among the targets: refused on its own, the others written.
    let mut targets: Vec<Target> = paths.iter().map(|p| open(p)).collect();
    targets.insert(1, open(&image));
    let (heard, run) = fan_out(&image, targets, &CancelToken::new());
    run.unwrap();
    assert!(
        heard.iter().all(|h| h.returned == 1),
        "each target back once"
    );
    let written: Vec<&Heard> = heard
        .iter()
        .filter(|h| matches!(h.outcome, Some(Ok(_))))
        .collect();
    assert_eq!(written.len(), 3);
    for h in written {
        assert_eq!(h.outcome, Some(Ok(21 << 20)));
        assert_eq!(h.written, 21 << 20);
    }
    let refused = heard[1].outcome.clone().unwrap().unwrap_err();
    assert!(refused.contains("the image"), "{refused}");
    for path in &paths {
        assert!(same(path, &image), "{} differs", path.display());
    }
}

#[test]
fn a_cancelled_fan_out_hands_every_target_back_stopped() {
    let dir = tempfile::tempdir().unwrap();
    let image = image(dir.path(), 9 << 20);
    let paths: Vec<PathBuf> = (0..2)
        .map(|n| dir.path().join(format!("t{n}.img")))
        .collect();
    let cancel = CancelToken::new();
    cancel.cancel();
    let targets = paths.iter().map(|p| open(p)).collect();
    let (heard, run) = fan_out(&image, targets, &cancel);
    assert!(matches!(run, Err(Error::Cancelled)), "{run:?}");
    for (h, path) in heard.iter().zip(&paths) {
        assert_eq!((h.returned, h.outcome.is_none()), (1, true));
        // A file cardsmith created is removed again.
        assert!(!path.exists(), "{}", path.display());
    }
}
