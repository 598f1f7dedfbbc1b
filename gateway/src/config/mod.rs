//! Configuration: the typed [`model`], the YAML [`load`]er with validation, and [`units`].
//!
//! Loading goes text → [`yaml`] tree (positions kept, `${ENV}` substituted by [`env`]) → typed
//! model, read section by section ([`load`], [`upstreams`], [`routes`]) with [`fields`] readers
//! and the syntax checks of [`validate`]. Every problem is collected as an [`error::ConfigError`].

mod breaker;
mod cache;
mod defaults;
pub mod document;
mod env;
mod error;
mod fields;
pub mod load;
pub mod model;
mod routes;
pub mod secrets;
/// Human units, shared with the plugins' settings (one implementation).
pub use plugins::units;
mod upstreams;
mod validate;
mod yaml;

#[cfg(test)]
mod load_tests;

pub use error::{ConfigError, ConfigErrors};
pub use load::{load_file, load_str};
pub use model::*;
