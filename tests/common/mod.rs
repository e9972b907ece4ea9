//! Helpers for the end-to-end tests: run the real binary, make images with real tools,
//! and attach loop devices that are always detached again.

#![allow(dead_code)] // each test binary uses a different subset

pub mod emulated;
pub mod http;
pub mod mutate;
pub mod text;
pub mod x11;

use std::fs;
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::fs::{FileExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

pub const MIB: usize = 1 << 20;

/// The binary under test: this build's, or `CARDSMITH_TEST_BIN` (an older build, to see
/// a regression test fail on the code it guards against).
pub fn bin() -> &'static str {
    static BIN: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    BIN.get_or_init(|| {
        std::env::var("CARDSMITH_TEST_BIN")
            .unwrap_or_else(|_| env!("CARGO_BIN_EXE_cardsmith").to_owned())
    })
}

/// No system D-Bus, so no UDisks2: the tests do not depend on what this machine runs
/// (the UDisks2 test starts its own and says so).
pub const NO_BUS: &str = "unix:path=/nonexistent/cardsmith-test-bus";

/// A file of `len` bytes holding a fresh ext4 filesystem (labelled `label`), all of it
/// initialised now, so that the kernel does not write to it later on its own.
pub fn ext4_file(path: &Path, len: u64, label: Option<&str>) {
    fs::File::create(path).unwrap().set_len(len).unwrap();
    let mut args = vec!["-q", "-F", "-E", "lazy_itable_init=0,lazy_journal_init=0"];
    if let Some(label) = label {
        args.extend(["-L", label]);
    }
    args.push(path.to_str().unwrap());
    tool("mkfs.ext4", &args);
}

/// The binary under test, with no system D-Bus and without the variables `sudo` leaves
/// (scripts/test re-runs itself through sudo; cardsmith hands new files to SUDO_UID, which
/// the tests that care about it set themselves).
pub fn cardsmith_command() -> Command {
    let mut command = Command::new(bin());
    command
        .env("DBUS_SYSTEM_BUS_ADDRESS", NO_BUS)
        .env_remove("SUDO_UID")
        .env_remove("SUDO_GID");
    command
}

/// Runs cardsmith with standard input closed (so never a terminal).
pub fn cardsmith(args: &[&str]) -> Output {
    cardsmith_command()
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("running cardsmith")
}

/// Runs cardsmith with standard input closed and extra environment variables.
pub fn cardsmith_env(args: &[&str], env: &[(&str, &Path)]) -> Output {
    let mut command = cardsmith_command();
    command.args(args).stdin(Stdio::null());
    for (key, value) in env {
        command.env(key, value);
    }
    command.output().expect("running cardsmith")
}

/// Runs cardsmith with `input` on standard input.
pub fn cardsmith_with_stdin(args: &[&str], input: &Path) -> Output {
    cardsmith_command()
        .args(args)
        .stdin(fs::File::open(input).expect("opening the stdin file"))
        .output()
        .expect("running cardsmith")
}

/// Runs cardsmith as the unprivileged user nobody, standard input closed, with no system
/// D-Bus (so no UDisks2, whatever runs on this machine).
pub fn cardsmith_as_nobody(args: &[&str]) -> Output {
    Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups", bin()])
        .args(args)
        .env(
            "DBUS_SYSTEM_BUS_ADDRESS",
            "unix:path=/nonexistent/cardsmith-test-bus",
        )
        .stdin(Stdio::null())
        .output()
        .expect("setpriv (util-linux) is needed")
}

pub fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

pub fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Asserts the command failed with `code` and its message contains every `needle`.
#[track_caller]
pub fn assert_fails(out: &Output, code: i32, needles: &[&str]) {
    let err = stderr(out);
    assert_eq!(out.status.code(), Some(code), "stderr: {err}");
    for needle in needles {
        assert!(err.contains(needle), "expected {needle:?} in: {err}");
    }
}

#[track_caller]
pub fn assert_ok(out: &Output) {
    assert!(out.status.success(), "failed: {}", stderr(out));
}

/// A new ed25519 key pair without a passphrase at `path` (and `path`.pub), by ssh-keygen.
pub fn ssh_keygen(path: &Path, comment: &str) {
    tool(
        "ssh-keygen",
        &[
            "-q",
            "-t",
            "ed25519",
            "-N",
            "",
            "-C",
            comment,
            "-f",
            path.to_str().unwrap(),
        ],
    );
}

/// Whether `hash` is the crypt(3) of `password`, by the system's libxcrypt (through
/// Python's ctypes: the crypt module is gone from newer Pythons).
pub fn crypt_accepts(password: &str, hash: &str) -> bool {
    let check = "import ctypes, sys\n\
                 lib = ctypes.CDLL('libcrypt.so.1')\n\
                 lib.crypt.restype = ctypes.c_char_p\n\
                 lib.crypt.argtypes = [ctypes.c_char_p, ctypes.c_char_p]\n\
                 out = lib.crypt(sys.argv[1].encode(), sys.argv[2].encode())\n\
                 sys.exit(0 if out == sys.argv[2].encode() else 1)";
    Command::new("python3")
        .args(["-c", check, password, hash])
        .status()
        .expect("python3 is needed")
        .success()
}

/// The PSK wpa_passphrase derives for a network: an independent witness for Wi-Fi keys.
pub fn wpa_psk(ssid: &str, passphrase: &str) -> String {
    let out = tool("wpa_passphrase", &[ssid, passphrase]);
    stdout(&out)
        .lines()
        .find_map(|l| l.trim().strip_prefix("psk="))
        .expect("wpa_passphrase prints psk=")
        .to_owned()
}

/// Runs an external tool and insists it succeeds.
#[track_caller]
pub fn tool(program: &str, args: &[&str]) -> Output {
    run_ok(Command::new(program).args(args))
}

/// Runs a command that must succeed; what it printed is in the message when it does not.
#[track_caller]
pub fn run_ok(cmd: &mut Command) -> Output {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("{cmd:?} is needed (the test command installs it): {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// A Raspberry-Pi-OS-like image at `image` (scripts/os-image): a FAT32 boot partition of
/// `boot_mib` and an ext4 root of `root_mib` filled from the folder `root`.
pub fn make_os_image(image: &Path, boot_mib: u32, root_mib: u32, root: &Path) {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../../scripts/os-image");
    run_ok(
        Command::new(script)
            .arg(image)
            .args([boot_mib.to_string(), root_mib.to_string()])
            .arg(root),
    );
}

/// bmaptool's own map of `image`, written to `map` (a witness cardsmith did not write).
pub fn bmaptool_create(image: &Path, map: &Path) {
    run_ok(
        Command::new("bmaptool")
            .args(["create", "-o"])
            .arg(map)
            .arg(image),
    );
}

/// The `n`th primary MBR partition of a disk image: its (start, length) in bytes.
pub fn mbr_partition(image: &[u8], n: usize) -> (u64, u64) {
    let e = &image[0x1BE + 16 * n..0x1BE + 16 * (n + 1)];
    let lba = u64::from(u32::from_le_bytes(e[8..12].try_into().unwrap()));
    let sectors = u64::from(u32::from_le_bytes(e[12..16].try_into().unwrap()));
    (lba * 512, sectors * 512)
}

/// The byte ranges a .bmap names, read from its XML here (not by cardsmith).
pub fn bmap_ranges(bmap: &str) -> Vec<(u64, u64)> {
    let number = |tag: &str| -> u64 {
        let at = bmap.find(&format!("<{tag}>")).unwrap() + tag.len() + 2;
        bmap[at..]
            .split('<')
            .next()
            .unwrap()
            .trim()
            .parse()
            .unwrap()
    };
    let (size, block) = (number("ImageSize"), number("BlockSize"));
    bmap.lines()
        .filter(|l| l.contains("<Range"))
        .map(|l| {
            let inner = l
                .split('>')
                .nth(1)
                .unwrap()
                .split('<')
                .next()
                .unwrap()
                .trim();
            let (a, b) = inner.split_once('-').unwrap_or((inner, inner));
            let (a, b): (u64, u64) = (a.parse().unwrap(), b.parse().unwrap());
            (a * block, ((b + 1) * block).min(size))
        })
        .collect()
}

/// Deterministic image-like bytes: runs of zeros (free space) between pseudo-random data
/// (compressed files) and repetitive text (configuration), `len` bytes long.
pub fn image_bytes(len: usize, seed: u64) -> Vec<u8> {
    let mut state = seed | 1;
    let mut out = Vec::with_capacity(len);
    while out.len() < len {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        let run = 4096 + (state % (256 * 1024)) as usize;
        let run = run.min(len - out.len());
        match state % 3 {
            0 => out.resize(out.len() + run, 0),
            1 => {
                for _ in 0..run {
                    state ^= state << 13;
                    state ^= state >> 7;
                    state ^= state << 17;
                    out.push(state as u8);
                }
            }
            _ => {
                let text = b"dtparam=audio=on\ncamera_auto_detect=1\n";
                out.extend(text.iter().cycle().take(run));
            }
        }
    }
    out
}

pub fn write_file(path: &Path, data: &[u8]) {
    fs::write(path, data).unwrap_or_else(|e| panic!("writing {}: {e}", path.display()));
}

/// Compresses `src` into `dst` with `program args`, reading from the file on stdin.
pub fn compress(program: &str, args: &[&str], src: &Path, dst: &Path) {
    let out = Command::new(program)
        .args(args)
        .stdin(fs::File::open(src).unwrap())
        .stdout(fs::File::create(dst).unwrap())
        .status()
        .unwrap_or_else(|e| panic!("{program} is needed (the test command installs it): {e}"));
    assert!(out.success(), "{program} failed");
}

/// The image in every container cardsmith reads, named by format.
pub fn every_format(dir: &Path, raw: &Path) -> Vec<(&'static str, PathBuf)> {
    let p = |name: &str| dir.join(name);
    compress("xz", &["-T2", "--block-size=1MiB", "-c"], raw, &p("img.xz"));
    compress("gzip", &["-c"], raw, &p("img.gz"));
    compress("bzip2", &["-c"], raw, &p("img.bz2"));
    compress("zstd", &["-q", "-c"], raw, &p("img.zst"));
    let zip_dir = dir.join("zip-src");
    fs::create_dir_all(&zip_dir).unwrap();
    fs::copy(raw, zip_dir.join("disk.img")).unwrap();
    tool(
        "sh",
        &[
            "-c",
            &format!(
                "cd '{}' && zip -q '{}' disk.img",
                zip_dir.display(),
                p("img.zip").display()
            ),
        ],
    );
    vec![
        ("raw", raw.to_owned()),
        ("xz", p("img.xz")),
        ("gzip", p("img.gz")),
        ("bzip2", p("img.bz2")),
        ("zstd", p("img.zst")),
        ("zip", p("img.zip")),
    ]
}

/// `cmp` as the independent judge: are the first `len` bytes of `a` and `b` the same?
pub fn same_prefix(a: &Path, b: &Path, len: u64) -> bool {
    Command::new("cmp")
        .args(["-n", &len.to_string()])
        .arg(a)
        .arg(b)
        .status()
        .expect("cmp is needed")
        .success()
}

pub fn sha256sum(path: &Path) -> String {
    let out = tool("sha256sum", &[path.to_str().unwrap()]);
    stdout(&out)[..64].to_owned()
}

/// Reads `len` bytes at `offset` of a regular file.
pub fn read_range(path: &Path, offset: u64, len: usize) -> Vec<u8> {
    let mut file = fs::File::open(path).unwrap();
    file.seek(SeekFrom::Start(offset)).unwrap();
    let mut buf = vec![0; len];
    file.read_exact(&mut buf).unwrap();
    buf
}

/// Overwrites one byte of a file in place.
pub fn poke(path: &Path, offset: u64, value: u8) {
    let file = fs::OpenOptions::new().write(true).open(path).unwrap();
    file.write_all_at(&[value], offset).unwrap();
    file.sync_all().unwrap();
}

/// A file of `len` bytes all set to `fill`: the "old card contents".
pub fn filled_file(path: &Path, len: usize, fill: u8) {
    let mut f = fs::File::create(path).unwrap();
    let block = vec![fill; MIB];
    let mut left = len;
    while left > 0 {
        let n = left.min(MIB);
        f.write_all(&block[..n]).unwrap();
        left -= n;
    }
    f.sync_all().unwrap();
}

/// A loop device over a file this test made; detached on drop, also when the test panics.
pub struct LoopDevice {
    pub path: PathBuf,
}

impl LoopDevice {
    pub fn attach(backing: &Path) -> LoopDevice {
        Self::attach_with(backing, &[])
    }

    pub fn attach_read_only(backing: &Path) -> LoopDevice {
        Self::attach_with(backing, &["-r"])
    }

    /// A window of `backing` (a partition, reached by byte offset).
    pub fn attach_with_offset(backing: &Path, offset: u64, len: u64) -> LoopDevice {
        Self::attach_with(
            backing,
            &["-o", &offset.to_string(), "--sizelimit", &len.to_string()],
        )
    }

    fn attach_with(backing: &Path, extra: &[&str]) -> LoopDevice {
        let mut args = vec!["-f", "--show"];
        args.extend_from_slice(extra);
        args.push(backing.to_str().unwrap());
        let out = Command::new("losetup").args(&args).output().expect(
            "losetup is needed; the device tests run as root (the README's test command does)",
        );
        assert!(
            out.status.success(),
            "losetup failed (are we root?): {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let device = LoopDevice {
            path: PathBuf::from(String::from_utf8(out.stdout).unwrap().trim()),
        };
        assert!(
            device.arg().starts_with("/dev/loop"),
            "unexpected device {:?}",
            device.path
        );
        device
    }

    pub fn arg(&self) -> &str {
        self.path.to_str().unwrap()
    }
}

impl Drop for LoopDevice {
    fn drop(&mut self) {
        let _ = Command::new("losetup").arg("-d").arg(&self.path).status();
    }
}

/// A small tmpfs (`size` as mount takes it: "8m") mounted on a folder of the test's,
/// unmounted again when dropped, also when the test panics.
pub struct SmallDisk {
    pub point: PathBuf,
}

impl SmallDisk {
    pub fn new(point: &Path, size: &str) -> SmallDisk {
        fs::create_dir_all(point).unwrap();
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(point)
            .output()
            .unwrap();
        assert!(out.status.success(), "mount tmpfs: {out:?}");
        SmallDisk {
            point: point.to_owned(),
        }
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.point).status();
    }
}

/// Parses `--json` output: one object per line.
pub fn json_lines(out: &Output) -> Vec<serde_json::Value> {
    stdout(out)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect()
}

/// Whether something is mounted on `point` now.
pub fn is_mounted(point: &Path) -> bool {
    let mountinfo = fs::read_to_string("/proc/self/mountinfo").unwrap();
    let point = point.to_str().unwrap();
    mountinfo
        .lines()
        .any(|l| l.split(' ').nth(4) == Some(point))
}

/// A directory and image file that the user nobody may read.
pub fn world_readable_image(dir: &Path, len: usize) -> PathBuf {
    let shared = dir.join("shared");
    fs::create_dir(&shared).unwrap();
    fs::set_permissions(dir, fs::Permissions::from_mode(0o755)).unwrap();
    fs::set_permissions(&shared, fs::Permissions::from_mode(0o755)).unwrap();
    let image = shared.join("os.img");
    write_file(&image, &image_bytes(len, 41));
    fs::set_permissions(&image, fs::Permissions::from_mode(0o644)).unwrap();
    image
}

/// Sends SIGINT (Ctrl-C) to `child` and waits for it to end, at most `limit`; returns its
/// status and how long stopping took.
pub fn interrupt(
    child: &mut std::process::Child,
    limit: std::time::Duration,
) -> (std::process::ExitStatus, std::time::Duration) {
    let interrupted = std::time::Instant::now();
    tool("kill", &["-INT", &child.id().to_string()]);
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return (status, interrupted.elapsed());
        }
        if interrupted.elapsed() >= limit {
            let _ = child.kill();
            let _ = child.wait();
            panic!("still running {limit:?} after Ctrl-C");
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

/// cardsmith running with `--json`, its lines read as they come, so a test can act at a
/// moment of the run (pull a card, press Ctrl-C).
pub struct JsonRun {
    child: std::process::Child,
    out: std::io::Lines<std::io::BufReader<std::process::ChildStdout>>,
    /// Every line read so far.
    pub lines: Vec<serde_json::Value>,
}

impl JsonRun {
    /// Starts `command`, its standard output piped here.
    pub fn start(command: &mut Command) -> JsonRun {
        use std::io::BufRead;
        let mut child = command
            .stdout(Stdio::piped())
            .spawn()
            .expect("running cardsmith");
        let out = std::io::BufReader::new(child.stdout.take().unwrap()).lines();
        JsonRun {
            child,
            out,
            lines: Vec::new(),
        }
    }

    /// The next line, or `None` once cardsmith has closed its output.
    pub fn next(&mut self) -> Option<serde_json::Value> {
        let line = self.out.next()?.unwrap();
        let value: serde_json::Value =
            serde_json::from_str(&line).unwrap_or_else(|e| panic!("{e}: {line}"));
        self.lines.push(value.clone());
        Some(value)
    }

    /// Reads lines until `now` says so; fails when the output ends first.
    pub fn until(&mut self, mut now: impl FnMut(&serde_json::Value) -> bool) {
        loop {
            let line = self.next().expect("cardsmith ended before the moment came");
            if now(&line) {
                return;
            }
        }
    }

    /// Ctrl-C now: see [`interrupt`].
    pub fn interrupt(
        &mut self,
        limit: std::time::Duration,
    ) -> (std::process::ExitStatus, std::time::Duration) {
        interrupt(&mut self.child, limit)
    }

    /// Reads the rest and waits: the exit code and every line. What cardsmith said on
    /// standard error, when the test piped it, is printed for the test's log.
    pub fn finish(mut self) -> (Option<i32>, Vec<serde_json::Value>) {
        while self.next().is_some() {}
        let output = self.child.wait_with_output().unwrap();
        if !output.stderr.is_empty() {
            eprintln!("stderr:\n{}", String::from_utf8_lossy(&output.stderr));
        }
        (output.status.code(), self.lines)
    }
}

/// A command on a real terminal (a pty, through `script`), answered like a person would:
/// wait until the screen shows a prompt, then type.
pub struct Terminal {
    child: std::process::Child,
    stdin: Option<std::process::ChildStdin>,
    screen: std::sync::Arc<std::sync::Mutex<Vec<u8>>>,
    reader: Option<std::thread::JoinHandle<()>>,
}

impl Terminal {
    /// Starts `command` (a shell command line) on a new terminal.
    pub fn start(command: &str) -> Terminal {
        let mut child = Command::new("script")
            .args(["-qec", command, "/dev/null"])
            .env("DBUS_SYSTEM_BUS_ADDRESS", NO_BUS)
            .env_remove("SUDO_UID")
            .env_remove("SUDO_GID")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("script (bsdutils) is needed");
        let screen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let mut output = child.stdout.take().unwrap();
        let sink = screen.clone();
        let reader = std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n) = output.read(&mut buf) {
                if n == 0 {
                    break;
                }
                sink.lock().unwrap().extend_from_slice(&buf[..n]);
            }
        });
        Terminal {
            stdin: child.stdin.take(),
            child,
            screen,
            reader: Some(reader),
        }
    }

    /// What the terminal has shown so far.
    pub fn screen(&self) -> String {
        String::from_utf8_lossy(&self.screen.lock().unwrap()).into_owned()
    }

    /// Waits (at most 30 s) until `prompt` has been shown `times` times in all.
    pub fn wait_for(&self, prompt: &str, times: usize) {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        while self.screen().matches(prompt).count() < times {
            assert!(
                std::time::Instant::now() < deadline,
                "no prompt {prompt:?}: {}",
                self.screen()
            );
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
    }

    /// Types `keys` (\x03 is Ctrl-C).
    pub fn type_keys(&mut self, keys: &str) {
        let stdin = self.stdin.as_mut().expect("still open");
        stdin.write_all(keys.as_bytes()).unwrap();
        stdin.flush().unwrap();
    }

    /// Closes the keyboard, waits for the command to end, and returns the whole screen.
    pub fn finish(mut self) -> String {
        drop(self.stdin.take());
        self.child.wait().unwrap();
        if let Some(reader) = self.reader.take() {
            reader.join().unwrap();
        }
        self.screen()
    }
}

/// Runs `command` on a terminal, waits for `prompt`, runs `meanwhile`, types `answer`,
/// and returns everything the terminal showed.
pub fn on_terminal(command: &str, prompt: &str, meanwhile: impl FnOnce(), answer: &str) -> String {
    let mut terminal = Terminal::start(command);
    terminal.wait_for(prompt, 1);
    meanwhile();
    terminal.type_keys(answer);
    terminal.finish()
}

/// The disks under /, found without cardsmith: the device number `stat` gives for /
/// (through /sys/dev/block), else the device findmnt names for / (a btrfs subvolume has a
/// device number of its own); then the disks lsblk lists beneath it, through partitions,
/// LVM and RAID. Empty when / is on no block device (an overlay, a network filesystem).
pub fn root_disks_witnessed() -> Vec<String> {
    let stat = String::from_utf8(tool("stat", &["-c", "%Hd:%Ld", "/"]).stdout).unwrap();
    let devnum = stat.trim().to_owned();
    let tree: serde_json::Value =
        serde_json::from_slice(&tool("lsblk", &["-s", "-J", "-o", "NAME,TYPE,MAJ:MIN"]).stdout)
            .unwrap();
    let mut root = None;
    if Path::new(&format!("/sys/dev/block/{devnum}")).exists() {
        root = find_in(&tree["blockdevices"], &|d| d["maj:min"] == devnum.as_str());
    }
    if root.is_none() {
        let source =
            String::from_utf8(tool("findmnt", &["-n", "-o", "SOURCE", "/"]).stdout).unwrap();
        // btrfs names a subvolume as /dev/sda2[/@]: the device is before the bracket.
        let device = source
            .trim()
            .split('[')
            .next()
            .unwrap_or_default()
            .to_owned();
        if let Some(name) = device.strip_prefix("/dev/") {
            let name = name.rsplit('/').next().unwrap_or(name).to_owned();
            root = find_in(&tree["blockdevices"], &|d| d["name"] == name.as_str());
        }
    }
    let mut disks = Vec::new();
    if let Some(root) = root {
        collect_disks(&root, &mut disks);
    }
    disks.sort();
    disks.dedup();
    disks
}

/// The first device in lsblk's tree that `wanted` accepts.
fn find_in(
    list: &serde_json::Value,
    wanted: &dyn Fn(&serde_json::Value) -> bool,
) -> Option<serde_json::Value> {
    list.as_array()?.iter().find_map(|d| {
        if wanted(d) {
            Some(d.clone())
        } else {
            find_in(&d["children"], wanted)
        }
    })
}

/// The disks at or beneath `device` in lsblk's inverse tree (a device's children there are
/// what it is built on).
fn collect_disks(device: &serde_json::Value, out: &mut Vec<String>) {
    if device["type"] == "disk" {
        out.push(device["name"].as_str().unwrap().to_owned());
    }
    for child in device["children"].as_array().into_iter().flatten() {
        collect_disks(child, out);
    }
}

/// Stops `child` with SIGTERM, so it can clean up after itself (a daemon its sockets and
/// folders, nbdkit its folder in /tmp); SIGKILL only if it has not ended within `grace`.
pub fn terminate(child: &mut Child, grace: Duration) {
    // SAFETY: kill(2) on our own child, which has not been waited for, so its pid is ours.
    unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGTERM) };
    let deadline = Instant::now() + grace;
    while Instant::now() < deadline {
        if let Ok(Some(_)) = child.try_wait() {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = child.kill();
    let _ = child.wait();
}
