//! Configuration: the typed [`model`], the YAML [`load`]er with validation, and [`units`].

mod defaults;
pub mod load;
pub mod model;
pub mod units;

pub use load::{load_file, load_str, ConfigError, ConfigErrors};
pub use model::*;
