//! Where a catalog or an image lives: a URL, a local file, or the sample bundled into
//! cardsmith. Relative references resolve against the catalog that names them.

use std::fmt;
use std::path::{Path, PathBuf};

use url::Url;

/// Prefix of the locations of files bundled into the binary.
const BUNDLED: &str = "bundled:";

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Location {
    /// http or https.
    Url(Url),
    Path(PathBuf),
    /// A file of the bundled sample, by name.
    Bundled(String),
}

impl Location {
    /// "https://…", "file:///…", "bundled:NAME", or a path.
    pub fn parse(text: &str) -> Location {
        if let Some(name) = text.strip_prefix(BUNDLED) {
            return Location::Bundled(name.to_owned());
        }
        match Url::parse(text) {
            Ok(url) if url.scheme() == "file" => url
                .to_file_path()
                .map(Location::Path)
                .unwrap_or_else(|()| Location::Path(PathBuf::from(text))),
            Ok(url) if matches!(url.scheme(), "http" | "https") => Location::Url(url),
            _ => Location::Path(PathBuf::from(text)),
        }
    }

    /// Resolves `reference` (absolute, or relative to this location).
    pub fn join(&self, reference: &str) -> Location {
        // A one-letter "scheme" is a Windows drive, not a URL.
        let absolute = reference.starts_with(BUNDLED)
            || Url::parse(reference).is_ok_and(|u| u.scheme().len() > 1);
        if absolute {
            return Location::parse(reference);
        }
        match self {
            Location::Url(base) => match base.join(reference) {
                Ok(url) => Location::Url(url),
                Err(_) => Location::Path(PathBuf::from(reference)),
            },
            // A reference is a URL, relative to the catalog's own file URL: `%20` is a
            // space, as in a catalog served over http (make-catalog writes them so).
            Location::Path(file) => {
                let as_url = std::path::absolute(file)
                    .ok()
                    .and_then(|f| Url::from_file_path(f).ok())
                    .and_then(|base| base.join(reference).ok())
                    .and_then(|url| url.to_file_path().ok());
                match as_url {
                    Some(path) => Location::Path(path),
                    None => {
                        let dir = file.parent().unwrap_or(Path::new("."));
                        Location::Path(dir.join(reference)) // an absolute path replaces dir
                    }
                }
            }
            Location::Bundled(_) => Location::Bundled(reference.to_owned()),
        }
    }

    pub fn is_remote(&self) -> bool {
        matches!(self, Location::Url(_))
    }

    /// Whether a catalog found here may point at `target`: one from the web may only point
    /// at the web (never at a local file or device, for an image, a sublist or an icon).
    pub fn may_name(&self, target: &Location) -> bool {
        !self.is_remote() || target.is_remote()
    }
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Location::Url(url) => f.write_str(url.as_str()),
            Location::Path(path) => write!(f, "{}", path.display()),
            Location::Bundled(name) => write!(f, "{BUNDLED}{name}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn references_resolve_against_their_catalog() {
        let remote = Location::parse("https://example.org/lists/os.json");
        assert_eq!(
            remote.join("sub/more.json").to_string(),
            "https://example.org/lists/sub/more.json"
        );
        assert_eq!(
            remote.join("/top.json").to_string(),
            "https://example.org/top.json"
        );
        assert_eq!(
            Location::parse("/a/b.json").join("/c/d.img"),
            Location::Path("/c/d.img".into())
        );
        assert_eq!(
            remote.join("https://other.org/x.img.xz").to_string(),
            "https://other.org/x.img.xz"
        );
        let local = Location::parse("/srv/catalog/os_list.json");
        assert_eq!(
            local.join("demo.img.xz"),
            Location::Path("/srv/catalog/demo.img.xz".into())
        );
        // A relative URL in a local catalog is a URL too: escapes and .. as on a server.
        assert_eq!(
            local.join("more%20images/a%23b.img"),
            Location::Path("/srv/catalog/more images/a#b.img".into())
        );
        assert_eq!(
            local.join("../shared/c.img"),
            Location::Path("/srv/shared/c.img".into())
        );
        assert_eq!(
            Location::parse("file:///srv/a.json"),
            Location::Path("/srv/a.json".into())
        );
        let bundled = Location::parse("bundled:os_list.json");
        assert_eq!(
            bundled.join("demo.img.xz"),
            Location::Bundled("demo.img.xz".into())
        );
        assert_eq!(
            Location::parse("os-list-sample/os_list.json"),
            Location::Path("os-list-sample/os_list.json".into())
        );
    }
}
