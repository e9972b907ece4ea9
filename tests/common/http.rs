//! A small HTTP/1.1 server on 127.0.0.1 for the download tests. It serves byte strings by
//! path, honours `Range: bytes=N-`, logs every request, and can misbehave on purpose:
//! drop the connection at byte N, stall, answer with an error status, send wrong bytes,
//! or ignore Range.

use std::collections::{HashMap, VecDeque};
use std::io::{BufRead, BufReader, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::Duration;

/// Something to do wrong on one request, taken in order, one per request.
#[derive(Debug, Clone, Copy)]
pub enum Fault {
    /// Close the connection once the file's byte `n` would be next.
    DropAt(u64),
    /// Stop sending before byte `n` for this long, then go on.
    StallAt(u64, Duration),
    /// Answer with this status and no body.
    Status(u16),
}

#[derive(Default)]
struct Route {
    body: Vec<u8>,
    faults: VecDeque<Fault>,
    /// Every request gets this status (404, 500…).
    status: Option<u16>,
    ignore_range: bool,
    /// Flip the byte at this offset in what is sent.
    corrupt_at: Option<u64>,
    /// Served from the second request on: the file changed on the server.
    next_body: Option<Vec<u8>>,
}

/// A request as the server saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    pub path: String,
    pub range: Option<String>,
}

pub struct Server {
    addr: SocketAddr,
    routes: Arc<Mutex<HashMap<String, Route>>>,
    log: Arc<Mutex<Vec<Request>>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Server {
    pub fn start() -> Server {
        let listener = TcpListener::bind("127.0.0.1:0").expect("binding 127.0.0.1");
        let addr = listener.local_addr().unwrap();
        let routes: Arc<Mutex<HashMap<String, Route>>> = Arc::default();
        let log: Arc<Mutex<Vec<Request>>> = Arc::default();
        let stop = Arc::new(AtomicBool::new(false));
        let (r, l, s) = (routes.clone(), log.clone(), stop.clone());
        let thread = thread::spawn(move || {
            for stream in listener.incoming() {
                if s.load(Ordering::Relaxed) {
                    break;
                }
                let Ok(stream) = stream else { continue };
                let (r, l, s) = (r.clone(), l.clone(), s.clone());
                thread::spawn(move || {
                    let _ = handle(stream, &r, &l, &s);
                });
            }
        });
        Server {
            addr,
            routes,
            log,
            stop,
            thread: Some(thread),
        }
    }

    /// The URL of `path` ("/os.json").
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    pub fn serve(&self, path: &str, body: Vec<u8>) {
        self.routes.lock().unwrap().insert(
            path.to_owned(),
            Route {
                body,
                ..Route::default()
            },
        );
    }

    fn with_route(&self, path: &str, change: impl FnOnce(&mut Route)) {
        let mut routes = self.routes.lock().unwrap();
        change(routes.get_mut(path).expect("serve the path first"));
    }

    /// The next requests of `path` meet these faults, one each.
    pub fn faults(&self, path: &str, faults: &[Fault]) {
        self.with_route(path, |r| r.faults.extend(faults));
    }

    pub fn status(&self, path: &str, status: u16) {
        self.with_route(path, |r| r.status = Some(status));
    }

    pub fn ignore_range(&self, path: &str) {
        self.with_route(path, |r| r.ignore_range = true);
    }

    /// After the next request, `path` serves `body` instead.
    pub fn replace_after_next(&self, path: &str, body: Vec<u8>) {
        self.with_route(path, |r| r.next_body = Some(body));
    }

    pub fn corrupt(&self, path: &str, offset: u64) {
        self.with_route(path, |r| r.corrupt_at = Some(offset));
    }

    /// The requests of `path` so far.
    pub fn requests(&self, path: &str) -> Vec<Request> {
        let log = self.log.lock().unwrap();
        log.iter().filter(|r| r.path == path).cloned().collect()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        let _ = TcpStream::connect(self.addr); // wakes the accept loop
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn handle(
    mut stream: TcpStream,
    routes: &Mutex<HashMap<String, Route>>,
    log: &Mutex<Vec<Request>>,
    stop: &AtomicBool,
) -> std::io::Result<()> {
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut line = String::new();
    reader.read_line(&mut line)?;
    let path = line.split(' ').nth(1).unwrap_or("/").to_owned();
    let mut range = None;
    loop {
        let mut header = String::new();
        if reader.read_line(&mut header)? == 0 || header.trim().is_empty() {
            break;
        }
        if let Some((name, value)) = header.split_once(':') {
            if name.eq_ignore_ascii_case("range") {
                range = Some(value.trim().to_owned());
            }
        }
    }
    log.lock().unwrap().push(Request {
        path: path.clone(),
        range: range.clone(),
    });
    let (body, fault, status, ignore_range, corrupt_at) = {
        let mut routes = routes.lock().unwrap();
        match routes.get_mut(&path) {
            None => (Vec::new(), None, Some(404), false, None),
            Some(route) => {
                let served = (
                    route.body.clone(),
                    route.faults.pop_front(),
                    route.status,
                    route.ignore_range,
                    route.corrupt_at,
                );
                if let Some(next) = route.next_body.take() {
                    route.body = next;
                }
                served
            }
        }
    };
    let status = match fault {
        Some(Fault::Status(s)) => Some(s),
        _ => status,
    };
    if let Some(status) = status {
        write!(
            stream,
            "HTTP/1.1 {status} Oops\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
        )?;
        return Ok(());
    }
    let start = range
        .as_deref()
        .filter(|_| !ignore_range)
        .and_then(|r| r.strip_prefix("bytes="))
        .and_then(|r| r.strip_suffix('-'))
        .and_then(|n| n.parse::<u64>().ok())
        .filter(|&n| n <= body.len() as u64);
    let total = body.len() as u64;
    match start {
        Some(from) => write!(
            stream,
            "HTTP/1.1 206 Partial Content\r\nContent-Length: {}\r\nContent-Range: bytes {from}-{}/{total}\r\nConnection: close\r\n\r\n",
            total - from,
            total.saturating_sub(1)
        )?,
        None => write!(
            stream,
            "HTTP/1.1 200 OK\r\nContent-Length: {total}\r\nAccept-Ranges: bytes\r\nConnection: close\r\n\r\n"
        )?,
    }
    let from = start.unwrap_or(0);
    let mut data = body[from as usize..].to_vec();
    if let Some(at) = corrupt_at.filter(|&at| at >= from && at < total) {
        data[(at - from) as usize] ^= 0xFF;
    }
    // Where the fault strikes, as an offset into `data`.
    let cut = match fault {
        Some(Fault::DropAt(n) | Fault::StallAt(n, _)) if n >= from => Some((n - from) as usize),
        _ => None,
    };
    match (fault, cut) {
        (Some(Fault::DropAt(_)), Some(cut)) => {
            stream.write_all(&data[..cut.min(data.len())])?;
            stream.flush()?;
            let _ = stream.shutdown(Shutdown::Both);
        }
        (Some(Fault::StallAt(_, pause)), Some(cut)) => {
            let cut = cut.min(data.len());
            stream.write_all(&data[..cut])?;
            stream.flush()?;
            let mut waited = Duration::ZERO;
            while waited < pause && !stop.load(Ordering::Relaxed) {
                thread::sleep(Duration::from_millis(50));
                waited += Duration::from_millis(50);
            }
            stream.write_all(&data[cut..])?;
        }
        _ => stream.write_all(&data)?,
    }
    stream.flush()
}
