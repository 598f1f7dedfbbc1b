//! The JSON access log: one object per line, written off the hot path.
//!
//! [`AccessLogger::log`] only moves a record into a bounded channel; a dedicated thread
//! serializes records into a buffered writer and flushes it at least every
//! [`FLUSH_INTERVAL`] and when the logger is dropped. The writer is never woken per record:
//! it wakes every [`DRAIN_INTERVAL`] and takes what has queued, so logging costs a request
//! no system call and no switch to another thread. When the writer falls behind and the
//! channel is full, records are dropped and counted in `meridian_access_log_dropped_total`:
//! the log never slows requests down.
//!
//! Log files are opened in append mode (`O_APPEND`), so several writers and `logrotate`'s
//! `copytruncate` are safe. For rename-based rotation, rename the file and then call
//! [`AccessLogger::reopen`]: the writer flushes and opens the path again, creating a new file.

use std::borrow::Cow;
use std::fs::{File, OpenOptions};
use std::io::{self, BufWriter, Write};
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver, SyncSender, TryRecvError, TrySendError};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime};

use prometheus::IntCounter;
use serde::{Serialize, Serializer};

use crate::config::model::AccessLog;

/// Records that may wait for the writer before new ones are dropped.
pub const CHANNEL_CAPACITY: usize = 64 * 1024;

/// Longest time a written record stays in the buffer.
pub const FLUSH_INTERVAL: Duration = Duration::from_millis(100);

/// How often the writer takes the records queued since it last looked.
pub const DRAIN_INTERVAL: Duration = Duration::from_millis(10);

/// Size of the writer's buffer.
const BUFFER_BYTES: usize = 64 * 1024;

/// One access-log line.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct AccessLogRecord {
    /// When the request started; written as RFC 3339 UTC with milliseconds.
    #[serde(serialize_with = "ser_rfc3339_millis")]
    pub time: SystemTime,
    /// The request id (`X-Request-Id`).
    pub request_id: String,
    /// The trace id, 32 hex digits.
    pub trace_id: String,
    /// The client's address; `None` for clients on a Unix socket.
    pub client_ip: Option<IpAddr>,
    /// Request method.
    pub method: String,
    /// `Host` header or `:authority`.
    pub host: String,
    /// Request path as received.
    pub path: String,
    /// Query string without `?`, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub query: Option<String>,
    /// `HTTP/1.0`, `HTTP/1.1` or `HTTP/2`; see [`protocol_name`].
    pub protocol: &'static str,
    /// The route that matched; `None` when none did.
    pub route: Option<String>,
    /// The upstream pool; `None` when the request was answered without one.
    pub upstream: Option<String>,
    /// The address of the last target tried.
    pub upstream_addr: Option<String>,
    /// Status sent to the client.
    pub status: u16,
    /// Bytes sent to the client (body).
    pub bytes_sent: u64,
    /// Bytes received from the client (body).
    pub bytes_received: u64,
    /// Total time; written as fractional milliseconds.
    #[serde(rename = "duration_ms", serialize_with = "ser_millis")]
    pub duration: Duration,
    /// Time spent waiting on upstreams (all attempts); written as fractional milliseconds.
    #[serde(rename = "upstream_duration_ms", serialize_with = "ser_opt_millis")]
    pub upstream_duration: Option<Duration>,
    /// Attempts made upstream (0 when none).
    pub attempts: u32,
    /// `User-Agent` header.
    pub user_agent: Option<String>,
    /// Short reason when the proxy failed the request (e.g. `ConnectTimedout`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<Cow<'static, str>>,
    /// Cache result (e.g. `HIT`, `MISS`) on caching routes.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cache_status: Option<Cow<'static, str>>,
}

/// The `protocol` value of an HTTP version.
pub fn protocol_name(version: http::Version) -> &'static str {
    match version {
        http::Version::HTTP_09 => "HTTP/0.9",
        http::Version::HTTP_10 => "HTTP/1.0",
        http::Version::HTTP_2 => "HTTP/2",
        http::Version::HTTP_3 => "HTTP/3",
        _ => "HTTP/1.1",
    }
}

/// Writes access-log records from a background thread.
pub struct AccessLogger {
    /// `None` only during drop, to close the channel before joining the writer.
    sender: Option<SyncSender<Box<AccessLogRecord>>>,
    reopen: Arc<AtomicBool>,
    dropped: IntCounter,
    writer: Option<JoinHandle<()>>,
}

impl AccessLogger {
    /// Starts the logger for a destination: `None` for [`AccessLog::Off`]; records it drops
    /// are counted on `dropped`. Fails when the file cannot be opened or the writer thread
    /// cannot be started.
    pub fn new(destination: &AccessLog, dropped: IntCounter) -> io::Result<Option<AccessLogger>> {
        let sink = match destination {
            AccessLog::Off => return Ok(None),
            AccessLog::Stdout => Sink::Stdout(BufWriter::with_capacity(BUFFER_BYTES, io::stdout())),
            AccessLog::File(path) => Sink::file(path.clone())?,
        };
        AccessLogger::start(sink, CHANNEL_CAPACITY, dropped).map(Some)
    }

    /// Starts the writer thread on `sink`.
    fn start(sink: Sink, capacity: usize, dropped: IntCounter) -> io::Result<AccessLogger> {
        let (sender, receiver) = mpsc::sync_channel(capacity);
        let reopen = Arc::new(AtomicBool::new(false));
        let writer = Writer {
            sink,
            receiver,
            reopen: Arc::clone(&reopen),
            failing: false,
        };
        let handle = std::thread::Builder::new()
            .name("access-log".into())
            .spawn(move || writer.run())?;
        Ok(AccessLogger {
            sender: Some(sender),
            reopen,
            dropped,
            writer: Some(handle),
        })
    }

    /// Queues a record. Never blocks: when the writer is behind, the record is dropped and
    /// counted.
    pub fn log(&self, record: AccessLogRecord) {
        let Some(sender) = &self.sender else { return };
        match sender.try_send(Box::new(record)) {
            Ok(()) => {}
            Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => self.dropped.inc(),
        }
    }

    /// Asks the writer to flush and reopen the log file (after it was renamed by log
    /// rotation). Takes effect within [`FLUSH_INTERVAL`]. No effect on stdout.
    pub fn reopen(&self) {
        self.reopen.store(true, Ordering::Release);
    }
}

impl Drop for AccessLogger {
    /// Closes the channel and waits for the writer to write and flush what is queued.
    fn drop(&mut self) {
        drop(self.sender.take());
        if let Some(writer) = self.writer.take() {
            if writer.join().is_err() {
                log::error!("the access-log writer thread panicked");
            }
        }
    }
}

/// Where the writer thread writes.
enum Sink {
    /// Standard output.
    Stdout(BufWriter<io::Stdout>),
    /// A file opened for appending, with its path for reopening.
    File { path: PathBuf, out: BufWriter<File> },
    /// Any writer (tests).
    #[cfg(test)]
    Other(BufWriter<Box<dyn Write + Send>>),
}

impl Sink {
    /// Opens `path` for appending.
    fn file(path: PathBuf) -> io::Result<Sink> {
        let out = BufWriter::with_capacity(BUFFER_BYTES, open_append(&path)?);
        Ok(Sink::File { path, out })
    }

    /// The buffered writer.
    fn out(&mut self) -> &mut dyn Write {
        match self {
            Sink::Stdout(out) => out,
            Sink::File { out, .. } => out,
            #[cfg(test)]
            Sink::Other(out) => out,
        }
    }

    /// Flushes, then reopens the file at the same path. Keeps the old file on failure.
    fn reopen(&mut self) -> io::Result<()> {
        self.out().flush()?;
        if let Sink::File { path, out } = self {
            *out = BufWriter::with_capacity(BUFFER_BYTES, open_append(path)?);
        }
        Ok(())
    }
}

/// Opens a file for appending, creating it if needed.
fn open_append(path: &Path) -> io::Result<File> {
    OpenOptions::new().create(true).append(true).open(path)
}

/// The writer thread's state.
struct Writer {
    sink: Sink,
    receiver: Receiver<Box<AccessLogRecord>>,
    reopen: Arc<AtomicBool>,
    /// Whether the last write failed, so that a broken destination is reported once and not
    /// once per record.
    failing: bool,
}

impl Writer {
    /// Writes records until every sender is gone, then flushes.
    fn run(mut self) {
        let mut dirty = false;
        let mut last_flush = Instant::now();
        loop {
            let open = loop {
                match self.receiver.try_recv() {
                    Ok(record) => {
                        let result = self.write(&record);
                        self.note(result);
                        dirty = true;
                    }
                    Err(TryRecvError::Empty) => break true,
                    Err(TryRecvError::Disconnected) => break false,
                }
            };
            if self.reopen.swap(false, Ordering::AcqRel) {
                let result = self.sink.reopen();
                self.note(result);
                dirty = false;
                last_flush = Instant::now();
            }
            if !open || last_flush.elapsed() >= FLUSH_INTERVAL {
                if dirty {
                    let result = self.sink.out().flush();
                    self.note(result);
                    dirty = false;
                }
                last_flush = Instant::now();
            }
            if !open {
                return;
            }
            std::thread::sleep(DRAIN_INTERVAL);
        }
    }

    /// Serializes one record and its newline into the buffer.
    fn write(&mut self, record: &AccessLogRecord) -> io::Result<()> {
        let out = self.sink.out();
        serde_json::to_writer(&mut *out, record)?;
        out.write_all(b"\n")
    }

    /// Reports the first error of a run of failures.
    fn note(&mut self, result: io::Result<()>) {
        match result {
            Ok(()) => self.failing = false,
            Err(e) if !self.failing => {
                self.failing = true;
                log::error!("writing the access log failed: {e}");
            }
            Err(_) => {}
        }
    }
}

/// Serializes a time as RFC 3339 UTC with milliseconds: `2024-05-01T12:00:00.123Z`.
fn ser_rfc3339_millis<S: Serializer>(time: &SystemTime, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&rfc3339_millis(*time))
}

/// Formats a time as RFC 3339 UTC with milliseconds.
fn rfc3339_millis(time: SystemTime) -> String {
    const FORMAT: &[time::format_description::FormatItem<'static>] = time::macros::format_description!(
        "[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:3]Z"
    );
    // Formatting fails only for years past 9999, which a clock reading cannot reach.
    time::OffsetDateTime::from(time)
        .format(FORMAT)
        .unwrap_or_else(|_| String::from("9999-12-31T23:59:59.999Z"))
}

/// Serializes a duration as fractional milliseconds with microsecond precision.
fn ser_millis<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_f64(millis(*d))
}

/// Serializes an optional duration as fractional milliseconds or `null`.
fn ser_opt_millis<S: Serializer>(d: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
    match d {
        Some(d) => s.serialize_f64(millis(*d)),
        None => s.serialize_none(),
    }
}

/// Milliseconds with microsecond precision.
fn millis(d: Duration) -> f64 {
    // Precision loss only beyond 2^53 µs (285 years).
    d.as_micros() as f64 / 1000.0
}

/// For tests: a sink that holds the writer thread (for tests of what waits on it), records.
#[cfg(test)]
pub(super) mod test_support {
    use std::borrow::Cow;
    use std::io::{self, BufWriter, Write};
    use std::sync::mpsc::{self, Receiver, Sender};
    use std::sync::{Arc, Condvar, Mutex, PoisonError};
    use std::time::{Duration, SystemTime};

    use prometheus::IntCounter;

    use super::{protocol_name, AccessLogRecord, AccessLogger, Sink};

    /// Opens the gate and reads what went through it.
    #[derive(Clone)]
    pub struct Control {
        released: Arc<(Mutex<bool>, Condvar)>,
        written: Arc<Mutex<Vec<u8>>>,
    }

    impl Control {
        /// Lets every write through, now and from now on.
        pub fn release(&self) {
            let (lock, cvar) = &*self.released;
            *lock.lock().unwrap_or_else(PoisonError::into_inner) = true;
            cvar.notify_all();
        }

        /// The bytes written so far.
        pub fn written(&self) -> Vec<u8> {
            self.written
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .clone()
        }
    }

    /// A logger whose writer thread waits at its first write until the gate is released.
    pub struct Gated {
        /// The logger.
        pub logger: AccessLogger,
        /// Receives once the writer waits at the gate.
        pub entered: Receiver<()>,
        /// The gate.
        pub gate: Control,
    }

    impl Gated {
        /// A gated logger with a channel of `capacity` records.
        pub fn start(capacity: usize, dropped: IntCounter) -> Gated {
            let (entered_tx, entered) = mpsc::channel();
            let gate = Control {
                released: Arc::new((Mutex::new(false), Condvar::new())),
                written: Arc::new(Mutex::new(Vec::new())),
            };
            let writer = Gate {
                entered: Some(entered_tx),
                control: gate.clone(),
            };
            // A one-byte buffer passes every write straight to the gate.
            let sink = Sink::Other(BufWriter::with_capacity(1, Box::new(writer)));
            let logger = AccessLogger::start(sink, capacity, dropped).expect("start");
            Gated {
                logger,
                entered,
                gate,
            }
        }
    }

    /// A sample record (`n` becomes its request id and attempts).
    pub fn record(n: u32) -> AccessLogRecord {
        AccessLogRecord {
            time: SystemTime::UNIX_EPOCH + Duration::from_millis(1_714_564_800_123),
            request_id: format!("req-{n}"),
            trace_id: "4bf92f3577b34da6a3ce929d0e0e4736".into(),
            client_ip: Some("192.0.2.7".parse().expect("ip")),
            method: "GET".into(),
            host: "api.example.com".into(),
            path: "/v1/urls/\"quoted\"".into(),
            query: (n & 1 == 0).then(|| "a=1&b=2".to_owned()),
            protocol: protocol_name(http::Version::HTTP_2),
            route: Some("urls".into()),
            upstream: Some("urls".into()),
            upstream_addr: Some("127.0.0.1:9101".into()),
            status: 200,
            bytes_sent: 1234,
            bytes_received: 0,
            duration: Duration::from_micros(12_345),
            upstream_duration: None,
            attempts: n,
            user_agent: Some("curl/8.0".into()),
            error: None,
            cache_status: Some(Cow::Borrowed("HIT")),
        }
    }

    /// A writer whose writes wait until it is released, and that reports the first one.
    struct Gate {
        entered: Option<Sender<()>>,
        control: Control,
    }

    impl Write for Gate {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            if let Some(entered) = self.entered.take() {
                let _ = entered.send(());
            }
            let (lock, cvar) = &*self.control.released;
            let released = cvar
                .wait_while(lock.lock().unwrap_or_else(PoisonError::into_inner), |r| !*r)
                .unwrap_or_else(PoisonError::into_inner);
            drop(released);
            self.control
                .written
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .extend_from_slice(buf);
            Ok(buf.len())
        }

        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::test_support::record;
    use super::*;

    fn dropped_counter() -> IntCounter {
        IntCounter::new("dropped", "test").expect("counter")
    }

    /// Waits up to 5 s for `ready`, polling every 5 ms.
    fn wait_for(what: &str, mut ready: impl FnMut() -> bool) {
        let deadline = Instant::now() + Duration::from_secs(5);
        while !ready() {
            assert!(Instant::now() < deadline, "timed out waiting for {what}");
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    fn lines(path: &Path) -> Vec<serde_json::Value> {
        std::fs::read_to_string(path)
            .expect("read log")
            .lines()
            .map(|line| serde_json::from_str(line).expect("each line is JSON"))
            .collect()
    }

    #[test]
    fn rfc3339_with_millis() {
        assert_eq!(
            rfc3339_millis(SystemTime::UNIX_EPOCH),
            "1970-01-01T00:00:00.000Z"
        );
        assert_eq!(
            rfc3339_millis(SystemTime::UNIX_EPOCH + Duration::from_millis(1_714_564_800_123)),
            "2024-05-01T12:00:00.123Z"
        );
        // Leap day, sub-millisecond part truncated.
        assert_eq!(
            rfc3339_millis(SystemTime::UNIX_EPOCH + Duration::from_nanos(951_782_400_999_999_999)),
            "2000-02-29T00:00:00.999Z"
        );
    }

    #[test]
    fn protocol_names() {
        assert_eq!(protocol_name(http::Version::HTTP_11), "HTTP/1.1");
        assert_eq!(protocol_name(http::Version::HTTP_10), "HTTP/1.0");
        assert_eq!(protocol_name(http::Version::HTTP_2), "HTTP/2");
    }

    #[test]
    fn off_builds_no_logger() {
        assert!(AccessLogger::new(&AccessLog::Off, dropped_counter())
            .expect("off")
            .is_none());
    }

    #[test]
    fn writes_json_lines_appended_to_a_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("access.log");
        std::fs::write(&path, "{\"earlier\":true}\n").expect("seed");
        let logger = AccessLogger::new(&AccessLog::File(path.clone()), dropped_counter())
            .expect("open")
            .expect("a logger");
        for n in 0..100 {
            logger.log(record(n));
        }
        drop(logger);

        let lines = lines(&path);
        assert_eq!(lines.len(), 101);
        assert_eq!(lines[0], serde_json::json!({ "earlier": true }));
        for (n, line) in lines[1..].iter().enumerate() {
            assert_eq!(line["request_id"], format!("req-{n}"));
            assert_eq!(line["attempts"], n);
        }
        let first = &lines[1];
        assert_eq!(first["time"], "2024-05-01T12:00:00.123Z");
        assert_eq!(first["client_ip"], "192.0.2.7");
        assert_eq!(first["path"], "/v1/urls/\"quoted\"");
        assert_eq!(first["query"], "a=1&b=2");
        assert_eq!(first["protocol"], "HTTP/2");
        assert_eq!(first["status"], 200);
        assert_eq!(first["bytes_sent"], 1234);
        assert_eq!(first["duration_ms"], 12.345);
        assert_eq!(first["upstream_duration_ms"], serde_json::Value::Null);
        assert_eq!(first["cache_status"], "HIT");
        assert!(first.get("error").is_none());
        assert!(lines[2].get("query").is_none());
    }

    #[test]
    fn flushes_without_being_dropped() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("access.log");
        let logger = AccessLogger::new(&AccessLog::File(path.clone()), dropped_counter())
            .expect("open")
            .expect("a logger");
        logger.log(record(1));
        wait_for("the periodic flush", || {
            std::fs::read_to_string(&path).is_ok_and(|text| text.ends_with('\n'))
        });
        assert_eq!(lines(&path).len(), 1);
        drop(logger);
    }

    #[test]
    fn reopen_follows_a_renamed_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("access.log");
        let rotated = dir.path().join("access.log.1");
        let logger = AccessLogger::new(&AccessLog::File(path.clone()), dropped_counter())
            .expect("open")
            .expect("a logger");
        logger.log(record(1));
        wait_for("the first record", || {
            std::fs::read_to_string(&path).is_ok_and(|text| !text.is_empty())
        });
        std::fs::rename(&path, &rotated).expect("rotate");
        logger.reopen();
        wait_for("the new file", || path.exists());
        logger.log(record(2));
        drop(logger);

        let old = lines(&rotated);
        let new = lines(&path);
        assert_eq!(old.len(), 1);
        assert_eq!(old[0]["request_id"], "req-1");
        assert_eq!(new.len(), 1);
        assert_eq!(new[0]["request_id"], "req-2");
    }

    #[test]
    fn drops_and_counts_when_the_writer_is_behind() {
        let dropped = IntCounter::new("dropped", "test").expect("counter");
        let gated = test_support::Gated::start(1, dropped.clone());
        let logger = gated.logger;

        logger.log(record(1));
        gated
            .entered
            .recv_timeout(Duration::from_secs(5))
            .expect("the writer took the first record");
        logger.log(record(2)); // Fills the one-slot channel.
        logger.log(record(3));
        logger.log(record(4));
        assert_eq!(dropped.get(), 2);

        gated.gate.release();
        drop(logger);

        let written = gated.gate.written();
        let ids: Vec<String> = std::str::from_utf8(&written)
            .expect("utf-8")
            .lines()
            .map(|line| {
                let v: serde_json::Value = serde_json::from_str(line).expect("JSON");
                v["request_id"].as_str().expect("id").to_owned()
            })
            .collect();
        assert_eq!(ids, ["req-1", "req-2"]);
    }
}
