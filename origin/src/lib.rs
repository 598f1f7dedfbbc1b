//! Meridian origins: URL shortener, orders, video (filled by the origins issue).
