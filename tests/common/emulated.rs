//! Emulated cards: an `nbdkit` server (file plugin, with filters that fail or slow it) on a
//! private socket, the file `nbdfuse` exposes from it, and a direct-I/O loop device over
//! that file. Everything is stopped again on drop, also when the test panics; what a
//! killed test left behind is swept away by the next one that starts.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::tool;

/// Where emulated cards live: one folder per card, named after the test process.
const PREFIX: &str = "cardsmith-emulated-";

/// An emulated card; its writes fail with EIO while [`EmulatedCard::fail_writes`] is on.
pub struct EmulatedCard {
    dir: PathBuf,
    nbdkit: Option<Child>,
    nbdfuse: Option<Child>,
    pub device: PathBuf,
    trigger: PathBuf,
}

impl EmulatedCard {
    /// A card of `len` bytes, every byte `fill` (its old contents); `rate` (nbdkit's bits
    /// per second, "320M") limits its speed when given.
    pub fn start(len: u64, fill: u8, rate: Option<&str>) -> EmulatedCard {
        let rate = rate.map(|r| ("rate", format!("rate={r}")));
        Self::filtered(len, fill, rate)
    }

    /// A card whose every write request takes `delay` seconds (nbdkit's delay filter): a
    /// card that stalls.
    pub fn stalling(len: u64, fill: u8, delay: &str) -> EmulatedCard {
        Self::filtered(len, fill, Some(("delay", format!("delay-write={delay}"))))
    }

    /// The file plugin behind the error filter (writes, or everything, fail on demand)
    /// and `extra`, another filter with its setting.
    fn filtered(len: u64, fill: u8, extra: Option<(&str, String)>) -> EmulatedCard {
        let dir = new_dir();
        let backing = dir.join("card.raw");
        super::filled_file(&backing, len as usize, fill);
        let trigger = dir.join("fail-writes");
        let mut args = vec!["--filter=error".to_owned()];
        if let Some((filter, _)) = &extra {
            args.push(format!("--filter={filter}"));
        }
        args.push("file".to_owned());
        args.push(backing.display().to_string());
        // Pulled out: every request fails. The general settings come first: each one sets
        // every kind of request, and the writes' own settings after them set writes again.
        args.push("error=EIO".to_owned());
        args.push("error-rate=100%".to_owned());
        args.push(format!("error-file={}", dir.join("pulled").display()));
        args.push("error-pwrite=EIO".to_owned());
        args.push("error-pwrite-rate=100%".to_owned());
        args.push(format!("error-pwrite-file={}", trigger.display()));
        if let Some((_, setting)) = extra {
            args.push(setting);
        }
        Self::serve(dir, &args)
    }

    /// A card of `len` bytes, every byte `fill`, with bad sectors: writes to any byte of
    /// `bad_writes`, and reads of any byte of `bad_reads`, fail with EIO (nbdkit's sh
    /// plugin over a file, as a worn card does it).
    pub fn with_bad_sectors(
        len: u64,
        fill: u8,
        bad_writes: Option<std::ops::Range<u64>>,
        bad_reads: Option<std::ops::Range<u64>>,
    ) -> EmulatedCard {
        let dir = new_dir();
        let backing = dir.join("card.raw");
        super::filled_file(&backing, len as usize, fill);
        let range = |r: &Option<std::ops::Range<u64>>| match r {
            Some(r) => format!("{} {}", r.start, r.end),
            None => "0 0".to_owned(),
        };
        Self::scripted(
            dir,
            format!(
                r#"#!/bin/bash
# An emulated card with bad sectors, for nbdkit's sh plugin.
disk='{disk}'
hits() {{ [ "$2" -lt "$4" ] && [ "$3" -lt $(( $2 + $1 )) ] && [ "$1" -gt 0 ]; }}
case "$1" in
  get_size) stat -L -c %s "$disk" ;;
  can_write|can_flush) exit 0 ;;
  flush) exit 0 ;;
  pread)
    if hits "$3" "$4" {reads}; then echo "EIO bad sector" >&2; exit 1; fi
    dd if="$disk" iflag=skip_bytes,count_bytes skip="$4" count="$3" bs=64K status=none ;;
  pwrite)
    if hits "$3" "$4" {writes}; then cat >/dev/null; echo "EIO bad sector" >&2; exit 1; fi
    dd of="$disk" oflag=seek_bytes seek="$4" conv=notrunc iflag=fullblock bs=64K status=none ;;
  *) exit 2 ;;
esac
"#,
                disk = backing.display(),
                reads = range(&bad_reads),
                writes = range(&bad_writes),
            ),
        )
    }

    /// A counterfeit card: it claims `claimed` bytes but keeps only `real`, and what is
    /// written past that lands at its start again (offsets wrap around `real`), as cheap
    /// fake cards do. nbdkit's sh plugin over a file of `real` bytes.
    pub fn counterfeit(claimed: u64, real: u64, fill: u8) -> EmulatedCard {
        let dir = new_dir();
        let backing = dir.join("card.raw");
        super::filled_file(&backing, real as usize, fill);
        Self::scripted(
            dir,
            format!(
                r#"#!/bin/bash
# A counterfeit card for nbdkit's sh plugin: {claimed} bytes claimed, {real} kept.
disk='{disk}'
real={real}
case "$1" in
  get_size) echo {claimed} ;;
  can_write|can_flush) exit 0 ;;
  flush) exit 0 ;;
  pread)
    count=$3 off=$4
    while [ "$count" -gt 0 ]; do
      at=$(( off % real )); n=$(( real - at )); [ "$n" -gt "$count" ] && n=$count
      dd if="$disk" iflag=skip_bytes,count_bytes skip="$at" count="$n" bs=64K status=none
      off=$(( off + n )); count=$(( count - n ))
    done ;;
  pwrite)
    count=$3 off=$4
    while [ "$count" -gt 0 ]; do
      at=$(( off % real )); n=$(( real - at )); [ "$n" -gt "$count" ] && n=$count
      dd of="$disk" oflag=seek_bytes seek="$at" conv=notrunc iflag=fullblock,count_bytes         count="$n" bs=64K status=none
      off=$(( off + n )); count=$(( count - n ))
    done ;;
  *) exit 2 ;;
esac
"#,
                disk = backing.display(),
            ),
        )
    }

    /// nbdkit's sh plugin running `script` (written to `dir` as card.sh).
    fn scripted(dir: PathBuf, script: String) -> EmulatedCard {
        let path = dir.join("card.sh");
        fs::write(&path, script).unwrap();
        fs::set_permissions(
            &path,
            <fs::Permissions as std::os::unix::fs::PermissionsExt>::from_mode(0o755),
        )
        .unwrap();
        Self::serve(dir, &["sh".to_owned(), path.display().to_string()])
    }

    /// nbdkit with `args` (filters, plugin and its settings) on a socket in `dir`, the
    /// file nbdfuse makes of it, and a direct-I/O loop device over that file.
    fn serve(dir: PathBuf, plugin: &[String]) -> EmulatedCard {
        let sock = dir.join("nbd.sock");
        let trigger = dir.join("fail-writes");
        let mut args = vec![
            "--foreground".to_owned(),
            "--exit-with-parent".to_owned(),
            "-U".to_owned(),
            sock.display().to_string(),
        ];
        args.extend_from_slice(plugin);
        // Built up as it starts, so whatever did start is stopped again should a step fail.
        let mut card = EmulatedCard {
            dir: dir.clone(),
            nbdkit: None,
            nbdfuse: None,
            device: PathBuf::new(),
            trigger,
        };
        card.nbdkit = Some(
            Command::new("nbdkit")
                .args(&args)
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("nbdkit is needed (the README's test command installs it)"),
        );
        wait_for(&sock);
        let fuse = dir.join("fuse");
        card.nbdfuse = Some(
            Command::new("nbdfuse")
                .arg(&fuse)
                .arg("--unix")
                .arg(&sock)
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("nbdfuse is needed (libnbd-bin)"),
        );
        let file = fuse.join("nbd");
        wait_for(&file);
        let out = tool(
            "losetup",
            &["--direct-io=on", "-f", "--show", file.to_str().unwrap()],
        );
        card.device = PathBuf::from(String::from_utf8(out.stdout).unwrap().trim());
        assert!(card.arg().starts_with("/dev/loop"), "{:?}", card.device);
        card
    }

    pub fn arg(&self) -> &str {
        self.device.to_str().unwrap()
    }

    /// From now on every write fails with EIO (a card that died), or works again.
    pub fn fail_writes(&self, on: bool) {
        if on {
            fs::write(&self.trigger, b"").unwrap();
        } else {
            let _ = fs::remove_file(&self.trigger);
        }
    }

    /// The card is pulled out: from now on every request fails.
    pub fn pull(&self) {
        fs::write(self.dir.join("pulled"), b"").unwrap();
        // Writes have settings of their own (see `filtered`).
        self.fail_writes(true);
    }

    /// The card's content, as nbdkit keeps it.
    pub fn backing(&self) -> PathBuf {
        self.dir.join("card.raw")
    }
}

impl Drop for EmulatedCard {
    fn drop(&mut self) {
        if !self.device.as_os_str().is_empty() {
            let _ = Command::new("losetup").arg("-d").arg(&self.device).status();
        }
        unmount(&self.dir.join("fuse"));
        if let Some(nbdfuse) = self.nbdfuse.as_mut() {
            let _ = nbdfuse.kill();
            let _ = nbdfuse.wait();
        }
        // SIGTERM, as `--exit-with-parent` sends too: nbdkit 1.32's sh plugin keeps its
        // scripts in a folder in /tmp (whatever TMPDIR says) that only a clean exit removes.
        if let Some(nbdkit) = self.nbdkit.as_mut() {
            super::terminate(nbdkit, Duration::from_secs(10));
        }
        let _ = fs::remove_dir_all(&self.dir);
    }
}

fn unmount(point: &Path) {
    let ok = Command::new("fusermount3")
        .arg("-u")
        .arg(point)
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !ok {
        let _ = Command::new("umount")
            .arg("-l")
            .arg(point)
            .stderr(Stdio::null())
            .status();
    }
}

fn wait_for(path: &Path) {
    let start = Instant::now();
    while !path.exists() {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "{} did not appear",
            path.display()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn fastrand_name() -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    format!("{nanos:x}")
}

/// A fresh folder for one card, named after this process (see [`sweep`]).
fn new_dir() -> PathBuf {
    sweep();
    let dir = std::env::temp_dir().join(format!(
        "{PREFIX}{}-{}",
        std::process::id(),
        fastrand_name()
    ));
    fs::create_dir_all(dir.join("fuse")).unwrap();
    dir
}

/// Cards a killed test left: their loop devices detached, their FUSE mounts gone, their
/// folders removed (nbdkit ends with its parent by itself).
fn sweep() {
    let Ok(entries) = fs::read_dir(std::env::temp_dir()) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(rest) = name.strip_prefix(PREFIX) else {
            continue;
        };
        let pid = rest.split('-').next().unwrap_or_default();
        if Path::new(&format!("/proc/{pid}")).exists() {
            continue;
        }
        let dir = entry.path();
        let nbd = dir.join("fuse/nbd");
        let listed = Command::new("losetup")
            .args(["-j", nbd.to_str().unwrap(), "-O", "NAME", "-n"])
            .output();
        if let Ok(out) = listed {
            for dev in String::from_utf8_lossy(&out.stdout).split_whitespace() {
                let _ = Command::new("losetup").args(["-d", dev]).status();
            }
        }
        unmount(&dir.join("fuse"));
        let _ = fs::remove_dir_all(&dir);
    }
}
