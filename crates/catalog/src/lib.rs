//! cardsmith-catalog is Raspberry Pi Imager's "Choose OS": the v4 OS list, and the
//! downloads it points at.
//!
//! [`load`] gets a [`Catalog`] from a URL or a file (the official list by default), inlines
//! `subitems_url` sublists, picks the user's language, and drops entries whose
//! `init_format` cardsmith does not know; when the URL cannot be fetched it falls back to
//! the last good copy in the [`Cache`], then to the sample built into the binary, and
//! [`Loaded::describe`] says which one is shown and how old. [`for_device`] filters the
//! list for a device the way Imager does.
//!
//! [`open_image`] turns an entry's URL into bytes for the engine: a local file, a bundled
//! demo, the cached copy of an earlier download (its hash checked again), or a
//! [`Download`] that streams over HTTP, resumes after drops with Range requests, and feeds
//! the cache as it goes. A download enters the cache only once its hash checked out.
//!
//! This crate does not decode or write images (cardsmith-engine does) and does not print.

pub mod bundled;
mod cache;
mod error;
mod filter;
mod http;
mod location;
mod model;
mod open;
mod resolve;
mod source;
mod time;

pub use cache::{Cache, Entry, Pending, DEFAULT_LIMIT};
pub use error::Error;
pub use filter::{for_device, prune_init_formats};
pub use http::{Download, Http, Say, Tee, ATTEMPTS, STALL_TIMEOUT};
pub use location::Location;
pub use model::{user_locale, Catalog, Device, Imager, OsEntry, INIT_FORMATS};
pub use open::{open_image, Known, Source};
pub use resolve::{resolve_sublists, Resolved, MAX_DEPTH, MAX_SUBLISTS};
pub use source::{find_device, find_os, load, Fetcher, Loaded, Origin, OFFICIAL};
pub use time::{ago, utc};
