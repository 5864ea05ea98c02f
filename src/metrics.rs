//! Prometheus metrics. Each server owns its recorder (no global), so several
//! servers can run in one test process; handles are registered once and
//! cheap to update on hot paths.

use metrics::{Counter, Gauge, Histogram, Key, KeyName, Label, Level, Metadata, Recorder, Unit};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle, PrometheusRecorder};

use crate::protocol::ErrorCode;

static METADATA: Metadata<'static> = Metadata::new("preau", Level::INFO, Some(module_path!()));

/// Why a connection or upgrade was refused (`preau_connections_refused_total{reason}`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    /// Every session slot taken: 503 at the upgrade, 1013 at `hello`.
    SessionsFull,
    /// Too many evicted connections still closing: the socket is dropped.
    Saturated,
    /// The upgrade's `Origin` is not allowed: 403.
    Origin,
}

impl Refused {
    const ALL: [Refused; 3] = [Refused::SessionsFull, Refused::Saturated, Refused::Origin];

    fn label(self) -> &'static str {
        match self {
            Refused::SessionsFull => "sessions_full",
            Refused::Saturated => "saturated",
            Refused::Origin => "origin",
        }
    }
}

/// Why an unauthenticated connection was evicted (`preau_connections_evicted_total{reason}`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Evicted {
    /// Its address reached `max_unauthenticated_per_address`.
    PerAddress,
    /// `max_unauthenticated` was reached.
    Budget,
}

impl Evicted {
    const ALL: [Evicted; 2] = [Evicted::PerAddress, Evicted::Budget];

    fn label(self) -> &'static str {
        match self {
            Evicted::PerAddress => "per_address",
            Evicted::Budget => "budget",
        }
    }
}

pub struct Metrics {
    _recorder: PrometheusRecorder,
    handle: PrometheusHandle,
    pub connections: Gauge,
    pub connections_accepted: Counter,
    /// Authenticated sessions (what `max_connections` bounds).
    pub sessions: Gauge,
    /// Connections without a session: HTTP, and WebSockets before `hello`.
    pub unauthenticated: Gauge,
    /// HTTP connections closed for not sending a request head in time.
    pub header_timeouts: Counter,
    refused: Vec<Counter>,
    evicted: Vec<Counter>,
    pub rooms_loaded: Gauge,
    pub notes_loaded: Gauge,
    pub note_bytes: Gauge,
    pub note_compactions: Counter,
    pub frames_in: Counter,
    pub frames_out: Counter,
    pub messages_stored: Counter,
    pub slow_consumers: Counter,
    pub queue_drops: Counter,
    /// Upload chunks stored, and their bytes.
    pub file_chunks: Counter,
    pub file_bytes_in: Counter,
    /// Uploads finished into a file, downloads and zips served.
    pub files_finished: Counter,
    pub file_downloads: Counter,
    pub commit_seconds: Histogram,
    pub commit_batch: Histogram,
    errors: Vec<Counter>,
}

impl Metrics {
    pub fn new() -> Metrics {
        let recorder = PrometheusBuilder::new().build_recorder();
        let handle = recorder.handle();
        let counter = |name: &'static str, help: &'static str| {
            recorder.describe_counter(KeyName::from_const_str(name), None, help.into());
            recorder.register_counter(&Key::from_static_name(name), &METADATA)
        };
        let gauge = |name: &'static str, help: &'static str| {
            recorder.describe_gauge(KeyName::from_const_str(name), None, help.into());
            recorder.register_gauge(&Key::from_static_name(name), &METADATA)
        };
        let histogram = |name: &'static str, unit: Option<Unit>, help: &'static str| {
            recorder.describe_histogram(KeyName::from_const_str(name), unit, help.into());
            recorder.register_histogram(&Key::from_static_name(name), &METADATA)
        };
        recorder.describe_counter(
            KeyName::from_const_str("preau_errors_total"),
            None,
            "error replies sent, by code".into(),
        );
        let labeled =
            |name: &'static str, help: &'static str, key: &'static str, values: &[&'static str]| {
                recorder.describe_counter(KeyName::from_const_str(name), None, help.into());
                values
                    .iter()
                    .map(|value| {
                        let key = Key::from_parts(name, vec![Label::new(key, *value)]);
                        recorder.register_counter(&key, &METADATA)
                    })
                    .collect::<Vec<_>>()
            };
        let refused = labeled(
            "preau_connections_refused_total",
            "connections and upgrades refused, by reason",
            "reason",
            &Refused::ALL.map(Refused::label),
        );
        let evicted = labeled(
            "preau_connections_evicted_total",
            "unauthenticated connections closed to make room for a newer one, by reason",
            "reason",
            &Evicted::ALL.map(Evicted::label),
        );
        let errors = ErrorCode::ALL
            .iter()
            .map(|code| {
                let key = Key::from_parts(
                    "preau_errors_total",
                    vec![Label::new("code", code.as_str())],
                );
                recorder.register_counter(&key, &METADATA)
            })
            .collect();
        Metrics {
            connections: gauge("preau_connections", "open websocket connections"),
            connections_accepted: counter(
                "preau_connections_accepted_total",
                "websocket connections accepted",
            ),
            sessions: gauge(
                "preau_sessions",
                "authenticated connections (bounded by max_connections)",
            ),
            unauthenticated: gauge(
                "preau_unauthenticated_connections",
                "connections without a session: HTTP, and websockets before hello",
            ),
            header_timeouts: counter(
                "preau_http_header_timeouts_total",
                "HTTP connections closed for not sending a request head within header_timeout",
            ),
            refused,
            evicted,
            rooms_loaded: gauge("preau_rooms", "rooms loaded in memory"),
            notes_loaded: gauge(
                "preau_notes_loaded",
                "notes (yjs documents) loaded in memory",
            ),
            note_bytes: gauge(
                "preau_note_bytes",
                "encoded size of the loaded notes, as of their load or last compaction",
            ),
            note_compactions: counter(
                "preau_note_compactions_total",
                "note snapshots written (updates folded, events deleted)",
            ),
            frames_in: counter("preau_messages_in_total", "frames received from clients"),
            frames_out: counter("preau_messages_out_total", "frames written to clients"),
            messages_stored: counter("preau_messages_stored_total", "chat messages made durable"),
            slow_consumers: counter(
                "preau_slow_consumers_total",
                "connections closed because their outbound queue went over budget",
            ),
            queue_drops: counter(
                "preau_queue_drops_total",
                "frames not queued because the connection was over budget",
            ),
            file_chunks: counter("preau_file_chunks_total", "upload chunks stored"),
            file_bytes_in: counter("preau_file_bytes_in_total", "bytes of upload chunks stored"),
            files_finished: counter(
                "preau_files_finished_total",
                "uploads finished into a file (type checked, image metadata stripped)",
            ),
            file_downloads: counter(
                "preau_file_downloads_total",
                "file downloads and zips started",
            ),

            commit_seconds: histogram(
                "preau_store_commit_seconds",
                Some(Unit::Seconds),
                "duration of one group commit (batch + flush)",
            ),
            commit_batch: histogram("preau_store_commit_batch", None, "events per group commit"),
            errors,
            _recorder: recorder,
            handle,
        }
    }

    pub fn error(&self, code: ErrorCode) {
        if let Some(counter) = self.errors.get(code.index()) {
            counter.increment(1);
        }
    }

    pub fn refused(&self, reason: Refused) {
        let at = Refused::ALL.iter().position(|r| *r == reason);
        if let Some(counter) = at.and_then(|i| self.refused.get(i)) {
            counter.increment(1);
        }
    }

    pub fn evicted(&self, reason: Evicted) {
        let at = Evicted::ALL.iter().position(|r| *r == reason);
        if let Some(counter) = at.and_then(|i| self.evicted.get(i)) {
            counter.increment(1);
        }
    }

    /// The Prometheus text exposition.
    pub fn render(&self) -> String {
        self.handle.render()
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}
