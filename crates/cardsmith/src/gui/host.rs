//! What the computer the wizard runs on suggests for a new card: its time zone, keyboard
//! layout and country, the user's name, and the SSH public keys in `~/.ssh` (offered, never
//! added without a click). Every value is checked as a typed one would be; one that does
//! not pass is not suggested. Nothing secret is read (no Wi-Fi password, no private key).

use std::fs;
use std::path::{Path, PathBuf};

use cardsmith_customize::validate;

/// The suggestions; `None` or empty where the computer says nothing usable.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Host {
    pub timezone: Option<String>,
    pub keymap: Option<String>,
    pub country: Option<String>,
    pub user: Option<String>,
    /// Public keys from `~/.ssh/*.pub`, one line each.
    pub ssh_keys: Vec<String>,
    /// The Wi-Fi network the computer is on (NetworkManager's answer, which comes a
    /// moment after the window opens); never its password.
    pub wifi_ssid: Option<Vec<u8>>,
}

impl Host {
    /// This computer, as the user who runs the wizard (the one who ran `sudo`, if so).
    pub fn this_computer() -> Host {
        let env = |name: &str| std::env::var(name).ok();
        let user = env("SUDO_USER").or_else(|| env("USER"));
        let home = match std::env::var_os("SUDO_USER") {
            Some(_) => user.as_ref().map(|u| PathBuf::from("/home").join(u)),
            None => std::env::var_os("HOME").map(PathBuf::from),
        };
        Host::read(Path::new("/"), env, home.as_deref())
    }

    /// Reads the suggestions under `root` (`/` for this computer), with `env` for the
    /// environment and `home` for the user's home folder.
    pub fn read(root: &Path, env: impl Fn(&str) -> Option<String>, home: Option<&Path>) -> Host {
        Host {
            timezone: timezone(root),
            keymap: keymap(root),
            country: ["LC_ALL", "LC_MESSAGES", "LANG"]
                .iter()
                .find_map(|v| env(v).filter(|l| !l.is_empty()))
                .and_then(|locale| country(&locale)),
            user: ["SUDO_USER", "USER"]
                .iter()
                .find_map(|v| env(v))
                .filter(|u| validate::user(u).is_ok()),
            ssh_keys: home.map(ssh_keys).unwrap_or_default(),
            wifi_ssid: None,
        }
    }
}

/// /etc/timezone, else the zone /etc/localtime links to.
fn timezone(root: &Path) -> Option<String> {
    let named = fs::read_to_string(root.join("etc/timezone"))
        .ok()
        .map(|t| t.trim().to_owned());
    let linked = || {
        let target = fs::read_link(root.join("etc/localtime")).ok()?;
        let text = target.to_str()?;
        Some(text.split_once("zoneinfo/")?.1.to_owned())
    };
    named
        .filter(|t| !t.is_empty())
        .or_else(linked)
        .filter(|t| validate::timezone(t).is_ok())
}

/// XKBLAYOUT in /etc/default/keyboard: the first layout of a list.
fn keymap(root: &Path) -> Option<String> {
    let text = fs::read_to_string(root.join("etc/default/keyboard")).ok()?;
    let value = text
        .lines()
        .find_map(|l| l.trim().strip_prefix("XKBLAYOUT="))?;
    let first = value.trim_matches(['"', '\'']).split(',').next()?.trim();
    (validate::keymap(first).is_ok()).then(|| first.to_owned())
}

/// The territory of a locale name: "en_GB.UTF-8" gives "GB".
fn country(locale: &str) -> Option<String> {
    let territory = locale.split_once('_')?.1;
    let code: String = territory
        .chars()
        .take_while(|c| c.is_ascii_alphabetic())
        .collect();
    (validate::country(&code).is_ok()).then_some(code)
}

/// Every valid public key line of `home/.ssh/*.pub`, in file name order, without repeats.
fn ssh_keys(home: &Path) -> Vec<String> {
    let Ok(entries) = fs::read_dir(home.join(".ssh")) else {
        return Vec::new();
    };
    let mut files: Vec<PathBuf> = entries
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "pub"))
        .collect();
    files.sort();
    let mut keys: Vec<String> = Vec::new();
    for file in files {
        let Ok(text) = fs::read_to_string(&file) else {
            continue;
        };
        for line in text.lines().filter(|l| !l.trim().is_empty()) {
            if let Ok(key) = validate::ssh_key(line) {
                if !keys.contains(&key) {
                    keys.push(key);
                }
            }
        }
    }
    keys
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str =
        "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIBtt1J9x7vU6sqiJ6mlQvhBPHTcJ1rYqRk4cR3EqsEkI me@laptop";

    #[test]
    fn the_computer_suggests_what_it_uses_and_nothing_invalid() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        fs::create_dir_all(root.join("etc/default")).unwrap();
        std::os::unix::fs::symlink(
            "/usr/share/zoneinfo/America/Argentina/Buenos_Aires",
            root.join("etc/localtime"),
        )
        .unwrap();
        fs::write(
            root.join("etc/default/keyboard"),
            "XKBMODEL=\"pc105\"\nXKBLAYOUT=\"de,us\"\n",
        )
        .unwrap();
        let home = root.join("home/kim");
        fs::create_dir_all(home.join(".ssh")).unwrap();
        fs::write(home.join(".ssh/id_ed25519.pub"), format!("{KEY}\n")).unwrap();
        fs::write(home.join(".ssh/other.pub"), format!("not a key\n{KEY}\n")).unwrap();
        fs::write(home.join(".ssh/id_ed25519"), "PRIVATE").unwrap();
        let env = |name: &str| match name {
            "LANG" => Some("de_AT.UTF-8".to_owned()),
            "USER" => Some("kim".to_owned()),
            _ => None,
        };
        let host = Host::read(root, env, Some(&home));
        assert_eq!(
            host,
            Host {
                timezone: Some("America/Argentina/Buenos_Aires".into()),
                keymap: Some("de".into()),
                country: Some("AT".into()),
                user: Some("kim".into()),
                ssh_keys: vec![KEY.into()],
                wifi_ssid: None,
            }
        );
        // /etc/timezone wins; what does not validate is not suggested.
        fs::write(root.join("etc/timezone"), "Europe/Vienna\n").unwrap();
        fs::write(root.join("etc/default/keyboard"), "XKBLAYOUT=\"klingon\"\n").unwrap();
        let odd = |name: &str| match name {
            "LANG" => Some("C.UTF-8".to_owned()),
            "USER" => Some("root".to_owned()),
            _ => None,
        };
        let host = Host::read(root, odd, None);
        assert_eq!(host.timezone.as_deref(), Some("Europe/Vienna"));
        assert_eq!((host.keymap, host.country, host.user), (None, None, None));
        assert!(host.ssh_keys.is_empty());
    }
}
