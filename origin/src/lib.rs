//! The thin, real services that stand behind Meridian in the demo platform (`meridian stack`):
//!
//! - [`urls`]: a URL shortener (create, redirect with `Cache-Control` for the edge, stats with
//!   batched click counting),
//! - [`orders`]: food-delivery orders as an orchestrated saga over an event store with an
//!   outbox, retrying consumers and a dead-letter queue,
//! - [`video`]: uploads transcoded by `ffmpeg` into an HLS ladder, served for the edge to cache.
//!
//! Each service keeps its data in an embedded store under its own directory and is run with
//! its `run` function: it serves on the listener it is given until `shutdown` resolves, then
//! drains (in-flight requests finish, buffered state is written) and returns.
//! [`http`] holds what they share: JSON errors, the JSON body extractor, request metrics and
//! the serve loop.

pub mod http;
pub mod orders;
pub mod urls;
pub mod video;
