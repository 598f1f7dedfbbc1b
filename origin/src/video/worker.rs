//! The transcode workers: take a job from the persistent queue, probe the source, run the
//! ladder into `work/{id}`, check it is complete, publish it by renaming it to `media/{id}`,
//! then mark the video ready. Failures are retried with backoff, then the video is failed
//! with the reason. At startup, [`recover`] requeues what a crash interrupted and removes
//! leftovers.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::watch;

use super::store::{Job, Rendition};
use super::tools::{self, RunError};
use super::{ladder, names, now_ms, playlist, Service};
use crate::http::BoxError;

/// Longest a worker waits before looking at the queue again without being woken.
const MAX_IDLE: Duration = Duration::from_secs(30);
/// Longest wait before a retry.
const MAX_BACKOFF: Duration = Duration::from_secs(600);

/// Why an attempt did not publish.
enum Stop {
    /// Shutdown began: the job goes back to the queue uncounted.
    Cancelled,
    /// The source is not something to transcode: no retry.
    Permanent(String),
    /// Worth another attempt.
    Retry(String),
}

impl From<RunError> for Stop {
    fn from(e: RunError) -> Self {
        match e {
            RunError::Cancelled => Stop::Cancelled,
            other => Stop::Retry(other.to_string()),
        }
    }
}

/// A worker: runs jobs until `stop` turns true.
pub(super) async fn work(service: Arc<Service>, mut stop: watch::Receiver<bool>) {
    while !*stop.borrow() {
        match service.store(move |s| s.claim(now_ms())).await {
            Ok(Some(job)) => {
                service.refresh_jobs_gauge().await;
                run_job(&service, job, &mut stop).await;
                service.refresh_jobs_gauge().await;
            }
            Ok(None) => idle(&service, &mut stop).await,
            Err(e) => {
                log::error!("video: cannot read the job queue: {e}");
                pause(Duration::from_secs(1), &mut stop).await;
            }
        }
    }
}

/// Waits until woken by an upload, the next retry is due, or `stop`.
async fn idle(service: &Service, stop: &mut watch::Receiver<bool>) {
    let wait = match service.store(|s| s.next_due()).await {
        Ok(Some(due)) => {
            Duration::from_millis(u64::try_from(due - now_ms()).unwrap_or(0)).min(MAX_IDLE)
        }
        _ => MAX_IDLE,
    };
    tokio::select! {
        () = service.wake.notified() => {}
        () = pause(wait, stop) => {}
    }
}

async fn pause(wait: Duration, stop: &mut watch::Receiver<bool>) {
    tokio::select! {
        () = tokio::time::sleep(wait) => {}
        _ = stop.wait_for(|s| *s) => {}
    }
}

async fn run_job(service: &Service, job: Job, stop: &mut watch::Receiver<bool>) {
    let started = Instant::now();
    let source = service.dirs.uploads.join(&job.id);
    let work_dir = service.dirs.work.join(&job.id);
    let outcome = attempt(service, &job.id, &source, &work_dir, stop).await;
    let id = job.id.clone();
    let result = match outcome {
        Ok(()) => {
            service
                .metrics
                .transcode_seconds
                .observe(started.elapsed().as_secs_f64());
            service.mark_ready(&id);
            remove_file(&source).await;
            log::info!(
                "video {id}: ready after {:.1}s",
                started.elapsed().as_secs_f64()
            );
            Ok(())
        }
        Err(Stop::Cancelled) => {
            remove_dir(&work_dir).await;
            service.store(move |s| s.release(&id)).await
        }
        Err(Stop::Permanent(reason)) => {
            service.metrics.failures.inc();
            remove_dir(&work_dir).await;
            remove_file(&source).await;
            log::warn!("video {id}: failed: {reason}");
            service.store(move |s| s.fail(&id, &reason)).await
        }
        Err(Stop::Retry(reason)) => {
            service.metrics.failures.inc();
            remove_dir(&work_dir).await;
            if job.attempts >= service.config.max_attempts {
                remove_file(&source).await;
                let reason = format!("gave up after {} attempts: {reason}", job.attempts);
                log::warn!("video {id}: {reason}");
                service.store(move |s| s.fail(&id, &reason)).await
            } else {
                let wait = backoff(service.config.retry_backoff, job.attempts);
                log::info!(
                    "video {id}: attempt {} failed ({reason}); retry in {wait:?}",
                    job.attempts
                );
                let due =
                    now_ms().saturating_add(i64::try_from(wait.as_millis()).unwrap_or(i64::MAX));
                service.store(move |s| s.retry(&id, &reason, due)).await
            }
        }
    };
    if let Err(e) = result {
        log::error!("video {}: cannot record the job's outcome: {e}", job.id);
    }
}

/// The wait before retry number `attempts` (1 after the first failure): `base` doubled per
/// earlier failure, at most 10 minutes.
fn backoff(base: Duration, attempts: u32) -> Duration {
    let factor = 1u32 << attempts.saturating_sub(1).min(16);
    base.saturating_mul(factor).min(MAX_BACKOFF)
}

/// One attempt: probe, transcode, check, publish, mark ready.
async fn attempt(
    service: &Service,
    id: &str,
    source: &Path,
    work_dir: &Path,
    stop: &mut watch::Receiver<bool>,
) -> Result<(), Stop> {
    let config = &service.config;
    let deadline = Instant::now() + config.attempt_timeout;
    let left = || deadline.saturating_duration_since(Instant::now());
    // Each run gets what is left of the attempt's limit; a timeout reports the whole limit.
    let limit = config.attempt_timeout;
    let stopped = |e: RunError| match e {
        RunError::TimedOut(_) => Stop::Retry(RunError::TimedOut(limit).to_string()),
        other => Stop::from(other),
    };
    let (Some(ffmpeg), Some(ffprobe)) = (
        tools::resolve(&config.ffmpeg).await,
        tools::resolve(&config.ffprobe).await,
    ) else {
        return Err(Stop::Retry(
            "transcoding unavailable: ffmpeg not found".into(),
        ));
    };
    let json = tools::run(&ffprobe, &tools::probe_args(source), left(), stop)
        .await
        .map_err(stopped)?;
    let probe =
        tools::parse_probe(&json).map_err(|e| Stop::Permanent(format!("not a video: {e}")))?;
    let rungs = ladder::pick(&config.ladder, probe.height);

    remove_dir(work_dir).await;
    tokio::fs::create_dir_all(work_dir)
        .await
        .map_err(|e| Stop::Retry(format!("cannot create the work directory: {e}")))?;
    let args = ladder::ffmpeg_args(
        source,
        work_dir,
        &rungs,
        probe.has_audio,
        config.segment_seconds,
    );
    tools::run(&ffmpeg, &args, left(), stop)
        .await
        .map_err(stopped)?;

    let renditions = check_output(work_dir, &rungs)
        .await
        .map_err(|e| Stop::Retry(format!("incomplete ladder: {e}")))?;
    publish(service, id, work_dir, probe.duration, renditions).await
}

/// Checks `work_dir` holds the whole ladder: a master listing exactly `rungs`, each with a
/// complete media playlist whose segments all exist.
async fn check_output(work_dir: &Path, rungs: &[ladder::Rung]) -> Result<Vec<Rendition>, String> {
    let master = read(&work_dir.join(names::MASTER_PLAYLIST)).await?;
    let renditions = playlist::parse_master(&master)?;
    let mut listed: Vec<&str> = renditions.iter().map(|r| r.name.as_str()).collect();
    let mut wanted: Vec<&str> = rungs.iter().map(|r| r.name.as_str()).collect();
    listed.sort_unstable();
    wanted.sort_unstable();
    if listed != wanted {
        return Err(format!("master lists {listed:?}, expected {wanted:?}"));
    }
    for rendition in &renditions {
        let dir = work_dir.join(&rendition.name);
        let media = read(&dir.join(names::MEDIA_PLAYLIST)).await?;
        for segment in playlist::parse_media(&media)? {
            let meta = tokio::fs::metadata(dir.join(&segment))
                .await
                .map_err(|e| format!("{}/{segment}: {e}", rendition.name))?;
            if meta.len() == 0 {
                return Err(format!("{}/{segment} is empty", rendition.name));
            }
        }
    }
    Ok(renditions)
}

async fn read(path: &Path) -> Result<String, String> {
    tokio::fs::read_to_string(path).await.map_err(|e| {
        format!(
            "{}: {e}",
            path.file_name()
                .map_or_else(String::new, |n| n.to_string_lossy().into_owned())
        )
    })
}

/// Renames the complete ladder into `media/{id}`, then records the video ready. Until the
/// store says ready nothing under it is served; if recording fails it is taken down again.
async fn publish(
    service: &Service,
    id: &str,
    work_dir: &Path,
    duration: Option<f64>,
    renditions: Vec<Rendition>,
) -> Result<(), Stop> {
    let target = service.dirs.media.join(id);
    remove_dir(&target).await;
    tokio::fs::rename(work_dir, &target)
        .await
        .map_err(|e| Stop::Retry(format!("cannot publish: {e}")))?;
    let owned = id.to_string();
    if let Err(e) = service
        .store(move |s| s.set_ready(&owned, duration, &renditions))
        .await
    {
        remove_dir(&target).await;
        return Err(Stop::Retry(format!("cannot record the video ready: {e}")));
    }
    Ok(())
}

/// At startup: requeues jobs a crash interrupted (failing those out of attempts), removes
/// unfinished work, partial uploads, sources without a queued video and media of videos that
/// are not ready, and loads the ready set.
pub(super) async fn recover(service: &Service) -> Result<(), BoxError> {
    let max = service.config.max_attempts;
    let touched = service.store(move |s| s.recover(max)).await?;
    if touched > 0 {
        log::info!("video: {touched} interrupted job(s) recovered");
    }
    for entry in list(&service.dirs.work).await? {
        remove_any(&entry).await;
    }
    for entry in list(&service.dirs.uploads).await? {
        let keep = match entry.file_name().and_then(|n| n.to_str()) {
            Some(name) if names::is_id(name) => {
                let id = name.to_string();
                service
                    .store(move |s| s.get(&id))
                    .await?
                    .is_some_and(|v| v.status == super::Status::Queued)
            }
            _ => false,
        };
        if !keep {
            remove_any(&entry).await;
        }
    }
    let ready = service.store(|s| s.ready_ids()).await?;
    for entry in list(&service.dirs.media).await? {
        let published = entry
            .file_name()
            .and_then(|n| n.to_str())
            .is_some_and(|name| ready.iter().any(|id| id == name));
        if !published {
            remove_any(&entry).await;
        }
    }
    if let Ok(mut set) = service.ready.write() {
        set.extend(ready);
    }
    Ok(())
}

async fn list(dir: &Path) -> Result<Vec<PathBuf>, BoxError> {
    let mut entries = tokio::fs::read_dir(dir).await?;
    let mut out = Vec::new();
    while let Some(entry) = entries.next_entry().await? {
        out.push(entry.path());
    }
    Ok(out)
}

async fn remove_any(path: &Path) {
    match tokio::fs::symlink_metadata(path).await {
        Ok(meta) if meta.is_dir() => remove_dir(path).await,
        Ok(_) => remove_file(path).await,
        Err(_) => {}
    }
}

async fn remove_dir(path: &Path) {
    match tokio::fs::remove_dir_all(path).await {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => log::warn!("video: cannot remove {}: {e}", path.display()),
    }
}

async fn remove_file(path: &Path) {
    match tokio::fs::remove_file(path).await {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => log::warn!("video: cannot remove {}: {e}", path.display()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_and_is_capped() {
        let base = Duration::from_secs(5);
        assert_eq!(backoff(base, 1), Duration::from_secs(5));
        assert_eq!(backoff(base, 2), Duration::from_secs(10));
        assert_eq!(backoff(base, 3), Duration::from_secs(20));
        assert_eq!(backoff(base, 40), MAX_BACKOFF);
    }
}
