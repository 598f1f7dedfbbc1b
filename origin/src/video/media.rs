//! Serving published ladders: `/videos/{id}/master.m3u8` and
//! `/videos/{id}/{rendition}/{index.m3u8 | seg_NNNNN.ts}`, GET and HEAD. Only ready videos;
//! every path part is checked against a strict pattern before the filesystem is touched,
//! so no request can leave the media directory. Segments are immutable; Range, ETag and
//! Last-Modified are honoured.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::UNIX_EPOCH;

use axum::body::Body;
use axum::extract::rejection::PathRejection;
use axum::extract::{Path, Request, State};
use axum::response::{IntoResponse, Response};
use http::{header, HeaderMap, HeaderValue, StatusCode};
use tower_http::services::ServeFile;

use super::{names, Service};
use crate::http::ApiError;

const PLAYLIST_TYPE: &str = "application/vnd.apple.mpegurl";
const SEGMENT_TYPE: &str = "video/mp2t";
const SEGMENT_CACHE: &str = "public, max-age=31536000, immutable";

fn not_found() -> Response {
    ApiError::not_found("no such video file").into_response()
}

/// Handles `GET|HEAD /videos/{id}/master.m3u8`.
pub(super) async fn master(
    State(service): State<Arc<Service>>,
    id: Result<Path<String>, PathRejection>,
    req: Request,
) -> Response {
    let Ok(Path(id)) = id else {
        return not_found();
    };
    if !names::is_id(&id) || !service.is_ready(&id) {
        return not_found();
    }
    let path = service.dirs.media.join(&id).join(names::MASTER_PLAYLIST);
    let cache = format!("public, max-age={}", service.config.playlist_max_age);
    serve(req, path, PLAYLIST_TYPE, &cache).await
}

/// Handles `GET|HEAD /videos/{id}/{rendition}/{file}`.
pub(super) async fn rendition_file(
    State(service): State<Arc<Service>>,
    parts: Result<Path<(String, String, String)>, PathRejection>,
    req: Request,
) -> Response {
    let Ok(Path((id, rendition, file))) = parts else {
        return not_found();
    };
    if !names::is_id(&id) || !names::is_rendition(&rendition) || !service.is_ready(&id) {
        return not_found();
    }
    let (content_type, cache) = if file == names::MEDIA_PLAYLIST {
        (
            PLAYLIST_TYPE,
            format!("public, max-age={}", service.config.playlist_max_age),
        )
    } else if names::is_segment(&file) {
        (SEGMENT_TYPE, SEGMENT_CACHE.to_string())
    } else {
        return not_found();
    };
    let path = service.dirs.media.join(&id).join(&rendition).join(&file);
    serve(req, path, content_type, &cache).await
}

/// Serves the file at `path` (built only from checked names) with its type, `Cache-Control`
/// and an ETag from its size and modification time; `If-None-Match` → 304, Range → 206 and
/// `If-Modified-Since` by `ServeFile`.
async fn serve(req: Request, path: PathBuf, content_type: &str, cache: &str) -> Response {
    let meta = match tokio::fs::metadata(&path).await {
        Ok(meta) if meta.is_file() => meta,
        Ok(_) => return not_found(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return not_found(),
        Err(e) => return ApiError::internal(format!("{}: {e}", path.display())).into_response(),
    };
    let modified = meta
        .modified()
        .ok()
        .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
        .map_or(0, |d| d.as_nanos());
    let etag = format!("\"{:x}-{:x}\"", meta.len(), modified);
    let etag_value = HeaderValue::from_str(&etag).ok();
    let cache_value = HeaderValue::from_str(cache).ok();
    let decorate = |headers: &mut HeaderMap| {
        if let Some(v) = &etag_value {
            headers.insert(header::ETAG, v.clone());
        }
        if let Some(v) = &cache_value {
            headers.insert(header::CACHE_CONTROL, v.clone());
        }
    };
    if matches_etag(req.headers(), &etag) {
        let mut response = StatusCode::NOT_MODIFIED.into_response();
        decorate(response.headers_mut());
        return response;
    }
    let mime = content_type
        .parse::<mime::Mime>()
        .unwrap_or(mime::APPLICATION_OCTET_STREAM);
    match ServeFile::new_with_mime(&path, &mime).try_call(req).await {
        Ok(response) => {
            let mut response = response.map(Body::new);
            if response.status().is_success() || response.status() == StatusCode::NOT_MODIFIED {
                decorate(response.headers_mut());
            }
            response
        }
        Err(e) => ApiError::internal(format!("{}: {e}", path.display())).into_response(),
    }
}

/// True when `If-None-Match` names `etag` (or is `*`); weak comparison, as for GET.
fn matches_etag(headers: &HeaderMap, etag: &str) -> bool {
    headers
        .get_all(header::IF_NONE_MATCH)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|t| t.trim())
        .any(|t| t == "*" || t.trim_start_matches("W/") == etag)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn if_none_match_is_compared_weakly() {
        let mut h = HeaderMap::new();
        assert!(!matches_etag(&h, "\"a\""));
        h.insert(header::IF_NONE_MATCH, "\"b\", W/\"a\"".parse().unwrap());
        assert!(matches_etag(&h, "\"a\""));
        assert!(!matches_etag(&h, "\"c\""));
        h.insert(header::IF_NONE_MATCH, "*".parse().unwrap());
        assert!(matches_etag(&h, "\"c\""));
    }
}
