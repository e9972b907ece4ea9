//! `wifi::connected_ssid*` against a fake NetworkManager on a private dbus-daemon that each
//! test starts (and kills when it ends, passed or failed). Needs `dbus-daemon` installed
//! (`apt-get install dbus-daemon`); the tests fail, rather than skip, without it.

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::os::unix::net::UnixListener;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use cardsmith_drives::wifi::{connected_ssid, connected_ssid_at, connected_ssid_on};
use zbus::blocking::connection::Builder;
use zbus::blocking::Connection;
use zbus::zvariant::{OwnedObjectPath, OwnedValue};

/// Longest any lookup may take, whatever goes wrong.
const QUICK: Duration = Duration::from_secs(3);

const NM: &str = "org.freedesktop.NetworkManager";
const WIFI: &str = "802-11-wireless";
const ETHERNET: &str = "802-3-ethernet";

// ---------------------------------------------------------------------------------------
// The private bus.

/// A private message bus: a dbus-daemon on a socket in a temporary directory, killed when
/// dropped.
struct Bus {
    child: Child,
    address: String,
    _dir: tempfile::TempDir,
}

impl Bus {
    fn start() -> Bus {
        let dir = tempfile::tempdir().expect("temporary directory");
        let config = dir.path().join("bus.conf");
        std::fs::write(&config, config_text(&dir.path().join("socket"))).unwrap();
        let log_path = dir.path().join("dbus-daemon.log");
        let log = std::fs::File::create(&log_path).unwrap();
        let child = Command::new("dbus-daemon")
            .arg(format!("--config-file={}", config.display()))
            .args(["--nofork", "--print-address"])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| {
                panic!("cannot run dbus-daemon ({e}); these tests need it: apt-get install dbus-daemon")
            });
        // The guard exists before anything can fail, so the daemon is always killed.
        let mut bus = Bus {
            child,
            address: String::new(),
            _dir: dir,
        };
        let stdout = bus.child.stdout.take().expect("piped stdout");
        let mut line = String::new();
        let _ = BufReader::new(stdout).read_line(&mut line);
        bus.address = line.trim().to_owned();
        assert!(
            bus.address.starts_with("unix:"),
            "dbus-daemon printed no address ({:?}; exit status {:?}); its log:\n{}",
            line,
            bus.child.try_wait(),
            std::fs::read_to_string(&log_path).unwrap_or_default()
        );
        bus
    }

    /// A client connection to the bus, as a program would use it.
    fn client(&self) -> Connection {
        Builder::address(self.address.as_str())
            .unwrap()
            .build()
            .expect("connect to the private bus")
    }
}

impl Drop for Bus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn config_text(socket: &Path) -> String {
    format!(
        r#"<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <type>session</type>
  <listen>unix:path={}</listen>
  <auth>EXTERNAL</auth>
  <policy context="default">
    <allow send_destination="*" eavesdrop="true"/>
    <allow eavesdrop="true"/>
    <allow own="*"/>
  </policy>
</busconfig>
"#,
        socket.display()
    )
}

// ---------------------------------------------------------------------------------------
// The fake NetworkManager: the documented interfaces, with only the properties read.

fn path(p: &str) -> OwnedObjectPath {
    OwnedObjectPath::try_from(p).unwrap()
}

struct Manager {
    primary: OwnedObjectPath,
    active: Vec<OwnedObjectPath>,
}

#[zbus::interface(name = "org.freedesktop.NetworkManager")]
impl Manager {
    #[zbus(property)]
    fn primary_connection(&self) -> OwnedObjectPath {
        self.primary.clone()
    }

    #[zbus(property)]
    fn active_connections(&self) -> Vec<OwnedObjectPath> {
        self.active.clone()
    }
}

struct Active {
    kind: &'static str,
    devices: Vec<OwnedObjectPath>,
    settings: OwnedObjectPath,
}

#[zbus::interface(name = "org.freedesktop.NetworkManager.Connection.Active")]
impl Active {
    #[zbus(property, name = "Type")]
    fn kind(&self) -> String {
        self.kind.to_owned()
    }

    #[zbus(property)]
    fn devices(&self) -> Vec<OwnedObjectPath> {
        self.devices.clone()
    }

    #[zbus(property)]
    fn connection(&self) -> OwnedObjectPath {
        self.settings.clone()
    }
}

struct Wireless {
    access_point: OwnedObjectPath,
}

#[zbus::interface(name = "org.freedesktop.NetworkManager.Device.Wireless")]
impl Wireless {
    #[zbus(property)]
    fn active_access_point(&self) -> OwnedObjectPath {
        self.access_point.clone()
    }
}

struct Wired;

#[zbus::interface(name = "org.freedesktop.NetworkManager.Device.Wired")]
impl Wired {
    #[zbus(property)]
    fn speed(&self) -> u32 {
        1000
    }
}

struct AccessPoint {
    ssid: Vec<u8>,
    /// Takes this long to answer (a NetworkManager that hangs).
    delay: Duration,
}

#[zbus::interface(name = "org.freedesktop.NetworkManager.AccessPoint")]
impl AccessPoint {
    #[zbus(property)]
    fn ssid(&self) -> Vec<u8> {
        std::thread::sleep(self.delay);
        self.ssid.clone()
    }
}

type Settings = HashMap<String, HashMap<String, OwnedValue>>;

/// A settings profile that records whether anyone asked for its settings or secrets.
struct Profile {
    asked: Arc<AtomicBool>,
}

#[zbus::interface(name = "org.freedesktop.NetworkManager.Settings.Connection")]
impl Profile {
    fn get_settings(&self) -> zbus::fdo::Result<Settings> {
        self.asked.store(true, Ordering::SeqCst);
        Err(zbus::fdo::Error::AccessDenied(
            "test: settings asked".into(),
        ))
    }

    fn get_secrets(&self, _setting_name: String) -> zbus::fdo::Result<Settings> {
        self.asked.store(true, Ordering::SeqCst);
        Err(zbus::fdo::Error::AccessDenied("test: secrets asked".into()))
    }
}

/// One active connection of the fake: its type and, for Wi-Fi, the SSID of its access point
/// (`None`: the device has no active access point).
struct Conn {
    kind: &'static str,
    ssid: Option<&'static [u8]>,
}

fn wifi(ssid: &'static [u8]) -> Conn {
    Conn {
        kind: WIFI,
        ssid: Some(ssid),
    }
}

fn ethernet() -> Conn {
    Conn {
        kind: ETHERNET,
        ssid: None,
    }
}

/// A NetworkManager on `bus`, its connection holding the name (drop it to leave the bus).
struct FakeNm {
    _conn: Connection,
    secrets_asked: Arc<AtomicBool>,
}

impl FakeNm {
    fn serve(bus: &Bus, primary: Option<usize>, conns: Vec<Conn>) -> FakeNm {
        FakeNm::serve_with_delay(bus, primary, conns, Duration::ZERO)
    }

    fn serve_with_delay(
        bus: &Bus,
        primary: Option<usize>,
        conns: Vec<Conn>,
        delay: Duration,
    ) -> FakeNm {
        let asked = Arc::new(AtomicBool::new(false));
        let active = |i: usize| {
            path(&format!(
                "/org/freedesktop/NetworkManager/ActiveConnection/{i}"
            ))
        };
        let mut builder = Builder::address(bus.address.as_str())
            .unwrap()
            .serve_at(
                "/org/freedesktop/NetworkManager",
                Manager {
                    primary: primary.map_or_else(|| path("/"), active),
                    active: (0..conns.len()).map(active).collect(),
                },
            )
            .unwrap();
        for (i, conn) in conns.iter().enumerate() {
            let device = format!("/org/freedesktop/NetworkManager/Devices/{i}");
            let settings = format!("/org/freedesktop/NetworkManager/Settings/{i}");
            builder = builder
                .serve_at(
                    active(i),
                    Active {
                        kind: conn.kind,
                        devices: vec![path(&device)],
                        settings: path(&settings),
                    },
                )
                .unwrap()
                .serve_at(
                    path(&settings),
                    Profile {
                        asked: asked.clone(),
                    },
                )
                .unwrap();
            builder = if conn.kind == WIFI {
                let ap = format!("/org/freedesktop/NetworkManager/AccessPoint/{i}");
                let builder = builder
                    .serve_at(
                        path(&device),
                        Wireless {
                            access_point: path(if conn.ssid.is_some() { &ap } else { "/" }),
                        },
                    )
                    .unwrap();
                match conn.ssid {
                    Some(ssid) => builder
                        .serve_at(
                            path(&ap),
                            AccessPoint {
                                ssid: ssid.to_vec(),
                                delay,
                            },
                        )
                        .unwrap(),
                    None => builder,
                }
            } else {
                builder.serve_at(path(&device), Wired).unwrap()
            };
        }
        let conn = builder
            .name(NM)
            .unwrap()
            .build()
            .expect("fake NetworkManager on the private bus");
        FakeNm {
            _conn: conn,
            secrets_asked: asked,
        }
    }

    fn assert_no_secrets_asked(&self) {
        assert!(
            !self.secrets_asked.load(Ordering::SeqCst),
            "GetSettings or GetSecrets was called"
        );
    }
}

/// Runs `f` and returns its answer, failing the test if that takes [`QUICK`] or longer (even
/// if `f` never returns: it runs on a thread of its own, abandoned then).
fn quick<T: Send + 'static>(what: &str, f: impl FnOnce() -> T + Send + 'static) -> T {
    let (tx, rx) = mpsc::channel();
    let start = Instant::now();
    thread::spawn(move || {
        let _ = tx.send(f());
    });
    match rx.recv_timeout(QUICK) {
        Ok(answer) => answer,
        Err(RecvTimeoutError::Timeout) => panic!("{what} did not answer within {QUICK:?}"),
        Err(RecvTimeoutError::Disconnected) => {
            panic!("{what} panicked after {:?}", start.elapsed())
        }
    }
}

/// [`connected_ssid_at`] on `address`, within [`QUICK`].
fn at(address: &str) -> Option<Vec<u8>> {
    let address = address.to_owned();
    quick("connected_ssid_at", move || connected_ssid_at(&address))
}

/// [`connected_ssid_on`] a new client connection to `bus`, within [`QUICK`].
fn on(bus: &Bus) -> Option<Vec<u8>> {
    let client = bus.client();
    quick("connected_ssid_on", move || connected_ssid_on(&client))
}

/// The lookup on `bus` both ways (by address and through a connection), checked to agree and
/// to be quick.
fn lookup(bus: &Bus) -> Option<Vec<u8>> {
    let by_address = at(&bus.address);
    let on_connection = on(bus);
    assert_eq!(
        by_address, on_connection,
        "connected_ssid_at and connected_ssid_on disagree"
    );
    by_address
}

// ---------------------------------------------------------------------------------------
// The tests.

#[test]
fn non_utf8_ssid_is_returned_byte_for_byte() {
    let bus = Bus::start();
    // Latin-1 "café" (0xe9 is no UTF-8 here), a 0xff byte and a NUL.
    let ssid: &[u8] = b"caf\xe9 \xff\x00net";
    let nm = FakeNm::serve(&bus, Some(0), vec![wifi(ssid)]);
    assert_eq!(lookup(&bus).as_deref(), Some(ssid));
    nm.assert_no_secrets_asked();
}

#[test]
fn ssid_with_spaces_is_kept_exactly() {
    let bus = Bus::start();
    let ssid: &[u8] = b"  My Home  Wi-Fi ";
    let nm = FakeNm::serve(&bus, Some(0), vec![wifi(ssid)]);
    assert_eq!(lookup(&bus).as_deref(), Some(ssid));
    nm.assert_no_secrets_asked();
}

#[test]
fn ethernet_primary_falls_back_to_active_wifi() {
    let bus = Bus::start();
    let nm = FakeNm::serve(
        &bus,
        Some(0),
        vec![ethernet(), wifi(b"Office WLAN"), wifi(b"Second")],
    );
    assert_eq!(lookup(&bus).as_deref(), Some(&b"Office WLAN"[..]));
    nm.assert_no_secrets_asked();
}

#[test]
fn wifi_primary_is_preferred_over_earlier_wifi() {
    let bus = Bus::start();
    let nm = FakeNm::serve(
        &bus,
        Some(2),
        vec![wifi(b"Listed first"), ethernet(), wifi(b"Primary one")],
    );
    assert_eq!(lookup(&bus).as_deref(), Some(&b"Primary one"[..]));
    nm.assert_no_secrets_asked();
}

#[test]
fn no_primary_takes_first_wifi_with_an_access_point() {
    let bus = Bus::start();
    let nm = FakeNm::serve(
        &bus,
        None,
        vec![
            ethernet(),
            Conn {
                kind: WIFI,
                ssid: None,
            },
            wifi(b""),
            wifi(b"Third"),
        ],
    );
    assert_eq!(lookup(&bus).as_deref(), Some(&b"Third"[..]));
    nm.assert_no_secrets_asked();
}

#[test]
fn no_wifi_is_none() {
    let bus = Bus::start();
    let nm = FakeNm::serve(&bus, Some(0), vec![ethernet()]);
    assert_eq!(lookup(&bus), None);
    nm.assert_no_secrets_asked();
    drop(nm);

    let bus = Bus::start();
    let _nm = FakeNm::serve(&bus, None, vec![]);
    assert_eq!(lookup(&bus), None);

    let bus = Bus::start();
    let _nm = FakeNm::serve(
        &bus,
        Some(0),
        vec![Conn {
            kind: WIFI,
            ssid: None,
        }],
    );
    assert_eq!(lookup(&bus), None);
}

#[test]
fn no_network_manager_is_none_quickly() {
    let bus = Bus::start();
    assert_eq!(at(&bus.address), None);
    assert_eq!(on(&bus), None);
}

#[test]
fn hanging_network_manager_is_none_quickly() {
    let bus = Bus::start();
    let nm = FakeNm::serve_with_delay(&bus, Some(0), vec![wifi(b"Slow")], Duration::from_secs(6));
    assert_eq!(at(&bus.address), None);
    // A caller's connection built without a method timeout: only the deadline saves it.
    assert_eq!(on(&bus), None);
    nm.assert_no_secrets_asked();
}

#[test]
fn absent_or_silent_bus_is_none_quickly() {
    let dir = tempfile::tempdir().unwrap();

    // Nothing listens.
    let missing = format!("unix:path={}", dir.path().join("nothing").display());
    assert_eq!(at(&missing), None);

    // Something listens and never answers the handshake.
    let socket = dir.path().join("silent");
    let _listener = UnixListener::bind(&socket).unwrap();
    assert_eq!(at(&format!("unix:path={}", socket.display())), None);

    // Not an address at all.
    assert_eq!(at("not a d-bus address"), None);
}

#[test]
fn system_bus_lookup_returns_quickly() {
    // Whatever this machine has (no system bus, no NetworkManager, or a real one), the answer
    // comes quickly and without a panic.
    let _ = quick("connected_ssid", connected_ssid);
}
