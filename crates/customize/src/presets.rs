//! Named settings in the user's config directory (`~/.config/cardsmith/presets/NAME.json`,
//! mode 0600), holding only hashes of secrets, saved atomically. A hostname with a counter
//! (`node{n:02}`) advances after each successful write.

use std::fs::{self, OpenOptions};
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use crate::settings::Settings;
use crate::Error;

pub struct Presets {
    dir: PathBuf,
}

impl Presets {
    /// `$XDG_CONFIG_HOME/cardsmith/presets`, usually `~/.config/cardsmith/presets`.
    pub fn open() -> Result<Presets, Error> {
        let dirs = directories::ProjectDirs::from("", "", "cardsmith").ok_or_else(|| {
            Error::invalid(
                "config directory",
                "",
                "neither $XDG_CONFIG_HOME nor $HOME is set",
            )
        })?;
        Ok(Presets::at(&dirs.config_dir().join("presets")))
    }

    pub fn at(dir: &Path) -> Presets {
        Presets {
            dir: dir.to_owned(),
        }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn path(&self, name: &str) -> Result<PathBuf, Error> {
        let ok = !name.is_empty()
            && name.len() <= 64
            && name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
            && !name.starts_with('.');
        if !ok {
            return Err(Error::invalid(
                "preset name",
                name,
                "use letters, digits, '-', '_' and '.'",
            ));
        }
        Ok(self.dir.join(format!("{name}.json")))
    }

    /// Saves (or replaces) a preset: written to a 0600 temporary file, synced, renamed.
    pub fn save(&self, name: &str, settings: &Settings) -> Result<PathBuf, Error> {
        settings.validate()?;
        self.write(name, settings)
    }

    fn write(&self, name: &str, settings: &Settings) -> Result<PathBuf, Error> {
        let path = self.path(name)?;
        let io = |what: &'static str, p: &Path| {
            let p = p.to_owned();
            move |source| Error::Io {
                what,
                path: p,
                source,
            }
        };
        fs::create_dir_all(&self.dir).map_err(io("create", &self.dir))?;
        let tmp = self.dir.join(format!(".{name}.{}.tmp", std::process::id()));
        let json = serde_json::to_vec_pretty(settings).expect("settings serialize");
        let written = (|| {
            let mut file = OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&tmp)?;
            file.write_all(&json)?;
            file.sync_all()?;
            fs::rename(&tmp, &path)
        })();
        if written.is_err() {
            let _ = fs::remove_file(&tmp);
        }
        written.map_err(io("save", &path))?;
        Ok(path)
    }

    pub fn load(&self, name: &str) -> Result<Settings, Error> {
        let path = self.path(name)?;
        let bytes = fs::read(&path).map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => Error::NoPreset(name.to_owned()),
            _ => Error::Io {
                what: "read",
                path: path.clone(),
                source: e,
            },
        })?;
        serde_json::from_slice(&bytes).map_err(|e| {
            Error::invalid(
                "preset",
                name,
                format!("{} is damaged: {e}", path.display()),
            )
        })
    }

    /// The preset names, sorted.
    pub fn list(&self) -> Vec<String> {
        let mut names: Vec<String> = fs::read_dir(&self.dir)
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|e| {
                e.file_name()
                    .to_str()?
                    .strip_suffix(".json")
                    .map(str::to_owned)
            })
            .filter(|n| !n.starts_with('.'))
            .collect();
        names.sort();
        names
    }

    pub fn delete(&self, name: &str) -> Result<(), Error> {
        let path = self.path(name)?;
        fs::remove_file(&path).map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => Error::NoPreset(name.to_owned()),
            _ => Error::Io {
                what: "delete",
                path,
                source: e,
            },
        })
    }

    /// After a successful write that used number `used`: the next card gets the number
    /// after it (not one more than whatever the file says by then).
    pub fn advance(&self, name: &str, used: u64) -> Result<u64, Error> {
        let mut settings = self.load(name)?;
        let next = used.checked_add(1).ok_or_else(|| {
            Error::invalid(
                "preset counter",
                used.to_string(),
                format!(
                    "preset {name} has used the largest number there is; start it again with \
                     `cardsmith preset save {name} --counter 1` and its settings"
                ),
            )
        })?;
        settings.counter = settings.counter.max(next);
        self.write(name, &settings)?;
        Ok(settings.counter)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_counter_at_its_largest_value_is_an_error_not_a_wrap() {
        let dir = tempfile::tempdir().unwrap();
        let presets = Presets::at(dir.path());
        let settings = Settings {
            hostname: Some("node{n}".into()),
            ..Settings::default()
        };
        presets.save("lab", &settings).unwrap();
        assert_eq!(presets.advance("lab", 41).unwrap(), 42);
        let err = presets.advance("lab", u64::MAX).unwrap_err().to_string();
        assert!(
            err.contains("preset counter \"18446744073709551615\" is not valid")
                && err.contains("preset save lab --counter 1"),
            "{err}"
        );
        assert_eq!(presets.load("lab").unwrap().counter, 42, "left as it was");
    }
}
