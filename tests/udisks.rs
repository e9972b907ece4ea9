//! Writing a card as a normal user, through UDisks2, for real: this test starts a private
//! system bus, systemd-udevd (unless one runs already), polkitd and udisksd from Debian's
//! packages, and stops every one of them when it ends, also when it fails. The user is
//! nobody; polkit says no until a rule written by the test says yes.
//!
//! Needs root and the packages dbus, udev, polkitd and udisks2 (the README's test command
//! installs them).

mod common;

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::*;

const RULE: &str = "/etc/polkit-1/rules.d/49-cardsmith-test.rules";

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
        let dir = tempfile::tempdir().unwrap();
        fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o755)).unwrap();
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
        self.polkitd = Some(spawn(
            Command::new(polkitd)
                .arg("--no-debug")
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
        let _ = fs::remove_file(RULE);
        stop(self.udisksd.take());
        stop(self.polkitd.take());
        stop(self.udevd.take());
        stop(self.bus.take());
        if self.removes_run_udev {
            let _ = fs::remove_dir_all("/run/udev");
        }
    }
}

fn spawn(command: &mut Command) -> Child {
    command
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("starting a daemon")
}

/// SIGTERM, then SIGKILL if it has not gone within five seconds.
fn stop(child: Option<Child>) {
    let Some(mut child) = child else { return };
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let deadline = Instant::now() + Duration::from_secs(5);
    while Instant::now() < deadline {
        if let Ok(Some(_)) = child.try_wait() {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = child.kill();
    let _ = child.wait();
}

fn wait_until(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn allow_nobody() {
    fs::write(
        RULE,
        "// Written by cardsmith's UDisks2 test, removed when it ends.\n\
         polkit.addRule(function(action, subject) {\n\
         \x20   if (action.id.indexOf(\"org.freedesktop.udisks2.\") === 0 && subject.user === \"nobody\") {\n\
         \x20       return polkit.Result.YES;\n\
         \x20   }\n\
         });\n",
    )
    .expect("writing the polkit rule");
    fs::set_permissions(RULE, fs::Permissions::from_mode(0o644)).unwrap();
}

#[test]
fn a_normal_user_writes_a_card_through_udisks_only_when_polkit_allows_it() {
    let _ = fs::remove_file(RULE);
    let mut daemons = Daemons::start();

    let dir = tempfile::tempdir().unwrap();
    let image = world_readable_image(dir.path(), 6 * MIB);
    let backing = dir.path().join("card.bin");
    filled_file(&backing, 16 * MIB, 0xAA);
    let card = LoopDevice::attach(&backing);
    daemons.wait_for_device(card.arg());

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
    allow_nobody();
    daemons.restart_polkit_and_udisks();
    daemons.wait_for_device(card.arg());
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
    let fs_backing = dir.path().join("mounted.ext4");
    fs::File::create(&fs_backing)
        .unwrap()
        .set_len(32 * MIB as u64)
        .unwrap();
    tool(
        "mkfs.ext4",
        &[
            "-q",
            "-F",
            "-E",
            "lazy_itable_init=0,lazy_journal_init=0",
            fs_backing.to_str().unwrap(),
        ],
    );
    let mounted = LoopDevice::attach(&fs_backing);
    daemons.wait_for_device(mounted.arg());
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
