//! batten: a native engine for workflows of Python agent and tool steps.
//!
//! `engine` is pure Rust (no pyo3) and is tested with `cargo test --no-default-features`;
//! `py` is the only module that touches Python; this file only registers the module.
pub mod engine;
pub mod store;

#[cfg(feature = "python")]
mod py;

#[cfg(feature = "python")]
#[pyo3::pymodule]
mod _core {
    #[pymodule_init]
    fn init(m: &pyo3::Bound<'_, pyo3::types::PyModule>) -> pyo3::PyResult<()> {
        crate::py::register(m)
    }
}
