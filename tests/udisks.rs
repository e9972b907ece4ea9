//! Writing a card as a normal user, through UDisks2, for real: this test starts a private
//! system bus, systemd-udevd (unless one runs already), polkitd and udisksd from Debian's
//! packages, and stops every one of them when it ends, also when it fails. The user is
//! nobody; polkit says no until a rule written by the test says yes.
//!
//! Nothing of the machine's is changed: polkitd runs in a mount namespace of its own in
//! which the test's folder is mounted over /etc/polkit-1/rules.d, so the rule (for user
//! nobody and the test's own loop devices only) never reaches the real /etc. Every daemon
//! carries CARDSMITH_TEST_DAEMON in its environment and is asked to die with the test
//! process (PR_SET_PDEATHSIG; a daemon that changes its user, as dbus-daemon and polkitd
//! do, loses that), so the next run, and scripts/test's exit trap, stop any that a killed
//! run left. The test refuses to run beside a polkitd it did not start.
//!
//! Needs root and the packages dbus, udev, polkitd and udisks2 (the README's test command
//! installs them).

mod common;

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::*;

/// Where polkitd reads local rules; the test mounts its own folder over it, in polkitd's
/// namespace only.
const RULES_DIR: &str = "/etc/polkit-1/rules.d";

/// Marks the daemons this test starts (its value is the test process's id).
const MARK: &str = "CARDSMITH_TEST_DAEMON";

/// Finds a daemon where Debian puts it.
fn daemon(candidates: &[&str], package: &str) -> PathBuf {
    candidates
        .iter()
        .map(PathBuf::from)
        .find(|p| p.exists())
        .unwrap_or_else(|| {
            panic!("{candidates:?} not found: install {package} (the README's test command does)")
        })
}

/// The daemons this test started, stopped in reverse order when dropped.
struct Daemons {
    dir: tempfile::TempDir,
    address: String,
    bus: Option<Child>,
    udevd: Option<Child>,
    polkitd: Option<Child>,
    udisksd: Option<Child>,
    removes_run_udev: bool,
}

impl Daemons {
    fn start() -> Daemons {
        stop_leftovers();
        refuse_a_foreign_polkitd();
        let dir = tempfile::tempdir().unwrap();
        fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o755)).unwrap();
        let rules = dir.path().join("rules.d");
        fs::create_dir(&rules).unwrap();
        fs::set_permissions(&rules, fs::Permissions::from_mode(0o755)).unwrap();
        let socket = dir.path().join("system_bus_socket");
        let address = format!("unix:path={}", socket.display());
        let mut daemons = Daemons {
            dir,
            address,
            bus: None,
            udevd: None,
            polkitd: None,
            udisksd: None,
            removes_run_udev: false,
        };
        daemons.start_bus(&socket);
        daemons.start_udevd();
        daemons.start_polkit_and_udisks();
        daemons
    }

    /// A system bus of our own, so that a machine's real bus (if any) is left alone.
    fn start_bus(&mut self, socket: &Path) {
        let dbus = daemon(&["/usr/bin/dbus-daemon"], "dbus");
        let system =
            fs::read_to_string("/usr/share/dbus-1/system.conf").expect("dbus is installed");
        let config: String = system
            .lines()
            .filter(|l| !l.contains("<pidfile>"))
            .map(|l| {
                if l.contains("<listen>") {
                    format!("  <listen>unix:path={}</listen>", socket.display())
                } else {
                    l.replace(
                        "<includedir>system.d</includedir>",
                        "<includedir>/usr/share/dbus-1/system.d</includedir>",
                    )
                }
            })
            .map(|l| l + "\n")
            .collect();
        let conf = self.dir.path().join("bus.conf");
        fs::write(&conf, config).unwrap();
        self.bus = Some(spawn(
            Command::new(dbus)
                .arg(format!("--config-file={}", conf.display()))
                .arg("--nofork"),
        ));
        wait_until("the system bus listens", || socket.exists());
    }

    /// udisksd learns about devices from udev's database, so udevd must run.
    fn start_udevd(&mut self) {
        let running = Command::new("udevadm")
            .args(["control", "--ping"])
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if running {
            return;
        }
        self.removes_run_udev = !Path::new("/run/udev").exists();
        let udevd = daemon(
            &[
                "/lib/systemd/systemd-udevd",
                "/usr/lib/systemd/systemd-udevd",
            ],
            "udev",
        );
        self.udevd = Some(spawn(&mut Command::new(udevd)));
        wait_until("systemd-udevd answers", || {
            Command::new("udevadm")
                .args(["control", "--ping"])
                .stderr(Stdio::null())
                .status()
                .is_ok_and(|s| s.success())
        });
    }

    fn start_polkit_and_udisks(&mut self) {
        let polkitd = daemon(
            &["/usr/lib/polkit-1/polkitd", "/usr/libexec/polkitd"],
            "polkitd",
        );
        let udisksd = daemon(&["/usr/libexec/udisks2/udisksd"], "udisks2");
        assert!(
            Path::new(RULES_DIR).is_dir(),
            "{RULES_DIR} is missing: polkitd (the package) makes it"
        );
        // A mount namespace of its own, with the test's rules over the machine's.
        self.polkitd = Some(spawn(
            Command::new("unshare")
                .args(["--mount", "--propagation", "private", "sh", "-c"])
                .arg(r#"mount --bind "$0" "$1" && exec "$2" --no-debug"#)
                .arg(self.rules())
                .arg(RULES_DIR)
                .arg(polkitd)
                .env("DBUS_SYSTEM_BUS_ADDRESS", &self.address),
        ));
        self.wait_for_name("org.freedesktop.PolicyKit1");
        self.udisksd = Some(spawn(
            Command::new(udisksd).env("DBUS_SYSTEM_BUS_ADDRESS", &self.address),
        ));
        self.wait_for_name("org.freedesktop.UDisks2");
    }

    /// Restarts polkitd and udisksd so that they see the polkit rules as they are now.
    fn restart_polkit_and_udisks(&mut self) {
        stop(self.udisksd.take());
        stop(self.polkitd.take());
        self.start_polkit_and_udisks();
    }

    fn wait_for_name(&self, name: &str) {
        wait_until(&format!("{name} is on the bus"), || {
            Command::new("dbus-send")
                .args([
                    "--system",
                    "--print-reply",
                    "--dest=org.freedesktop.DBus",
                    "/org/freedesktop/DBus",
                    "org.freedesktop.DBus.NameHasOwner",
                    &format!("string:{name}"),
                ])
                .env("DBUS_SYSTEM_BUS_ADDRESS", &self.address)
                .output()
                .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).contains("boolean true"))
        });
    }

    /// Waits until udisksd knows `dev` (udev has processed its events).
    fn wait_for_device(&self, dev: &str) {
        let _ = Command::new("udevadm")
            .args(["settle", "-t", "10"])
            .status();
        wait_until(&format!("UDisks2 knows {dev}"), || {
            Command::new("udisksctl")
                .args(["info", "-b", dev])
                .env("DBUS_SYSTEM_BUS_ADDRESS", &self.address)
                .output()
                .is_ok_and(|o| o.status.success())
        });
    }

    /// The folder polkitd sees as /etc/polkit-1/rules.d.
    fn rules(&self) -> PathBuf {
        self.dir.path().join("rules.d")
    }

    /// Lets user nobody do what UDisks2 asks polkit about, on `devices` only; polkitd and
    /// udisksd are restarted to see it.
    fn allow_nobody(&mut self, devices: &[&str]) {
        let list = devices
            .iter()
            .map(|d| format!("{d:?}"))
            .collect::<Vec<_>>()
            .join(", ");
        let rule = self.rules().join("49-cardsmith-test.rules");
        fs::write(
            &rule,
            format!(
                "// cardsmith's UDisks2 test: user nobody, the test's loop devices, UDisks2 only.\n\
                 polkit.addRule(function(action, subject) {{\n\
                 \x20   var devices = [{list}];\n\
                 \x20   if (subject.user === \"nobody\" &&\n\
                 \x20       action.id.indexOf(\"org.freedesktop.udisks2.\") === 0 &&\n\
                 \x20       devices.indexOf(action.lookup(\"device\")) >= 0) {{\n\
                 \x20       return polkit.Result.YES;\n\
                 \x20   }}\n\
                 }});\n"
            ),
        )
        .expect("writing the polkit rule");
        fs::set_permissions(&rule, fs::Permissions::from_mode(0o644)).unwrap();
        self.restart_polkit_and_udisks();
    }

    /// Runs cardsmith as nobody, talking to this test's bus.
    fn cardsmith_as_nobody(&self, args: &[&str]) -> Output {
        Command::new("setpriv")
            .args(["--reuid=65534", "--regid=65534", "--clear-groups", bin()])
            .args(args)
            .env("DBUS_SYSTEM_BUS_ADDRESS", &self.address)
            .stdin(Stdio::null())
            .output()
            .expect("setpriv (util-linux) is needed")
    }
}

impl Drop for Daemons {
    fn drop(&mut self) {
        stop(self.udisksd.take());
        stop(self.polkitd.take());
        stop(self.udevd.take());
        stop(self.bus.take());
        if self.removes_run_udev {
            let _ = fs::remove_dir_all("/run/udev");
        }
    }
}

/// Starts a daemon, marked as the test's, that the kernel stops when the test's thread
/// ends however it ends (killed included).
fn spawn(command: &mut Command) -> Child {
    let mark = std::process::id().to_string();
    // SAFETY: prctl is async-signal-safe; nothing else runs between fork and exec.
    unsafe {
        command.pre_exec(|| {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    command
        .env(MARK, mark)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("starting a daemon")
}

/// The processes a run of this test started, as (pid, the test process's pid).
fn marked_daemons() -> Vec<(u32, u32)> {
    let mut found = Vec::new();
    for entry in fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(environ) = fs::read(entry.path().join("environ")) else {
            continue;
        };
        let owner = environ
            .split(|&b| b == 0)
            .filter_map(|v| std::str::from_utf8(v).ok())
            .find_map(|v| v.strip_prefix(&format!("{MARK}=")))
            .and_then(|v| v.parse().ok());
        if let Some(owner) = owner {
            found.push((pid, owner));
        }
    }
    found
}

/// Stops daemons that a killed earlier run left behind (their test process is gone), and
/// removes the rule an older version of this test wrote into the real /etc.
fn stop_leftovers() {
    let _ = fs::remove_file(Path::new(RULES_DIR).join("49-cardsmith-test.rules"));
    for (pid, owner) in marked_daemons() {
        if !Path::new(&format!("/proc/{owner}")).exists() {
            let _ = Command::new("kill")
                .args(["-KILL", &pid.to_string()])
                .status();
        }
    }
}

/// A polkitd this test did not start would also read rules, and answer the machine's own
/// bus: the test does not run beside one.
fn refuse_a_foreign_polkitd() {
    let ours: Vec<u32> = marked_daemons().into_iter().map(|(pid, _)| pid).collect();
    let out = Command::new("pgrep")
        .args(["-x", "polkitd"])
        .output()
        .expect("pgrep (procps) is needed");
    let foreign: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|pid| pid.parse().is_ok_and(|pid: u32| !ours.contains(&pid)))
        .map(str::to_owned)
        .collect();
    assert!(
        foreign.is_empty(),
        "refusing to run: a polkitd this test did not start is running (pid {}); the test \
         starts its own polkitd and udisksd and must not run beside the machine's. Stop it \
         (systemctl stop polkit) or run the tests on a machine without one",
        foreign.join(", ")
    );
}

/// SIGTERM, then SIGKILL if it has not gone within five seconds.
fn stop(child: Option<Child>) {
    if let Some(mut child) = child {
        terminate(&mut child, Duration::from_secs(5));
    }
}

fn wait_until(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn a_normal_user_writes_a_card_through_udisks_only_when_polkit_allows_it() {
    let mut daemons = Daemons::start();

    let dir = tempfile::tempdir().unwrap();
    let image = world_readable_image(dir.path(), 6 * MIB);
    let backing = dir.path().join("card.bin");
    filled_file(&backing, 16 * MIB, 0xAA);
    let card = LoopDevice::attach(&backing);
    daemons.wait_for_device(card.arg());
    // A second card with a filesystem, mounted later.
    let fs_backing = dir.path().join("mounted.ext4");
    ext4_file(&fs_backing, 32 * MIB as u64, None);
    let mounted = LoopDevice::attach(&fs_backing);
    daemons.wait_for_device(mounted.arg());

    // No rule: polkit has no agent to ask, so the answer is no, and nothing is written.
    let out = daemons.cardsmith_as_nobody(&["write", image.to_str().unwrap(), card.arg(), "--yes"]);
    assert_fails(
        &out,
        1,
        &[
            &format!("not authorized to write {}", card.arg()),
            "Not authorized to perform operation",
        ],
    );
    assert!(
        fs::read(&backing).unwrap().iter().all(|&b| b == 0xAA),
        "the card was written to"
    );
    // Reading a card (a backup) asks polkit too.
    let backups = dir.path().join("backups");
    fs::create_dir(&backups).unwrap();
    fs::set_permissions(&backups, fs::Permissions::from_mode(0o777)).unwrap();
    let backup = backups.join("card.img");
    let out = daemons.cardsmith_as_nobody(&["read", card.arg(), backup.to_str().unwrap()]);
    assert_fails(
        &out,
        1,
        &[&format!("not authorized to read {}", card.arg())],
    );
    assert_eq!(
        fs::read_dir(&backups).unwrap().count(),
        0,
        "no file is left"
    );

    // With the rule, the same command writes and verifies the card.
    daemons.allow_nobody(&[card.arg(), mounted.arg()]);
    daemons.wait_for_device(card.arg());
    daemons.wait_for_device(mounted.arg());
    // The rule names the test's devices: another card is still refused.
    let other_backing = dir.path().join("other.bin");
    filled_file(&other_backing, 8 * MIB, 0xAA);
    let other = LoopDevice::attach(&other_backing);
    daemons.wait_for_device(other.arg());
    let out =
        daemons.cardsmith_as_nobody(&["write", image.to_str().unwrap(), other.arg(), "--yes"]);
    assert_fails(
        &out,
        1,
        &[&format!("not authorized to write {}", other.arg())],
    );
    assert!(fs::read(&other_backing).unwrap().iter().all(|&b| b == 0xAA));
    // The rule lives in the test's folder, seen by its polkitd only.
    assert!(
        !fs::read_dir(RULES_DIR)
            .unwrap()
            .flatten()
            .any(|e| e.file_name().to_string_lossy().contains("cardsmith")),
        "the rule reached the machine's {RULES_DIR}"
    );
    let out = daemons.cardsmith_as_nobody(&[
        "write",
        image.to_str().unwrap(),
        card.arg(),
        "--yes",
        "--eject",
    ]);
    assert_ok(&out);
    let err = stderr(&out);
    assert!(err.contains("verified"), "{err}");
    assert!(
        err.contains("has no drive to power off: it is a virtual device (UDisks2 lists no drive"),
        "asked UDisks2 for the drive to power off: {err}"
    );
    assert!(same_prefix(&image, &backing, 6 * MIB as u64));
    // ... and the card is read back, read-only, through UDisks2.
    let out = daemons.cardsmith_as_nobody(&["read", card.arg(), backup.to_str().unwrap()]);
    assert_ok(&out);
    assert!(same_prefix(&backup, &backing, 16 * MIB as u64));
    assert_eq!(fs::metadata(&backup).unwrap().len(), 16 * MIB as u64);

    // A mounted card is unmounted through UDisks2 first.
    let point = dir.path().join("mnt");
    fs::create_dir(&point).unwrap();
    tool(
        "mount",
        &["-t", "ext4", mounted.arg(), point.to_str().unwrap()],
    );
    let out =
        daemons.cardsmith_as_nobody(&["write", image.to_str().unwrap(), mounted.arg(), "--yes"]);
    if is_mounted(&point) {
        let _ = Command::new("umount").arg(&point).status();
    }
    assert_ok(&out);
    assert!(
        stderr(&out).contains(&format!("Unmounted {}", point.display())),
        "{}",
        stderr(&out)
    );
    assert!(same_prefix(&image, &fs_backing, 6 * MIB as u64));
}
