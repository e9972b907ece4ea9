//! The `systemd` format (Raspberry Pi OS Bookworm and older): a `firstrun.sh` on the boot
//! partition that systemd runs once, named on `cmdline.txt`.

use crate::network;
use crate::quote::sh;
use crate::settings::{Settings, Ssh, StaticIp};

/// Where firstrun.sh is named on cmdline.txt: the path Raspberry Pi OS Bookworm's
/// initramfs (`imager_fixup`) rewrites to `/boot/firmware/firstrun.sh`, or the path the
/// FAT partition really has where nothing rewrites it.
pub const LEGACY_SCRIPT: &str = "/boot/firstrun.sh";
pub const FIRMWARE_SCRIPT: &str = "/boot/firmware/firstrun.sh";

/// The entries appended to cmdline.txt's single line to run the script once.
fn run_words(script: &str) -> [String; 3] {
    [
        format!("systemd.run={script}"),
        "systemd.run_success_action=reboot".to_owned(),
        "systemd.unit=kernel-command-line.target".to_owned(),
    ]
}

/// Entries of an earlier customisation, which must not pile up.
fn is_hook(word: &[u8]) -> bool {
    word.starts_with(b"systemd.run=")
        || word.starts_with(b"systemd.run_success_action=")
        || word == b"systemd.unit=kernel-command-line.target"
}

/// The new cmdline.txt: the old line (without an earlier hook), the Wi-Fi regulatory
/// domain (replacing an earlier one), and the hook that runs `script` once.
pub fn cmdline(original: &[u8], settings: &Settings, script: &str) -> Vec<u8> {
    let mut line = base_cmdline(original, settings, &[]);
    for word in run_words(script) {
        line.push(b' ');
        line.extend_from_slice(word.as_bytes());
    }
    line.push(b'\n');
    line
}

/// cmdline.txt for cloud-init images: the Wi-Fi region, and `ds=nocloud;i=<instance>`,
/// which puts cloud-init's NoCloud source in local mode (upstream cloud-init refuses a
/// file seed otherwise). An earlier `ds=` word's other fields (a seed address `s=`) stay.
pub fn cloud_cmdline(
    original: &[u8],
    settings: &Settings,
    instance: &str,
    seed: Option<&str>,
) -> Vec<u8> {
    let first = original.split(|&b| b == b'\n').next().unwrap_or_default();
    let earlier = first
        .split(|&b| b == b' ')
        .find(|w| w.starts_with(b"ds=nocloud"))
        .map(|w| String::from_utf8_lossy(w).into_owned());
    let mut kept: Vec<String> = earlier
        .as_deref()
        .map(|w| {
            w.split(';')
                .skip(1)
                .filter(|f| !f.starts_with("i=") && !f.is_empty())
                .map(str::to_owned)
                .collect()
        })
        .unwrap_or_default();
    // A seed address already there wins over the one derived from the image.
    if let Some(seed) = seed.filter(|_| !kept.iter().any(|f| f.starts_with("s="))) {
        kept.push(format!("s={seed}"));
    }
    let ds = std::iter::once("ds=nocloud".to_owned())
        .chain(kept)
        .chain(std::iter::once(format!("i={instance}")))
        .collect::<Vec<_>>()
        .join(";");
    let mut line = base_cmdline(original, settings, &[b"ds="]);
    line.push(b' ');
    line.extend_from_slice(ds.as_bytes());
    line.push(b'\n');
    line
}

/// The first line of cmdline.txt without earlier hooks, earlier words starting with one of
/// `drop`, and with the Wi-Fi region (replacing an earlier one).
fn base_cmdline(original: &[u8], settings: &Settings, drop: &[&[u8]]) -> Vec<u8> {
    let first = original.split(|&b| b == b'\n').next().unwrap_or_default();
    let regdom = settings
        .wifi_country()
        .map(|c| format!("cfg80211.ieee80211_regdom={c}"));
    let mut words: Vec<&[u8]> = first
        .split(|&b| b == b' ')
        .filter(|w| !w.is_empty() && !is_hook(w))
        .filter(|w| !drop.iter().any(|d| w.starts_with(d)))
        .filter(|w| regdom.is_none() || !w.starts_with(b"cfg80211.ieee80211_regdom="))
        .collect();
    if let Some(r) = &regdom {
        words.push(r.as_bytes());
    }
    words.join(&b' ')
}

/// Whether SSH logins may use the password: asked for, or the only way in (no keys).
pub fn password_logins(ssh: &Ssh) -> bool {
    ssh.password_auth || ssh.keys.is_empty()
}

/// `firstrun.sh`: POSIX sh. It prefers Raspberry Pi OS's own helpers (imager_custom,
/// userconf) and falls back to plain commands; then it deletes itself and takes its hook
/// off cmdline.txt (leaving whatever else first boot changed there, such as the disk id).
pub fn firstrun(
    settings: &Settings,
    hostname: Option<&str>,
    password_hash: Option<&str>,
    uuids: &[String],
) -> Vec<u8> {
    let mut s = Script::default();
    s.line("#!/bin/sh");
    s.line("# Written by cardsmith: first-boot settings. Runs once, then removes itself.");
    s.line("set +e");
    s.line("IMAGER_CUSTOM=/usr/lib/raspberrypi-sys-mods/imager_custom");
    // Where the script is: systemd runs it by the path cmdline.txt names.
    s.line("case \"$0\" in");
    s.line("*/firstrun.sh) BOOT=${0%/firstrun.sh} ;;");
    s.line("*) BOOT=/boot; [ -f /boot/firmware/firstrun.sh ] && BOOT=/boot/firmware ;;");
    s.line("esac");
    if let Some(name) = hostname {
        hostname_part(&mut s, name);
    }
    if let Some(ssh) = &settings.ssh {
        ssh_part(&mut s, ssh);
    }
    if let (Some(user), Some(hash)) = (&settings.user, password_hash) {
        user_part(&mut s, &user.name, hash, settings.passwordless_sudo);
    }
    if !settings.wifi.is_empty() || !settings.static_ip.is_empty() {
        network_part(&mut s, settings, uuids);
    }
    if settings.keymap.is_some() || settings.timezone.is_some() {
        locale_part(&mut s, settings);
    }
    s.line("sed -i 's| systemd\\.run=[^ ]*||g; s| systemd\\.run_success_action=[^ ]*||g; s| systemd\\.unit=kernel-command-line\\.target||g' \"$BOOT/cmdline.txt\"");
    // Raspberry Pi OS Bookworm's initramfs (imager_fixup) cuts this script at its first
    // line matching `rm.*firstrun\.sh$` and puts its own ending there (remove the script
    // from /boot/firmware, take every systemd.* word off cmdline.txt, exit 0): the next
    // line must stay the script's last command, and end exactly so.
    s.line("rm -f $BOOT/firstrun.sh");
    s.line("exit 0");
    s.0
}

fn hostname_part(s: &mut Script, name: &str) {
    let q = sh(name.as_bytes());
    s.line("CURRENT_HOSTNAME=$(tr -d ' \\t\\n\\r' </etc/hostname)");
    s.line("if [ -f \"$IMAGER_CUSTOM\" ]; then");
    s.raw(b"  \"$IMAGER_CUSTOM\" set_hostname ", &q);
    s.line("else");
    s.raw(
        b"  printf '%s\\n' ",
        &[q.as_slice(), b" >/etc/hostname"].concat(),
    );
    // The name is a validated label ([a-z0-9-]), safe inside the sed expression.
    s.raw(
        b"  sed -i \"s/127.0.1.1.*$CURRENT_HOSTNAME/127.0.1.1\\t\"",
        &[q.as_slice(), b"\"/g\" /etc/hosts"].concat(),
    );
    s.line("fi");
}

fn ssh_part(s: &mut Script, ssh: &Ssh) {
    let passwords = password_logins(ssh);
    let keys: Vec<Vec<u8>> = ssh.keys.iter().map(|k| sh(k.as_bytes())).collect();
    s.line("FIRSTUSER=$(getent passwd 1000 | cut -d: -f1)");
    s.line("FIRSTUSERHOME=$(getent passwd 1000 | cut -d: -f6)");
    s.line("if [ -f \"$IMAGER_CUSTOM\" ]; then");
    if passwords {
        // Without -k the helper keeps password logins; keys are added by hand below.
        s.line("  \"$IMAGER_CUSTOM\" enable_ssh");
    } else {
        let args: Vec<u8> = keys
            .iter()
            .flat_map(|k| [b" ".as_slice(), k].concat())
            .collect();
        s.raw(b"  \"$IMAGER_CUSTOM\" enable_ssh -k", &args);
    }
    s.line("else");
    if !passwords {
        s.line("  printf 'PasswordAuthentication no\\n' >/etc/ssh/sshd_config.d/cardsmith.conf");
    }
    s.line("  systemctl enable ssh");
    s.line("fi");
    if !keys.is_empty() {
        let guard = if passwords {
            "true"
        } else {
            "[ ! -f \"$IMAGER_CUSTOM\" ]"
        };
        s.line(&format!("if {guard}; then"));
        s.line("  install -o \"$FIRSTUSER\" -m 700 -d \"$FIRSTUSERHOME/.ssh\"");
        for key in &keys {
            s.raw(
                b"  printf '%s\\n' ",
                &[
                    key.as_slice(),
                    b" >>\"$FIRSTUSERHOME/.ssh/authorized_keys\"",
                ]
                .concat(),
            );
        }
        s.line("  chown \"$FIRSTUSER:$FIRSTUSER\" \"$FIRSTUSERHOME/.ssh/authorized_keys\"");
        s.line("  chmod 600 \"$FIRSTUSERHOME/.ssh/authorized_keys\"");
        s.line("fi");
    }
}

fn user_part(s: &mut Script, name: &str, hash: &str, passwordless_sudo: bool) {
    let name = sh(name.as_bytes());
    let hash = sh(hash.as_bytes());
    s.line("FIRSTUSER=$(getent passwd 1000 | cut -d: -f1)");
    s.line("if [ -f /usr/lib/userconf-pi/userconf ]; then");
    s.raw(
        b"  /usr/lib/userconf-pi/userconf ",
        &[name.as_slice(), b" ", hash.as_slice()].concat(),
    );
    s.line("else");
    s.raw(
        b"  printf '%s:%s\\n' \"$FIRSTUSER\" ",
        &[hash.as_slice(), b" | chpasswd -e"].concat(),
    );
    s.raw(
        b"  if [ \"$FIRSTUSER\" != ",
        &[name.as_slice(), b" ]; then"].concat(),
    );
    s.raw(
        b"    usermod -l ",
        &[name.as_slice(), b" \"$FIRSTUSER\""].concat(),
    );
    s.raw(
        b"    usermod -m -d /home/",
        &[name.as_slice(), b" ", name.as_slice()].concat(),
    );
    s.raw(
        b"    groupmod -n ",
        &[name.as_slice(), b" \"$FIRSTUSER\""].concat(),
    );
    s.line("  fi");
    s.line("fi");
    if passwordless_sudo {
        s.raw(
            b"printf '%s ALL=(ALL) NOPASSWD: ALL\\n' ",
            &[name.as_slice(), b" >/etc/sudoers.d/010_cardsmith-nopasswd"].concat(),
        );
        s.line("chmod 440 /etc/sudoers.d/010_cardsmith-nopasswd");
    }
}

/// Wi-Fi networks and fixed addresses, for what the image uses: NetworkManager keyfiles,
/// else netplan, else wpa_supplicant (and dhcpcd for a fixed Ethernet address). Raspberry
/// Pi OS's `imager_custom set_wlan` writes only one network and no fixed address, so the
/// keyfiles are written here. `uuids` holds one id per Wi-Fi network, then one for
/// Ethernet.
fn network_part(s: &mut Script, settings: &Settings, uuids: &[String]) {
    let count = settings.wifi.len();
    s.line(&format!("if [ -d {} ]; then", network::CONNECTIONS));
    for (path, text) in network::keyfiles(settings, uuids, true) {
        s.line(&format!("  cat >{path} <<'NMEOF'"));
        for line in text.lines() {
            s.line(line);
        }
        s.line("NMEOF");
        s.line(&format!("  chmod 600 {path}"));
    }
    unblock_wifi(s, count);
    // netplan's YAML holds only UTF-8 text; a network with another SSID goes the next way.
    if settings
        .wifi
        .iter()
        .all(|w| std::str::from_utf8(&w.ssid).is_ok())
    {
        // Reached only without NetworkManager's keyfile folder: netplan renders for
        // systemd-networkd there, which knows no network priorities.
        if let Ok(yaml) = crate::cloudinit::netplan(settings, false, false, true) {
            s.line("elif [ -d /etc/netplan ]; then");
            s.line("  cat >/etc/netplan/90-cardsmith.yaml <<'NPEOF'");
            for line in yaml.lines() {
                s.line(line);
            }
            s.line("NPEOF");
            s.line("  chmod 600 /etc/netplan/90-cardsmith.yaml");
            unblock_wifi(s, count);
        }
    }
    s.line("else");
    if count > 0 {
        // wpa_supplicant takes any SSID as hex, so nothing needs quoting there either.
        s.line("  cat >/etc/wpa_supplicant/wpa_supplicant.conf <<'WPAEOF'");
        s.line(&format!("country={}", settings.wifi[0].country));
        s.line("ctrl_interface=DIR=/var/run/wpa_supplicant GROUP=netdev");
        s.line("ap_scan=1");
        s.line("update_config=1");
        for (n, wifi) in settings.wifi.iter().enumerate() {
            let ssid_hex: String = wifi.ssid.iter().map(|b| format!("{b:02x}")).collect();
            s.line("network={");
            if wifi.hidden {
                s.line("\tscan_ssid=1");
            }
            s.line(&format!("\tssid={ssid_hex}"));
            s.line(&format!("\tpsk={}", wifi.psk));
            s.line(&format!("\tpriority={}", count - n));
            s.line("}");
        }
        s.line("WPAEOF");
        s.line("  chmod 600 /etc/wpa_supplicant/wpa_supplicant.conf");
        unblock_wifi(s, count);
    }
    // Raspberry Pi OS before Bookworm: dhcpcd takes fixed addresses.
    let dhcpcd: Vec<&StaticIp> = settings.static_ip.iter().collect();
    if !dhcpcd.is_empty() {
        s.line("  if [ -f /etc/dhcpcd.conf ]; then");
        s.line("    cat >>/etc/dhcpcd.conf <<'DHEOF'");
        for fixed in dhcpcd {
            s.line(&format!("interface {}", fixed.interface.device()));
            s.line(&format!("static ip_address={}", fixed.cidr()));
            if let Some(gw) = fixed.gateway {
                s.line(&format!("static routers={gw}"));
            }
            if !fixed.dns.is_empty() {
                let servers: Vec<String> = fixed.dns.iter().map(|d| d.to_string()).collect();
                s.line(&format!("static domain_name_servers={}", servers.join(" ")));
            }
        }
        s.line("DHEOF");
        s.line("  fi");
    }
    s.line("fi");
}

fn unblock_wifi(s: &mut Script, networks: usize) {
    if networks == 0 {
        return;
    }
    s.line("  rfkill unblock wifi");
    s.line("  for f in /var/lib/systemd/rfkill/*:wlan; do [ -e \"$f\" ] && echo 0 >\"$f\"; done");
}

fn locale_part(s: &mut Script, settings: &Settings) {
    s.line("if [ -f \"$IMAGER_CUSTOM\" ]; then");
    if let Some(map) = &settings.keymap {
        s.raw(b"  \"$IMAGER_CUSTOM\" set_keymap ", &sh(map.as_bytes()));
    }
    if let Some(tz) = &settings.timezone {
        s.raw(b"  \"$IMAGER_CUSTOM\" set_timezone ", &sh(tz.as_bytes()));
    }
    s.line("else");
    if let Some(tz) = &settings.timezone {
        s.line("  rm -f /etc/localtime");
        s.raw(
            b"  printf '%s\\n' ",
            &[sh(tz.as_bytes()).as_slice(), b" >/etc/timezone"].concat(),
        );
        s.line("  dpkg-reconfigure -f noninteractive tzdata");
    }
    if let Some(map) = &settings.keymap {
        // The layout comes from the bundled list: plain letters.
        s.line("  cat >/etc/default/keyboard <<'KBEOF'");
        s.line("XKBMODEL=\"pc105\"");
        s.line(&format!("XKBLAYOUT=\"{map}\""));
        s.line("XKBVARIANT=\"\"");
        s.line("XKBOPTIONS=\"\"");
        s.line("KBEOF");
        s.line("  dpkg-reconfigure -f noninteractive keyboard-configuration");
    }
    s.line("fi");
}

#[derive(Default)]
struct Script(Vec<u8>);

impl Script {
    fn line(&mut self, text: &str) {
        self.0.extend_from_slice(text.as_bytes());
        self.0.push(b'\n');
    }

    /// A line made of a literal start and quoted bytes.
    fn raw(&mut self, start: &[u8], rest: &[u8]) {
        self.0.extend_from_slice(start);
        self.0.extend_from_slice(rest);
        self.0.push(b'\n');
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::settings::Wifi;

    fn with_wifi(country: &str) -> Settings {
        Settings {
            wifi: vec![Wifi {
                ssid: b"net".to_vec(),
                psk: "ab".repeat(32),
                hidden: false,
                country: country.into(),
            }],
            ..Settings::default()
        }
    }

    #[test]
    fn a_second_customisation_replaces_the_hook_and_the_region() {
        let original = b"console=tty1 root=PARTUUID=1234-02 rootwait\n";
        let first = cmdline(original, &with_wifi("GB"), LEGACY_SCRIPT);
        let second = cmdline(&first, &with_wifi("DE"), FIRMWARE_SCRIPT);
        assert_eq!(
            String::from_utf8(second).unwrap(),
            "console=tty1 root=PARTUUID=1234-02 rootwait cfg80211.ieee80211_regdom=DE \
             systemd.run=/boot/firmware/firstrun.sh systemd.run_success_action=reboot \
             systemd.unit=kernel-command-line.target\n"
        );
    }

    #[test]
    fn cloud_init_gets_its_instance_on_the_command_line_once() {
        let original = b"console=tty1 root=PARTUUID=1234-02 rootwait resize\n";
        let first = cloud_cmdline(original, &Settings::default(), "cardsmith-1", None);
        let second = cloud_cmdline(&first, &with_wifi("DE"), "cardsmith-2", None);
        assert_eq!(
            String::from_utf8(second).unwrap(),
            "console=tty1 root=PARTUUID=1234-02 rootwait resize cfg80211.ieee80211_regdom=DE \
             ds=nocloud;i=cardsmith-2\n"
        );
        let seeded = b"root=/dev/sda2 ds=nocloud;s=file:///boot/firmware/;i=old";
        assert_eq!(
            String::from_utf8(cloud_cmdline(
                seeded,
                &Settings::default(),
                "new",
                Some("file:///x/")
            ))
            .unwrap(),
            "root=/dev/sda2 ds=nocloud;s=file:///boot/firmware/;i=new\n"
        );
        assert_eq!(
            String::from_utf8(cloud_cmdline(
                b"root=/dev/sda2",
                &Settings::default(),
                "n",
                Some("file:///boot/")
            ))
            .unwrap(),
            "root=/dev/sda2 ds=nocloud;s=file:///boot/;i=n\n"
        );
    }

    #[test]
    fn the_fixup_finds_the_line_it_cuts_at() {
        let s = with_wifi("GB");
        let script = String::from_utf8(firstrun(&s, Some("pi"), None, &["u".into()])).unwrap();
        let cut = regex_like_fixup(&script).expect("a line matching rm.*firstrun\\.sh$");
        assert!(
            script[cut..].lines().nth(1) == Some("exit 0"),
            "only exit 0 follows: {}",
            &script[cut..]
        );
        let before = &script[..cut];
        assert!(
            before.contains("sed -i 's| systemd"),
            "the hook is taken off first"
        );
    }

    /// Where `sed -n '/rm.*firstrun\.sh$/q;p'` stops: the first line holding "rm" followed,
    /// anywhere later, by a line end of "firstrun.sh".
    fn regex_like_fixup(script: &str) -> Option<usize> {
        let mut at = 0;
        for line in script.split_inclusive('\n') {
            let body = line.trim_end_matches('\n');
            if body.ends_with("firstrun.sh")
                && body.find("rm").is_some_and(|i| i + 2 <= body.len() - 11)
            {
                return Some(at);
            }
            at += line.len();
        }
        None
    }
}
