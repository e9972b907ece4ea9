//! First-boot settings, judged by tools cardsmith did not write: fsck.fat, mtools, sh,
//! Python's crypt (libxcrypt), wpa_passphrase, cloud-init's schema check and PyYAML. Cards
//! are loop devices this test creates and detaches; presets and caches live in temporary
//! directories (XDG_CONFIG_HOME, XDG_CACHE_HOME).

mod common;

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use common::*;

const SAMPLE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../os-list-sample");
/// The sample images' boot partition: 1 MiB in, 40 MiB long.
const BOOT_OFFSET: u64 = 1 << 20;
const BOOT_LEN: u64 = 40 << 20;
const PASSWORD: &str = "correct horse 'battery' $staple";
const WIFI_PASSWORD: &str = "wifi pass \"with\" quotes";
const SSID: &str = "Café \"Net\" $x";

struct Bench {
    dir: tempfile::TempDir,
}

impl Bench {
    fn new() -> Bench {
        let bench = Bench {
            dir: tempfile::tempdir().unwrap(),
        };
        write_file(&bench.path("pw"), format!("{PASSWORD}\n").as_bytes());
        write_file(&bench.path("wifi-pw"), WIFI_PASSWORD.as_bytes());
        ssh_keygen(&bench.path("key"), "me@laptop");
        bench
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn run(&self, args: &[&str]) -> Output {
        cardsmith_env(
            args,
            &[
                ("XDG_CACHE_HOME", &self.path("cache")),
                ("XDG_CONFIG_HOME", &self.path("config")),
            ],
        )
    }

    /// The bundled demo OS `os` written into a new image file `name`.
    fn demo(&self, name: &str, os: &str) -> PathBuf {
        let image = self.path(name);
        let out = self.run(&[
            "write",
            "--os",
            os,
            "--repo",
            &repo(),
            image.to_str().unwrap(),
            "--yes",
        ]);
        assert_ok(&out);
        image
    }

    fn key(&self) -> String {
        fs::read_to_string(self.path("key.pub"))
            .unwrap()
            .trim()
            .to_owned()
    }
}

fn repo() -> String {
    format!("{SAMPLE}/os_list.json")
}

/// A file of the boot partition, read with mtools.
fn mtype(image: &Path, name: &str) -> Vec<u8> {
    let at = format!("{}@@{BOOT_OFFSET}", image.display());
    tool("mtype", &["-i", &at, &format!("::{name}")]).stdout
}

/// `fsck.fat -n` on a copy of the boot partition.
fn assert_fat_clean(image: &Path) {
    let dir = tempfile::tempdir().unwrap();
    let part = dir.path().join("boot.fat");
    write_file(&part, &read_range(image, BOOT_OFFSET, BOOT_LEN as usize));
    let out = Command::new("fsck.fat")
        .args(["-n", part.to_str().unwrap()])
        .output()
        .expect("fsck.fat (dosfstools)");
    assert!(
        out.status.success(),
        "fsck.fat: {}{}",
        stdout(&out),
        stderr(&out)
    );
}

/// libxcrypt's crypt(3), called from Python through ctypes (the `crypt` module is gone
/// from newer Pythons), as the judge of a password hash.
fn assert_hash_verifies(hash: &str, prefix: &str) {
    assert!(hash.starts_with(prefix), "{hash}");
    assert!(
        crypt_accepts(PASSWORD, hash),
        "libxcrypt does not accept {hash}"
    );
    assert!(
        !crypt_accepts("wrong", hash),
        "the witness accepts a wrong password"
    );
}

/// The words of a firstrun.sh line that starts with `prefix`, unquoted by sh itself.
fn sh_words(script: &[u8], prefix: &str) -> Vec<String> {
    let text = String::from_utf8_lossy(script);
    let line = text
        .lines()
        .find(|l| l.trim_start().starts_with(prefix))
        .unwrap_or_else(|| panic!("no line {prefix:?} in:\n{text}"));
    let out = tool(
        "sh",
        &[
            "-c",
            &format!(
                "set -- {}; for w; do printf '%s\\0' \"$w\"; done",
                line.trim_start().trim_start_matches(prefix)
            ),
        ],
    );
    stdout(&out)
        .split('\0')
        .filter(|w| !w.is_empty())
        .map(str::to_owned)
        .collect()
}

fn settings_args(bench: &Bench) -> Vec<String> {
    [
        "--hostname",
        "lab-pi",
        "--user",
        "alice",
        "--password-file",
        bench.path("pw").to_str().unwrap(),
        "--ssh",
        "--ssh-key",
        bench.path("key.pub").to_str().unwrap(),
        "--wifi-ssid",
        SSID,
        "--wifi-password-file",
        bench.path("wifi-pw").to_str().unwrap(),
        "--wifi-country",
        "GB",
        "--timezone",
        "Europe/London",
        "--keymap",
        "gb",
    ]
    .map(str::to_owned)
    .to_vec()
}

#[test]
fn a_systemd_card_gets_firstrun_checked_by_fsck_sh_crypt_and_wpa_passphrase() {
    let bench = Bench::new();
    let backing = bench.path("card.bin");
    filled_file(&backing, 64 * MIB, 0xAA);
    let dev = LoopDevice::attach(&backing);
    let mut args = vec![
        "write".to_owned(),
        "--os".into(),
        "cardsmith demo (systemd)".into(),
        "--repo".into(),
        repo(),
        dev.arg().into(),
        "--yes".into(),
    ];
    args.extend(settings_args(&bench));
    let out = bench.run(&args.iter().map(String::as_str).collect::<Vec<_>>());
    assert_ok(&out);
    let err = stderr(&out);
    assert!(
        err.contains(
            "Customised the boot partition for systemd (the catalog says systemd): firstrun.sh, cmdline.txt"
        ),
        "{err}"
    );
    assert!(err.contains("password stored as yescrypt"), "{err}");

    assert_fat_clean(&backing);
    let script = mtype(&backing, "firstrun.sh");
    let file = bench.path("firstrun.sh");
    write_file(&file, &script);
    tool("sh", &["-n", file.to_str().unwrap()]);
    let cmdline = String::from_utf8(mtype(&backing, "cmdline.txt")).unwrap();
    assert!(
        cmdline.trim_end().ends_with("rootwait cfg80211.ieee80211_regdom=GB systemd.run=/boot/firstrun.sh systemd.run_success_action=reboot systemd.unit=kernel-command-line.target"),
        "{cmdline}"
    );
    assert_eq!(cmdline.lines().count(), 1);

    assert_eq!(
        sh_words(&script, "\"$IMAGER_CUSTOM\" set_hostname"),
        ["lab-pi"]
    );
    let user = sh_words(&script, "/usr/lib/userconf-pi/userconf");
    assert_eq!(user[0], "alice");
    assert_hash_verifies(&user[1], "$y$");
    // imager_custom's set_wlan takes one network and no fixed address, so the script writes
    // NetworkManager's keyfile itself, with the SSID as byte values.
    let text = String::from_utf8_lossy(&script).into_owned();
    let listed: Vec<u8> = text
        .lines()
        .find_map(|l| l.strip_prefix("ssid="))
        .expect("an ssid= line")
        .split(';')
        .filter(|v| !v.is_empty())
        .map(|v| v.parse().unwrap())
        .collect();
    assert_eq!(listed, SSID.as_bytes());
    let psk_line = format!("psk={}", wpa_psk(SSID, WIFI_PASSWORD));
    assert!(text.lines().any(|l| l == psk_line), "{text}");
    assert_eq!(
        sh_words(&script, "\"$IMAGER_CUSTOM\" enable_ssh"),
        ["-k".to_owned(), bench.key()]
    );
    assert!(
        !String::from_utf8_lossy(&script).contains(PASSWORD),
        "no plaintext password on the card"
    );
    assert!(!String::from_utf8_lossy(&script).contains(WIFI_PASSWORD));

    // `customize` on the card itself: it asks, or takes --yes, and replaces the files.
    let out = bench.run(&["customize", dev.arg(), "--hostname", "renamed"]);
    assert_fails(&out, 1, &["Customise", "Not without confirmation"]);
    let out = bench.run(&["customize", dev.arg(), "--hostname", "renamed", "--yes"]);
    assert_ok(&out);
    assert_fat_clean(&backing);
    let script = mtype(&backing, "firstrun.sh");
    assert_eq!(
        sh_words(&script, "\"$IMAGER_CUSTOM\" set_hostname"),
        ["renamed"]
    );
}

#[test]
fn customize_on_an_image_file_writes_cloud_init_that_cloud_init_accepts() {
    let bench = Bench::new();
    let image = bench.demo("trixie.img", "cardsmith demo (cloud-init)");
    let before = fs::read(&image).unwrap();
    let mut args = vec![
        "customize".to_owned(),
        image.to_str().unwrap().into(),
        "--enable-i2c".into(),
        "--enable-serial".into(),
        "console".into(),
        "--passwordless-sudo".into(),
        "--static-ip".into(),
        "ethernet:192.168.1.50/24,192.168.1.1,1.1.1.1".into(),
    ];
    args.extend(settings_args(&bench));
    let out = bench.run(&args.iter().map(String::as_str).collect::<Vec<_>>());
    assert_ok(&out);
    let err = stderr(&out);
    assert!(
        err.contains(
            "cloudinit-rpi (cloud-init reads NoCloud seeds, and /etc/rpi-issue marks Raspberry Pi OS)"
        ),
        "{err}"
    );
    assert!(
        err.contains("user-data, meta-data, network-config, cmdline.txt"),
        "{err}"
    );
    assert!(
        err.contains("Wi-Fi: NetworkManager keyfile (cloud-init write_files)"),
        "{err}"
    );

    assert_fat_clean(&image);
    let after = fs::read(&image).unwrap();
    let (start, end) = (BOOT_OFFSET as usize, (BOOT_OFFSET + BOOT_LEN) as usize);
    assert!(
        before[..start] == after[..start] && before[end..] == after[end..],
        "only the boot partition changed"
    );

    let user_data = bench.path("user-data");
    write_file(&user_data, &mtype(&image, "user-data"));
    let schema = Command::new("cloud-init")
        .args(["schema", "--config-file", user_data.to_str().unwrap()])
        .output()
        .expect("cloud-init is needed (the test command installs it)");
    assert!(
        schema.status.success(),
        "cloud-init schema: {}{}",
        stdout(&schema),
        stderr(&schema)
    );

    let network = bench.path("network-config");
    write_file(&network, &mtype(&image, "network-config"));
    let meta = bench.path("meta-data");
    write_file(&meta, &mtype(&image, "meta-data"));
    let psk = wpa_psk(SSID, WIFI_PASSWORD);
    let check = format!(
        "import sys, yaml\n\
         u = yaml.safe_load(open(sys.argv[1]))\n\
         n = yaml.safe_load(open(sys.argv[2]))\n\
         m = yaml.safe_load(open(sys.argv[3]))\n\
         assert u['hostname'] == 'lab-pi', u\n\
         assert u['users'][0]['name'] == 'alice' and u['users'][0]['sudo'] == 'ALL=(ALL) NOPASSWD:ALL', u\n\
         assert u['users'][0]['ssh_authorized_keys'] == [sys.argv[4]], u\n\
         assert u['timezone'] == 'Europe/London' and u['keyboard']['layout'] == 'gb', u\n\
         assert u['rpi']['interfaces'] == {{'i2c': True, 'serial': {{'console': True, 'hardware': True}}}}, u\n\
         assert u['bootcmd'][0][:5] == ['cloud-init-per', 'instance', 'cardsmith-first-user', 'sh', '-c'], u\n\
         assert \"usermod -l 'alice'\" in u['bootcmd'][0][5], u\n\
         [wifi] = [f for f in u['write_files'] if f['path'] == '/etc/NetworkManager/system-connections/preconfigured.nmconnection']\n\
         assert wifi['permissions'] == '0600', wifi\n\
         lines = wifi['content'].splitlines()\n\
         ssid = [bytes(int(v) for v in l[5:].split(';') if v) for l in lines if l.startswith('ssid=')]\n\
         assert ssid == [sys.argv[5].encode()], lines\n\
         assert 'psk={psk}' in lines and 'key-mgmt=wpa-psk' in lines, lines\n\
         assert ['nmcli', 'connection', 'reload'] in u['runcmd'], u\n\
         e = n['network']['ethernets']['eth0']\n\
         assert n['network']['renderer'] == 'NetworkManager' and 'wifis' not in n['network'], n\n\
         assert e['addresses'] == ['192.168.1.50/24'] and e['routes'] == [{{'to': 'default', 'via': '192.168.1.1'}}], e\n\
         assert e['nameservers']['addresses'] == ['1.1.1.1'], e\n\
         assert m['instance-id'].startswith('cardsmith-') and m['local-hostname'] == 'lab-pi', m\n\
         assert sys.argv[6].split().count('ds=nocloud;i=' + m['instance-id']) == 1, sys.argv[6]\n\
         print(u['users'][0]['hashed_passwd'])\n"
    );
    let out = Command::new("python3")
        .args([
            "-c",
            &check,
            user_data.to_str().unwrap(),
            network.to_str().unwrap(),
            meta.to_str().unwrap(),
            &bench.key(),
            SSID,
            &String::from_utf8(mtype(&image, "cmdline.txt")).unwrap(),
        ])
        .output()
        .expect("python3 with PyYAML (cloud-init brings it)");
    assert!(out.status.success(), "{}", stderr(&out));
    assert_hash_verifies(stdout(&out).trim(), "$y$");

    // An image released before 2023 gets sha256-crypt.
    let pw = bench.path("pw");
    let args = [
        "customize",
        image.to_str().unwrap(),
        "--user",
        "alice",
        "--password-file",
        pw.to_str().unwrap(),
        "--release-date",
        "2022-09-22",
    ];
    assert_ok(&bench.run(&args));
    write_file(&user_data, &mtype(&image, "user-data"));
    let out = Command::new("python3")
        .args([
            "-c",
            "import sys, yaml; print(yaml.safe_load(open(sys.argv[1]))['users'][0]['hashed_passwd'])",
            user_data.to_str().unwrap(),
        ])
        .output()
        .unwrap();
    assert_hash_verifies(stdout(&out).trim(), "$5$");
}

#[test]
fn a_preset_numbers_the_cards_of_a_cluster() {
    let bench = Bench::new();
    let out = bench.run(&[
        "preset",
        "save",
        "cluster",
        "--hostname",
        "node{n:02}",
        "--user",
        "pi",
        "--password-file",
        bench.path("pw").to_str().unwrap(),
        "--ssh",
        "--ssh-key",
        bench.path("key.pub").to_str().unwrap(),
        "--wifi-ssid",
        SSID,
        "--wifi-password-file",
        bench.path("wifi-pw").to_str().unwrap(),
        "--wifi-country",
        "DE",
    ]);
    assert_ok(&out);
    let file = bench.path("config/cardsmith/presets/cluster.json");
    assert_eq!(
        fs::metadata(&file).unwrap().permissions().mode() & 0o777,
        0o600
    );
    let saved = fs::read_to_string(&file).unwrap();
    assert!(
        !saved.contains(PASSWORD) && !saved.contains(WIFI_PASSWORD),
        "no plaintext secret: {saved}"
    );
    assert!(
        saved.contains("$y$") && saved.contains(&wpa_psk(SSID, WIFI_PASSWORD)),
        "{saved}"
    );

    for n in 1..=3 {
        let image = bench.path(&format!("node{n}.img"));
        let out = bench.run(&[
            "write",
            "--os",
            "cardsmith demo (systemd)",
            "--repo",
            &repo(),
            image.to_str().unwrap(),
            "--yes",
            "--preset",
            "cluster",
        ]);
        assert_ok(&out);
        let script = mtype(&image, "firstrun.sh");
        assert_eq!(
            sh_words(&script, "\"$IMAGER_CUSTOM\" set_hostname"),
            [format!("node{n:02}")]
        );
        assert_eq!(sh_words(&script, "/usr/lib/userconf-pi/userconf")[0], "pi");
        assert!(
            stderr(&out).contains(&format!("the next card is number {}", n + 1)),
            "{}",
            stderr(&out)
        );
    }
    let out = bench.run(&["preset", "show", "cluster"]);
    assert!(
        stdout(&out).contains("node{n:02} (next number 4)"),
        "{}",
        stdout(&out)
    );
    assert_eq!(stdout(&bench.run(&["preset", "list"])).trim(), "cluster");
    assert_ok(&bench.run(&["preset", "delete", "cluster"]));
    assert!(!file.exists());
}

#[test]
fn bad_settings_and_unsuitable_images_are_refused_with_reasons() {
    let bench = Bench::new();
    let image = bench.demo("bookworm.img", "cardsmith demo (systemd)");
    let pristine = fs::read(&image).unwrap();
    let img = image.to_str().unwrap();
    let private_key = bench.path("key");
    let (pw, public_key) = (bench.path("pw"), bench.path("key.pub"));
    let (pw, public_key) = (pw.to_str().unwrap(), public_key.to_str().unwrap());
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (
            vec!["--hostname", "my_pi"],
            "hostname \"my_pi\" is not valid",
        ),
        (
            vec!["--hostname", "node{n:x}"],
            "a counter is written {n} or {n:02}",
        ),
        (
            vec!["--user", "root", "--password-file", pw],
            "system account",
        ),
        (
            vec![
                "--wifi-ssid",
                "net",
                "--wifi-country",
                "gb",
                "--wifi-password-file",
                pw,
            ],
            "ISO 3166-1",
        ),
        (
            vec![
                "--wifi-ssid",
                "net",
                "--wifi-country",
                "GB",
                "--wifi-password-file",
                public_key,
            ],
            "WPA passphrase has 8 to 63",
        ),
        (
            vec!["--wifi-ssid", "net"],
            "--wifi-ssid needs --wifi-country",
        ),
        (vec!["--timezone", "Mars/Olympus"], "not an IANA time zone"),
        (vec!["--keymap", "qwerty"], "not an X keyboard layout"),
        (
            vec!["--ssh", "--ssh-key", private_key.to_str().unwrap()],
            "is this a private key?",
        ),
        (vec!["--user", "alice"], "--password-file FILE"),
        (
            vec!["--enable-i2c"],
            "needs a cloudinit-rpi image; this one is systemd",
        ),
        (
            vec!["--hostname", "x", "--init-format", "upstart"],
            "cardsmith knows systemd, cloudinit and cloudinit-rpi",
        ),
    ];
    for (extra, needle) in cases {
        let mut args = vec!["customize", img];
        args.extend(extra);
        let out = bench.run(&args);
        assert!(!out.status.success(), "{args:?} was accepted");
        assert!(
            stderr(&out).contains(needle),
            "{args:?}: expected {needle:?} in {}",
            stderr(&out)
        );
    }
    assert!(
        fs::read(&image).unwrap() == pristine,
        "a refused customisation changes nothing"
    );

    let junk = bench.path("junk.img");
    write_file(&junk, &image_bytes(2 * MIB, 3));
    let out = bench.run(&["customize", junk.to_str().unwrap(), "--hostname", "pi"]);
    assert_fails(&out, 1, &["no partition table"]);

    // A boot partition without cmdline.txt: the message names it and the way out.
    let bare = bench.path("bare.img");
    fs::copy(&image, &bare).unwrap();
    let at = format!("{}@@{BOOT_OFFSET}", bare.display());
    tool("mdel", &["-i", &at, "::cmdline.txt"]);
    let out = bench.run(&[
        "customize",
        bare.to_str().unwrap(),
        "--hostname",
        "pi",
        "--init-format",
        "systemd",
    ]);
    assert_fails(
        &out,
        1,
        &[
            "the boot partition (the FAT partition at byte 1048576, 41943040 bytes) has no cmdline.txt",
            "--init-format cloudinit",
        ],
    );
    assert!(
        !stderr(&out).contains("\"\" is not valid"),
        "{}",
        stderr(&out)
    );

    // An image that takes no customisation is refused before it is written.
    let target = bench.path("never.img");
    let out = bench.run(&[
        "write",
        "--os",
        "cardsmith demo (no customisation)",
        "--repo",
        &repo(),
        target.to_str().unwrap(),
        "--yes",
        "--hostname",
        "pi",
    ]);
    assert_fails(&out, 1, &["takes no customisation"]);
    assert!(!target.exists());
}

#[test]
fn a_gpt_image_is_customised_too() {
    let bench = Bench::new();
    let image = bench.path("gpt.img");
    fs::File::create(&image)
        .unwrap()
        .set_len(48 * MIB as u64)
        .unwrap();
    let table = "label: gpt\nstart=2048, size=81920, type=C12A7328-F81F-11D2-BA4B-00A0C93EC93B\n";
    let mut sfdisk = Command::new("sfdisk")
        .args(["--quiet", image.to_str().unwrap()])
        .stdin(std::process::Stdio::piped())
        .spawn()
        .expect("sfdisk (fdisk)");
    std::io::Write::write_all(&mut sfdisk.stdin.take().unwrap(), table.as_bytes()).unwrap();
    assert!(sfdisk.wait().unwrap().success());
    let part = bench.path("efi.fat");
    tool(
        "mkfs.vfat",
        &["-C", "-F", "32", part.to_str().unwrap(), "40960"],
    );
    let cmdline = bench.path("cmdline.txt");
    write_file(&cmdline, b"console=tty1 root=/dev/mmcblk0p2 rootwait\n");
    tool(
        "mcopy",
        &[
            "-i",
            part.to_str().unwrap(),
            cmdline.to_str().unwrap(),
            "::",
        ],
    );
    let fat = fs::read(&part).unwrap();
    let f = fs::OpenOptions::new().write(true).open(&image).unwrap();
    std::os::unix::fs::FileExt::write_all_at(&f, &fat, BOOT_OFFSET).unwrap();
    drop(f);
    let out = bench.run(&["customize", image.to_str().unwrap(), "--hostname", "gpt-pi"]);
    assert_ok(&out);
    assert!(
        stderr(&out).contains("systemd (found from the boot partition's files)"),
        "{}",
        stderr(&out)
    );
    assert_fat_clean(&image);
    assert_eq!(
        sh_words(
            &mtype(&image, "firstrun.sh"),
            "\"$IMAGER_CUSTOM\" set_hostname"
        ),
        ["gpt-pi"]
    );
}

#[test]
fn the_help_shows_the_hostname_counter_as_it_is_typed() {
    for verb in [&["write"][..], &["customize"], &["preset", "save"]] {
        let mut args = verb.to_vec();
        args.push("--help");
        let out = cardsmith(&args);
        assert_ok(&out);
        let help = stdout(&out);
        assert!(
            help.contains("Host name; `{n}` or `{n:02}` is a counter that a preset advances"),
            "{verb:?}: {help}"
        );
        assert!(
            !help.contains('\x1b'),
            "{verb:?}: no escape codes off a terminal"
        );
    }
}

fn mode_and_owner(path: &Path) -> (u32, u32, u32) {
    use std::os::unix::fs::MetadataExt;
    let meta = fs::metadata(path).unwrap();
    (meta.mode() & 0o777, meta.uid(), meta.gid())
}

#[test]
fn image_files_that_hold_secrets_are_private_and_belong_to_the_sudo_user() {
    let bench = Bench::new();
    let write = |image: &Path, settings: bool, env: &[(&str, &Path)]| {
        let mut args = vec![
            "write".to_owned(),
            "--os".into(),
            "cardsmith demo (systemd)".into(),
            "--repo".into(),
            repo(),
            image.to_str().unwrap().into(),
            "--yes".into(),
            "--force".into(),
        ];
        if settings {
            args.extend(settings_args(&bench));
        }
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let mut all = vec![
            ("XDG_CACHE_HOME", bench.path("cache")),
            ("XDG_CONFIG_HOME", bench.path("config")),
        ];
        all.extend(env.iter().map(|(k, v)| (*k, v.to_path_buf())));
        let env: Vec<(&str, &Path)> = all.iter().map(|(k, v)| (*k, v.as_path())).collect();
        let out = cardsmith_env(&args, &env);
        assert_ok(&out);
        out
    };
    // Without settings an image file is an ordinary file (the umask decides)...
    let umask = fs::read_to_string("/proc/self/status")
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("Umask:"))
        .map(|m| u32::from_str_radix(m.trim(), 8).unwrap())
        .unwrap();
    let plain = bench.path("plain.img");
    write(&plain, false, &[]);
    assert_eq!(mode_and_owner(&plain), (0o666 & !umask, 0, 0));
    // ... with them it holds password hashes and a Wi-Fi key: 0600, new or overwritten.
    let secret = bench.path("secret.img");
    write(&secret, true, &[]);
    assert_eq!(mode_and_owner(&secret).0, 0o600);
    write(&plain, true, &[]);
    assert_eq!(
        mode_and_owner(&plain).0,
        0o600,
        "an existing file is made private"
    );
    // Run through sudo, the file is the user's, not root's.
    let theirs = bench.path("theirs.img");
    write(
        &theirs,
        true,
        &[
            ("SUDO_UID", Path::new("65534")),
            ("SUDO_GID", Path::new("65534")),
        ],
    );
    assert_eq!(mode_and_owner(&theirs), (0o600, 65534, 65534));
    // customize on an image file others can read makes it private, and says so.
    let shared = bench.path("shared.img");
    write(&shared, false, &[]);
    fs::set_permissions(&shared, fs::Permissions::from_mode(0o644)).unwrap();
    let mut args = vec!["customize".to_owned(), shared.to_str().unwrap().into()];
    args.extend(settings_args(&bench));
    let out = bench.run(&args.iter().map(String::as_str).collect::<Vec<_>>());
    assert_ok(&out);
    assert_eq!(mode_and_owner(&shared).0, 0o600);
    assert!(
        stderr(&out).contains("could be read by others (mode 644); it is to hold password hashes"),
        "{}",
        stderr(&out)
    );
    // A file that is refused (no partition table) is not touched, its mode included.
    let junk = bench.path("junk.img");
    write_file(&junk, &image_bytes(2 * MIB, 3));
    fs::set_permissions(&junk, fs::Permissions::from_mode(0o644)).unwrap();
    let out = bench.run(&["customize", junk.to_str().unwrap(), "--hostname", "pi"]);
    assert_fails(&out, 1, &["no partition table"]);
    assert!(
        !stderr(&out).contains("could be read by others"),
        "{}",
        stderr(&out)
    );
    assert_eq!(mode_and_owner(&junk).0, 0o644);
}

#[test]
fn passwords_typed_on_a_terminal_are_never_shown_and_ctrl_c_gives_the_echo_back() {
    let bench = Bench::new();
    let image = bench.demo("card.img", "cardsmith demo (systemd)");
    let before = fs::read(&image).unwrap();
    let env = format!(
        "XDG_CACHE_HOME={} XDG_CONFIG_HOME={}",
        bench.path("cache").display(),
        bench.path("config").display()
    );
    let customize = format!(
        "{env} {} customize {} --hostname typed-pi --user alice",
        bin(),
        image.display()
    );

    // --password-file - on a terminal: a hidden prompt, one line.
    let secret = "s3cret-typed-here";
    let mut terminal = Terminal::start(&format!("{customize} --password-file -"));
    terminal.wait_for("Password for alice (not shown): ", 1);
    terminal.type_keys(&format!("{secret}\n"));
    let screen = terminal.finish();
    assert!(
        !screen.contains(secret),
        "the password was echoed: {screen}"
    );
    assert!(screen.contains("is ready for its first boot"), "{screen}");
    let script = String::from_utf8_lossy(&mtype(&image, "firstrun.sh")).into_owned();
    let hash = sh_words(script.as_bytes(), "/usr/lib/userconf-pi/userconf")[1].clone();
    assert!(crypt_accepts(secret, &hash), "{hash}");

    // Two different answers at the asked-twice prompt: a message that reads as English.
    let mut terminal = Terminal::start(&customize);
    terminal.wait_for("Password for alice: ", 1);
    terminal.type_keys("first-answer\n");
    terminal.wait_for("Password for alice, again: ", 1);
    terminal.type_keys("other-answer\n");
    let screen = terminal.finish();
    assert!(
        screen.contains(
            "the password for alice was typed differently the second time; nothing was changed"
        ),
        "{screen}"
    );
    assert!(!screen.contains("answer"), "echoed: {screen}");

    // Ctrl-C at the hidden prompt: cardsmith ends (130), nothing changed, and the shell
    // after it has its echo back.
    fs::write(&image, &before).unwrap();
    let mut terminal = Terminal::start(&format!(
        "sh -c 'trap true INT; {customize} --password-file -; echo \"exit=$?\"; stty -a'"
    ));
    terminal.wait_for("Password for alice (not shown): ", 1);
    terminal.type_keys("half-typ");
    std::thread::sleep(std::time::Duration::from_millis(200));
    terminal.type_keys("\x03");
    terminal.wait_for("exit=", 1);
    let screen = terminal.finish();
    assert!(screen.contains("exit=130"), "{screen}");
    let stty = &screen[screen.find("exit=").unwrap()..];
    let words: Vec<&str> = stty.split_whitespace().collect();
    assert!(
        words.contains(&"echo") && !words.contains(&"-echo"),
        "the terminal was left without echo: {stty}"
    );
    assert_eq!(fs::read(&image).unwrap(), before, "the image was changed");
}

/// An image made by scripts/os-image with `files` (path, content) in its root filesystem.
fn custom_image(bench: &Bench, name: &str, files: &[(&str, &str)]) -> PathBuf {
    let root = bench.path(&format!("{name}.root"));
    for (path, content) in files {
        let file = root.join(path);
        fs::create_dir_all(file.parent().unwrap()).unwrap();
        fs::write(&file, content).unwrap();
    }
    let image = bench.path(&format!("{name}.img"));
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../../scripts/os-image");
    tool(
        script,
        &[image.to_str().unwrap(), "40", "8", root.to_str().unwrap()],
    );
    image
}

#[test]
fn an_image_that_runs_no_first_boot_mechanism_is_refused_before_anything_is_written() {
    let bench = Bench::new();
    let image = custom_image(
        &bench,
        "appliance",
        &[(
            "etc/os-release",
            "NAME=\"LibreELEC\"\nVERSION_ID=\"12.0\"\n",
        )],
    );
    let packed = bench.path("appliance.img.xz");
    compress("xz", &["-T1"], &image, &packed);
    // Also as a download: no format is known for it, so it is downloaded whole and read
    // before anything is written.
    let server = common::http::Server::start();
    server.serve("/appliance.img.xz", fs::read(&packed).unwrap());
    let url = server.url("/appliance.img.xz");
    for source in [
        image.to_str().unwrap(),
        packed.to_str().unwrap(),
        url.as_str(),
    ] {
        let target = bench.path("card.img");
        let out = bench.run(&[
            "write",
            source,
            target.to_str().unwrap(),
            "--hostname",
            "media",
            "--yes",
        ]);
        assert_fails(
            &out,
            1,
            &[
                "LibreELEC cannot take first-boot settings",
                "neither systemd nor cloud-init",
                "Nothing was written: what the target holds is as it was.",
            ],
        );
        assert!(!target.exists(), "nothing was written for {source}");
    }
    let before = fs::read(&image).unwrap();
    let out = bench.run(&["customize", image.to_str().unwrap(), "--hostname", "media"]);
    assert_fails(&out, 1, &["neither systemd nor cloud-init"]);
    assert!(
        fs::read(&image).unwrap() == before,
        "customize left it as it was"
    );
    // Inspection says so too, and still shows what it found.
    let out = bench.run(&["inspect", packed.to_str().unwrap(), "--json"]);
    assert_ok(&out);
    let result = json_lines(&out).pop().unwrap();
    assert_eq!(result["inspection"]["os"]["name"], "LibreELEC", "{result}");
    assert_eq!(result["inspection"]["systemd"], false, "{result}");
    let refused = result["choice"]["refused"].as_str().unwrap();
    assert!(
        refused.contains("neither systemd nor cloud-init"),
        "{refused}"
    );
}

#[test]
fn inspection_picks_the_mechanism_the_image_runs_and_refuses_what_it_cannot_take() {
    let bench = Bench::new();
    // A custom image: systemd, the FAT partition at /boot/firmware, no Raspberry Pi
    // helpers, no SSH server.
    let image = custom_image(
        &bench,
        "custom",
        &[
            (
                "etc/os-release",
                "PRETTY_NAME=\"My Distro 3\"\nVERSION_CODENAME=tern\n",
            ),
            (
                "etc/fstab",
                "/dev/mmcblk0p1 /boot/firmware vfat defaults,nofail 0 2\n",
            ),
            (
                "etc/passwd",
                "root:x:0:0::/root:/bin/sh\nkim:x:1000:1000::/home/kim:/bin/sh\n",
            ),
            ("usr/lib/systemd/systemd", ""),
            ("usr/sbin/wpa_supplicant", ""),
        ],
    );
    let out = bench.run(&["inspect", image.to_str().unwrap()]);
    assert_ok(&out);
    let text = stdout(&out);
    for line in [
        "system: My Distro 3 (version tern)",
        "boot partition: mounted at /boot/firmware by fstab (nofail)",
        "uid-1000 user: kim",
        "first-boot format: systemd (systemd runs firstrun.sh (no cloud-init)); cmdline.txt names /boot/firmware/firstrun.sh",
        "Wi-Fi: wpa_supplicant.conf",
        "SSH: refused: the image has no openssh-server",
    ] {
        assert!(text.contains(line), "{line:?} in:\n{text}");
    }
    let target = bench.path("card.img");
    let out = bench.run(&[
        "write",
        image.to_str().unwrap(),
        target.to_str().unwrap(),
        "--ssh",
        "--ssh-key",
        bench.path("key.pub").to_str().unwrap(),
        "--yes",
    ]);
    assert_fails(
        &out,
        1,
        &[
            "SSH: refused: the image has no openssh-server",
            "Nothing was written: what the target holds is as it was.",
        ],
    );
    assert!(!target.exists());
    // What it can take goes on, with the path its first boot finds, and a warning.
    let out = bench.run(&[
        "write",
        image.to_str().unwrap(),
        target.to_str().unwrap(),
        "--hostname",
        "tern-1",
        "--yes",
    ]);
    assert_ok(&out);
    let err = stderr(&out);
    assert!(
        err.contains("with nofail, so the first boot may run before it is there"),
        "{err}"
    );
    let cmdline = String::from_utf8(mtype(&target, "cmdline.txt")).unwrap();
    assert!(
        cmdline.contains(" systemd.run=/boot/firmware/firstrun.sh "),
        "{cmdline}"
    );
    let script = String::from_utf8(mtype(&target, "firstrun.sh")).unwrap();
    // Raspberry Pi OS's initramfs cuts the script at this line and puts its own end there.
    let cut = script
        .lines()
        .position(|l| l.contains("rm") && l.ends_with("firstrun.sh"))
        .expect("a line matching rm.*firstrun\\.sh$");
    assert_eq!(script.lines().nth(cut + 1), Some("exit 0"), "{script}");
}

#[test]
fn inspect_reads_a_download_and_a_card_without_changing_either() {
    let bench = Bench::new();
    let server = common::http::Server::start();
    let packed = fs::read(format!("{SAMPLE}/demo-systemd.img.xz")).unwrap();
    server.serve("/images/demo.img.xz", packed);
    let url = server.url("/images/demo.img.xz");
    let out = bench.run(&["inspect", &url, "--json"]);
    assert_ok(&out);
    let result = json_lines(&out).pop().unwrap();
    assert_eq!(
        result["inspection"]["os"]["codename"], "bookworm",
        "{result}"
    );
    assert_eq!(result["inspection"]["imager_fixup"], true, "{result}");
    assert_eq!(result["inspection"]["first_user"], "pi", "{result}");
    assert_eq!(result["choice"]["format"], "systemd", "{result}");
    assert_eq!(result["choice"]["script"], "/boot/firstrun.sh", "{result}");
    let effects = result["effects"].as_array().unwrap();
    assert!(
        effects
            .iter()
            .any(|e| e["setting"] == "user" && e["how"].as_str().unwrap().contains("userconf")),
        "{result}"
    );
    // A card (a loop device this test made) is read where it is, and left as it was.
    let image = bench.demo("card.img", "cardsmith demo (cloud-init)");
    let dev = LoopDevice::attach(&image);
    let before = sha256sum(&image);
    let out = bench.run(&["inspect", dev.arg(), "--init-format", "systemd"]);
    assert_ok(&out);
    let text = stdout(&out);
    assert!(
        text.contains("first-boot format: systemd (--init-format says systemd); cmdline.txt names /boot/firmware/firstrun.sh"),
        "{text}"
    );
    assert!(
        text.contains("note: --init-format says systemd, but inspection finds cloudinit-rpi"),
        "{text}"
    );
    drop(dev);
    assert_eq!(sha256sum(&image), before, "inspection changed nothing");
}
