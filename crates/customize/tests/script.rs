//! firstrun.sh against the shell itself: `sh -n` accepts it for arbitrary SSIDs, and run in
//! a chroot with stub helpers it hands every value over byte for byte. The chroot holds
//! copies of the host's sh, tr and cut (with their libraries); nothing outside it changes.
//! Needs root for chroot (the README's test command runs as root).

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;

use cardsmith_customize::{
    render, Facts, Format, PasswordHashes, Settings, Ssh, StaticIp, User, Wifi,
};

/// A small deterministic generator (xorshift), so a failure can be replayed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    /// 1 to 32 bytes, none NUL, weighted towards what breaks shell quoting.
    fn ssid(&mut self) -> Vec<u8> {
        const NASTY: &[u8] = b"'\"$`\\\n\t !;&|<>(){}*?~#%=\r";
        let len = 1 + (self.next() % 32) as usize;
        (0..len)
            .map(|_| match self.next() % 3 {
                0 => NASTY[(self.next() % NASTY.len() as u64) as usize],
                1 => 1 + (self.next() % 255) as u8,
                _ => b'a' + (self.next() % 26) as u8,
            })
            .collect()
    }
}

/// Hashed once: yescrypt is deliberately slow, more so in a debug build.
fn password() -> PasswordHashes {
    static HASHES: std::sync::OnceLock<PasswordHashes> = std::sync::OnceLock::new();
    HASHES
        .get_or_init(|| PasswordHashes::new(b"pw with 'quotes' and $dollars").unwrap())
        .clone()
}

fn settings(ssid: Vec<u8>, hostname: &str) -> Settings {
    Settings {
        hostname: Some(hostname.to_owned()),
        user: Some(User {
            name: "alice".into(),
            password: password(),
        }),
        ssh: Some(Ssh {
            password_auth: false,
            keys: vec![
                "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIBtt1J9x7vU6sqiJ6mlQvhBPHTcJ1rYqRk4cR3EqsEkI it's me".into(),
            ],
        }),
        wifi: vec![
            Wifi {
                ssid,
                psk: "0123456789abcdef".repeat(4),
                hidden: true,
                country: "DE".into(),
            },
            Wifi {
                ssid: b"backup net".to_vec(),
                psk: "fedcba9876543210".repeat(4),
                hidden: false,
                country: "DE".into(),
            },
        ],
        static_ip: vec![StaticIp::parse("ethernet:192.168.7.20/24,192.168.7.1,9.9.9.9").unwrap()],
        timezone: Some("America/Argentina/Buenos_Aires".into()),
        keymap: Some("de".into()),
        ..Settings::default()
    }
}

const CMDLINE: &[u8] = b"console=serial0,115200 console=tty1 root=PARTUUID=5eed5eed-02 rootwait\n";

/// The files customisation writes for a systemd image: firstrun.sh and cmdline.txt.
fn files(s: &Settings) -> (Vec<u8>, Vec<u8>) {
    let hostname = s.hostname_now().unwrap();
    let hash = s.user.as_ref().map(|u| u.password.yescrypt.clone());
    let files = render(
        Format::Systemd,
        s,
        hostname.as_deref(),
        hash.as_deref(),
        Some(CMDLINE),
        Facts::default(),
    )
    .unwrap();
    let get = |name: &str| files.iter().find(|(n, _)| n == name).unwrap().1.clone();
    (get("firstrun.sh"), get("cmdline.txt"))
}

fn script(s: &Settings) -> Vec<u8> {
    files(s).0
}

#[test]
fn firstrun_parses_for_arbitrary_ssids() {
    let dir = tempfile::tempdir().unwrap();
    let mut rng = Rng(0x5eed_cafe_f00d_1234);
    for round in 0..150 {
        let ssid = rng.ssid();
        let file = dir.path().join(format!("firstrun-{round}.sh"));
        fs::write(&file, script(&settings(ssid.clone(), "node-01"))).unwrap();
        let out = Command::new("sh")
            .arg("-n")
            .arg(&file)
            .output()
            .expect("sh");
        assert!(
            out.status.success(),
            "sh -n rejects the script for SSID {ssid:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

/// Copies a host binary and the libraries `ldd` names into the chroot.
fn install(root: &Path, binary: &str) {
    let copy = |from: &Path| {
        let to = root.join(from.strip_prefix("/").unwrap());
        fs::create_dir_all(to.parent().unwrap()).unwrap();
        fs::copy(from, &to).unwrap_or_else(|e| panic!("copying {}: {e}", from.display()));
    };
    let path = Path::new(binary);
    copy(&fs::canonicalize(path).unwrap());
    if fs::symlink_metadata(path).unwrap().file_type().is_symlink()
        || fs::canonicalize(path).unwrap() != path
    {
        let target = root.join(path.strip_prefix("/").unwrap());
        fs::create_dir_all(target.parent().unwrap()).unwrap();
        let _ = fs::remove_file(&target);
        fs::copy(fs::canonicalize(path).unwrap(), &target).unwrap();
    }
    let ldd = Command::new("ldd").arg(binary).output().expect("ldd");
    for line in String::from_utf8_lossy(&ldd.stdout).lines() {
        let lib = line.split_whitespace().find(|w| w.starts_with('/'));
        if let Some(lib) = lib {
            copy(Path::new(lib));
            let canonical = fs::canonicalize(lib).unwrap();
            if canonical != Path::new(lib) {
                copy(&canonical);
            }
        }
    }
}

/// A helper that records each argument, NUL-terminated, in /log/NAME.
fn stub(root: &Path, path: &str, name: &str) {
    let file = root.join(path.strip_prefix('/').unwrap());
    fs::create_dir_all(file.parent().unwrap()).unwrap();
    fs::write(
        &file,
        format!("#!/bin/sh\nfor a in \"$@\"; do printf '%s\\0' \"$a\"; done >>/log/{name}\nprintf '\\n' >>/log/{name}\n"),
    )
    .unwrap();
    fs::set_permissions(&file, fs::Permissions::from_mode(0o755)).unwrap();
}

/// The calls a stub recorded: one per line, arguments split at NUL.
fn calls(root: &Path, name: &str) -> Vec<Vec<Vec<u8>>> {
    let log = fs::read(root.join("log").join(name)).unwrap_or_default();
    let mut out = Vec::new();
    let mut current: Vec<Vec<u8>> = Vec::new();
    let mut arg = Vec::new();
    let mut i = 0;
    while i < log.len() {
        match log[i] {
            0 => current.push(std::mem::take(&mut arg)),
            b'\n' if arg.is_empty() => out.push(std::mem::take(&mut current)),
            b => arg.push(b),
        }
        i += 1;
    }
    out
}

#[test]
fn firstrun_hands_exact_bytes_to_the_helpers_in_a_chroot() {
    let mut rng = Rng(0xdead_beef_0bad_f00d);
    for round in 0..8 {
        let root = tempfile::tempdir().unwrap();
        let r = root.path();
        for binary in [
            "/bin/sh",
            "/usr/bin/tr",
            "/usr/bin/cut",
            "/bin/rm",
            "/bin/sed",
            "/bin/cat",
            "/bin/chmod",
        ] {
            install(r, binary);
        }
        stub(
            r,
            "/usr/lib/raspberrypi-sys-mods/imager_custom",
            "imager_custom",
        );
        stub(r, "/usr/lib/userconf-pi/userconf", "userconf");
        fs::create_dir_all(r.join("usr/bin")).unwrap();
        fs::write(
            r.join("usr/bin/getent"),
            "#!/bin/sh\necho 'pi:x:1000:1000::/home/pi:/bin/bash'\n",
        )
        .unwrap();
        fs::set_permissions(r.join("usr/bin/getent"), fs::Permissions::from_mode(0o755)).unwrap();
        for dir in [
            "log",
            "etc/NetworkManager/system-connections",
            "boot",
            "tmp",
        ] {
            fs::create_dir_all(r.join(dir)).unwrap();
        }
        fs::write(r.join("etc/hostname"), "raspberrypi\n").unwrap();
        let ssid = match round {
            0 => b"it's \"$HOME\" \\\n\xff".to_vec(),
            1 => b"Home \"Net\" $x".to_vec(),
            _ => rng.ssid(),
        };
        let s = settings(ssid.clone(), &format!("node-{round}"));
        let (firstrun, cmdline) = files(&s);
        fs::write(r.join("boot/firstrun.sh"), firstrun).unwrap();
        fs::write(r.join("boot/cmdline.txt"), cmdline).unwrap();

        let chroot = ["/usr/sbin/chroot", "/sbin/chroot"]
            .into_iter()
            .find(|p| Path::new(p).exists())
            .expect("chroot (coreutils) is needed");
        let out = Command::new(chroot)
            .arg(r)
            .args(["/bin/sh", "/boot/firstrun.sh"])
            .env_clear()
            .env("PATH", "/usr/bin:/bin")
            .output()
            .expect("running chroot");
        assert!(
            out.status.success(),
            "firstrun.sh failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );

        let imager = calls(r, "imager_custom");
        let user = s.user.as_ref().unwrap();
        let wifi = &s.wifi;
        let key = s.ssh.as_ref().unwrap().keys[0].as_bytes().to_vec();
        let mut expected: Vec<Vec<Vec<u8>>> = vec![
            vec![
                b"set_hostname".to_vec(),
                format!("node-{round}").into_bytes(),
            ],
            vec![b"enable_ssh".to_vec(), b"-k".to_vec(), key],
        ];
        // imager_custom's set_wlan writes one network and no fixed address: every network
        // gets a keyfile of its own, the first preferred.
        let connections = r.join("etc/NetworkManager/system-connections");
        for (n, (name, net)) in [("preconfigured", &wifi[0]), ("preconfigured-2", &wifi[1])]
            .into_iter()
            .enumerate()
        {
            let text = fs::read_to_string(connections.join(format!("{name}.nmconnection")))
                .expect("a keyfile per network");
            let listed: Vec<u8> = text
                .lines()
                .find_map(|l| l.strip_prefix("ssid="))
                .unwrap()
                .split(';')
                .filter(|v| !v.is_empty())
                .map(|v| v.parse().unwrap())
                .collect();
            assert_eq!(listed, net.ssid, "the keyfile names the exact SSID bytes");
            assert!(text.contains(&format!("psk={}", net.psk)), "{text}");
            assert_eq!(text.contains("hidden=true"), net.hidden, "{text}");
            assert!(
                text.contains(&format!("autoconnect-priority={}", 2 - n)),
                "{text}"
            );
        }
        let wired = fs::read_to_string(connections.join("cardsmith-ethernet.nmconnection"))
            .expect("a keyfile for the fixed Ethernet address");
        assert!(
            wired.contains("interface-name=eth0")
                && wired.contains("method=manual")
                && wired.contains("address1=192.168.7.20/24,192.168.7.1")
                && wired.contains("dns=9.9.9.9;"),
            "{wired}"
        );
        expected.push(vec![b"set_keymap".to_vec(), b"de".to_vec()]);
        expected.push(vec![
            b"set_timezone".to_vec(),
            b"America/Argentina/Buenos_Aires".to_vec(),
        ]);
        assert_eq!(imager, expected, "SSID {ssid:?}");
        assert_eq!(
            calls(r, "userconf"),
            vec![vec![
                b"alice".to_vec(),
                user.password.yescrypt.clone().into_bytes()
            ]]
        );
        assert!(
            !r.join("boot/firstrun.sh").exists(),
            "the script removes itself"
        );
        assert_eq!(
            fs::read(r.join("boot/cmdline.txt")).unwrap(),
            b"console=serial0,115200 console=tty1 root=PARTUUID=5eed5eed-02 rootwait cfg80211.ieee80211_regdom=DE\n",
            "the hook is taken off cmdline.txt, the Wi-Fi region stays"
        );
    }
}
