//! The video service's Prometheus metrics.

use prometheus::{
    Histogram, HistogramOpts, IntCounter, IntCounterVec, IntGaugeVec, Opts, Registry,
};

use super::store::Status;

/// Upload outcomes, the job gauge, transcode times and failures.
pub struct Metrics {
    /// `video_uploads_total{result}`: accepted, too_large, not_video, bad_request,
    /// unavailable (no ffmpeg, or too many uploads at once), busy (queue full), error.
    pub uploads: IntCounterVec,
    /// `video_jobs{state}`: videos in each status (queued, processing, ready, failed).
    pub jobs: IntGaugeVec,
    /// `video_transcode_seconds`: time of each successful transcode (probe to publish).
    pub transcode_seconds: Histogram,
    /// `video_transcode_failures_total`: failed transcode attempts (each retry counts).
    pub failures: IntCounter,
}

impl Metrics {
    /// Registers the metrics in `registry`.
    pub fn new(registry: &Registry) -> Result<Self, prometheus::Error> {
        let uploads = IntCounterVec::new(
            Opts::new("video_uploads_total", "Uploads by result"),
            &["result"],
        )?;
        let jobs = IntGaugeVec::new(Opts::new("video_jobs", "Videos by state"), &["state"])?;
        let transcode_seconds = Histogram::with_opts(
            HistogramOpts::new(
                "video_transcode_seconds",
                "Time of a successful transcode, probe to publish",
            )
            .buckets(vec![
                0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0,
            ]),
        )?;
        let failures = IntCounter::new(
            "video_transcode_failures_total",
            "Failed transcode attempts",
        )?;
        registry.register(Box::new(uploads.clone()))?;
        registry.register(Box::new(jobs.clone()))?;
        registry.register(Box::new(transcode_seconds.clone()))?;
        registry.register(Box::new(failures.clone()))?;
        for result in [
            "accepted",
            "too_large",
            "not_video",
            "bad_request",
            "unavailable",
            "busy",
            "error",
        ] {
            uploads.with_label_values(&[result]);
        }
        Ok(Self {
            uploads,
            jobs,
            transcode_seconds,
            failures,
        })
    }

    /// Sets the job gauge from the store's counts.
    pub fn set_jobs(&self, counts: &[(Status, u64)]) {
        for (status, n) in counts {
            self.jobs
                .with_label_values(&[status.as_str()])
                .set(i64::try_from(*n).unwrap_or(i64::MAX));
        }
    }
}
