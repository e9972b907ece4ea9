//! The `systemd` format (Raspberry Pi OS Bookworm and older): a `firstrun.sh` on the boot
//! partition that systemd runs once, named on `cmdline.txt`.

use crate::quote::sh;
use crate::settings::Settings;

/// Appended to cmdline.txt's single line, after the Wi-Fi region when there is one.
pub const CMDLINE_RUN: &str =
    "systemd.run=/boot/firstrun.sh systemd.run_success_action=reboot systemd.unit=kernel-command-line.target";

/// The new cmdline.txt: the old line, the Wi-Fi regulatory domain, and the first-run hook.
pub fn cmdline(original: &[u8], settings: &Settings) -> Vec<u8> {
    let mut line = base_cmdline(original, settings);
    line.push(b' ');
    line.extend_from_slice(CMDLINE_RUN.as_bytes());
    line.push(b'\n');
    line
}

/// cmdline.txt with only the Wi-Fi region added (for cloud-init images).
pub fn with_regdom(original: &[u8], settings: &Settings) -> Vec<u8> {
    let mut line = base_cmdline(original, settings);
    line.push(b'\n');
    line
}

/// The line the script puts back once it ran: the old one, with the Wi-Fi region.
fn base_cmdline(original: &[u8], settings: &Settings) -> Vec<u8> {
    let first = original.split(|&b| b == b'\n').next().unwrap_or_default();
    let mut line = first.trim_ascii_end().to_vec();
    if let Some(wifi) = &settings.wifi {
        let regdom = format!("cfg80211.ieee80211_regdom={}", wifi.country);
        if !contains_word(&line, regdom.as_bytes()) {
            line.extend_from_slice(format!(" {regdom}").as_bytes());
        }
    }
    line
}

fn contains_word(line: &[u8], word: &[u8]) -> bool {
    line.split(|&b| b == b' ').any(|w| w == word)
}

/// `firstrun.sh`: POSIX sh. It prefers Raspberry Pi OS's own helpers (imager_custom,
/// userconf) and falls back to plain commands; then it deletes itself and puts cmdline.txt
/// back as it was (plus the Wi-Fi region).
pub fn firstrun(
    settings: &Settings,
    hostname: Option<&str>,
    password_hash: Option<&str>,
    original_cmdline: &[u8],
) -> Vec<u8> {
    let mut s = Script::default();
    s.line("#!/bin/sh");
    s.line("# Written by cardsmith: first-boot settings. Runs once, then removes itself.");
    s.line("set +e");
    s.line("IMAGER_CUSTOM=/usr/lib/raspberrypi-sys-mods/imager_custom");
    s.line("BOOT=/boot");
    s.line("[ -f /boot/firmware/firstrun.sh ] && BOOT=/boot/firmware");
    if let Some(name) = hostname {
        let q = sh(name.as_bytes());
        s.line("CURRENT_HOSTNAME=$(tr -d ' \\t\\n\\r' </etc/hostname)");
        s.line("if [ -f \"$IMAGER_CUSTOM\" ]; then");
        s.raw(b"  \"$IMAGER_CUSTOM\" set_hostname ", &q);
        s.line("else");
        s.raw(
            b"  printf '%s\\n' ",
            &[q.as_slice(), b" >/etc/hostname"].concat(),
        );
        s.raw(
            b"  sed -i \"s/127.0.1.1.*$CURRENT_HOSTNAME/127.0.1.1\\t\"",
            &[q.as_slice(), b"\"/g\" /etc/hosts"].concat(),
        );
        s.line("fi");
    }
    if let Some(ssh) = &settings.ssh {
        let mut args = Vec::new();
        if !ssh.keys.is_empty() {
            args.extend_from_slice(b" -k");
            for key in &ssh.keys {
                args.push(b' ');
                args.extend_from_slice(&sh(key.as_bytes()));
            }
        }
        s.line("FIRSTUSER=$(getent passwd 1000 | cut -d: -f1)");
        s.line("FIRSTUSERHOME=$(getent passwd 1000 | cut -d: -f6)");
        s.line("if [ -f \"$IMAGER_CUSTOM\" ]; then");
        s.raw(b"  \"$IMAGER_CUSTOM\" enable_ssh", &args);
        s.line("else");
        if !ssh.keys.is_empty() {
            s.line("  install -o \"$FIRSTUSER\" -m 700 -d \"$FIRSTUSERHOME/.ssh\"");
            for key in &ssh.keys {
                s.raw(
                    b"  printf '%s\\n' ",
                    &[
                        sh(key.as_bytes()).as_slice(),
                        b" >>\"$FIRSTUSERHOME/.ssh/authorized_keys\"",
                    ]
                    .concat(),
                );
            }
            s.line("  chown \"$FIRSTUSER:$FIRSTUSER\" \"$FIRSTUSERHOME/.ssh/authorized_keys\"");
            s.line("  chmod 600 \"$FIRSTUSERHOME/.ssh/authorized_keys\"");
        }
        if !ssh.password_auth {
            s.line(
                "  printf 'PasswordAuthentication no\\n' >/etc/ssh/sshd_config.d/cardsmith.conf",
            );
        }
        s.line("  systemctl enable ssh");
        s.line("fi");
    }
    if let (Some(user), Some(hash)) = (&settings.user, password_hash) {
        let name = sh(user.name.as_bytes());
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
        if settings.passwordless_sudo {
            s.raw(
                b"printf '%s ALL=(ALL) NOPASSWD: ALL\\n' ",
                &[name.as_slice(), b" >/etc/sudoers.d/010_cardsmith-nopasswd"].concat(),
            );
            s.line("chmod 440 /etc/sudoers.d/010_cardsmith-nopasswd");
        }
    }
    if let Some(wifi) = &settings.wifi {
        let ssid = sh(&wifi.ssid);
        let psk = sh(wifi.psk.as_bytes());
        let country = sh(wifi.country.as_bytes());
        let hidden: &[u8] = if wifi.hidden { b" -h" } else { b"" };
        s.line("if [ -f \"$IMAGER_CUSTOM\" ]; then");
        s.raw(
            b"  \"$IMAGER_CUSTOM\" set_wlan",
            &[
                hidden,
                b" ",
                ssid.as_slice(),
                b" ",
                psk.as_slice(),
                b" ",
                country.as_slice(),
            ]
            .concat(),
        );
        s.line("else");
        // wpa_supplicant takes any SSID as hex, so no byte needs quoting there.
        let ssid_hex: String = wifi.ssid.iter().map(|b| format!("{b:02x}")).collect();
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
    s.line("rm -f \"$BOOT/firstrun.sh\"");
    s.raw(
        b"printf '%s\\n' ",
        &[
            sh(&base_cmdline(original_cmdline, settings)).as_slice(),
            b" >\"$BOOT/cmdline.txt\"",
        ]
        .concat(),
    );
    s.line("exit 0");
    s.0
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
