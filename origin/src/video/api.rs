//! `GET /api/videos/{id}` (status) and `GET /api/videos` (ready videos).

use std::sync::Arc;

use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::Json;
use serde::{Deserialize, Serialize};

use super::store::{Rendition, Status, Video};
use super::{names, Service};
use crate::http::ApiError;

/// Most videos one list answer holds.
const MAX_LIST: u32 = 100;
/// Videos in a list answer unless `?limit=` says otherwise.
const DEFAULT_LIST: u32 = 50;

/// A video as the API shows it.
#[derive(Serialize)]
pub(super) struct VideoView {
    id: String,
    title: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    file_name: Option<String>,
    size: u64,
    status: Status,
    attempts: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    duration: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    renditions: Option<Vec<Rendition>>,
    playlist: String,
    created_ms: i64,
}

impl From<Video> for VideoView {
    fn from(v: Video) -> Self {
        Self {
            playlist: format!("/videos/{}/master.m3u8", v.id),
            id: v.id,
            title: v.title,
            file_name: v.file_name,
            size: v.size,
            status: v.status,
            attempts: v.attempts,
            error: v.error,
            duration: v.duration,
            renditions: v.renditions,
            created_ms: v.created_ms,
        }
    }
}

/// Handles `GET /api/videos/{id}`.
pub(super) async fn status(
    State(service): State<Arc<Service>>,
    id: Result<Path<String>, PathRejection>,
) -> Result<Json<VideoView>, ApiError> {
    let Ok(Path(id)) = id else {
        return Err(ApiError::not_found("no such video"));
    };
    if !names::is_id(&id) {
        return Err(ApiError::not_found("no such video"));
    }
    service
        .api_store(move |s| s.get(&id))
        .await?
        .map(|v| Json(v.into()))
        .ok_or_else(|| ApiError::not_found("no such video"))
}

/// `?limit=` of the list.
#[derive(Deserialize)]
pub(super) struct ListQuery {
    limit: Option<u32>,
}

/// The list answer.
#[derive(Serialize)]
pub(super) struct ListView {
    videos: Vec<VideoView>,
}

/// Handles `GET /api/videos`: ready videos, newest first, at most `?limit=` (1–100,
/// default 50).
pub(super) async fn list(
    State(service): State<Arc<Service>>,
    query: Result<Query<ListQuery>, QueryRejection>,
) -> Result<Json<ListView>, ApiError> {
    let Query(query) = query.map_err(|e| ApiError::bad_request(e.body_text()))?;
    let limit = query.limit.unwrap_or(DEFAULT_LIST);
    if !(1..=MAX_LIST).contains(&limit) {
        return Err(ApiError::bad_request("limit must be 1–100"));
    }
    let videos = service.api_store(move |s| s.list_ready(limit)).await?;
    Ok(Json(ListView {
        videos: videos.into_iter().map(VideoView::from).collect(),
    }))
}
