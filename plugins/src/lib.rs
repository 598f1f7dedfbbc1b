//! Meridian plugins: the `Plugin` trait and built-ins (filled by the plugins issue).
