//! Prometheus metrics. Each server owns its recorder (no global), so several
//! servers can run in one test process; handles are registered once and
//! cheap to update on hot paths.

use metrics::{Counter, Gauge, Histogram, Key, KeyName, Label, Level, Metadata, Recorder, Unit};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle, PrometheusRecorder};

use crate::protocol::ErrorCode;

static METADATA: Metadata<'static> = Metadata::new("preau", Level::INFO, Some(module_path!()));

pub struct Metrics {
    _recorder: PrometheusRecorder,
    handle: PrometheusHandle,
    pub connections: Gauge,
    pub connections_accepted: Counter,
    pub connections_refused: Counter,
    pub rooms_loaded: Gauge,
    pub notes_loaded: Gauge,
    pub note_bytes: Gauge,
    pub note_compactions: Counter,
    pub frames_in: Counter,
    pub frames_out: Counter,
    pub messages_stored: Counter,
    pub slow_consumers: Counter,
    pub queue_drops: Counter,
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
            connections_refused: counter(
                "preau_connections_refused_total",
                "upgrades refused because max_connections was reached",
            ),
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
