//! The watcher on the running system, with a loop device this test attaches and detaches.
//! Needs root (the README's test command runs as root).

use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use cardsmith_drives::{Event, Sources, Watcher};

/// A loop device over a file, detached when dropped.
struct Loop(String);

impl Loop {
    fn attach(file: &std::path::Path) -> Loop {
        let out = Command::new("losetup")
            .args(["-f", "--show"])
            .arg(file)
            .output()
            .expect("losetup (mount) is needed");
        assert!(
            out.status.success(),
            "losetup: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Loop(String::from_utf8(out.stdout).unwrap().trim().to_owned())
    }
}

impl Drop for Loop {
    fn drop(&mut self) {
        let _ = Command::new("losetup").args(["-d", &self.0]).status();
    }
}

fn wait_for(watcher: &Watcher, test: impl Fn(&Event) -> bool) -> Option<Event> {
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        if let Some(event) = watcher.next(Duration::from_millis(100)) {
            if test(&event) {
                return Some(event);
            }
        }
    }
    None
}

#[test]
fn watcher_sees_a_loop_device_come_and_go() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("card.bin");
    std::fs::File::create(&file)
        .unwrap()
        .set_len(8 << 20)
        .unwrap();
    let watcher = Watcher::start(Sources::live(), Duration::from_millis(50));
    // Let the initial Added events pass.
    while watcher.next(Duration::from_millis(300)).is_some() {}

    let device = Loop::attach(&file);
    let name = device.0.trim_start_matches("/dev/").to_owned();
    // losetup attaches the file and sets the size in separate steps: the device may first
    // show up empty, then change.
    let seen = wait_for(&watcher, |e| match e {
        Event::Added(d) | Event::Changed(d) => d.name == name && d.size == 8 << 20,
        Event::Removed(_) => false,
    })
    .expect("the attached loop device is reported");
    let (Event::Added(drive) | Event::Changed(drive)) = seen else {
        unreachable!()
    };
    assert_eq!(drive.backing_file, Some(PathBuf::from(&file)));

    drop(device);
    assert!(
        wait_for(
            &watcher,
            |e| matches!(e, Event::Removed(d) if d.name == name)
        )
        .is_some(),
        "the detached loop device is reported gone"
    );
}
