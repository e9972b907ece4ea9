//! `cardsmith os list|show`, `cardsmith devices` and `cardsmith cache list|clear`: the OS
//! catalog and the download cache.

use std::fmt::Write as _;
use std::time::Duration;

use cardsmith_catalog::{
    find_device, find_os, for_device, load, utc, Cache, Device, Http, Loaded, OsEntry,
};
use clap::{Args, Subcommand};
use serde_json::{json, Value};

use super::report::Reporter;
use crate::job::{self, Event, Failure, Sink};

/// Where the catalog comes from, and how patient to be with the network.
#[derive(Args, Clone)]
pub struct CatalogArgs {
    /// The OS list: a URL or a file in Raspberry Pi Imager's v4 format (default: the
    /// official list; offline, the last good copy, then the bundled sample)
    #[arg(long, value_name = "URL|FILE")]
    pub repo: Option<String>,
    /// Seconds without a byte before a download counts as dropped and is resumed
    #[arg(long, value_name = "SECONDS", default_value_t = 60)]
    pub stall_timeout: u64,
}

impl CatalogArgs {
    pub fn http(&self) -> Result<Http, Failure> {
        Ok(Http::new(Duration::from_secs(self.stall_timeout.max(1)))?)
    }

    /// Loads the catalog; says which one it is (and what was left out) through `reporter`.
    pub fn load(
        &self,
        http: &Http,
        cache: Option<&Cache>,
        reporter: &mut Reporter,
    ) -> Result<Loaded, Failure> {
        let loaded = load(self.repo.as_deref(), http, cache)?;
        reporter.event(Event::Catalog {
            source: loaded.asked.clone(),
            description: loaded.describe(),
            fetched_at: loaded.fetched_at(),
        });
        for note in &loaded.notes {
            reporter.event(Event::note(note.clone()));
        }
        Ok(loaded)
    }
}

#[derive(Subcommand)]
pub enum OsCommand {
    /// List the OS images in the catalog, as a tree of categories
    List(OsListArgs),
    /// Show everything the catalog says about one image
    Show(OsShowArgs),
    /// Make a catalog (Raspberry Pi Imager's v4 format) of a folder of images, for an
    /// offline bench: sizes, both SHA-256s, init_format and a description read from each
    /// image, relative URLs
    MakeCatalog(super::make_catalog::MakeCatalogArgs),
}

#[derive(Args)]
pub struct OsListArgs {
    #[command(flatten)]
    catalog: CatalogArgs,
    /// Only images for this device (a name from `cardsmith devices`, or one of its tags)
    #[arg(long, value_name = "NAME|TAG")]
    device: Option<String>,
    /// Print the (filtered) catalog as JSON
    #[arg(long)]
    json: bool,
}

#[derive(Args)]
pub struct OsShowArgs {
    /// The image's name, or "Category/Name" when the name is not unique
    name: String,
    #[command(flatten)]
    catalog: CatalogArgs,
    /// Print the entry as JSON
    #[arg(long)]
    json: bool,
}

#[derive(Args)]
pub struct DevicesArgs {
    #[command(flatten)]
    catalog: CatalogArgs,
    /// Print the devices as JSON
    #[arg(long)]
    json: bool,
}

#[derive(Subcommand)]
pub enum CacheCommand {
    /// List the cached downloads, most recently used first
    List {
        /// Print the list as JSON
        #[arg(long)]
        json: bool,
    },
    /// Delete every cached download and catalog
    Clear,
}

/// The catalog's devices, and `name` among them when given.
fn device(loaded: &Loaded, name: Option<&str>) -> Result<Option<Device>, Failure> {
    name.map(|n| find_device(loaded.catalog.devices(), n))
        .transpose()
        .map_err(Failure::from)
}

/// The cache, when there is a place for it; cardsmith works without one.
fn cache_or_warn(reporter: &mut Reporter) -> Option<Cache> {
    job::open_cache(None, reporter)
}

/// The catalog entry `name` for `write --os` (for `--device`, only when made for it).
pub fn entry(
    args: &CatalogArgs,
    name: &str,
    device: Option<&str>,
    reporter: &mut Reporter,
) -> Result<OsEntry, Failure> {
    let cache = cache_or_warn(reporter);
    let loaded = args.load(&args.http()?, cache.as_ref(), reporter)?;
    let list = match device {
        Some(d) => {
            let device = find_device(loaded.catalog.devices(), d)?;
            let kept = for_device(&loaded.catalog.os_list, &device);
            if find_os(&kept, name).is_err() {
                if let Ok((path, entry)) = find_os(&loaded.catalog.os_list, name) {
                    return Err(cardsmith_catalog::Error::NotForDevice {
                        os: path,
                        device: device.name,
                        tags: entry.devices.clone().unwrap_or_default(),
                    }
                    .into());
                }
            }
            kept
        }
        None => loaded.catalog.os_list.clone(),
    };
    let (path, entry) = find_os(&list, name)?;
    if entry.url.is_none() {
        return Err(cardsmith_catalog::Error::NoUrl { name: path }.into());
    }
    // Refused now, before anything is downloaded.
    job::catalog_hashes(entry)?;
    Ok(entry.clone())
}

pub fn os(
    command: OsCommand,
    cancel: &cardsmith_engine::CancelToken,
    reporter: &mut Reporter,
) -> Result<(), Failure> {
    match command {
        OsCommand::MakeCatalog(args) => super::make_catalog::make_catalog(args, cancel, reporter),
        OsCommand::List(args) => {
            let cache = cache_or_warn(reporter);
            let loaded = args
                .catalog
                .load(&args.catalog.http()?, cache.as_ref(), reporter)?;
            let device = device(&loaded, args.device.as_deref())?;
            let list = match &device {
                Some(d) => for_device(&loaded.catalog.os_list, d),
                None => loaded.catalog.os_list.clone(),
            };
            if args.json {
                print_json(&json!({
                    "catalog": { "source": loaded.asked, "description": loaded.describe(),
                                 "fetched_at": loaded.fetched_at() },
                    "device": device.map(|d| d.name),
                    "os_list": list,
                }));
            } else {
                let mut out = String::new();
                tree(&mut out, &list, 0);
                if list.is_empty() {
                    out += "No images for this device.\n";
                }
                print!("{out}");
            }
            Ok(())
        }
        OsCommand::Show(args) => {
            let cache = cache_or_warn(reporter);
            let loaded = args
                .catalog
                .load(&args.catalog.http()?, cache.as_ref(), reporter)?;
            let (path, entry) = find_os(&loaded.catalog.os_list, &args.name)?;
            if args.json {
                print_json(&json!({ "path": path, "entry": entry }));
            } else {
                print!("{}", details(&path, entry));
            }
            Ok(())
        }
    }
}

pub fn devices(args: DevicesArgs, reporter: &mut Reporter) -> Result<(), Failure> {
    let cache = cache_or_warn(reporter);
    let loaded = args
        .catalog
        .load(&args.catalog.http()?, cache.as_ref(), reporter)?;
    let devices = loaded.catalog.devices();
    if args.json {
        print_json(&json!({ "devices": devices }));
        return Ok(());
    }
    let mut out = String::new();
    for d in devices {
        let matching = if d.is_inclusive() {
            "inclusive"
        } else {
            "exclusive"
        };
        let _ = write!(out, "{}", d.name);
        if d.is_default() {
            out += "  (default)";
        }
        let tags = if d.tags().is_empty() {
            "no tags: shows every image".to_owned()
        } else {
            format!("tags {}, {matching}", d.tags().join(", "))
        };
        let _ = writeln!(out, "\n    {tags}");
        if let Some(text) = &d.description {
            let _ = writeln!(out, "    {text}");
        }
    }
    print!("{out}");
    Ok(())
}

pub fn cache(command: CacheCommand, reporter: &mut Reporter) -> Result<(), Failure> {
    let cache = Cache::open()?;
    match command {
        CacheCommand::List { json } => {
            let entries = cache.list();
            job::cache_notes(&cache, reporter);
            if json {
                print_json(&json!({ "dir": cache.dir(), "entries": entries }));
                return Ok(());
            }
            let total: u64 = entries.iter().map(|e| e.size).sum();
            let mut out = format!(
                "{} in {} download{} ({})\n",
                cache.dir().display(),
                entries.len(),
                if entries.len() == 1 { "" } else { "s" },
                cardsmith_drives::human_size(total)
            );
            for e in &entries {
                let _ = writeln!(
                    out,
                    "{}  {:>9}  used {}  {}",
                    e.sha256.get(..12).unwrap_or(&e.sha256),
                    cardsmith_drives::human_size(e.size),
                    utc(e.last_used),
                    e.url
                );
            }
            print!("{out}");
        }
        CacheCommand::Clear => {
            let (files, bytes) = cache.clear()?;
            job::cache_notes(&cache, reporter);
            let text = format!(
                "Removed {files} cached file{} ({}) from {}.",
                if files == 1 { "" } else { "s" },
                cardsmith_drives::human_size(bytes),
                cache.dir().display()
            );
            reporter.note(
                &text,
                json!({ "event": "cleared", "files": files, "bytes": bytes }),
            );
        }
    }
    Ok(())
}

fn print_json(value: &Value) {
    println!(
        "{}",
        serde_json::to_string_pretty(value).expect("JSON serializes")
    );
}

/// The catalog as an indented tree: categories end with "/", images show date and size.
fn tree(out: &mut String, list: &[OsEntry], depth: usize) {
    for entry in list {
        let indent = "  ".repeat(depth);
        match &entry.subitems {
            Some(children) => {
                let _ = writeln!(out, "{indent}{}/", entry.name);
                tree(out, children, depth + 1);
            }
            None => {
                let _ = write!(out, "{indent}{}", entry.name);
                if let Some(date) = &entry.release_date {
                    let _ = write!(out, "  {date}");
                }
                if let Some(size) = entry.image_download_size {
                    let _ = write!(out, "  {}", cardsmith_drives::human_size(size));
                }
                out.push('\n');
            }
        }
    }
}

/// What `os show` prints.
fn details(path: &str, e: &OsEntry) -> String {
    let mut out = format!("{path}\n");
    let mut field = |name: &str, value: Option<String>| {
        if let Some(v) = value {
            let _ = writeln!(out, "  {name:<22}{v}");
        }
    };
    field("description", e.description.clone());
    field("url", e.url.clone());
    field("release date", e.release_date.clone());
    field(
        "download size",
        e.image_download_size
            .map(|s| format!("{} ({s} bytes)", cardsmith_drives::human_size(s))),
    );
    field("download SHA-256", e.image_download_sha256.clone());
    field(
        "image size",
        e.extract_size
            .map(|s| format!("{} ({s} bytes)", cardsmith_drives::human_size(s))),
    );
    field("image SHA-256", e.extract_sha256.clone());
    field(
        "customisation",
        Some(customisation(e.init_format.as_deref()).to_owned()),
    );
    field("devices", e.devices.as_ref().map(|d| d.join(", ")));
    field(
        "website",
        e.extra
            .get("website")
            .and_then(Value::as_str)
            .map(str::to_owned),
    );
    out
}

fn customisation(init_format: Option<&str>) -> &'static str {
    match init_format.unwrap_or("") {
        "systemd" => "systemd (firstrun.sh and cmdline.txt)",
        "cloudinit" => "cloud-init (user-data, network-config)",
        "cloudinit-rpi" => "cloud-init for Raspberry Pi OS (user-data, network-config)",
        _ => "none: the image is written as it is",
    }
}
