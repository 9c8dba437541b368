//! The error log, and the fan-out of log events to `/v1/log/audit` and `/v1/log/error`
//! subscribers.
//!
//! * [`Hub`]: publishing never blocks. Each subscriber has a queue bounded in bytes; an event that
//!   does not fit is dropped for that subscriber and counted. A slow or stalled subscriber
//!   therefore never slows request handling, and its memory stays bounded. A subscriber is told
//!   (through the callback it set) when its queue receives an event after being empty, and takes
//!   events without waiting: no thread waits for a subscriber.
//! * [`init_logger`]: the error log. Lines on stderr in the Go server's format (Go's `log/slog`
//!   text: `time=… level=INFO msg="…"`), or JSON objects ([`set_format`]); with a syslog priority
//!   and without the time when stderr is the systemd journal. `RUST_LOG` is respected and
//!   `log.error` honoured through [`set_level`]. Error-stream subscribers get the text lines as
//!   `{"message":"…"}`. Records logged while a request is handled carry the request's method,
//!   path, client IP and identity (see [`enter_request`]).
//!
//! Nothing here ever sees key material: log messages are written by code that never formats keys,
//! and every client-controlled text (paths) is escaped so that it cannot forge log lines.

use crate::auth::Identity;
use crate::gojson;
use crate::metrics::Metrics;
use std::cell::RefCell;
use std::collections::VecDeque;
use std::io::Write;
use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

/// Bytes of events buffered per subscriber before new events are dropped for it. An audit event
/// is about 250 bytes, so this holds about 4 000 of them; the bound is in bytes because paths
/// (and so events) can be up to 16 KiB long.
pub const MAX_QUEUED_BYTES: usize = 1 << 20;

/// A log stream: events go to every current subscriber.
#[derive(Default)]
pub struct Hub {
    subscribers: Mutex<Vec<Arc<Queue>>>,
    has_subscribers: AtomicBool,
    /// Events delivered into at least one subscriber queue.
    pub published: AtomicU64,
    /// Events not delivered because a subscriber's queue was full (counted once per subscriber).
    pub dropped: AtomicU64,
}

/// Called when a subscriber's empty queue receives an event.
pub type Notify = Arc<dyn Fn() + Send + Sync>;

#[derive(Default)]
struct Queue {
    state: Mutex<QueueState>,
}

#[derive(Default)]
struct QueueState {
    events: VecDeque<Arc<[u8]>>,
    bytes: usize,
    dropped: u64,
    notify: Option<Notify>,
}

impl Hub {
    pub fn new() -> Arc<Hub> {
        Arc::new(Hub::default())
    }

    /// Whether anyone listens (lets callers skip formatting events nobody reads).
    pub fn has_subscribers(&self) -> bool {
        self.has_subscribers.load(Ordering::Relaxed)
    }

    pub fn subscribe(self: &Arc<Self>) -> Subscription {
        let queue = Arc::new(Queue::default());
        let mut subs = self.subscribers.lock().unwrap_or_else(|e| e.into_inner());
        subs.push(queue.clone());
        self.has_subscribers.store(true, Ordering::Relaxed);
        Subscription {
            hub: self.clone(),
            queue,
        }
    }

    /// Sends one event (a complete line, `\n` included) to every subscriber. Never blocks on a
    /// subscriber: a full queue drops the event for that subscriber.
    pub fn publish(&self, line: Arc<[u8]>) {
        let subs = self.subscribers.lock().unwrap_or_else(|e| e.into_inner());
        let mut delivered = false;
        for queue in subs.iter() {
            let mut state = queue.state.lock().unwrap_or_else(|e| e.into_inner());
            if state.bytes + line.len() <= MAX_QUEUED_BYTES {
                let was_empty = state.events.is_empty();
                state.bytes += line.len();
                state.events.push_back(line.clone());
                delivered = true;
                let notify = if was_empty {
                    state.notify.clone()
                } else {
                    None
                };
                drop(state);
                if let Some(notify) = notify {
                    notify();
                }
            } else {
                state.dropped += 1;
                self.dropped.fetch_add(1, Ordering::Relaxed);
            }
        }
        if delivered {
            self.published.fetch_add(1, Ordering::Relaxed);
        }
    }

    pub fn subscriber_count(&self) -> usize {
        self.subscribers
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .len()
    }

    fn unsubscribe(&self, queue: &Arc<Queue>) {
        let mut subs = self.subscribers.lock().unwrap_or_else(|e| e.into_inner());
        subs.retain(|q| !Arc::ptr_eq(q, queue));
        self.has_subscribers
            .store(!subs.is_empty(), Ordering::Relaxed);
    }
}

/// One subscriber's end of a [`Hub`]; unsubscribes when dropped.
pub struct Subscription {
    hub: Arc<Hub>,
    queue: Arc<Queue>,
}

impl Subscription {
    /// Appends every queued event to `out` (so that a busy stream is written in few large
    /// chunks) without waiting. Returns false when there was none.
    pub fn try_recv(&self, out: &mut Vec<u8>) -> bool {
        let mut state = self.queue.state.lock().unwrap_or_else(|e| e.into_inner());
        if state.events.is_empty() {
            return false;
        }
        while let Some(event) = state.events.pop_front() {
            out.extend_from_slice(&event);
        }
        state.bytes = 0;
        true
    }

    /// Sets the callback run when an event arrives in the empty queue (from the publishing
    /// thread, outside any lock of the hub). Runs at once when events are already waiting.
    pub fn set_notify(&self, notify: Notify) {
        let mut state = self.queue.state.lock().unwrap_or_else(|e| e.into_inner());
        state.notify = Some(notify.clone());
        let waiting = !state.events.is_empty();
        drop(state);
        if waiting {
            notify();
        }
    }

    /// Events dropped for this subscriber so far.
    pub fn dropped(&self) -> u64 {
        self.queue
            .state
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .dropped
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        self.hub.unsubscribe(&self.queue);
    }
}

// ---------------------------------------------------------------------------------------------
// The error log.

/// What the error log says about the request being handled on this thread.
#[derive(Default)]
struct RequestContext {
    active: bool,
    method: String,
    path: String,
    ip: Option<IpAddr>,
    identity: Option<Identity>,
}

thread_local! {
    // Reused from request to request (no allocation once its strings have grown).
    static REQUEST: RefCell<RequestContext> = RefCell::new(RequestContext::default());
}

/// Marks this thread as handling a request until the guard is dropped: error log records written
/// meanwhile carry `req.method`, `req.path`, `req.ip` and `req.identity`, as in the Go server.
pub fn enter_request(
    method: &str,
    path: &str,
    ip: IpAddr,
    identity: Option<&Identity>,
) -> RequestGuard {
    REQUEST.with(|r| {
        if let Ok(mut r) = r.try_borrow_mut() {
            r.active = true;
            r.method.clear();
            r.method.push_str(method);
            r.path.clear();
            r.path.push_str(path);
            r.ip = Some(ip);
            r.identity = identity.cloned();
        }
    });
    RequestGuard(())
}

/// Ends the request context of [`enter_request`] (also when the handler panics).
pub struct RequestGuard(());

impl Drop for RequestGuard {
    fn drop(&mut self) {
        let _ = REQUEST.try_with(|r| {
            if let Ok(mut r) = r.try_borrow_mut() {
                r.active = false;
                r.identity = None;
            }
        });
    }
}

/// Appends `s` as a value of the Go server's log format (Go's `log/slog` text): as it is when it
/// needs no quoting, else quoted and escaped as Go's `strconv.Quote` does. A value needs quoting
/// when it is empty or holds a space, `=`, `"`, a control or other non-printing character. So a
/// client-chosen path holding `%0A` cannot start a forged log line, and a message never spans
/// two lines.
pub fn push_escaped(out: &mut String, s: &str) {
    let plain = !s.is_empty()
        && s.chars().all(|c| {
            !c.is_control() && !c.is_whitespace() && c != '"' && c != '=' && !is_format_char(c)
        });
    if plain {
        out.push_str(s);
        return;
    }
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{7}' => out.push_str("\\a"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            '\u{b}' => out.push_str("\\v"),
            c if (c as u32) < 0x80 && c.is_control() => {
                out.push_str(&format!("\\x{:02x}", c as u32))
            }
            c if c.is_control() || is_format_char(c) => {
                if (c as u32) < 0x10000 {
                    out.push_str(&format!("\\u{:04x}", c as u32))
                } else {
                    out.push_str(&format!("\\U{:08x}", c as u32))
                }
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

/// Invisible characters that reorder or hide text (bidirectional controls, zero-width marks):
/// escaped so that a log line reads as what it holds.
fn is_format_char(c: char) -> bool {
    matches!(c, '\u{200b}'..='\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2060}'..='\u{2064}' | '\u{2066}'..='\u{2069}' | '\u{feff}')
}

pub use crate::config::LogFormat;

static JSON_FORMAT: AtomicBool = AtomicBool::new(false);

/// Chooses the format of the error log records written from now on.
pub fn set_format(format: LogFormat) {
    JSON_FORMAT.store(format == LogFormat::Json, Ordering::Relaxed);
}

/// Whether standard error is the systemd journal: systemd names the stream it connects in
/// `$JOURNAL_STREAM` (`<device>:<inode>`). Records written there start with their syslog
/// priority (`<3>` …) and leave out the time, which the journal adds.
fn stderr_is_journal() -> bool {
    #[cfg(unix)]
    {
        use std::os::fd::AsFd;
        use std::os::unix::fs::MetadataExt;
        let Ok(want) = std::env::var("JOURNAL_STREAM") else {
            return false;
        };
        let Some((dev, ino)) = want.split_once(':') else {
            return false;
        };
        let Ok(fd) = std::io::stderr().as_fd().try_clone_to_owned() else {
            return false;
        };
        let Ok(meta) = std::fs::File::from(fd).metadata() else {
            return false;
        };
        dev.parse() == Ok(meta.dev()) && ino.parse() == Ok(meta.ino())
    }
    #[cfg(not(unix))]
    false
}

/// Go's `log/slog` level names (TRACE, which Go does not have, is written as DEBUG).
fn level_name(level: log::Level) -> &'static str {
    match level {
        log::Level::Error => "ERROR",
        log::Level::Warn => "WARN",
        log::Level::Info => "INFO",
        log::Level::Debug | log::Level::Trace => "DEBUG",
    }
}

/// The syslog priority of a level, as journald reads it at the start of a line.
fn journal_priority(level: log::Level) -> &'static str {
    match level {
        log::Level::Error => "<3>",
        log::Level::Warn => "<4>",
        log::Level::Info => "<6>",
        log::Level::Debug | log::Level::Trace => "<7>",
    }
}

/// One error log record, in text: `time=… level=… msg=… [req.…]` (`time` left out when `None`).
fn render_text(
    time: Option<&str>,
    level: log::Level,
    msg: &str,
    req: Option<&RequestContext>,
) -> String {
    let mut line = String::with_capacity(128);
    if let Some(time) = time {
        line.push_str("time=");
        line.push_str(time);
        line.push(' ');
    }
    line.push_str("level=");
    line.push_str(level_name(level));
    line.push_str(" msg=");
    push_escaped(&mut line, msg);
    if let Some(r) = req {
        line.push_str(" req.method=");
        push_escaped(&mut line, &r.method);
        line.push_str(" req.path=");
        push_escaped(&mut line, &r.path);
        if let Some(ip) = r.ip {
            line.push_str(&format!(" req.ip={ip}"));
        }
        line.push_str(" req.identity=");
        match &r.identity {
            Some(id) if !id.is_empty() => push_escaped(&mut line, id.as_str()),
            _ => line.push_str("<unknown>"),
        }
    }
    line
}

/// One error log record as a JSON object (no newline).
fn render_json(time: &str, level: log::Level, msg: &str, req: Option<&RequestContext>) -> Vec<u8> {
    let mut out = Vec::with_capacity(160);
    out.extend_from_slice(b"{\"time\":\"");
    out.extend_from_slice(time.as_bytes());
    out.extend_from_slice(b"\",\"level\":\"");
    out.extend_from_slice(level_name(level).as_bytes());
    out.extend_from_slice(b"\",\"msg\":");
    gojson::write_string(msg, &mut out);
    if let Some(r) = req {
        out.extend_from_slice(b",\"req\":{\"method\":");
        gojson::write_string(&r.method, &mut out);
        out.extend_from_slice(b",\"path\":");
        gojson::write_string(&r.path, &mut out);
        if let Some(ip) = r.ip {
            out.extend_from_slice(format!(",\"ip\":\"{ip}\"").as_bytes());
        }
        if let Some(id) = r.identity.as_ref().filter(|id| !id.is_empty()) {
            out.extend_from_slice(b",\"identity\":");
            gojson::write_string(id.as_str(), &mut out);
        }
        out.push(b'}');
    }
    out.push(b'}');
    out
}

struct Logger {
    filter: env_logger::Logger,
    errors: Arc<Hub>,
    metrics: Arc<Metrics>,
    /// Standard error is the systemd journal.
    journal: bool,
}

impl log::Log for Logger {
    fn enabled(&self, metadata: &log::Metadata<'_>) -> bool {
        self.filter.enabled(metadata)
    }

    fn log(&self, record: &log::Record<'_>) {
        if !self.filter.matches(record) {
            return;
        }
        let level = record.level();
        let msg = record.args().to_string();
        let time = gojson::slog_time(time::OffsetDateTime::now_utc());
        let json = JSON_FORMAT.load(Ordering::Relaxed);
        let mut text = None;
        let mut out = Vec::with_capacity(160);
        let _ = REQUEST.try_with(|r| {
            let borrowed = r.try_borrow().ok();
            let req = borrowed.as_deref().filter(|r| r.active);
            if self.journal {
                out.extend_from_slice(journal_priority(level).as_bytes());
            }
            if json {
                out.extend_from_slice(&render_json(&time, level, &msg, req));
            } else {
                let time = (!self.journal).then_some(time.as_str());
                out.extend_from_slice(render_text(time, level, &msg, req).as_bytes());
            }
            if self.errors.has_subscribers() {
                text = Some(render_text(Some(&time), level, &msg, req));
            }
        });
        self.metrics.log_record(level);
        if let Some(line) = text {
            let mut event = Vec::with_capacity(line.len() + 16);
            event.extend_from_slice(b"{\"message\":");
            gojson::write_string(&line, &mut event);
            event.extend_from_slice(b"}\n");
            self.errors.publish(Arc::from(event));
            self.metrics.error_events.fetch_add(1, Ordering::Relaxed);
        }
        out.push(b'\n');
        let _ = std::io::stderr().lock().write_all(&out);
    }

    fn flush(&self) {
        let _ = std::io::stderr().flush();
    }
}

static RUST_LOG_SET: AtomicBool = AtomicBool::new(false);

/// Installs the error log (once per process; later calls do nothing). Until [`set_level`] is
/// called, INFO and above are written.
pub fn init_logger(errors: Arc<Hub>, metrics: Arc<Metrics>) {
    let mut builder = env_logger::Builder::new();
    builder.filter_level(log::LevelFilter::Trace);
    // The libraries' own chatter (handshake details, connection reuse) only when asked for.
    for noisy in ["rustls", "ureq", "ureq_proto"] {
        builder.filter_module(noisy, log::LevelFilter::Warn);
    }
    let rust_log = std::env::var("RUST_LOG")
        .ok()
        .filter(|s| !s.trim().is_empty());
    if let Some(spec) = &rust_log {
        builder.parse_filters(spec);
    }
    let logger = Logger {
        filter: builder.build(),
        errors,
        metrics,
        journal: stderr_is_journal(),
    };
    let max = logger.filter.filter();
    if log::set_boxed_logger(Box::new(logger)).is_ok() {
        if rust_log.is_some() {
            RUST_LOG_SET.store(true, Ordering::Relaxed);
            log::set_max_level(max);
        } else {
            log::set_max_level(log::LevelFilter::Info);
        }
    }
}

/// Applies `log.error` (`None` = off). `RUST_LOG`, when set, wins: it is the operator's explicit
/// override, e.g. `RUST_LOG=debug` to see why requests are denied.
pub fn set_level(level: Option<log::LevelFilter>) {
    if RUST_LOG_SET.load(Ordering::Relaxed) {
        return;
    }
    log::set_max_level(level.unwrap_or(log::LevelFilter::Off));
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(i: usize) -> Arc<[u8]> {
        Arc::from(format!("{i:0>99}\n").into_bytes())
    }

    #[test]
    fn slow_subscriber_drops_instead_of_blocking() {
        let hub = Hub::new();
        let sub = hub.subscribe();
        let fits = MAX_QUEUED_BYTES / 100;
        for i in 0..fits + 10 {
            hub.publish(event(i));
        }
        assert_eq!(hub.dropped.load(Ordering::Relaxed), 10);
        assert_eq!(sub.dropped(), 10);
        let mut out = Vec::new();
        assert!(sub.try_recv(&mut out));
        assert_eq!(out.len(), fits * 100);
        assert_eq!(&out[..100], &*event(0));
        // Drained: there is room again.
        hub.publish(event(1));
        out.clear();
        assert!(sub.try_recv(&mut out));
        assert_eq!(out, &*event(1));
        out.clear();
        assert!(!sub.try_recv(&mut out));
        drop(sub);
        assert_eq!(hub.subscriber_count(), 0);
        assert!(!hub.has_subscribers());
    }

    #[test]
    fn a_subscriber_is_told_when_its_empty_queue_gets_an_event() {
        let hub = Hub::new();
        let sub = hub.subscribe();
        let told = Arc::new(AtomicU64::new(0));
        let t = told.clone();
        sub.set_notify(Arc::new(move || {
            t.fetch_add(1, Ordering::SeqCst);
        }));
        assert_eq!(told.load(Ordering::SeqCst), 0);
        hub.publish(event(1));
        hub.publish(event(2));
        // Once per transition from empty, not per event.
        assert_eq!(told.load(Ordering::SeqCst), 1);
        let mut out = Vec::new();
        assert!(sub.try_recv(&mut out));
        hub.publish(event(3));
        assert_eq!(told.load(Ordering::SeqCst), 2);
        // Events already waiting when the callback is set are announced at once.
        let late = hub.subscribe();
        hub.publish(event(4));
        let t = told.clone();
        late.set_notify(Arc::new(move || {
            t.fetch_add(10, Ordering::SeqCst);
        }));
        assert_eq!(told.load(Ordering::SeqCst), 12);
    }

    #[test]
    fn every_subscriber_gets_every_event() {
        let hub = Hub::new();
        let a = hub.subscribe();
        let b = hub.subscribe();
        hub.publish(event(7));
        drop(a);
        hub.publish(event(8));
        let mut out = Vec::new();
        assert!(b.try_recv(&mut out));
        assert_eq!(out, [&*event(7), &*event(8)].concat());
        assert_eq!(hub.published.load(Ordering::Relaxed), 2);
    }

    #[test]
    fn escaping_keeps_records_on_one_line() {
        let esc = |v: &str| {
            let mut s = String::new();
            push_escaped(&mut s, v);
            s
        };
        assert_eq!(
            esc("/v1/key/create/a\nlevel=INFO msg=forged"),
            "\"/v1/key/create/a\\nlevel=INFO msg=forged\""
        );
        assert_eq!(esc("/v1/key/create/plain"), "/v1/key/create/plain");
        // Quoted as Go's log/slog does: empty, space, '=', '"'; a backslash alone is not.
        assert_eq!(esc(""), "\"\"");
        assert_eq!(esc("a=b"), "\"a=b\"");
        assert_eq!(esc("a\\b"), "a\\b");
        assert_eq!(esc("say \"hi\""), "\"say \\\"hi\\\"\"");
        assert_eq!(esc("bell\u{7}\u{1b}"), "\"bell\\a\\x1b\"");
        assert_eq!(esc("rtl\u{202e}"), "\"rtl\\u202e\"");
        assert_eq!(esc("vault said:\n{}"), "\"vault said:\\n{}\"");
    }

    fn request() -> RequestContext {
        RequestContext {
            active: true,
            method: "POST".into(),
            path: "/v1/key/create/my key".into(),
            ip: Some("10.1.2.3".parse().unwrap()),
            identity: None,
        }
    }

    #[test]
    fn records_in_the_go_servers_text_format() {
        assert_eq!(
            render_text(
                Some("2025-12-06T16:21:58.846Z"),
                log::Level::Info,
                "secret key 'k1' created",
                None
            ),
            "time=2025-12-06T16:21:58.846Z level=INFO msg=\"secret key 'k1' created\""
        );
        assert_eq!(
            render_text(None, log::Level::Warn, "slow", Some(&request())),
            "level=WARN msg=slow req.method=POST req.path=\"/v1/key/create/my key\" req.ip=10.1.2.3 req.identity=<unknown>"
        );
        assert_eq!(
            render_text(None, log::Level::Trace, "x", None),
            "level=DEBUG msg=x"
        );
    }

    #[test]
    fn records_as_json() {
        let line = render_json(
            "2025-12-06T16:21:58.846Z",
            log::Level::Error,
            "a \"b\"\n",
            Some(&request()),
        );
        let v: serde_json::Value = serde_json::from_slice(&line).unwrap();
        assert_eq!(
            v,
            serde_json::json!({
                "time": "2025-12-06T16:21:58.846Z",
                "level": "ERROR",
                "msg": "a \"b\"\n",
                "req": {"method": "POST", "path": "/v1/key/create/my key", "ip": "10.1.2.3"}
            })
        );
        assert!(!line.contains(&b'\n'));
        assert_eq!(journal_priority(log::Level::Error), "<3>");
        assert_eq!(journal_priority(log::Level::Debug), "<7>");
    }
}
