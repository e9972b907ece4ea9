//! What a card is set up with on first boot. Secrets are held only as hashes: the crypt
//! strings of the password and the Wi-Fi PSK.

use serde::{Deserialize, Serialize};

use crate::secret::PasswordHashes;
use crate::validate;
use crate::Error;

/// Everything `--hostname`, `--user`, `--ssh`, `--wifi-*`, … can set. `None`/false means
/// "leave the image's default".
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Settings {
    /// A host name, or a template with a counter: `node{n}`, `node{n:02}`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hostname: Option<String>,
    /// The next number for the hostname's counter (presets keep it).
    #[serde(default = "one")]
    pub counter: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<User>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ssh: Option<Ssh>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wifi: Option<Wifi>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timezone: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keymap: Option<String>,
    #[serde(default)]
    pub passwordless_sudo: bool,
    /// Interfaces for cloudinit-rpi images.
    #[serde(default)]
    pub rpi: Rpi,
}

fn one() -> u64 {
    1
}

impl Default for Settings {
    fn default() -> Settings {
        Settings {
            hostname: None,
            counter: 1,
            user: None,
            ssh: None,
            wifi: None,
            timezone: None,
            keymap: None,
            passwordless_sudo: false,
            rpi: Rpi::default(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct User {
    pub name: String,
    pub password: PasswordHashes,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ssh {
    /// Allow logging in with the password (otherwise keys only).
    pub password_auth: bool,
    pub keys: Vec<String>,
}

#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Wifi {
    /// The SSID's exact bytes, as hex (an SSID need not be UTF-8).
    #[serde(with = "hex")]
    pub ssid: Vec<u8>,
    /// 64 hex digits.
    pub psk: String,
    pub hidden: bool,
    pub country: String,
}

/// The PSK joins the network: it never reaches a log through `{:?}`.
impl std::fmt::Debug for Wifi {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Wifi")
            .field("ssid", &String::from_utf8_lossy(&self.ssid))
            .field("psk", &"(hidden)")
            .field("hidden", &self.hidden)
            .field("country", &self.country)
            .finish()
    }
}

/// `--enable-serial MODE`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Serial {
    /// A login console on the serial port (and the port itself).
    Console,
    /// The UART only, for devices.
    Hardware,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rpi {
    pub i2c: bool,
    pub spi: bool,
    pub onewire: bool,
    pub serial: Option<Serial>,
    pub usb_gadget: bool,
}

impl Rpi {
    pub fn any(&self) -> bool {
        self.i2c || self.spi || self.onewire || self.serial.is_some() || self.usb_gadget
    }
}

impl Settings {
    pub fn is_empty(&self) -> bool {
        self.hostname.is_none()
            && self.user.is_none()
            && self.ssh.is_none()
            && self.wifi.is_none()
            && self.timezone.is_none()
            && self.keymap.is_none()
            && !self.passwordless_sudo
            && !self.rpi.any()
    }

    /// Checks every setting; the hostname template with the current counter.
    pub fn validate(&self) -> Result<(), Error> {
        if let Some(name) = self.hostname_now()? {
            validate::hostname(&name)?;
        }
        if let Some(user) = &self.user {
            validate::user(&user.name)?;
        }
        if let Some(wifi) = &self.wifi {
            validate::ssid(&wifi.ssid)?;
            validate::country(&wifi.country)?;
            let hex = wifi.psk.len() == 64 && wifi.psk.bytes().all(|b| b.is_ascii_hexdigit());
            if !hex {
                return Err(Error::invalid(
                    "Wi-Fi PSK",
                    "(hidden)",
                    "it is not 64 hex digits",
                ));
            }
        }
        if let Some(ssh) = &self.ssh {
            for key in &ssh.keys {
                validate::ssh_key(key)?;
            }
        }
        if let Some(tz) = &self.timezone {
            validate::timezone(tz)?;
        }
        if let Some(map) = &self.keymap {
            validate::keymap(map)?;
        }
        let password_ssh = self
            .ssh
            .as_ref()
            .is_some_and(crate::systemd::password_logins);
        if password_ssh && self.user.is_none() {
            return Err(Error::invalid(
                "--ssh",
                "",
                "SSH with password logins needs --user (Raspberry Pi OS has had no default user \
                 since 2022), or give --ssh-key",
            ));
        }
        if self.passwordless_sudo && self.user.is_none() {
            return Err(Error::invalid("--passwordless-sudo", "", "it needs --user"));
        }
        Ok(())
    }

    /// The host name for this card: the template with the counter filled in.
    pub fn hostname_now(&self) -> Result<Option<String>, Error> {
        self.hostname
            .as_deref()
            .map(|t| render_hostname(t, self.counter))
            .transpose()
    }

    /// Whether the hostname carries a counter that advances per card.
    pub fn has_counter(&self) -> bool {
        self.hostname.as_deref().is_some_and(|h| h.contains("{n"))
    }
}

/// Fills `{n}` or `{n:0W}` (zero-padded to W digits) in a hostname template.
pub fn render_hostname(template: &str, n: u64) -> Result<String, Error> {
    let Some(start) = template.find("{n") else {
        return Ok(template.to_owned());
    };
    let bad = || Error::invalid("hostname", template, "a counter is written {n} or {n:02}");
    let end = start + template[start..].find('}').ok_or_else(bad)?;
    let spec = &template[start + 2..end];
    let number = match spec {
        "" => n.to_string(),
        _ => {
            let width: usize = spec
                .strip_prefix(":0")
                .and_then(|w| w.parse().ok())
                .filter(|w| (1..=9).contains(w))
                .ok_or_else(bad)?;
            format!("{n:0width$}")
        }
    };
    let rest = &template[end + 1..];
    if rest.contains("{n") {
        return Err(bad());
    }
    Ok(format!("{}{number}{rest}", &template[..start]))
}

mod hex {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(bytes: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(&bytes.iter().map(|b| format!("{b:02x}")).collect::<String>())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        let text = String::deserialize(d)?;
        (0..text.len())
            .step_by(2)
            .map(|i| {
                text.get(i..i + 2)
                    .filter(|h| h.bytes().all(|b| b.is_ascii_hexdigit()))
                    .and_then(|h| u8::from_str_radix(h, 16).ok())
                    .ok_or_else(|| serde::de::Error::custom("not hex"))
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hostname_counters() {
        assert_eq!(render_hostname("node{n}", 7).unwrap(), "node7");
        assert_eq!(render_hostname("node{n:02}", 3).unwrap(), "node03");
        assert_eq!(render_hostname("pi-{n:03}-lab", 12).unwrap(), "pi-012-lab");
        assert_eq!(render_hostname("plain", 5).unwrap(), "plain");
        assert!(render_hostname("node{n:x}", 1).is_err());
        assert!(render_hostname("a{n}b{n}", 1).is_err());
    }

    #[test]
    fn debug_output_shows_no_secret() {
        let s = Settings {
            user: Some(User {
                name: "alice".into(),
                password: PasswordHashes::new(b"hunter2-long").unwrap(),
            }),
            wifi: Some(Wifi {
                ssid: b"home".to_vec(),
                psk: "ab".repeat(32),
                hidden: false,
                country: "GB".into(),
            }),
            ..Settings::default()
        };
        let shown = format!("{s:?}");
        let user = s.user.as_ref().unwrap();
        for secret in [
            "ab".repeat(32),
            user.password.yescrypt.clone(),
            user.password.sha256.clone(),
        ] {
            assert!(!shown.contains(&secret), "{shown}");
        }
        assert!(
            shown.contains("alice") && shown.contains("\"home\""),
            "{shown}"
        );
    }

    #[test]
    fn settings_round_trip_with_a_binary_ssid() {
        let s = Settings {
            wifi: Some(Wifi {
                ssid: b"caf\xe9\n".to_vec(),
                psk: "ab".repeat(32),
                hidden: true,
                country: "FR".into(),
            }),
            ..Settings::default()
        };
        let json = serde_json::to_string(&s).unwrap();
        assert!(json.contains("636166e90a"), "{json}");
        assert_eq!(serde_json::from_str::<Settings>(&json).unwrap(), s);
        // Hex digits only: from_str_radix alone takes "+a" as 0x0a.
        let lax = json.replace("636166e90a", "+a6166e90a");
        assert!(serde_json::from_str::<Settings>(&lax).is_err(), "{lax}");
    }
}
