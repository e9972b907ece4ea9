//! The `systemd` format (Raspberry Pi OS Bookworm and older): a `firstrun.sh` on the boot
//! partition that systemd runs once, named on `cmdline.txt`.

use crate::quote::sh;
use crate::settings::{Settings, Ssh};

/// The entries appended to cmdline.txt's single line to run the script once.
const RUN: [&str; 3] = [
    "systemd.run=/boot/firstrun.sh",
    "systemd.run_success_action=reboot",
    "systemd.unit=kernel-command-line.target",
];

/// Entries of an earlier customisation, which must not pile up.
fn is_hook(word: &[u8]) -> bool {
    word.starts_with(b"systemd.run=")
        || word.starts_with(b"systemd.run_success_action=")
        || word == b"systemd.unit=kernel-command-line.target"
}

/// The new cmdline.txt: the old line (without an earlier hook), the Wi-Fi regulatory
/// domain (replacing an earlier one), and the first-run hook.
pub fn cmdline(original: &[u8], settings: &Settings) -> Vec<u8> {
    let mut line = base_cmdline(original, settings);
    for word in RUN {
        line.push(b' ');
        line.extend_from_slice(word.as_bytes());
    }
    line.push(b'\n');
    line
}

/// cmdline.txt with only the Wi-Fi region set (for cloud-init images).
pub fn with_regdom(original: &[u8], settings: &Settings) -> Vec<u8> {
    let mut line = base_cmdline(original, settings);
    line.push(b'\n');
    line
}

fn base_cmdline(original: &[u8], settings: &Settings) -> Vec<u8> {
    let first = original.split(|&b| b == b'\n').next().unwrap_or_default();
    let regdom = settings
        .wifi
        .as_ref()
        .map(|w| format!("cfg80211.ieee80211_regdom={}", w.country));
    let mut words: Vec<&[u8]> = first
        .split(|&b| b == b' ')
        .filter(|w| !w.is_empty() && !is_hook(w))
        .filter(|w| regdom.is_none() || !w.starts_with(b"cfg80211.ieee80211_regdom="))
        .collect();
    if let Some(r) = &regdom {
        words.push(r.as_bytes());
    }
    words.join(&b' ')
}

/// Whether imager_custom's set_wlan can take the SSID: it writes it unquoted into a
/// NetworkManager keyfile and parses options first, so only plain printable text, not
/// starting with '-' or a space, goes that way.
fn helper_safe_ssid(ssid: &[u8]) -> bool {
    let plain = |b: &u8| b.is_ascii_alphanumeric() || b" -_.@+:,()'\"!$%&*/?=".contains(b);
    ssid.iter().all(plain)
        && !ssid.starts_with(b"-")
        && !ssid.starts_with(b" ")
        && !ssid.ends_with(b" ")
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
    uuid: &str,
) -> Vec<u8> {
    let mut s = Script::default();
    s.line("#!/bin/sh");
    s.line("# Written by cardsmith: first-boot settings. Runs once, then removes itself.");
    s.line("set +e");
    s.line("IMAGER_CUSTOM=/usr/lib/raspberrypi-sys-mods/imager_custom");
    s.line("BOOT=/boot");
    s.line("[ -f /boot/firmware/firstrun.sh ] && BOOT=/boot/firmware");
    if let Some(name) = hostname {
        hostname_part(&mut s, name);
    }
    if let Some(ssh) = &settings.ssh {
        ssh_part(&mut s, ssh);
    }
    if let (Some(user), Some(hash)) = (&settings.user, password_hash) {
        user_part(&mut s, &user.name, hash, settings.passwordless_sudo);
    }
    if let Some(wifi) = &settings.wifi {
        let ssid_hex: String = wifi.ssid.iter().map(|b| format!("{b:02x}")).collect();
        if helper_safe_ssid(&wifi.ssid) {
            let hidden: &[u8] = if wifi.hidden { b" -h" } else { b"" };
            let args = [
                hidden,
                b" ",
                &sh(&wifi.ssid),
                b" ",
                &sh(wifi.psk.as_bytes()),
                b" ",
                &sh(wifi.country.as_bytes()),
            ]
            .concat();
            s.line("if [ -f \"$IMAGER_CUSTOM\" ]; then");
            s.raw(b"  \"$IMAGER_CUSTOM\" set_wlan", &args);
            s.line("elif [ -d /etc/NetworkManager/system-connections ]; then");
        } else {
            s.line("if [ -d /etc/NetworkManager/system-connections ]; then");
        }
        // NetworkManager takes any SSID as a list of byte values, so nothing needs quoting.
        let ssid_bytes: String = wifi.ssid.iter().map(|b| format!("{b};")).collect();
        s.line(
            "  cat >/etc/NetworkManager/system-connections/preconfigured.nmconnection <<'NMEOF'",
        );
        s.line("[connection]");
        s.line("id=preconfigured");
        s.line(&format!("uuid={uuid}"));
        s.line("type=wifi");
        s.line("[wifi]");
        s.line("mode=infrastructure");
        s.line(&format!("ssid={ssid_bytes}"));
        if wifi.hidden {
            s.line("hidden=true");
        }
        s.line("[wifi-security]");
        s.line("key-mgmt=wpa-psk");
        s.line(&format!("psk={}", wifi.psk));
        s.line("[ipv4]");
        s.line("method=auto");
        s.line("[ipv6]");
        s.line("addr-gen-mode=default");
        s.line("method=auto");
        s.line("NMEOF");
        s.line("  chmod 600 /etc/NetworkManager/system-connections/preconfigured.nmconnection");
        s.line("  rfkill unblock wifi");
        s.line("else");
        // wpa_supplicant takes any SSID as hex, so nothing needs quoting there either.
        s.line("  cat >/etc/wpa_supplicant/wpa_supplicant.conf <<'WPAEOF'");
        s.line(&format!("country={}", wifi.country));
        s.line("ctrl_interface=DIR=/var/run/wpa_supplicant GROUP=netdev");
        s.line("ap_scan=1");
        s.line("update_config=1");
        s.line("network={");
        if wifi.hidden {
            s.line("\tscan_ssid=1");
        }
        s.line(&format!("\tssid={ssid_hex}"));
        s.line(&format!("\tpsk={}", wifi.psk));
        s.line("}");
        s.line("WPAEOF");
        s.line("  chmod 600 /etc/wpa_supplicant/wpa_supplicant.conf");
        s.line("  rfkill unblock wifi");
        s.line(
            "  for f in /var/lib/systemd/rfkill/*:wlan; do [ -e \"$f\" ] && echo 0 >\"$f\"; done",
        );
        s.line("fi");
    }
    if settings.keymap.is_some() || settings.timezone.is_some() {
        locale_part(&mut s, settings);
    }
    s.line("rm -f \"$BOOT/firstrun.sh\"");
    s.line("sed -i 's| systemd\\.run=[^ ]*||g; s| systemd\\.run_success_action=[^ ]*||g; s| systemd\\.unit=kernel-command-line\\.target||g' \"$BOOT/cmdline.txt\"");
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
            wifi: Some(Wifi {
                ssid: b"net".to_vec(),
                psk: "ab".repeat(32),
                hidden: false,
                country: country.into(),
            }),
            ..Settings::default()
        }
    }

    #[test]
    fn a_second_customisation_replaces_the_hook_and_the_region() {
        let original = b"console=tty1 root=PARTUUID=1234-02 rootwait\n";
        let first = cmdline(original, &with_wifi("GB"));
        let second = cmdline(&first, &with_wifi("DE"));
        assert_eq!(
            String::from_utf8(second).unwrap(),
            "console=tty1 root=PARTUUID=1234-02 rootwait cfg80211.ieee80211_regdom=DE \
             systemd.run=/boot/firstrun.sh systemd.run_success_action=reboot \
             systemd.unit=kernel-command-line.target\n"
        );
    }

    #[test]
    fn only_plain_ssids_go_through_the_helper() {
        assert!(helper_safe_ssid(b"Home WiFi 5G"));
        for odd in [
            &b"-h"[..],
            b" lead",
            b"a;b",
            b"a\\b",
            b"line\nbreak",
            b"caf\xc3\xa9",
        ] {
            assert!(!helper_safe_ssid(odd), "{odd:?}");
        }
    }
}
