//! The Wi-Fi network this computer is connected to, asked of NetworkManager over the system
//! D-Bus: a suggestion to prefill the image customisation form with, nothing more.
//!
//! Only the public, documented NetworkManager objects are read: the manager's
//! `PrimaryConnection` and `ActiveConnections`, each active connection's `Type` and `Devices`,
//! the Wi-Fi device's `ActiveAccessPoint` and the access point's `Ssid`. Connection settings
//! and secrets (`GetSettings`, `GetSecrets`) are never asked for: no password leaves
//! NetworkManager through this module.
//!
//! Every function here answers `None` rather than fail: no system bus, no NetworkManager on it,
//! no active Wi-Fi connection, an unexpected reply, or no answer within [`TIMEOUT`]. None of
//! them panics, and none blocks for longer than about [`TIMEOUT`]: the D-Bus work runs on a
//! helper thread that is abandoned if it does not answer in time.

use std::sync::mpsc;
use std::thread;
use std::time::Duration;

use zbus::blocking::{fdo::DBusProxy, Connection, Proxy};
use zbus::names::BusName;
use zbus::zvariant::OwnedObjectPath;

/// How long the functions of this module wait for the bus and NetworkManager, all calls
/// together, before they give up and answer `None`.
pub const TIMEOUT: Duration = Duration::from_millis(1500);

/// The time allowed to each D-Bus method call on connections this module opens itself.
const CALL_TIMEOUT: Duration = Duration::from_millis(1000);

const SERVICE: &str = "org.freedesktop.NetworkManager";
const MANAGER_PATH: &str = "/org/freedesktop/NetworkManager";
const MANAGER: &str = "org.freedesktop.NetworkManager";
const ACTIVE: &str = "org.freedesktop.NetworkManager.Connection.Active";
const WIRELESS: &str = "org.freedesktop.NetworkManager.Device.Wireless";
const ACCESS_POINT: &str = "org.freedesktop.NetworkManager.AccessPoint";

/// The active connection type NetworkManager gives Wi-Fi connections.
const WIFI_TYPE: &str = "802-11-wireless";

/// The SSID (raw bytes: an SSID need not be UTF-8) of the Wi-Fi network this computer is
/// connected to, asked of NetworkManager on the system bus.
///
/// The primary connection is preferred when it is a Wi-Fi connection, else the first active
/// Wi-Fi connection is taken. `None` when there is no system bus, no NetworkManager on it, no
/// active Wi-Fi connection with a known, non-empty SSID, when anything fails, or when the
/// answer takes longer than [`TIMEOUT`].
pub fn connected_ssid() -> Option<Vec<u8>> {
    with_deadline(|| {
        let conn = zbus::blocking::connection::Builder::system()
            .ok()?
            .method_timeout(CALL_TIMEOUT)
            .build()
            .ok()?;
        ssid_via(&conn)
    })
}

/// As [`connected_ssid`], on the message bus at `address` (a D-Bus address such as
/// `unix:path=/run/dbus/system_bus_socket`) instead of the system bus.
pub fn connected_ssid_at(address: &str) -> Option<Vec<u8>> {
    let address = address.to_owned();
    with_deadline(move || {
        let conn = zbus::blocking::connection::Builder::address(address.as_str())
            .ok()?
            .method_timeout(CALL_TIMEOUT)
            .build()
            .ok()?;
        ssid_via(&conn)
    })
}

/// As [`connected_ssid`], through a connection the caller already has to a message bus.
///
/// The [`TIMEOUT`] applies here too, whatever method timeout `connection` was built with.
pub fn connected_ssid_on(connection: &Connection) -> Option<Vec<u8>> {
    let conn = connection.clone();
    with_deadline(move || ssid_via(&conn))
}

/// Runs `work` on a helper thread and waits at most [`TIMEOUT`] for its answer. A thread that
/// does not answer in time is left to finish (or stay stuck) on its own; a thread that panics
/// answers `None`.
fn with_deadline<F>(work: F) -> Option<Vec<u8>>
where
    F: FnOnce() -> Option<Vec<u8>> + Send + 'static,
{
    let (tx, rx) = mpsc::sync_channel(1);
    thread::Builder::new()
        .name("cardsmith-wifi-ssid".into())
        .spawn(move || {
            // The receiver may be gone (timed out): nothing to do then.
            let _ = tx.send(work());
        })
        .ok()?;
    rx.recv_timeout(TIMEOUT).ok().flatten()
}

/// The SSID of the preferred active Wi-Fi connection, through `conn`.
fn ssid_via(conn: &Connection) -> Option<Vec<u8>> {
    // Ask the bus first, so that a NetworkManager that is installed but not running is not
    // started by D-Bus activation just to prefill a form.
    let name = BusName::try_from(SERVICE).ok()?;
    if !DBusProxy::new(conn).ok()?.name_has_owner(name).ok()? {
        return None;
    }

    let manager = proxy(conn, MANAGER_PATH, MANAGER)?;
    let primary = manager
        .get_property::<OwnedObjectPath>("PrimaryConnection")
        .ok()
        .filter(|p| !is_none(p));
    if let Some(primary) = &primary {
        if let Some(ssid) = active_wifi_ssid(conn, primary) {
            return Some(ssid);
        }
    }

    let active = manager
        .get_property::<Vec<OwnedObjectPath>>("ActiveConnections")
        .ok()?;
    active
        .iter()
        .filter(|path| !is_none(path) && Some(*path) != primary.as_ref())
        .find_map(|path| active_wifi_ssid(conn, path))
}

/// The SSID of the active connection at `path` if it is a Wi-Fi connection whose device has
/// an access point with a non-empty SSID.
fn active_wifi_ssid(conn: &Connection, path: &OwnedObjectPath) -> Option<Vec<u8>> {
    let active = proxy(conn, path.as_str(), ACTIVE)?;
    if active.get_property::<String>("Type").ok()? != WIFI_TYPE {
        return None;
    }
    let devices = active
        .get_property::<Vec<OwnedObjectPath>>("Devices")
        .ok()?;
    devices
        .iter()
        .filter(|device| !is_none(device))
        .find_map(|device| {
            let ap = proxy(conn, device.as_str(), WIRELESS)?
                .get_property::<OwnedObjectPath>("ActiveAccessPoint")
                .ok()
                .filter(|ap| !is_none(ap))?;
            let ssid = proxy(conn, ap.as_str(), ACCESS_POINT)?
                .get_property::<Vec<u8>>("Ssid")
                .ok()?;
            // A hidden network's access point may not know its SSID yet.
            (!ssid.is_empty()).then_some(ssid)
        })
}

/// A proxy for `interface` on NetworkManager's object `path`, reading properties afresh on
/// every call (no cache, so no signal subscription and no waiting for one).
fn proxy<'a>(conn: &'a Connection, path: &'a str, interface: &'a str) -> Option<Proxy<'a>> {
    zbus::blocking::proxy::Builder::new(conn)
        .destination(SERVICE)
        .ok()?
        .path(path)
        .ok()?
        .interface(interface)
        .ok()?
        .cache_properties(zbus::proxy::CacheProperties::No)
        .build()
        .ok()
}

/// NetworkManager's "no object" path.
fn is_none(path: &OwnedObjectPath) -> bool {
    path.as_str() == "/"
}
