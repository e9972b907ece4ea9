//! Drives appearing, leaving and changing (a card put into a reader, a stick unplugged, a
//! partition mounted), for the GUI's drive list.
//!
//! sysfs offers no change notification that works everywhere (uevent sockets need
//! privileges in some containers), so the watcher takes a snapshot at a fixed interval and
//! reports the differences. A snapshot reads a few sysfs files per device, plus the first
//! bytes of devices whose filesystem udev has not recorded.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{channel, Receiver, Sender};
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::Duration;

use crate::drive::Drive;
use crate::snapshot::{Snapshot, Sources};

/// What changed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// Present when the watcher started, or plugged in since.
    Added(Drive),
    /// Gone; the drive as it was last seen.
    Removed(Drive),
    /// Still there, but different: a medium inserted or removed, a partition mounted, …
    Changed(Drive),
}

/// Watches the drives from a background thread until dropped.
pub struct Watcher {
    events: Receiver<Event>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Watcher {
    /// Starts watching `sources` every `interval`. Every drive present at the start is
    /// reported first as [`Event::Added`].
    pub fn start(sources: Sources, interval: Duration) -> Watcher {
        let (tx, events) = channel();
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = thread::spawn(move || watch(&sources, interval, &tx, &flag));
        Watcher {
            events,
            stop,
            thread: Some(thread),
        }
    }

    /// The next event, waiting at most `timeout`.
    pub fn next(&self, timeout: Duration) -> Option<Event> {
        self.events.recv_timeout(timeout).ok()
    }

    /// Every event that is waiting, without blocking.
    pub fn pending(&self) -> Vec<Event> {
        self.events.try_iter().collect()
    }
}

impl Drop for Watcher {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            thread.thread().unpark();
            let _ = thread.join();
        }
    }
}

fn watch(sources: &Sources, interval: Duration, tx: &Sender<Event>, stop: &AtomicBool) {
    let mut known: BTreeMap<String, Drive> = BTreeMap::new();
    while !stop.load(Ordering::Relaxed) {
        // A snapshot that cannot be read (sysfs unmounted?) reports nothing rather than
        // every drive as gone.
        if let Ok(snapshot) = Snapshot::capture_from(sources) {
            let now: BTreeMap<String, Drive> = snapshot
                .drives()
                .iter()
                .map(|d| (d.name.clone(), d.clone()))
                .collect();
            for event in differences(&known, &now) {
                if tx.send(event).is_err() {
                    return; // nobody listens any more
                }
            }
            known = now;
        }
        thread::park_timeout(interval);
    }
}

fn differences(before: &BTreeMap<String, Drive>, after: &BTreeMap<String, Drive>) -> Vec<Event> {
    let mut events = Vec::new();
    for (name, old) in before {
        if !after.contains_key(name) {
            events.push(Event::Removed(old.clone()));
        }
    }
    for (name, new) in after {
        match before.get(name) {
            None => events.push(Event::Added(new.clone())),
            Some(old) if old != new => events.push(Event::Changed(new.clone())),
            Some(_) => {}
        }
    }
    events
}
