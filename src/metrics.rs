//! Prometheus metrics: what the builds and the HTTP layer count, rendered in the
//! text format by the prometheus crate (never formatted by hand).

use prometheus::{
    Encoder, HistogramOpts, HistogramVec, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry,
    TextEncoder,
};

/// Build phases take seconds to minutes; HTTP requests micro- to milliseconds.
const BUILD_BUCKETS: &[f64] = &[
    0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0,
];
const HTTP_BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0,
];

/// The most CPU time a request's future took in one poll of an async thread:
/// the rule is about 100 µs at most.
const POLL_BUCKETS: &[f64] = &[
    0.000_01, 0.000_025, 0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.01, 0.1,
];

pub struct Metrics {
    registry: Registry,
    /// Builds that reached a final status, by status.
    pub builds_total: IntCounterVec,
    /// Seconds spent building and pushing, by phase (`build`, `push`).
    pub phase_seconds: HistogramVec,
    pub queue_depth: IntGauge,
    pub running_builds: IntGauge,
    /// 1 when the builder is up (its health checks pass).
    pub docker_up: IntGaugeVec,
    /// Per builder: builds running on it, and its slots.
    pub builder_running: IntGaugeVec,
    pub builder_slots: IntGaugeVec,
    pub http_requests_total: IntCounterVec,
    pub http_request_seconds: HistogramVec,
    /// Per request, its longest single poll on an async thread, by route.
    pub http_longest_poll_seconds: HistogramVec,
    /// Times a SQLite connection slept waiting for a lock, since start.
    pub sqlite_busy_waits: IntGauge,
}

impl Metrics {
    pub fn new() -> Self {
        let registry = Registry::new();
        let metrics = Metrics {
            builds_total: IntCounterVec::new(
                Opts::new("dockpub_builds_total", "Builds that ended, by final status"),
                &["status"],
            )
            .expect("valid metric"),
            phase_seconds: HistogramVec::new(
                HistogramOpts::new(
                    "dockpub_build_duration_seconds",
                    "Seconds a build spent in a phase",
                )
                .buckets(BUILD_BUCKETS.to_vec()),
                &["phase"],
            )
            .expect("valid metric"),
            queue_depth: IntGauge::new("dockpub_queue_depth", "Builds waiting in the queue")
                .expect("valid metric"),
            running_builds: IntGauge::new("dockpub_running_builds", "Builds building or pushing")
                .expect("valid metric"),
            docker_up: IntGaugeVec::new(
                Opts::new(
                    "dockpub_docker_up",
                    "Whether the builder's Docker daemon answers",
                ),
                &["builder"],
            )
            .expect("valid metric"),
            builder_running: IntGaugeVec::new(
                Opts::new(
                    "dockpub_builder_running_builds",
                    "Builds running on a builder",
                ),
                &["builder"],
            )
            .expect("valid metric"),
            builder_slots: IntGaugeVec::new(
                Opts::new("dockpub_builder_slots", "Builds a builder may run at once"),
                &["builder"],
            )
            .expect("valid metric"),
            http_requests_total: IntCounterVec::new(
                Opts::new(
                    "dockpub_http_requests_total",
                    "HTTP requests, by route, method and status",
                ),
                &["route", "method", "status"],
            )
            .expect("valid metric"),
            http_request_seconds: HistogramVec::new(
                HistogramOpts::new(
                    "dockpub_http_request_duration_seconds",
                    "Seconds to answer an HTTP request, by route",
                )
                .buckets(HTTP_BUCKETS.to_vec()),
                &["route", "method"],
            )
            .expect("valid metric"),
            sqlite_busy_waits: IntGauge::new(
                "dockpub_sqlite_busy_waits",
                "Times a SQLite connection slept in the busy handler since start (one writer: 0 unless another process writes)",
            )
            .expect("valid metric"),
            http_longest_poll_seconds: HistogramVec::new(
                HistogramOpts::new(
                    "dockpub_http_longest_poll_seconds",
                    "Per request, the most CPU time one poll of its handler held an async thread",
                )
                .buckets(POLL_BUCKETS.to_vec()),
                &["route", "method"],
            )
            .expect("valid metric"),
            registry,
        };
        metrics.register_all();
        metrics
    }

    fn register_all(&self) {
        let collectors: [Box<dyn prometheus::core::Collector>; 11] = [
            Box::new(self.builds_total.clone()),
            Box::new(self.phase_seconds.clone()),
            Box::new(self.queue_depth.clone()),
            Box::new(self.running_builds.clone()),
            Box::new(self.docker_up.clone()),
            Box::new(self.builder_running.clone()),
            Box::new(self.builder_slots.clone()),
            Box::new(self.http_requests_total.clone()),
            Box::new(self.http_request_seconds.clone()),
            Box::new(self.http_longest_poll_seconds.clone()),
            Box::new(self.sqlite_busy_waits.clone()),
        ];
        for collector in collectors {
            self.registry
                .register(collector)
                .expect("each metric registers once");
        }
    }

    /// The Prometheus text exposition of every metric.
    pub fn render(&self) -> String {
        let mut text = Vec::new();
        TextEncoder::new()
            .encode(&self.registry.gather(), &mut text)
            .expect("the text encoder writes to memory");
        String::from_utf8(text).expect("the text format is UTF-8")
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}
