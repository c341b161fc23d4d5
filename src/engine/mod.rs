//! The pure-Rust engine: no pyo3 here, so it is tested with `cargo test --no-default-features`.
//! Payloads (Python objects) are generic parameters; `crate::py` instantiates them.
pub mod error;
pub mod graph;
pub mod limits;
pub mod retry;
pub mod scheduler;
pub mod state;
