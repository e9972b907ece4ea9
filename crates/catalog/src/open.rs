//! Opening a catalog image for writing: a local file, a bundled demo, the cached copy of a
//! download, or a download streamed (and kept in the cache when its hash is known).

use std::io::{Cursor, Read};
use std::path::PathBuf;

use cardsmith_engine::Input;

use crate::bundled;
use crate::cache::{Cache, Pending};
use crate::http::{Http, Say};
use crate::location::Location;
use crate::Error;

/// The hashes an image is known by, when a catalog or the user gave them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Known {
    /// Of the file as downloaded (`image_download_sha256`).
    pub download_sha256: Option<String>,
    /// Of the decompressed image (`extract_sha256`).
    pub image_sha256: Option<String>,
    /// Given by the user, of either.
    pub either_sha256: Option<String>,
}

impl Known {
    fn any(&self) -> bool {
        self.download_sha256.is_some()
            || self.image_sha256.is_some()
            || self.either_sha256.is_some()
    }
}

/// Where the image bytes come from.
pub enum Source {
    /// A file to open: local, or the cached copy of a download.
    File { path: PathBuf, cached: bool },
    /// A stream: a download, or a bundled demo image.
    Stream {
        input: Input,
        reader: Box<dyn Read + Send>,
        /// The download being kept in the cache, to commit once its hash checked out.
        pending: Option<Pending>,
    },
}

/// Opens the image at `location`. A download whose hash is known is looked up in `cache`
/// first (after re-checking the cached file's hash), and otherwise kept there as it
/// streams. `say` hears about cache misses, damaged entries and resumed downloads.
pub fn open_image(
    location: &Location,
    known: &Known,
    http: &Http,
    cache: Option<&Cache>,
    say: Say,
) -> Result<Source, Error> {
    match location {
        Location::Path(path) => Ok(Source::File {
            path: path.clone(),
            cached: false,
        }),
        Location::Bundled(name) => {
            let bytes = bundled::file(name).ok_or_else(|| Error::NotBundled(name.clone()))?;
            Ok(Source::Stream {
                input: Input::Url(location.to_string()),
                reader: Box::new(Cursor::new(bytes)),
                pending: None,
            })
        }
        Location::Url(url) => {
            let cache = cache.filter(|_| known.any());
            if let Some(cache) = cache {
                let lookup = match (
                    known.download_sha256.as_deref(),
                    known.image_sha256.as_deref(),
                    known.either_sha256.as_deref(),
                ) {
                    // A hash that may be the download's or the image's (--sha256): the
                    // cached file may have either, and the write checks either.
                    (None, None, Some(either)) => match cache.find(Some(either), None) {
                        Ok(None) => cache.find(None, Some(either)),
                        found => found,
                    },
                    (download, image, either) => cache.find(download.or(either), image.or(either)),
                };
                match lookup {
                    Ok(Some((path, _))) => return Ok(Source::File { path, cached: true }),
                    Ok(None) => {}
                    Err(note) => say(&note),
                }
            }
            let mut download = http.download(url.clone(), Some(say.clone()));
            let pending = match cache.map(|c| c.start(url.as_str())) {
                Some(Ok(pending)) => Some(pending),
                Some(Err(e)) => {
                    say(&format!("the download is not cached: {e}"));
                    None
                }
                None => None,
            };
            if let Some(pending) = &pending {
                download = download.with_tee(pending.tee());
            }
            Ok(Source::Stream {
                input: Input::Url(url.to_string()),
                reader: Box::new(download),
                pending,
            })
        }
    }
}
