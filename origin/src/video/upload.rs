//! `POST /api/videos`: the body is streamed to `uploads/` (never buffered whole), limited in
//! size, and sniffed from its first bytes before anything is written.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use axum::body::{Body, BodyDataStream};
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use futures_util::StreamExt;
use http::{header, HeaderMap, StatusCode};
use serde::Deserialize;
use tokio::io::AsyncWriteExt;

use super::sniff::{sniff, Sniffed, SNIFF_LEN};
use super::{names, now_ms, tools, Config, Service, Status};
use crate::http::ApiError;

/// The upload's query: `?title=...&name=...`.
#[derive(Deserialize)]
pub(super) struct UploadQuery {
    title: Option<String>,
    name: Option<String>,
}

/// `Ok` when both `ffmpeg` and `ffprobe` are found and executable, else the 503 reason.
pub(super) async fn tools_available(config: &Config) -> Result<(), String> {
    for (what, path) in [("ffmpeg", &config.ffmpeg), ("ffprobe", &config.ffprobe)] {
        if tools::resolve(path).await.is_none() {
            return Err(format!("transcoding unavailable: {what} not found"));
        }
    }
    Ok(())
}

/// A file removed when dropped unless kept: a refused or abandoned upload leaves nothing.
struct Partial {
    path: PathBuf,
    keep: bool,
}

impl Drop for Partial {
    fn drop(&mut self) {
        if !self.keep {
            if let Err(e) = std::fs::remove_file(&self.path) {
                if e.kind() != std::io::ErrorKind::NotFound {
                    log::warn!("video: cannot remove {}: {e}", self.path.display());
                }
            }
        }
    }
}

/// Handles `POST /api/videos`.
pub(super) async fn upload(
    State(service): State<Arc<Service>>,
    query: Result<Query<UploadQuery>, QueryRejection>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let (result, response) = match receive(&service, query, &headers, body).await {
        Ok(response) => ("accepted", response),
        Err(e) => {
            let result = match e.status {
                StatusCode::PAYLOAD_TOO_LARGE => "too_large",
                StatusCode::UNSUPPORTED_MEDIA_TYPE => "not_video",
                StatusCode::SERVICE_UNAVAILABLE => "unavailable",
                StatusCode::TOO_MANY_REQUESTS => "busy",
                s if s.is_client_error() => "bad_request",
                _ => "error",
            };
            (result, e.into_response())
        }
    };
    service.metrics.uploads.with_label_values(&[result]).inc();
    response
}

async fn receive(
    service: &Service,
    query: Result<Query<UploadQuery>, QueryRejection>,
    headers: &HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let Query(query) = query.map_err(|e| ApiError::bad_request(e.body_text()))?;
    let file_name = query.name.or_else(|| disposition_file_name(headers));
    if let Some(name) = &file_name {
        names::check_file_name(name).map_err(ApiError::bad_request)?;
    }
    let title = query
        .title
        .or_else(|| file_name.clone())
        .unwrap_or_else(|| "untitled".to_string());
    names::check_title(&title).map_err(ApiError::bad_request)?;
    tools_available(&service.config)
        .await
        .map_err(|e| ApiError::new(StatusCode::SERVICE_UNAVAILABLE, e))?;
    let _permit = service.uploading.try_acquire().map_err(|_| {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "too many uploads in progress, try again later",
        )
    })?;
    let waiting = service
        .api_store(|s| s.counts())
        .await?
        .iter()
        .filter(|(status, _)| matches!(status, Status::Queued | Status::Processing))
        .map(|(_, n)| n)
        .sum::<u64>();
    if waiting >= service.config.max_queued {
        return Err(ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            "too many videos waiting to be transcoded, try again later",
        ));
    }
    let max = service.config.max_upload;
    let too_large = || {
        ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("upload over {max} bytes"),
        )
    };
    if let Some(length) = headers.get(header::CONTENT_LENGTH) {
        let length: u64 = length
            .to_str()
            .ok()
            .and_then(|l| l.parse().ok())
            .ok_or_else(|| ApiError::bad_request("bad Content-Length"))?;
        if length > max {
            return Err(too_large());
        }
    }

    let idle = service.config.upload_idle_timeout;
    let mut stream = body.into_data_stream();
    let mut head: Vec<u8> = Vec::with_capacity(SNIFF_LEN);
    let mut rest: Option<Bytes> = None;
    while head.len() < SNIFF_LEN {
        let Some(chunk) = next_chunk(&mut stream, idle).await? else {
            break;
        };
        let take = chunk.len().min(SNIFF_LEN - head.len());
        head.extend_from_slice(&chunk[..take]);
        if take < chunk.len() {
            rest = Some(chunk.slice(take..));
        }
    }
    if let Sniffed::Other(kind) = sniff(&head) {
        return Err(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            format!("not a video ({kind})"),
        ));
    }

    let id = names::new_id();
    let part_path = service.dirs.uploads.join(format!("{id}.part"));
    let write_err = |e: std::io::Error| ApiError::internal(format!("writing an upload: {e}"));
    let mut file = tokio::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&part_path)
        .await
        .map_err(write_err)?;
    // From here on the file is ours: removed unless the upload is accepted.
    let mut part = Partial {
        path: part_path.clone(),
        keep: false,
    };
    let mut size = 0u64;
    let mut pending = Some(Bytes::from(head)).into_iter().chain(rest);
    loop {
        let chunk = match pending.next() {
            Some(chunk) => chunk,
            None => match next_chunk(&mut stream, idle).await? {
                Some(chunk) => chunk,
                None => break,
            },
        };
        size += chunk.len() as u64;
        if size > max {
            return Err(too_large());
        }
        file.write_all(&chunk).await.map_err(write_err)?;
    }
    file.sync_all().await.map_err(write_err)?;
    drop(file);

    let source = service.dirs.uploads.join(&id);
    tokio::fs::rename(&part_path, &source)
        .await
        .map_err(write_err)?;
    part.path = source.clone();
    let (row_id, row_title, row_name) = (id.clone(), title.clone(), file_name.clone());
    service
        .api_store(move |s| s.insert(&row_id, &row_title, row_name.as_deref(), size, now_ms()))
        .await?;
    part.keep = true;
    service.wake.notify_one();
    service.refresh_jobs_gauge().await;
    log::info!("video {id}: {size} bytes uploaded ({title:?}), queued");
    let location = format!("/api/videos/{id}");
    Ok((
        StatusCode::ACCEPTED,
        [(header::LOCATION, location)],
        axum::Json(serde_json::json!({ "id": id, "status": "queued" })),
    )
        .into_response())
}

/// The next chunk of the body; a client that sends nothing for `idle` gets 408.
async fn next_chunk(
    stream: &mut BodyDataStream,
    idle: Duration,
) -> Result<Option<Bytes>, ApiError> {
    match tokio::time::timeout(idle, stream.next()).await {
        Ok(None) => Ok(None),
        Ok(Some(Ok(chunk))) => Ok(Some(chunk)),
        Ok(Some(Err(e))) => Err(ApiError::bad_request(format!("upload interrupted: {e}"))),
        Err(_) => Err(ApiError::new(
            StatusCode::REQUEST_TIMEOUT,
            format!(
                "upload stalled: nothing received for {}s",
                idle.as_secs_f64()
            ),
        )),
    }
}

/// The `filename` parameter of a `Content-Disposition` header, if any (quoted or a token).
fn disposition_file_name(headers: &HeaderMap) -> Option<String> {
    let value = headers.get(header::CONTENT_DISPOSITION)?.to_str().ok()?;
    value.split(';').map(str::trim).find_map(|param| {
        let (key, v) = param.split_once('=')?;
        if !key.trim().eq_ignore_ascii_case("filename") {
            return None;
        }
        let v = v.trim();
        let v = v
            .strip_prefix('"')
            .and_then(|v| v.strip_suffix('"'))
            .unwrap_or(v);
        Some(v.to_string())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn disposition_file_names_are_read() {
        let mut h = HeaderMap::new();
        assert_eq!(disposition_file_name(&h), None);
        h.insert(
            header::CONTENT_DISPOSITION,
            "attachment; filename=\"clip.mp4\"".parse().unwrap(),
        );
        assert_eq!(disposition_file_name(&h).as_deref(), Some("clip.mp4"));
        h.insert(
            header::CONTENT_DISPOSITION,
            "inline; FILENAME=../x.mp4".parse().unwrap(),
        );
        assert_eq!(disposition_file_name(&h).as_deref(), Some("../x.mp4"));
    }

    #[test]
    fn dropped_partials_are_removed() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.part");
        std::fs::write(&path, b"x").unwrap();
        drop(Partial {
            path: path.clone(),
            keep: false,
        });
        assert!(!path.exists());
        std::fs::write(&path, b"x").unwrap();
        drop(Partial {
            path: path.clone(),
            keep: true,
        });
        assert!(path.exists());
    }
}
