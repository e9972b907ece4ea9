//! HTTP: small files (catalogs) fetched whole, and image downloads streamed with resume.
//!
//! A [`Download`] is a `Read` that survives dropped connections: when the body fails, ends
//! early or stalls for longer than the stall timeout, it asks again with
//! `Range: bytes=N-` (and `If-Range`, so a file that changed is not spliced) from the last
//! byte received, waiting a little longer each time, up to [`ATTEMPTS`] times in a row
//! without progress. A server that ignores the Range header and sends the whole file again
//! is handled by skipping what was already received, so no byte is delivered twice.

use std::io::{self, Read};
use std::sync::Arc;
use std::thread;
use std::time::Duration;

use reqwest::blocking::{Client, Response};
use reqwest::header::{CONTENT_RANGE, ETAG, IF_RANGE, LAST_MODIFIED, RANGE};
use reqwest::StatusCode;
use url::Url;

use crate::Error;

/// No bytes for this long counts as a dropped connection.
pub const STALL_TIMEOUT: Duration = Duration::from_secs(60);
/// How many attempts in a row may fail (without a byte arriving in between) before a
/// download fails.
pub const ATTEMPTS: u32 = 5;
/// Attempts for a catalog: a dead network should fall back to the cache quickly.
const CATALOG_ATTEMPTS: u32 = 3;
const FIRST_BACKOFF: Duration = Duration::from_millis(250);
const MAX_BACKOFF: Duration = Duration::from_secs(8);

/// Somewhere to say what happens while a download runs (a retry, a resume).
pub type Say = Arc<dyn Fn(&str) + Send + Sync>;

/// Receives every byte of a download as it arrives (the download cache).
pub trait Tee: Send {
    fn bytes(&mut self, data: &[u8]);
    /// The download ended and every byte was seen.
    fn finished(&mut self);
}

/// An HTTP client with cardsmith's timeouts.
#[derive(Clone)]
pub struct Http {
    client: Client,
    stall: Duration,
}

impl Http {
    /// `stall`: how long without a byte counts as a dropped connection.
    pub fn new(stall: Duration) -> Result<Http, Error> {
        let client = Client::builder()
            .user_agent(concat!("cardsmith/", env!("CARGO_PKG_VERSION")))
            .connect_timeout(stall)
            // reqwest's blocking timeout applies to each read, not to the whole body.
            .timeout(stall)
            .build()
            .map_err(|e| Error::Http {
                url: String::new(),
                detail: e.to_string(),
            })?;
        Ok(Http { client, stall })
    }

    /// Fetches a small file whole, refusing more than `limit` bytes. Failures that may pass
    /// (a dropped connection, a 5xx answer) are retried.
    pub fn fetch(&self, url: &Url, limit: u64) -> Result<Vec<u8>, Error> {
        let mut download = self.download(url.clone(), None);
        download.attempts = CATALOG_ATTEMPTS;
        let mut body = Vec::new();
        (&mut download)
            .take(limit + 1)
            .read_to_end(&mut body)
            .map_err(|e| Error::Http {
                url: url.to_string(),
                detail: e.to_string(),
            })?;
        if body.len() as u64 > limit {
            return Err(Error::TooLarge {
                url: url.to_string(),
                limit,
            });
        }
        Ok(body)
    }

    /// Starts a resumable download (the first request is made on the first read).
    pub fn download(&self, url: Url, say: Option<Say>) -> Download {
        Download {
            http: self.clone(),
            url,
            received: 0,
            total: None,
            body: None,
            failures: 0,
            attempts: ATTEMPTS,
            validator: None,
            tee: None,
            say,
            done: false,
        }
    }
}

/// A download as a `Read`, resuming after drops.
pub struct Download {
    http: Http,
    url: Url,
    received: u64,
    /// The full length, when the server said it.
    total: Option<u64>,
    body: Option<Response>,
    /// Failed attempts since the last byte arrived.
    failures: u32,
    attempts: u32,
    /// The first answer's ETag (or else Last-Modified): a resumed answer must carry it.
    validator: Option<String>,
    tee: Option<Box<dyn Tee>>,
    say: Option<Say>,
    done: bool,
}

/// Why one attempt failed, and whether another attempt may help.
struct Failed {
    detail: String,
    retry: bool,
}

impl Failed {
    fn retry(detail: impl Into<String>) -> Failed {
        Failed {
            detail: detail.into(),
            retry: true,
        }
    }

    fn fatal(detail: impl Into<String>) -> Failed {
        Failed {
            detail: detail.into(),
            retry: false,
        }
    }
}

impl Download {
    /// Sends every byte to `tee` too.
    pub fn with_tee(mut self, tee: Box<dyn Tee>) -> Download {
        self.tee = Some(tee);
        self
    }

    /// Bytes delivered so far.
    pub fn received(&self) -> u64 {
        self.received
    }

    /// Makes a request for the bytes from `received` on, and skips what the server sends
    /// again if it ignored the Range header. `None`: there is nothing more to read.
    fn connect(&mut self) -> Result<Option<Response>, Failed> {
        let mut request = self.http.client.get(self.url.clone());
        if self.received > 0 {
            request = request.header(RANGE, format!("bytes={}-", self.received));
            if let Some(validator) = &self.validator {
                request = request.header(IF_RANGE, validator.as_str());
            }
        }
        let mut response = request.send().map_err(|e| Failed::retry(describe(&e)))?;
        let status = response.status();
        match status {
            StatusCode::OK => {
                self.check_same_file(&response, response.content_length())?;
                self.total = response.content_length();
                if self.received > 0 {
                    self.skip(&mut response)?;
                }
            }
            StatusCode::PARTIAL_CONTENT => {
                let (start, total) = content_range(&response).ok_or_else(|| {
                    Failed::retry("a partial answer without a usable Content-Range")
                })?;
                if start != self.received {
                    return Err(Failed::retry(format!(
                        "asked for bytes from {}, got them from {start}",
                        self.received
                    )));
                }
                self.check_same_file(&response, total)?;
                self.total = total.or(self.total);
            }
            // Asked to resume exactly at the end: the file was whole already.
            StatusCode::RANGE_NOT_SATISFIABLE
                if self.received > 0 && content_range_total(&response) == Some(self.received) =>
            {
                return Ok(None);
            }
            s if s.is_server_error() || s == StatusCode::TOO_MANY_REQUESTS => {
                return Err(Failed::retry(format!("the server answered {s}")));
            }
            s => return Err(Failed::fatal(format!("the server answered {s}"))),
        }
        if self.validator.is_none() {
            self.validator = validator(&response);
        }
        Ok(Some(response))
    }

    /// Refuses to go on when the server now has another file under the URL: its ETag or
    /// Last-Modified, or its length, changed since the download began.
    fn check_same_file(&self, response: &Response, total: Option<u64>) -> Result<(), Failed> {
        if self.received == 0 {
            return Ok(());
        }
        let changed_validator = matches!(
            (&self.validator, validator(response)),
            (Some(before), Some(now)) if *before != now
        );
        let changed_length = matches!((self.total, total), (Some(a), Some(b)) if a != b);
        if changed_validator || changed_length {
            return Err(Failed::fatal(
                "the file changed on the server while it was downloaded; start again",
            ));
        }
        Ok(())
    }

    /// Reads and drops the first `received` bytes of a full answer.
    fn skip(&mut self, response: &mut Response) -> Result<(), Failed> {
        let skipped = io::copy(&mut response.take(self.received), &mut io::sink())
            .map_err(|e| Failed::retry(format!("while skipping bytes already received: {e}")))?;
        if skipped < self.received {
            return Err(Failed::retry(
                "the file is shorter than what was already received",
            ));
        }
        self.note(&format!(
            "{} ignored the resume request; skipped the {} bytes already received",
            self.url.host_str().unwrap_or("the server"),
            self.received
        ));
        Ok(())
    }

    fn note(&self, text: &str) {
        if let Some(say) = &self.say {
            say(text);
        }
    }

    /// Reads from the current answer; `Ok(0)` only at the real end of the file.
    fn read_body(&mut self, buf: &mut [u8]) -> Result<usize, Failed> {
        if self.body.is_none() {
            match self.connect()? {
                Some(response) => self.body = Some(response),
                None => return Ok(0),
            }
        }
        let body = self.body.as_mut().expect("connected above");
        match body.read(buf) {
            Ok(0) => match self.total {
                Some(total) if self.received < total => Err(Failed::retry(format!(
                    "the connection closed after {} of {total} bytes",
                    self.received
                ))),
                _ => Ok(0),
            },
            Ok(n) => Ok(n),
            Err(e) if e.kind() == io::ErrorKind::TimedOut || is_timeout(&e) => Err(Failed::retry(
                format!("no data for {} s", self.http.stall.as_secs()),
            )),
            Err(e) => Err(Failed::retry(format!("the connection broke: {e}"))),
        }
    }
}

impl Read for Download {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.done || buf.is_empty() {
            return Ok(0);
        }
        loop {
            match self.read_body(buf) {
                Ok(0) => {
                    self.done = true;
                    if let Some(tee) = &mut self.tee {
                        tee.finished();
                    }
                    return Ok(0);
                }
                Ok(n) => {
                    self.received += n as u64;
                    self.failures = 0;
                    if let Some(tee) = &mut self.tee {
                        tee.bytes(&buf[..n]);
                    }
                    return Ok(n);
                }
                Err(failed) => {
                    self.body = None;
                    self.failures += 1;
                    let attempts = self.attempts;
                    if !failed.retry || self.failures >= attempts {
                        let tried = if failed.retry {
                            format!(" (gave up after {attempts} attempts)")
                        } else {
                            String::new()
                        };
                        return Err(io::Error::other(format!(
                            "{} (at byte {}){tried}",
                            failed.detail, self.received
                        )));
                    }
                    let wait = backoff(self.failures);
                    self.note(&format!(
                        "download interrupted at byte {} ({}); resuming in {:.1} s (attempt {} of {attempts})",
                        self.received,
                        failed.detail,
                        wait.as_secs_f64(),
                        self.failures + 1
                    ));
                    thread::sleep(wait);
                }
            }
        }
    }
}

/// 0.25 s, 0.5 s, 1 s, … up to 8 s.
fn backoff(failures: u32) -> Duration {
    FIRST_BACKOFF
        .saturating_mul(1 << failures.saturating_sub(1).min(10))
        .min(MAX_BACKOFF)
}

/// "bytes START-END/TOTAL" (TOTAL may be "*").
fn content_range(response: &Response) -> Option<(u64, Option<u64>)> {
    parse_content_range(response.headers().get(CONTENT_RANGE)?.to_str().ok()?)
}

fn parse_content_range(value: &str) -> Option<(u64, Option<u64>)> {
    let range = value.strip_prefix("bytes ")?;
    let (span, total) = range.split_once('/')?;
    let start = span.split_once('-')?.0.trim().parse().ok()?;
    Some((start, total.trim().parse().ok()))
}

/// The N of "bytes */N" (a 416 answer's Content-Range).
fn content_range_total(response: &Response) -> Option<u64> {
    parse_content_range_total(response.headers().get(CONTENT_RANGE)?.to_str().ok()?)
}

fn parse_content_range_total(value: &str) -> Option<u64> {
    value.strip_prefix("bytes */")?.trim().parse().ok()
}

/// What identifies this version of the file: a strong ETag, else Last-Modified.
fn validator(response: &Response) -> Option<String> {
    let header = |name| {
        response
            .headers()
            .get(name)?
            .to_str()
            .ok()
            .map(str::to_owned)
    };
    header(ETAG)
        .filter(|tag| !tag.starts_with("W/"))
        .or_else(|| header(LAST_MODIFIED))
}

fn is_timeout(e: &io::Error) -> bool {
    e.get_ref()
        .and_then(|inner| inner.downcast_ref::<reqwest::Error>())
        .is_some_and(reqwest::Error::is_timeout)
}

/// A reqwest error in a sentence, with its causes (reqwest's own message is terse).
fn describe(e: &reqwest::Error) -> String {
    let mut text = if e.is_timeout() {
        "no answer in time".to_owned()
    } else if e.is_connect() {
        "cannot connect".to_owned()
    } else {
        e.to_string()
    };
    let mut source = std::error::Error::source(e);
    while let Some(cause) = source {
        text += &format!(": {cause}");
        source = cause.source();
    }
    text
}

#[cfg(test)]
#[path = "../../../tests/common/mutate.rs"]
mod mutate;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hostile_content_ranges_never_panic() {
        let seeds = [
            b"bytes 1048576-2097151/4194304".to_vec(),
            b"bytes */4194304".to_vec(),
            b"bytes 0-0/*".to_vec(),
        ];
        super::mutate::hostile("content-range", &seeds, 100_000, 256, |b| {
            let text = String::from_utf8_lossy(b);
            let _ = parse_content_range(&text);
            let _ = parse_content_range_total(&text);
            if let Ok(value) = reqwest::header::HeaderValue::from_bytes(b) {
                let _ = value.to_str().ok().map(parse_content_range);
            }
        });
    }

    #[test]
    fn backoff_doubles_up_to_a_ceiling() {
        assert_eq!(backoff(1), Duration::from_millis(250));
        assert_eq!(backoff(2), Duration::from_millis(500));
        assert_eq!(backoff(4), Duration::from_secs(2));
        assert_eq!(backoff(30), MAX_BACKOFF);
    }
}
