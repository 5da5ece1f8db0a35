//! Call flows: the definitions flow designers write in `dialplans/`, the per-call state machine
//! that runs them, the store that hot-reloads and edits them, and the runtime that drives calls.

pub mod call;
pub mod definition;
mod originated;
pub mod runtime;
pub mod saved;
pub mod store;

pub use definition::{check_folder, Flow, FlowError, FlowSet, NodeKind, Settings};
pub use runtime::FlowRuntime;
pub use store::FlowStore;
