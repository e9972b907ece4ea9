//! The download cache: every compressed image downloaded with a known hash is kept, under
//! that hash, so the next write of the same image needs no network. Also the last good copy
//! of each catalog, for offline use.
//!
//! Layout under the user's cache directory (`~/.cache/cardsmith`):
//! `images/<sha256>` (the file as downloaded), `images/index.json` (URL, sizes, last use),
//! `images/partial/` (downloads in flight), `catalogs/<sha256 of the URL>.json`.
//! Every file is written under a temporary name and renamed into place.

use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use cardsmith_engine::to_hex;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::http::Tee;
use crate::Error;

/// Default size cap of the image cache.
pub const DEFAULT_LIMIT: u64 = 8 << 30;

/// One cached image.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    /// SHA-256 of the file as downloaded: its name in the cache.
    pub sha256: String,
    /// SHA-256 of the decompressed image, when known.
    #[serde(default)]
    pub image_sha256: Option<String>,
    pub url: String,
    pub size: u64,
    /// Seconds since the epoch.
    pub last_used: u64,
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct Index {
    entries: Vec<Entry>,
}

/// A catalog as last fetched successfully.
#[derive(Debug, Serialize, Deserialize)]
pub struct SavedCatalog {
    pub url: String,
    /// Seconds since the epoch.
    pub fetched_at: u64,
    pub catalog: serde_json::Value,
}

pub struct Cache {
    dir: PathBuf,
    limit: u64,
    notes: Mutex<Vec<String>>,
}

/// A cache file's name: a SHA-256 as 64 lowercase hex digits, and nothing else (no path).
fn is_sha256_name(name: &str) -> bool {
    name.len() == 64 && name.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

pub fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

fn io_error(path: &Path) -> impl Fn(io::Error) -> Error + '_ {
    move |source| Error::Cache {
        path: path.to_owned(),
        source,
    }
}

/// Writes `data` to `path` through a temporary file in the same directory and a rename, so
/// a reader sees the old file or the new one, never half of one.
fn write_atomically(path: &Path, data: &[u8]) -> Result<(), Error> {
    let dir = path.parent().expect("cache files live in a directory");
    fs::create_dir_all(dir).map_err(io_error(dir))?;
    let tmp = dir.join(format!(
        ".{}.{}.tmp",
        path.file_name().unwrap_or_default().to_string_lossy(),
        std::process::id()
    ));
    let result = (|| {
        let mut file = File::create(&tmp)?;
        file.write_all(data)?;
        file.sync_all()?;
        fs::rename(&tmp, path)
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result.map_err(io_error(path))
}

/// SHA-256 of a whole file.
fn hash_file(path: &Path) -> io::Result<String> {
    let mut file = File::open(path)?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0; 1 << 20];
    loop {
        match file.read(&mut buf)? {
            0 => break,
            n => hasher.update(&buf[..n]),
        }
    }
    Ok(to_hex(&hasher.finalize()))
}

impl Cache {
    /// `$CARDSMITH_CACHE` when set, else the user's cache directory
    /// (`$XDG_CACHE_HOME/cardsmith`, or `~/.cache/cardsmith`).
    pub fn open() -> Result<Cache, Error> {
        if let Some(dir) = std::env::var_os("CARDSMITH_CACHE").filter(|d| !d.is_empty()) {
            return Ok(Cache::at(Path::new(&dir), DEFAULT_LIMIT));
        }
        let dirs = directories::ProjectDirs::from("", "", "cardsmith").ok_or(Error::NoCacheDir)?;
        Ok(Cache::at(dirs.cache_dir(), DEFAULT_LIMIT))
    }

    pub fn at(dir: &Path, limit: u64) -> Cache {
        Cache {
            dir: dir.to_owned(),
            limit,
            notes: Mutex::new(Vec::new()),
        }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn images(&self) -> PathBuf {
        self.dir.join("images")
    }

    fn index_path(&self) -> PathBuf {
        self.images().join("index.json")
    }

    /// The index, reconciled with the files: entries whose file is gone are dropped, and a
    /// file the index does not know (a lost or damaged index) is listed again, so it still
    /// counts against the cap and can be evicted. Every name in the index is checked before
    /// it is joined to a path (a hostile `"sha256": "../../etc/shadow"` would otherwise be
    /// deleted by eviction); entries that fail are dropped with a note, and sizes are the
    /// files' own, not the index's word.
    fn load_index(&self) -> Index {
        let read: Index = fs::read(self.index_path())
            .ok()
            .and_then(|bytes| serde_json::from_slice(&bytes).ok())
            .unwrap_or_default();
        let images = self.images();
        let mut index = Index::default();
        for mut entry in read.entries {
            if !is_sha256_name(&entry.sha256) {
                self.note(format!(
                    "the cache index named {:?}, which is not a SHA-256; that entry was dropped \
                     (nothing outside the cache was touched)",
                    entry.sha256
                ));
                continue;
            }
            if index.entries.iter().any(|e| e.sha256 == entry.sha256) {
                continue;
            }
            let Ok(meta) = fs::symlink_metadata(images.join(&entry.sha256)) else {
                continue;
            };
            if !meta.is_file() {
                continue;
            }
            entry.size = meta.len();
            if entry
                .image_sha256
                .as_deref()
                .is_some_and(|h| !is_sha256_name(h))
            {
                entry.image_sha256 = None;
            }
            index.entries.push(entry);
        }
        for file in fs::read_dir(&images).into_iter().flatten().flatten() {
            let name = file.file_name().to_string_lossy().into_owned();
            if !is_sha256_name(&name) || index.entries.iter().any(|e| e.sha256 == name) {
                continue;
            }
            let Ok(meta) = file.metadata() else { continue };
            let used = meta
                .modified()
                .ok()
                .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
                .map_or(0, |d| d.as_secs());
            index.entries.push(Entry {
                sha256: name,
                image_sha256: None,
                url: String::new(),
                size: meta.len(),
                last_used: used,
            });
        }
        index
    }

    /// Something the user should hear about the cache (a damaged index entry dropped…).
    fn note(&self, text: String) {
        if let Ok(mut notes) = self.notes.lock() {
            if !notes.contains(&text) {
                notes.push(text);
            }
        }
    }

    /// What happened to the cache that the user should hear about, since the last call.
    pub fn take_notes(&self) -> Vec<String> {
        self.notes
            .lock()
            .map(|mut n| std::mem::take(&mut *n))
            .unwrap_or_default()
    }

    /// Holds the cache's lock (flock) until dropped, so two cardsmith processes do not
    /// rewrite the index over each other.
    fn lock(&self) -> Option<File> {
        fs::create_dir_all(self.images()).ok()?;
        let file = File::create(self.images().join(".lock")).ok()?;
        // SAFETY: flock on a descriptor we own; released when the file is closed.
        (unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX) } == 0).then_some(file)
    }

    fn save_index(&self, index: &Index) -> Result<(), Error> {
        let json = serde_json::to_vec_pretty(index).expect("the index serializes");
        write_atomically(&self.index_path(), &json)
    }

    /// Every cached image, most recently used first.
    pub fn list(&self) -> Vec<Entry> {
        let mut entries = self.load_index().entries;
        entries.sort_by_key(|e| std::cmp::Reverse(e.last_used));
        entries
    }

    /// Deletes every cached image and catalog; returns how many files and bytes went.
    pub fn clear(&self) -> Result<(usize, u64), Error> {
        let _lock = self.lock();
        let mut files = 0;
        let mut bytes = 0u64;
        for dir in [self.images(), self.dir.join("catalogs")] {
            let Ok(entries) = fs::read_dir(&dir) else {
                continue;
            };
            for entry in entries.flatten() {
                let path = entry.path();
                let Ok(meta) = entry.metadata() else { continue };
                if meta.is_dir() {
                    fs::remove_dir_all(&path).map_err(io_error(&path))?;
                } else {
                    fs::remove_file(&path).map_err(io_error(&path))?;
                    let bookkeeping = path == self.index_path() || path.ends_with(".lock");
                    if !bookkeeping {
                        files += 1;
                        bytes = bytes.saturating_add(meta.len());
                    }
                }
            }
        }
        Ok((files, bytes))
    }

    /// The cached file for an image known by the hash of its download (or, when that is
    /// not known, of its decompressed content), after checking the file still has its hash.
    /// A file that does not is deleted (and `Err` says so), so the image is downloaded again.
    pub fn find(
        &self,
        sha256: Option<&str>,
        image_sha256: Option<&str>,
    ) -> Result<Option<(PathBuf, Entry)>, String> {
        let _lock = self.lock();
        let mut index = self.load_index();
        let same = |a: &str, b: &str| a.eq_ignore_ascii_case(b);
        let wanted = |e: &Entry| match (sha256, image_sha256) {
            (Some(h), _) => same(&e.sha256, h),
            (None, Some(h)) => e.image_sha256.as_deref().is_some_and(|i| same(i, h)),
            (None, None) => false,
        };
        let Some(pos) = index.entries.iter().position(wanted) else {
            return Ok(None);
        };
        let entry = index.entries[pos].clone();
        let path = self.images().join(&entry.sha256);
        match hash_file(&path) {
            Ok(actual) if actual == entry.sha256 => {
                index.entries[pos].last_used = now();
                let _ = self.save_index(&index);
                let _ = File::options()
                    .write(true)
                    .open(&path)
                    .and_then(|f| f.set_modified(SystemTime::now()));
                Ok(Some((path, entry)))
            }
            outcome => {
                let _ = fs::remove_file(&path);
                index.entries.remove(pos);
                let _ = self.save_index(&index);
                Err(match outcome {
                    Ok(actual) => format!(
                        "the cached copy of {} was damaged (SHA-256 {actual}); it was deleted and \
                         the image is downloaded again",
                        entry.url
                    ),
                    Err(e) => format!(
                        "the cached copy of {} could not be read ({e}); it was deleted and the \
                         image is downloaded again",
                        entry.url
                    ),
                })
            }
        }
    }

    /// Starts keeping a download: the returned [`Pending`] receives its bytes. Partial files
    /// left by a cardsmith that was killed (untouched for an hour) are removed first.
    pub fn start(&self, url: &str) -> Result<Pending, Error> {
        let partial = self.images().join("partial");
        fs::create_dir_all(&partial).map_err(io_error(&partial))?;
        for old in fs::read_dir(&partial).into_iter().flatten().flatten() {
            let stale = old
                .metadata()
                .and_then(|m| m.modified())
                .ok()
                .and_then(|t| t.elapsed().ok())
                .is_some_and(|age| age.as_secs() > 3600);
            if stale {
                let _ = fs::remove_file(old.path());
            }
        }
        let path = partial.join(format!("{}-{}", std::process::id(), now_nanos()));
        let file = File::create(&path).map_err(io_error(&path))?;
        Ok(Pending {
            state: Arc::new(Mutex::new(PendingState {
                file: Some(file),
                path,
                url: url.to_owned(),
                hasher: Sha256::new(),
                len: 0,
                complete: false,
                failed: None,
            })),
        })
    }

    /// Files a finished download under its hash and evicts the least recently used images
    /// beyond the size cap (a download larger than the cap is not kept at all).
    fn commit(
        &self,
        state: &mut PendingState,
        image_sha256: Option<String>,
    ) -> Result<Option<Entry>, Error> {
        let Some(file) = state.file.take() else {
            return Ok(None);
        };
        drop(file);
        let sha256 = to_hex(&state.hasher.clone().finalize());
        let entry = Entry {
            sha256: sha256.clone(),
            image_sha256,
            url: state.url.clone(),
            size: state.len,
            last_used: now(),
        };
        let dest = self.images().join(&sha256);
        let _lock = self.lock();
        if let Err(e) = fs::rename(&state.path, &dest) {
            let _ = fs::remove_file(&state.path);
            return Err(io_error(&dest)(e));
        }
        let mut index = self.load_index();
        index.entries.retain(|e| e.sha256 != sha256);
        index.entries.push(entry.clone());
        self.evict(&mut index);
        self.save_index(&index)?;
        Ok(index
            .entries
            .iter()
            .any(|e| e.sha256 == sha256)
            .then_some(entry))
    }

    /// Removes least recently used images until the cache fits its cap.
    fn evict(&self, index: &mut Index) {
        index
            .entries
            .sort_by_key(|e| std::cmp::Reverse(e.last_used));
        let mut total = 0u64;
        index.entries.retain(|e| {
            let keep = total
                .checked_add(e.size)
                .is_some_and(|with| with <= self.limit);
            if keep {
                total += e.size;
            } else {
                let _ = fs::remove_file(self.images().join(&e.sha256));
            }
            keep
        });
    }

    fn catalog_path(&self, url: &str) -> PathBuf {
        let key = to_hex(&Sha256::digest(url.as_bytes()));
        self.dir.join("catalogs").join(format!("{key}.json"))
    }

    /// Keeps `catalog` as the last good copy of the catalog at `url`.
    pub fn save_catalog(&self, url: &str, catalog: serde_json::Value) -> Result<(), Error> {
        let saved = SavedCatalog {
            url: url.to_owned(),
            fetched_at: now(),
            catalog,
        };
        let json = serde_json::to_vec(&saved).expect("a catalog serializes");
        write_atomically(&self.catalog_path(url), &json)
    }

    /// The last good copy of the catalog at `url`, if any.
    pub fn saved_catalog(&self, url: &str) -> Option<SavedCatalog> {
        let bytes = fs::read(self.catalog_path(url)).ok()?;
        serde_json::from_slice(&bytes).ok()
    }
}

fn now_nanos() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos())
}

struct PendingState {
    file: Option<File>,
    path: PathBuf,
    url: String,
    hasher: Sha256,
    len: u64,
    complete: bool,
    failed: Option<String>,
}

/// A download being kept. Cloned: one half feeds it (as the download's [`Tee`]), the other
/// commits it once the write has checked the hashes. Dropped without a commit, it removes
/// its partial file.
#[derive(Clone)]
pub struct Pending {
    state: Arc<Mutex<PendingState>>,
}

impl Pending {
    pub fn tee(&self) -> Box<dyn Tee> {
        Box::new(self.clone())
    }

    /// Where the download is being stored until it is committed.
    pub fn path(&self) -> std::path::PathBuf {
        self.state.lock().expect("pending lock").path.clone()
    }

    /// Whether every byte of the download arrived and was stored.
    pub fn is_complete(&self) -> bool {
        let state = self.state.lock().expect("pending lock");
        state.complete && state.failed.is_none()
    }

    /// Why keeping the download failed (a full disk…), if it did; the write goes on.
    pub fn failure(&self) -> Option<String> {
        self.state.lock().expect("pending lock").failed.clone()
    }

    /// The SHA-256 of everything received.
    pub fn sha256(&self) -> String {
        to_hex(
            &self
                .state
                .lock()
                .expect("pending lock")
                .hasher
                .clone()
                .finalize(),
        )
    }

    /// Files the complete download in `cache`. Call it only after the download was checked
    /// against a published or given hash; `image_sha256` is the decompressed image's.
    pub fn commit(
        &self,
        cache: &Cache,
        image_sha256: Option<String>,
    ) -> Result<Option<Entry>, Error> {
        if !self.is_complete() {
            return Ok(None);
        }
        let mut state = self.state.lock().expect("pending lock");
        cache.commit(&mut state, image_sha256)
    }
}

impl Tee for Pending {
    fn bytes(&mut self, data: &[u8]) {
        let mut state = self.state.lock().expect("pending lock");
        if state.failed.is_some() {
            return;
        }
        state.hasher.update(data);
        state.len += data.len() as u64;
        let written = match &mut state.file {
            Some(file) => file.write_all(data),
            None => Ok(()),
        };
        if let Err(e) = written {
            state.failed = Some(format!("cannot keep the download in the cache: {e}"));
            state.file = None;
            let _ = fs::remove_file(&state.path);
        }
    }

    fn finished(&mut self) {
        let mut state = self.state.lock().expect("pending lock");
        let synced = state.file.as_ref().map(File::sync_all);
        if let Some(Err(e)) = synced {
            state.failed = Some(format!("cannot keep the download in the cache: {e}"));
        }
        state.complete = true;
    }
}

impl Drop for PendingState {
    fn drop(&mut self) {
        if self.file.is_some() {
            let _ = fs::remove_file(&self.path);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keep(cache: &Cache, url: &str, data: &[u8]) -> Option<Entry> {
        let pending = cache.start(url).unwrap();
        let mut tee = pending.tee();
        tee.bytes(data);
        tee.finished();
        drop(tee);
        pending.commit(cache, None).unwrap()
    }

    #[test]
    fn a_kept_download_is_found_by_its_hash_and_a_damaged_one_is_deleted() {
        let dir = tempfile::tempdir().unwrap();
        let cache = Cache::at(dir.path(), 1 << 20);
        let entry = keep(&cache, "https://x/a.img.xz", b"image bytes").unwrap();
        assert_eq!(entry.sha256, to_hex(&Sha256::digest(b"image bytes")));
        let (path, found) = cache.find(Some(&entry.sha256), None).unwrap().unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"image bytes");
        assert_eq!(found.url, "https://x/a.img.xz");

        fs::write(&path, b"image bytez").unwrap();
        let damaged = cache.find(Some(&entry.sha256), None).unwrap_err();
        assert!(damaged.contains("damaged"), "{damaged}");
        assert!(!path.exists());
        assert_eq!(cache.find(Some(&entry.sha256), None), Ok(None));
    }

    #[test]
    fn a_known_download_hash_is_the_only_key() {
        let dir = tempfile::tempdir().unwrap();
        let cache = Cache::at(dir.path(), 1 << 20);
        let pending = cache.start("https://x/a.img.xz").unwrap();
        let mut tee = pending.tee();
        tee.bytes(b"xz bytes");
        tee.finished();
        drop(tee);
        let entry = pending
            .commit(&cache, Some("ab".repeat(32)))
            .unwrap()
            .unwrap();
        let image = "ab".repeat(32);
        let other_download = "cd".repeat(32);
        assert_eq!(cache.find(Some(&other_download), Some(&image)), Ok(None));
        let found = cache.find(None, Some(&image)).unwrap().unwrap();
        assert_eq!(found.1.sha256, entry.sha256);
    }

    #[test]
    fn a_lost_index_is_rebuilt_from_the_files() {
        let dir = tempfile::tempdir().unwrap();
        let cache = Cache::at(dir.path(), 1 << 20);
        let entry = keep(&cache, "https://x/a", b"kept").unwrap();
        fs::write(cache.index_path(), b"not json").unwrap();
        let listed = cache.list();
        assert_eq!(listed.len(), 1);
        assert_eq!(listed[0].sha256, entry.sha256);
        assert_eq!(listed[0].size, 4);
    }

    #[test]
    fn an_unfinished_download_leaves_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let cache = Cache::at(dir.path(), 1 << 20);
        let pending = cache.start("https://x/b").unwrap();
        pending.tee().bytes(b"half");
        assert_eq!(pending.commit(&cache, None).unwrap(), None);
        drop(pending);
        assert!(cache.list().is_empty());
        let partial = fs::read_dir(dir.path().join("images/partial"))
            .unwrap()
            .count();
        assert_eq!(partial, 0, "the partial file is removed");
    }

    #[test]
    fn the_least_recently_used_images_go_first() {
        let dir = tempfile::tempdir().unwrap();
        let cache = Cache::at(dir.path(), 25);
        let a = keep(&cache, "a", &[1; 10]).unwrap();
        let mut index = cache.load_index();
        index.entries[0].last_used -= 100;
        cache.save_index(&index).unwrap();
        keep(&cache, "b", &[2; 10]).unwrap();
        keep(&cache, "c", &[3; 10]).unwrap();
        let urls: Vec<String> = cache.list().into_iter().map(|e| e.url).collect();
        assert_eq!(urls.len(), 2);
        assert!(!urls.contains(&"a".to_owned()), "{urls:?}");
        assert!(!dir.path().join("images").join(&a.sha256).exists());
        assert_eq!(
            keep(&cache, "huge", &[4; 30]),
            None,
            "larger than the cap: not kept"
        );
    }

    #[test]
    fn index_names_that_are_not_hashes_are_dropped_and_nothing_outside_is_touched() {
        let dir = tempfile::tempdir().unwrap();
        let victim = dir.path().join("victim");
        fs::write(&victim, b"precious").unwrap();
        let cache = Cache::at(&dir.path().join("cache"), 25);
        let kept = keep(&cache, "a", &[1; 10]).unwrap();
        let hostile = serde_json::json!({ "entries": [
            { "sha256": victim.display().to_string(), "url": "x", "size": 1, "last_used": 0 },
            { "sha256": "../../victim", "url": "y", "size": 1, "last_used": 0 },
            { "sha256": kept.sha256.to_uppercase(), "url": "z", "size": 1, "last_used": 0 },
            { "sha256": kept.sha256, "url": "a", "size": 10, "last_used": 1,
              "image_sha256": "../not-a-hash" },
        ]});
        fs::write(cache.index_path(), hostile.to_string()).unwrap();
        // Eviction (a new image past the cap) and a failed hash check both delete files.
        keep(&cache, "b", &[2; 20]).unwrap();
        fs::write(cache.images().join(&kept.sha256), b"changed").unwrap();
        let _ = cache.find(Some(&kept.sha256), None);
        let _ = cache.find(Some(&victim.display().to_string()), None);
        assert_eq!(fs::read(&victim).unwrap(), b"precious");
        let notes = cache.take_notes().join("\n");
        assert!(
            notes.contains("\"../../victim\", which is not a SHA-256"),
            "{notes}"
        );
        assert!(
            notes.contains(&format!("{:?}", victim.display().to_string())),
            "{notes}"
        );
        assert!(cache.list().iter().all(|e| e.image_sha256.is_none()));
    }

    #[test]
    fn sizes_are_the_files_own_and_huge_ones_do_not_overflow_the_cap() {
        let dir = tempfile::tempdir().unwrap();
        let cache = Cache::at(dir.path(), 25);
        let a = keep(&cache, "a", &[1; 10]).unwrap();
        let b = keep(&cache, "b", &[2; 10]).unwrap();
        let lies = serde_json::json!({ "entries": [
            { "sha256": a.sha256, "url": "a", "size": 1, "last_used": 2 },
            { "sha256": b.sha256, "url": "b", "size": u64::MAX, "last_used": 1 },
        ]});
        fs::write(cache.index_path(), lies.to_string()).unwrap();
        let sizes: Vec<u64> = cache.list().iter().map(|e| e.size).collect();
        assert_eq!(sizes, [10, 10]);
        keep(&cache, "c", &[3; 10]).unwrap();
        let urls: Vec<String> = cache.list().into_iter().map(|e| e.url).collect();
        assert_eq!(urls, ["c", "a"], "the least recently used went");
    }

    #[test]
    fn clear_removes_everything() {
        let dir = tempfile::tempdir().unwrap();
        let cache = Cache::at(dir.path(), 1 << 20);
        keep(&cache, "a", b"one").unwrap();
        cache
            .save_catalog("https://x/os.json", serde_json::json!({"os_list": []}))
            .unwrap();
        let (files, bytes) = cache.clear().unwrap();
        assert_eq!(files, 2, "one image, one catalog");
        assert!(bytes > 3);
        assert!(cache.list().is_empty());
        assert!(cache.saved_catalog("https://x/os.json").is_none());
    }
}
