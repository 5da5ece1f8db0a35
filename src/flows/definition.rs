//! Flow files: one TOML file per flow in `dialplans/`, plus `settings.toml`.
//!
//! Parsing is done by hand over a `toml::Table` so every problem is reported with the file, the
//! node and the field, and all problems of a folder are reported at once.

mod folder;
mod model;
mod parse;
mod settings;
#[cfg(test)]
mod tests;

pub use folder::*;
pub use model::*;
pub use parse::{parse_flow, parse_settings};
pub use settings::*;
