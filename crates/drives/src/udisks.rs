//! The UDisks2 daemon over the system D-Bus: how a normal user opens, unmounts and powers off
//! a drive. UDisks asks polkit whether the caller may, and hands back a file descriptor.

use std::collections::HashMap;
use std::os::fd::OwnedFd;
use std::path::Path;

use zbus::blocking::{Connection, Proxy};
use zbus::zvariant::{OwnedObjectPath, Value};

use crate::Error;

const SERVICE: &str = "org.freedesktop.UDisks2";
const MANAGER: &str = "/org/freedesktop/UDisks2/Manager";

/// A connection to udisksd.
pub struct UDisks {
    conn: Connection,
}

type Options<'a> = HashMap<&'a str, Value<'a>>;

impl UDisks {
    /// Connects to the system bus and checks that udisksd answers there. The error says why
    /// not, for the user's benefit: no bus, or no UDisks2 on it.
    pub fn connect() -> Result<UDisks, String> {
        let conn = Connection::system().map_err(|e| format!("no system D-Bus: {e}"))?;
        let udisks = UDisks { conn };
        udisks
            .proxy(MANAGER, "org.freedesktop.UDisks2.Manager")
            .and_then(|m| m.get_property::<String>("Version"))
            .map_err(|e| format!("UDisks2 does not answer on the system bus: {}", message(&e)))?;
        Ok(udisks)
    }

    fn proxy<'a>(&'a self, path: &'a str, interface: &'a str) -> zbus::Result<Proxy<'a>> {
        zbus::blocking::proxy::Builder::new(&self.conn)
            .destination(SERVICE)?
            .path(path)?
            .interface(interface)?
            .cache_properties(zbus::proxy::CacheProperties::No)
            .build()
    }

    /// The UDisks object of a device node.
    fn block_object(&self, device: &Path) -> zbus::Result<OwnedObjectPath> {
        let manager = self.proxy(MANAGER, "org.freedesktop.UDisks2.Manager")?;
        let device = device.to_string_lossy();
        let spec: Options = HashMap::from([("path", Value::from(device.as_ref()))]);
        let found: Vec<OwnedObjectPath> = manager.call("ResolveDevice", &(spec, Options::new()))?;
        found
            .into_iter()
            .next()
            .ok_or_else(|| zbus::Error::Failure(format!("UDisks2 does not know {device}")))
    }

    /// Opens `device` read-write with `flags` (O_EXCL, O_DIRECT, O_CLOEXEC are allowed).
    /// Opens `device` through Block.OpenDevice: `mode` "rw" to write it, "r" to read it.
    pub fn open(&self, device: &Path, mode: &str, flags: i32) -> Result<OwnedFd, Error> {
        let result = self.block_object(device).and_then(|object| {
            let block = self.proxy(object.as_str(), "org.freedesktop.UDisks2.Block")?;
            let options: Options = HashMap::from([("flags", Value::from(flags))]);
            block.call::<_, _, zbus::zvariant::OwnedFd>("OpenDevice", &(mode, options))
        });
        match result {
            Ok(fd) => Ok(fd.into()),
            Err(e) => Err(classify(
                e,
                device,
                if mode == "r" { "read" } else { "write" },
            )),
        }
    }

    /// Unmounts the filesystem on `device` (every mount point of it).
    pub fn unmount(&self, device: &Path) -> Result<(), Error> {
        self.block_object(device)
            .and_then(|object| {
                let fs = self.proxy(object.as_str(), "org.freedesktop.UDisks2.Filesystem")?;
                fs.call::<_, _, ()>("Unmount", &(Options::new(),))
            })
            .map_err(|e| classify(e, device, "unmount"))
    }

    /// Powers off the drive `device` is on, so it can be pulled out safely.
    pub fn power_off(&self, device: &Path) -> Result<(), Error> {
        let drive = self
            .block_object(device)
            .and_then(|object| {
                self.proxy(object.as_str(), "org.freedesktop.UDisks2.Block")?
                    .get_property::<OwnedObjectPath>("Drive")
            })
            .map_err(|e| classify(e, device, "find the drive of"))?;
        if drive.as_str() == "/" {
            return Err(Error::NothingToPowerOff {
                path: device.to_owned(),
                what: "virtual device (UDisks2 lists no drive for it)",
            });
        }
        self.proxy(drive.as_str(), "org.freedesktop.UDisks2.Drive")
            .and_then(|d| d.call::<_, _, ()>("PowerOff", &(Options::new(),)))
            .map_err(|e| classify(e, device, "power off"))
    }
}

/// The text of a D-Bus error, without zbus's wrapping.
fn message(e: &zbus::Error) -> String {
    match e {
        zbus::Error::MethodError(name, Some(text), _) => format!("{text} ({name})"),
        zbus::Error::MethodError(name, None, _) => name.to_string(),
        other => other.to_string(),
    }
}

/// Turns a UDisks refusal into the error a person can act on.
fn classify(e: zbus::Error, device: &Path, what: &'static str) -> Error {
    let path = device.to_owned();
    if let zbus::Error::MethodError(name, text, _) = &e {
        let text = text.clone().unwrap_or_default();
        if name.as_str().contains("NotAuthorized") {
            return Error::NotAuthorized {
                what,
                path,
                detail: text,
            };
        }
        if name.as_str().ends_with(".DeviceBusy") || text.contains("Device or resource busy") {
            return match what {
                "unmount" => Error::MountBusy { mountpoint: path },
                _ => Error::Busy { path },
            };
        }
        if text.contains("Read-only file system") {
            return Error::ReadOnly { path };
        }
    }
    Error::UDisks {
        what,
        path,
        detail: message(&e),
    }
}
