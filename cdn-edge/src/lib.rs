//! Meridian CDN edge: cache storage and policy (filled by the edge issue).
