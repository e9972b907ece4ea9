//! First boot, proven by booting: cardsmith writes a base image (built by
//! scripts/boot-images from Debian's packages, laid out like Raspberry Pi OS) with settings,
//! then QEMU plays the Pi firmware: before every boot it reads the kernel command line, the
//! kernel and the initramfs from the FAT partition (mtools), `-no-reboot` ends a boot, and
//! the loop boots again until a boot with no first-boot words on its command line reaches
//! SSH. Then every setting is checked over SSH, as the configured user with the configured
//! key, against witnesses cardsmith did not write (wpa_passphrase for the PSK, the host's
//! libxcrypt for the password hash, NetworkManager's own D-Bus answers, cloud-init status).
//!
//! KVM is used when it really boots a kernel here (on a nested host /dev/kvm may exist and
//! boot nothing), else TCG with longer limits. The guest's network is QEMU's user mode,
//! restricted to the guest, with SSH forwarded to 127.0.0.1 only. A failing case keeps its
//! console logs under $CARDSMITH_BOOT_ARTEFACTS (default /tmp/cardsmith-boot-artefacts).

mod common;

use std::fs;
use std::io::Write;
use std::net::TcpListener;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::thread::sleep;
use std::time::{Duration, Instant};

use common::{cardsmith, stderr, stdout, tool};

/// A Wi-Fi name with what breaks quoting: quotes, `$`, a backslash and non-ASCII.
const HOSTILE_SSID: &str = "Café \"Q\" $HOME\\x's";
const PASSWORD: &str = "first boot's pa$$word \"q\"";

fn base(name: &str) -> PathBuf {
    let dir = std::env::var_os("CARDSMITH_BOOT_IMAGES")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/var/tmp/cardsmith-boot-images"));
    let image = dir.join(format!("{name}.img"));
    assert!(
        image.is_file(),
        "{} is missing: scripts/test builds the base images (scripts/boot-images {})",
        image.display(),
        dir.display()
    );
    image
}

/// QEMU, which dies with the test process: a killed test leaves no guest running (and
/// scripts/test ends whatever carries its run's mark).
fn qemu() -> Command {
    use std::os::unix::process::CommandExt;
    let mut command = Command::new("qemu-system-x86_64");
    // SAFETY: prctl in the child before exec; async-signal-safe.
    unsafe {
        command.pre_exec(|| {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    command
}

/// Starts `command` (from [`qemu`]) with its serial console into `console`.
fn spawn(mut command: Command, console: &Path) -> Guest {
    let child = command
        .arg("-serial")
        .arg(format!("file:{}", console.display()))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("qemu-system-x86_64 (package qemu-system-x86) is needed");
    Guest { child }
}

/// A QEMU guest, killed when dropped.
struct Guest {
    child: Child,
}

impl Drop for Guest {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Guest {
    /// Waits for the guest to end on its own (a reboot, with -no-reboot).
    fn wait_exit(&mut self, limit: Duration) -> bool {
        let start = Instant::now();
        while start.elapsed() < limit {
            if let Ok(Some(_)) = self.child.try_wait() {
                return true;
            }
            sleep(Duration::from_millis(500));
        }
        false
    }

    fn running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Accel {
    Kvm,
    Tcg,
}

impl Accel {
    /// How long one boot may take.
    fn boot_limit(self) -> Duration {
        match self {
            Accel::Kvm => Duration::from_secs(180),
            Accel::Tcg => Duration::from_secs(600),
        }
    }
}

/// KVM if it boots a kernel here: the console must print the kernel's banner.
fn accel() -> Accel {
    static ACCEL: OnceLock<Accel> = OnceLock::new();
    *ACCEL.get_or_init(|| {
        if fs::File::open("/dev/kvm").is_err() {
            return Accel::Tcg;
        }
        let dir = tempfile::tempdir().unwrap();
        let (kernel, _, _) = firmware(&base("bookworm"), dir.path());
        let console = dir.path().join("kvm-probe.log");
        let mut command = qemu();
        command
            .args([
                "-accel",
                "kvm",
                "-m",
                "256",
                "-nodefaults",
                "-display",
                "none",
            ])
            .args(["-no-reboot", "-kernel"])
            .arg(&kernel)
            .args(["-append", "console=ttyS0 panic=-1"]);
        let mut guest = spawn(command, &console);
        let start = Instant::now();
        while start.elapsed() < Duration::from_secs(20) {
            let log = fs::read_to_string(&console).unwrap_or_default();
            if log.contains("Linux version") {
                return Accel::Kvm;
            }
            if !guest.running() {
                break;
            }
            sleep(Duration::from_millis(250));
        }
        eprintln!("KVM boots nothing here: booting under TCG");
        Accel::Tcg
    })
}

/// Where the FAT partition starts: the first MBR entry.
fn fat_offset(disk: &Path) -> u64 {
    let mbr = common::read_range(disk, 0, 512);
    u64::from(u32::from_le_bytes(mbr[454..458].try_into().unwrap())) * 512
}

/// What the Pi firmware reads from the FAT partition: the kernel, the initramfs and
/// cmdline.txt, copied into `dir`.
fn firmware(disk: &Path, dir: &Path) -> (PathBuf, PathBuf, String) {
    let image = format!("{}@@{}", disk.display(), fat_offset(disk));
    let mut paths = Vec::new();
    for name in ["vmlinuz", "initrd.img", "cmdline.txt"] {
        let to = dir.join(name);
        tool(
            "mcopy",
            &[
                "-n",
                "-o",
                "-i",
                &image,
                &format!("::{name}"),
                to.to_str().unwrap(),
            ],
        );
        paths.push(to);
    }
    let cmdline = fs::read_to_string(&paths[2]).unwrap();
    (
        paths[0].clone(),
        paths[1].clone(),
        cmdline.trim().to_owned(),
    )
}

fn first_boot_words(cmdline: &str) -> bool {
    cmdline
        .split_whitespace()
        .any(|w| w.starts_with("systemd.run=") || w.starts_with("init="))
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// What one case sets and expects.
struct Case {
    name: &'static str,
    base: &'static str,
    /// Written from a catalog entry with this `init_format`, or (None) as a custom image
    /// file with no catalog entry, inspected.
    catalog_format: Option<&'static str>,
    user: &'static str,
    ssh_password_auth: bool,
    passwordless_sudo: bool,
    /// The fixed Ethernet address, if any (SSH is forwarded to it).
    static_ethernet: Option<&'static str>,
    timezone: &'static str,
    keymap: &'static str,
    cloud_init: bool,
    boots: usize,
    /// Then: back the configured card up with `read --shrink`, restore the backup to a
    /// larger disk, and boot that (see [`shrink_and_restore`]).
    shrink_after: bool,
}

/// The two Wi-Fi networks every case sets: the hostile one preferred.
const NETWORKS: [(&str, &str); 2] = [
    (HOSTILE_SSID, "correct horse $battery \"staple\""),
    ("backup net", "second network pass"),
];

struct Run {
    dir: PathBuf,
    disk: PathBuf,
    key: PathBuf,
    port: u16,
    consoles: Vec<PathBuf>,
    log: Vec<String>,
}

impl Run {
    fn new(case: &Case, dir: &Path) -> Run {
        let key = dir.join("id_ed25519");
        common::ssh_keygen(&key, "boot-test");
        Run {
            dir: dir.to_owned(),
            disk: dir.join(format!("{}.img", case.name)),
            key,
            port: free_port(),
            consoles: Vec::new(),
            log: Vec::new(),
        }
    }

    /// cardsmith writes the base image with the case's settings.
    fn write(&mut self, case: &Case) {
        let secret = |name: &str, text: &str| {
            let path = self.dir.join(name);
            fs::write(&path, text).unwrap();
            path.to_str().unwrap().to_owned()
        };
        let password = secret("password", PASSWORD);
        let mut args: Vec<String> = ["write", "--yes", "--no-verify"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        let base_image = base(case.base);
        match case.catalog_format {
            Some(format) => {
                let catalog = self.dir.join("os_list.json");
                let entry = serde_json::json!({ "os_list": [{
                    "name": format!("Boot test {}", case.name),
                    "description": "a base image of cardsmith's boot test",
                    "url": format!("file://{}", base_image.display()),
                    "release_date": "2025-11-24",
                    "init_format": format,
                }]});
                fs::write(&catalog, entry.to_string()).unwrap();
                args.extend([
                    "--os".into(),
                    format!("Boot test {}", case.name),
                    "--repo".into(),
                    catalog.to_str().unwrap().into(),
                ]);
            }
            None => args.push(base_image.to_str().unwrap().into()),
        }
        args.push(self.disk.to_str().unwrap().into());
        let hostname = format!("node-{}", case.name);
        args.extend(["--hostname".into(), hostname]);
        args.extend([
            "--user".into(),
            case.user.into(),
            "--password-file".into(),
            password,
        ]);
        args.extend(["--ssh".into(), "--ssh-key".into()]);
        args.push(format!("{}.pub", self.key.display()));
        if case.ssh_password_auth {
            args.push("--ssh-password-auth".into());
        }
        if case.passwordless_sudo {
            args.push("--passwordless-sudo".into());
        }
        for (n, (ssid, pass)) in NETWORKS.iter().enumerate() {
            args.extend(["--wifi-ssid".into(), ssid.to_string()]);
            args.extend([
                "--wifi-password-file".into(),
                secret(&format!("wifi{n}"), pass),
            ]);
        }
        args.extend(["--wifi-country".into(), "DE".into()]);
        if let Some(address) = case.static_ethernet {
            args.extend([
                "--static-ip".into(),
                format!("ethernet:{address},10.0.2.2,10.0.2.3"),
            ]);
        }
        args.extend(["--timezone".into(), case.timezone.into()]);
        args.extend(["--keymap".into(), case.keymap.into()]);
        let refs: Vec<&str> = args.iter().map(String::as_str).collect();
        let out = cardsmith(&refs);
        self.log.push(format!(
            "cardsmith {args:?}\n{}{}",
            stdout(&out),
            stderr(&out)
        ));
        assert!(
            out.status.success(),
            "cardsmith write failed: {}",
            stderr(&out)
        );
    }

    /// Boots until a boot without first-boot words reaches SSH. Returns the boots taken.
    fn boot(&mut self, case: &Case) -> Result<(usize, Guest), String> {
        let accel = accel();
        for boot in 1..=case.boots + 1 {
            let fw = self.dir.join(format!("firmware-{boot}"));
            fs::create_dir_all(&fw).unwrap();
            let (kernel, initrd, cmdline) = firmware(&self.disk, &fw);
            let first = first_boot_words(&cmdline);
            self.log.push(format!("boot {boot}: {cmdline}"));
            let console = self.dir.join(format!("console-{boot}.log"));
            self.consoles.push(console.clone());
            let guest_ip = case
                .static_ethernet
                .map_or("10.0.2.15", |a| a.split('/').next().unwrap());
            let accel_arg = match accel {
                Accel::Kvm => "kvm",
                Accel::Tcg => "tcg",
            };
            let mut command = qemu();
            command
                .args([
                    "-accel",
                    accel_arg,
                    "-m",
                    "1024",
                    "-smp",
                    "1",
                    "-nodefaults",
                ])
                .args(["-display", "none", "-no-reboot", "-kernel"])
                .arg(&kernel)
                .arg("-initrd")
                .arg(&initrd)
                .arg("-append")
                .arg(&cmdline)
                .arg("-drive")
                .arg(format!("file={},format=raw,if=virtio", self.disk.display()))
                .arg("-nic")
                .arg(format!(
                    "user,model=virtio-net-pci,restrict=on,hostfwd=tcp:127.0.0.1:{}-{guest_ip}:22",
                    self.port
                ));
            let mut guest = spawn(command, &console);
            if first {
                if !guest.wait_exit(accel.boot_limit()) {
                    return Err(format!("boot {boot} (first-boot words on its command line) did not end within {:?}", accel.boot_limit()));
                }
                continue;
            }
            let start = Instant::now();
            while start.elapsed() < accel.boot_limit() {
                if !guest.running() {
                    return Err(format!("boot {boot} ended before SSH answered"));
                }
                if self.ssh(case.user, "true", None).is_ok() {
                    return Ok((boot, guest));
                }
                sleep(Duration::from_secs(3));
            }
            return Err(format!(
                "boot {boot}: no SSH within {:?}",
                accel.boot_limit()
            ));
        }
        Err(format!(
            "still first-boot words after {} boots",
            case.boots + 1
        ))
    }

    /// ssh to `user` on the guest with `options` (pairs for -o) besides the ones every
    /// connection takes: no host key records, a short connect timeout, and keepalives, so
    /// a guest that stops answering ends the session rather than the test waiting.
    fn ssh_command(&self, user: &str, options: &[&str]) -> Command {
        let mut c = Command::new("ssh");
        for option in [
            "StrictHostKeyChecking=no",
            "UserKnownHostsFile=/dev/null",
            "LogLevel=ERROR",
            "ConnectTimeout=5",
            "ServerAliveInterval=5",
            "ServerAliveCountMax=6",
        ]
        .iter()
        .chain(options)
        {
            c.args(["-o", option]);
        }
        c.args(["-p", &self.port.to_string()])
            .arg(format!("{user}@127.0.0.1"));
        c
    }

    /// Runs `command` over SSH with the key; `input` on its standard input.
    fn ssh(&self, user: &str, command: &str, input: Option<&str>) -> Result<String, String> {
        let identity = format!("IdentityFile={}", self.key.display());
        let mut child = self
            .ssh_command(user, &["BatchMode=yes", "IdentitiesOnly=yes", &identity])
            .arg(command)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("ssh (openssh-client) is needed");
        let mut stdin = child.stdin.take().unwrap();
        if let Some(text) = input {
            stdin.write_all(text.as_bytes()).unwrap();
        }
        drop(stdin);
        let out = child.wait_with_output().unwrap();
        match out.status.success() {
            true => Ok(String::from_utf8_lossy(&out.stdout).into_owned()),
            false => Err(String::from_utf8_lossy(&out.stderr).into_owned()),
        }
    }

    /// Whether an SSH login with the password (and no key) gets in.
    fn password_login(&self, user: &str) -> Result<(), String> {
        let askpass = self.dir.join("askpass");
        fs::write(
            &askpass,
            format!("#!/bin/sh\ncat {}/password\n", self.dir.display()),
        )
        .unwrap();
        fs::set_permissions(&askpass, fs::Permissions::from_mode(0o700)).unwrap();
        let out = self
            .ssh_command(
                user,
                &[
                    "PubkeyAuthentication=no",
                    "PreferredAuthentications=password",
                    "NumberOfPasswordPrompts=1",
                ],
            )
            .arg("true")
            .env("SSH_ASKPASS", &askpass)
            .env("SSH_ASKPASS_REQUIRE", "force")
            .env("DISPLAY", ":0")
            .stdin(Stdio::null())
            .output()
            .unwrap();
        match out.status.success() {
            true => Ok(()),
            false => Err(String::from_utf8_lossy(&out.stderr).into_owned()),
        }
    }
}

/// Facts gathered in the guest as root, one `key=value` per line.
const ROOT_SCRIPT: &str = r#"
echo "hostname=$(hostname)"
echo "localtime=$(readlink /etc/localtime)"
echo "layout=$(. /etc/default/keyboard; echo "$XKBLAYOUT")"
echo "addr=$(ip -4 -o addr show dev eth0 | awk '{print $4}' | tr '\n' ' ')"
echo "firstrun=$(ls /boot/firmware/firstrun.sh /boot/firstrun.sh 2>/dev/null)"
echo "cmdline=$(cat /boot/firmware/cmdline.txt)"
echo "sshd_password=$(sshd -T 2>/dev/null | awk '$1 == "passwordauthentication" {print $2}')"
echo "shadow=$(getent shadow "$WHO" | cut -d: -f2)"
echo "helpers=$(cat /var/log/imager_custom.calls /var/log/userconf.calls 2>/dev/null | cut -d' ' -f1 | sort -u | tr '\n' ' ')"
for uuid in $(nmcli -t -f UUID connection show); do
  path=$(busctl call org.freedesktop.NetworkManager /org/freedesktop/NetworkManager/Settings \
    org.freedesktop.NetworkManager.Settings GetConnectionByUuid s "$uuid" | cut -d'"' -f2)
  echo "connection=$(busctl --json=short call org.freedesktop.NetworkManager "$path" \
    org.freedesktop.NetworkManager.Settings.Connection GetSettings)"
  echo "secrets=$(busctl --json=short call org.freedesktop.NetworkManager "$path" \
    org.freedesktop.NetworkManager.Settings.Connection GetSecrets s 802-11-wireless-security 2>/dev/null)"
done
if command -v cloud-init >/dev/null; then
  echo "cloud_status=$(cloud-init status --format json | tr -d '\n')"
  echo "cloud_id=$(cloud-id)"
  echo "seed_ignored=$(grep -ci 'ignor.*seed\|seed.*ignor' /var/log/cloud-init.log)"
fi
"#;

fn facts(text: &str, key: &str) -> Vec<String> {
    text.lines()
        .filter_map(|l| l.strip_prefix(&format!("{key}=")))
        .map(str::to_owned)
        .collect()
}

fn fact(text: &str, key: &str) -> String {
    facts(text, key).into_iter().next().unwrap_or_default()
}

/// A value out of busctl's JSON for a{sa{sv}}: `settings[group][key]`'s data.
fn setting<'a>(
    settings: &'a serde_json::Value,
    group: &str,
    key: &str,
) -> Option<&'a serde_json::Value> {
    settings["data"][0][group][key].get("data")
}

/// Every check, each compared with the setting; all failures together.
fn check(case: &Case, run: &Run, boots: usize) -> Vec<String> {
    let mut failed: Vec<String> = Vec::new();
    macro_rules! expect {
        ($ok:expr, $what:expr $(,)?) => {
            if !$ok {
                failed.push($what);
            }
        };
    }
    expect!(
        boots == case.boots,
        format!("it took {boots} boots, {} expected", case.boots),
    );
    let who = match run.ssh(case.user, "echo \"$(id -un) $(id -u)\"", None) {
        Ok(out) => out.trim().to_owned(),
        Err(e) => return vec![format!("no SSH login with the key as {}: {e}", case.user)],
    };
    expect!(
        who == format!("{} 1000", case.user),
        format!("logged in as {who:?}, wanted {} with uid 1000", case.user),
    );
    // Root: without a password where that was set, else through sudo -S with the password.
    let sudo = match case.passwordless_sudo {
        true => format!(
            "sudo -n env WHO={} sh -c '{}'",
            case.user,
            ROOT_SCRIPT.replace('\'', "'\\''")
        ),
        false => format!(
            "sudo -S -p '' env WHO={} sh -c '{}'",
            case.user,
            ROOT_SCRIPT.replace('\'', "'\\''")
        ),
    };
    let input = (!case.passwordless_sudo).then(|| format!("{PASSWORD}\n"));
    let root = match run.ssh(case.user, &sudo, input.as_deref()) {
        Ok(out) => out,
        Err(e) => {
            failed.push(format!(
                "sudo as set (passwordless: {}) failed: {e}",
                case.passwordless_sudo
            ));
            return failed;
        }
    };
    let nopasswd = run.ssh(case.user, "sudo -n true", None).is_ok();
    expect!(
        nopasswd == case.passwordless_sudo,
        format!(
            "sudo without a password works: {nopasswd}, set: {}",
            case.passwordless_sudo
        ),
    );
    expect!(
        fact(&root, "hostname") == format!("node-{}", case.name),
        format!("host name {:?}", fact(&root, "hostname")),
    );
    let shadow = fact(&root, "shadow");
    expect!(
        common::crypt_accepts(PASSWORD, &shadow),
        format!("the password's hash {shadow:?} is not the password's (libxcrypt)"),
    );
    let password_login = run.password_login(case.user);
    expect!(
        password_login.is_ok() == case.ssh_password_auth,
        format!(
            "SSH password login: {password_login:?}, allowed as set: {}",
            case.ssh_password_auth
        ),
    );
    expect!(
        fact(&root, "localtime").ends_with(&format!("zoneinfo/{}", case.timezone)),
        format!("time zone {:?}", fact(&root, "localtime")),
    );
    expect!(
        fact(&root, "layout") == case.keymap,
        format!("keyboard layout {:?}", fact(&root, "layout")),
    );
    if let Some(address) = case.static_ethernet {
        expect!(
            fact(&root, "addr").split_whitespace().any(|a| a == address),
            format!("eth0 has {:?}, not {address}", fact(&root, "addr")),
        );
    }
    expect!(
        fact(&root, "firstrun").is_empty(),
        format!("firstrun.sh is still there: {}", fact(&root, "firstrun")),
    );
    let cmdline = fact(&root, "cmdline");
    expect!(
        !first_boot_words(&cmdline) && cmdline.contains("cfg80211.ieee80211_regdom=DE"),
        format!("cmdline.txt after first boot: {cmdline:?}"),
    );
    // NetworkManager's own view: every network, exact SSID bytes, the PSK, the priority.
    let connections: Vec<serde_json::Value> = facts(&root, "connection")
        .iter()
        .filter_map(|c| serde_json::from_str(c).ok())
        .collect();
    let secrets: Vec<serde_json::Value> = facts(&root, "secrets")
        .iter()
        .map(|c| serde_json::from_str(c).unwrap_or(serde_json::Value::Null))
        .collect();
    for (n, (ssid, pass)) in NETWORKS.iter().enumerate() {
        let want: Vec<u64> = ssid.bytes().map(u64::from).collect();
        let found = connections.iter().zip(&secrets).find(|(c, _)| {
            setting(c, "802-11-wireless", "ssid")
                .and_then(|s| s.as_array())
                .is_some_and(|bytes| {
                    bytes.iter().filter_map(|b| b.as_u64()).collect::<Vec<_>>() == want
                })
        });
        let Some((connection, secret)) = found else {
            failed.push(format!(
                "NetworkManager lists no connection for SSID {ssid:?}: {connections:?}"
            ));
            continue;
        };
        let psk = setting(secret, "802-11-wireless-security", "psk").and_then(|p| p.as_str());
        let witness = common::wpa_psk(ssid, pass);
        expect!(
            psk == Some(witness.as_str()),
            format!("the PSK NetworkManager holds for {ssid:?} is {psk:?}, wpa_passphrase says {witness}"),
        );
        let priority =
            setting(connection, "connection", "autoconnect-priority").and_then(|p| p.as_i64());
        expect!(
            priority == Some((NETWORKS.len() - n) as i64),
            format!(
                "{ssid:?} has priority {priority:?}, wanted {}",
                NETWORKS.len() - n
            ),
        );
    }
    if case.cloud_init {
        let status: serde_json::Value =
            serde_json::from_str(&fact(&root, "cloud_status")).unwrap_or_default();
        let errors = status["errors"].as_array().map_or(1, Vec::len);
        let recoverable = status["recoverable_errors"]
            .as_object()
            .map_or(0, |o| o.len());
        expect!(
            status["status"] == "done" && errors == 0 && recoverable == 0,
            format!("cloud-init status: {status}"),
        );
        expect!(
            fact(&root, "cloud_id") == "nocloud",
            format!("cloud-id: {:?}", fact(&root, "cloud_id")),
        );
        expect!(
            fact(&root, "seed_ignored") == "0",
            format!(
                "cloud-init's log says a seed was ignored ({} lines)",
                fact(&root, "seed_ignored")
            ),
        );
    } else if case.base == "bookworm-pi" {
        expect!(
            fact(&root, "helpers").contains("set_hostname")
                && fact(&root, "helpers").contains(case.user),
            format!("the Pi helpers were not used: {:?}", fact(&root, "helpers")),
        );
    }
    failed
}

fn run_case(case: &Case) {
    let dir = tempfile::tempdir().unwrap();
    let mut run = Run::new(case, dir.path());
    run.write(case);
    let started = Instant::now();
    let failures = match run.boot(case) {
        Ok((boots, guest)) => {
            let mut found = check(case, &run, boots);
            if found.is_empty() && case.shrink_after {
                found = shrink_and_restore(case, &mut run, guest);
            } else {
                drop(guest);
            }
            found
        }
        Err(e) => vec![e],
    };
    eprintln!(
        "boot case {}: {:?} under {:?}",
        case.name,
        started.elapsed(),
        accel()
    );
    if failures.is_empty() {
        return;
    }
    let keep = std::env::var_os("CARDSMITH_BOOT_ARTEFACTS")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/tmp/cardsmith-boot-artefacts"))
        .join(case.name);
    fs::create_dir_all(&keep).unwrap();
    for console in &run.consoles {
        let _ = fs::copy(console, keep.join(console.file_name().unwrap()));
    }
    fs::write(keep.join("steps.log"), run.log.join("\n")).unwrap();
    panic!(
        "boot case {} failed (console logs in {}):\n- {}",
        case.name,
        keep.display(),
        failures.join("\n- ")
    );
}

/// The card that just booted, backed up with `read --shrink` after a clean power-off (a
/// file only it has is written first), restored to a disk larger than the card, and booted
/// again: Raspberry Pi OS's first boot, re-armed by the shrink, grows the root partition
/// and filesystem to fill the disk (df, over SSH) and takes its word off cmdline.txt.
fn shrink_and_restore(case: &Case, run: &mut Run, mut guest: Guest) -> Vec<String> {
    let mut failed = Vec::new();
    let _ = run.ssh(
        case.user,
        "echo kept-through-the-shrink > ~/marker && sync && sudo systemctl poweroff",
        None,
    );
    if !guest.wait_exit(accel().boot_limit()) {
        return vec!["the configured card did not power off".into()];
    }
    let backup = run.dir.join("backup.img");
    let out = cardsmith(&[
        "read",
        run.disk.to_str().unwrap(),
        backup.to_str().unwrap(),
        "--shrink",
        "--json",
    ]);
    run.log
        .push(format!("read --shrink\n{}{}", stdout(&out), stderr(&out)));
    if !out.status.success() {
        return vec![format!("read --shrink failed: {}", stderr(&out))];
    }
    let result: serde_json::Value =
        serde_json::from_str(stdout(&out).lines().last().unwrap_or("{}")).unwrap();
    if result["shrink"]["grows_with"] != "firstboot" || result["shrink"]["shrunk"] != true {
        failed.push(format!("the shrink said {}", result["shrink"]));
    }
    let card = fs::metadata(&run.disk).unwrap().len();
    let shrunk = fs::metadata(&backup).unwrap().len();
    if shrunk >= card {
        failed.push(format!(
            "the backup ({shrunk} bytes) is not smaller than the card"
        ));
    }
    // Restored onto a disk larger than the card it came from.
    let restored = run.dir.join("restored.img");
    let out = cardsmith(&[
        "write",
        backup.to_str().unwrap(),
        restored.to_str().unwrap(),
        "--yes",
    ]);
    if !out.status.success() {
        return vec![format!("restoring the backup failed: {}", stderr(&out))];
    }
    let larger = card + (1 << 30);
    fs::OpenOptions::new()
        .write(true)
        .open(&restored)
        .unwrap()
        .set_len(larger)
        .unwrap();
    run.disk = restored;
    let guest = match run.boot(case) {
        Ok((_, guest)) => guest,
        Err(e) => {
            failed.push(format!("the restored backup: {e}"));
            return failed;
        }
    };
    let said = run.ssh(
        case.user,
        "echo \"size=$(df -B1 --output=size / | tail -1 | tr -d ' ')\"; \
         echo \"cmdline=$(cat /boot/firmware/cmdline.txt)\"; echo \"marker=$(cat ~/marker)\"",
        None,
    );
    drop(guest);
    let said = match said {
        Ok(said) => said,
        Err(e) => return vec![format!("ssh to the restored backup: {e}")],
    };
    let size: u64 = fact(&said, "size").parse().unwrap_or(0);
    // The disk less the boot partition and the filesystem's own metadata.
    if size < larger - (400 << 20) {
        failed.push(format!(
            "the root filesystem is {size} bytes on a {larger}-byte disk: it did not grow"
        ));
    }
    let cmdline = fact(&said, "cmdline");
    if cmdline.contains("init=") || cmdline.is_empty() {
        failed.push(format!("cmdline.txt after the first boot: {cmdline:?}"));
    }
    if fact(&said, "marker") != "kept-through-the-shrink" {
        failed.push(format!("the file written before the backup: {said}"));
    }
    failed
}

/// A custom image with no catalog entry and none of Raspberry Pi OS's helpers: inspection
/// finds systemd with the FAT partition at /boot/firmware and no initramfs fixup, so
/// cmdline.txt names /boot/firmware/firstrun.sh, and the plain-shell fallbacks do it all.
#[test]
fn a_custom_image_without_helpers_boots_with_every_setting() {
    run_case(&Case {
        name: "plain",
        base: "bookworm",
        catalog_format: None,
        user: "alice",
        ssh_password_auth: true,
        passwordless_sudo: false,
        static_ethernet: Some("10.0.2.50/24"),
        timezone: "Europe/Berlin",
        keymap: "de",
        cloud_init: false,
        boots: 2,
        shrink_after: false,
    });
}

/// Raspberry Pi OS Bookworm's path, with stand-ins for its helpers: boot 1 is
/// init=…/firstboot (the initramfs fixup points cmdline.txt at /boot/firmware), boot 2
/// runs firstrun.sh through imager_custom and userconf, boot 3 is the configured system.
#[test]
fn the_bookworm_path_with_the_pi_helpers_boots_with_every_setting() {
    run_case(&Case {
        name: "pi",
        base: "bookworm-pi",
        catalog_format: Some("systemd"),
        user: "bob",
        ssh_password_auth: false,
        passwordless_sudo: true,
        static_ethernet: None,
        timezone: "America/New_York",
        keymap: "us",
        cloud_init: false,
        boots: 3,
        shrink_after: true,
    });
}

/// Trixie's path: cloud-init (NoCloud, seeded from the FAT partition, in local mode through
/// `ds=nocloud` on cmdline.txt) applies everything on the first boot, and the uid-1000
/// user is renamed rather than joined by a second user.
#[test]
fn the_trixie_path_with_cloud_init_boots_with_every_setting() {
    run_case(&Case {
        name: "cloud",
        base: "trixie",
        catalog_format: Some("cloudinit-rpi"),
        user: "carol",
        ssh_password_auth: false,
        passwordless_sudo: false,
        static_ethernet: Some("10.0.2.51/24"),
        timezone: "Asia/Tokyo",
        keymap: "jp",
        cloud_init: true,
        boots: 1,
        shrink_after: false,
    });
}

/// The first Trixie release's catalog entry said "systemd": its first boot is a systemd boot
/// with the FAT partition at /boot/firmware and no initramfs fixup, so a command line naming
/// /boot/firstrun.sh fails there (and powers a real board off). Inspection names the path
/// the first boot finds; the settings go in through the fallbacks, beside cloud-init.
#[test]
fn the_trixie_systemd_format_finds_its_script_and_boots_with_every_setting() {
    run_case(&Case {
        name: "trixie-systemd",
        base: "trixie",
        catalog_format: Some("systemd"),
        user: "dave",
        ssh_password_auth: true,
        passwordless_sudo: true,
        static_ethernet: None,
        timezone: "Europe/Paris",
        keymap: "fr",
        cloud_init: false,
        boots: 2,
        shrink_after: false,
    });
}
