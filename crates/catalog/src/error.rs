use std::io;
use std::path::PathBuf;

/// Why a catalog or a download failed; each message says what to do.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot fetch {url}: {detail}")]
    Http { url: String, detail: String },

    #[error("{url} is larger than {limit} bytes, too large for a catalog")]
    TooLarge { url: String, limit: u64 },

    #[error("cannot read {path}: {source}")]
    Read { path: PathBuf, source: io::Error },

    #[error("{location} is not a valid OS list: {detail}")]
    Parse { location: String, detail: String },

    #[error("the download cache at {path} failed: {source}")]
    Cache { path: PathBuf, source: io::Error },

    #[error("no cache directory: neither $XDG_CACHE_HOME nor $HOME is set")]
    NoCacheDir,

    #[error("no bundled file {0}")]
    NotBundled(String),

    #[error("no OS named {name:?} in the catalog{}", hint(.similar))]
    NoSuchOs { name: String, similar: Vec<String> },

    #[error("{name:?} names several OS images; give its category too, one of: {}", .paths.join("; "))]
    AmbiguousOs { name: String, paths: Vec<String> },

    #[error("{name:?} is a category, not an image; choose one of: {}", .children.join("; "))]
    IsCategory { name: String, children: Vec<String> },

    #[error("no device named or tagged {name:?} in the catalog; the devices are: {}", .known.join(", "))]
    NoSuchDevice { name: String, known: Vec<String> },

    #[error("{os:?} is not made for {device}: {}", made_for(.tags))]
    NotForDevice {
        os: String,
        device: String,
        tags: Vec<String>,
    },

    #[error("{name:?} has no image URL in the catalog")]
    NoUrl { name: String },
}

fn made_for(tags: &[String]) -> String {
    if tags.is_empty() {
        "it names no devices, so only devices that match inclusively show it".to_owned()
    } else {
        format!("it lists {}", tags.join(", "))
    }
}

fn hint(similar: &[String]) -> String {
    if similar.is_empty() {
        "; `cardsmith os list` shows them".to_owned()
    } else {
        format!("; did you mean: {}?", similar.join("; "))
    }
}
