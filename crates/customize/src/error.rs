use std::io;
use std::path::PathBuf;

/// Why customisation failed or a setting was refused; each message says what is wrong.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{what} {value:?} is not valid: {why}")]
    Invalid {
        what: &'static str,
        value: String,
        why: String,
    },

    #[error("{0}")]
    Crypto(String),

    #[error("{path}: {detail}")]
    NoBootPartition { path: PathBuf, detail: String },

    #[error(
        "cannot tell how to customise {path}: its boot partition has neither cloud-init seed \
         files nor a cmdline.txt; name the format with --init-format (systemd, cloudinit or \
         cloudinit-rpi)"
    )]
    UnknownFormat { path: PathBuf },

    #[error(
        "{os} cannot take first-boot settings: {why}, so nothing would apply them on its \
         first boot; write it without settings"
    )]
    NoMechanism { os: String, why: String },

    #[error(
        "{os} cannot take every setting asked for ({format} format): {refused}; leave those \
         settings out"
    )]
    SettingsRefused {
        os: String,
        format: &'static str,
        refused: String,
    },

    #[error("the image's init_format is {0:?}: it takes no customisation")]
    NotCustomizable(String),

    #[error("{setting} needs a cloudinit-rpi image; this one is {format}")]
    NeedsCloudInitRpi {
        setting: &'static str,
        format: &'static str,
    },

    #[error("the boot partition of {path} could not be {what}: {detail}")]
    Fat {
        path: PathBuf,
        what: &'static str,
        detail: String,
    },

    #[error(
        "{path}: {file} reads back differently from what was written: the card did not keep \
         the write (a failing or counterfeit card, or a bad reader); the settings are not \
         reliably on it. Try another card or reader"
    )]
    ReadBack { path: PathBuf, file: String },

    #[error(
        "{path} did not take the settings: flushing them to it failed ({source}). The card \
         may be failing or was pulled out; the settings may be half-written: write or \
         customise it again, or try another card"
    )]
    Flush { path: PathBuf, source: io::Error },

    #[error(
        "{path}: the boot partition ({partition}) has no cmdline.txt, which the systemd \
         format edits. If the image takes cloud-init seeds, name that format with \
         --init-format cloudinit (or cloudinit-rpi); an image with neither cannot take \
         first-boot settings"
    )]
    NoCmdline { path: PathBuf, partition: String },

    #[error("cannot {what} {path}: {source}")]
    Io {
        what: &'static str,
        path: PathBuf,
        source: io::Error,
    },

    #[error("no preset named {0:?}; `cardsmith preset list` shows them")]
    NoPreset(String),
}

impl Error {
    pub fn invalid(what: &'static str, value: impl Into<String>, why: impl Into<String>) -> Error {
        Error::Invalid {
            what,
            value: value.into(),
            why: why.into(),
        }
    }
}
