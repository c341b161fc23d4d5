//! The store layer's one error type.
//!
//! The binding layer raises each variant as a Python exception with the `Display` text as the
//! message, so the text is part of the contract: it names the URL, run, step or record involved.

/// Why a store operation failed.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum StoreError {
    /// An unknown or malformed store URL; the message names the problem and the accepted forms.
    #[error("invalid store URL: {0}")]
    Url(String),

    /// The backend cannot be reached or opened; the message names the URL or path and the cause.
    #[error("cannot reach the store: {0}")]
    Unreachable(String),

    /// No run with this id.
    #[error("run '{0}' not found in the store")]
    RunNotFound(String),

    /// [`Store::create_run`](super::Store::create_run) with an id that is taken.
    #[error("run '{0}' already exists in the store")]
    RunExists(String),

    /// The store was written by a batten with another schema; nothing was changed.
    #[error(
        "the store was written with schema version {found}; this batten reads version {expected}"
    )]
    SchemaVersion {
        /// The version found, as stored (it may not even be a number).
        found: String,
        /// [`SCHEMA_VERSION`](super::SCHEMA_VERSION).
        expected: u32,
    },

    /// A record that cannot be decoded.
    #[error("corrupt record in the store: {what}: {detail}")]
    Corrupt {
        /// Which record, e.g. "run 'abc' event 7".
        what: String,
        /// Why it cannot be decoded.
        detail: String,
    },

    /// [`Store::decide`](super::Store::decide) on a step that already has a decision.
    #[error("step '{step_id}' of run '{run_id}' already has a decision")]
    AlreadyDecided {
        /// The run.
        run_id: String,
        /// The approval step.
        step_id: String,
    },

    /// A write fenced with a lease's token, or a renewal, after another claimant took the run
    /// over (or the lease was released): nothing was written.
    #[error(
        "run '{run_id}': the lease with fencing token {token} is no longer held (the run's \
         token is now {current}); another process executes it"
    )]
    LeaseLost {
        /// The run.
        run_id: String,
        /// The stale token the write carried.
        token: u64,
        /// The run's current token.
        current: u64,
    },

    /// Any other backend error; the message names the store and the backend's own error.
    #[error("store error: {0}")]
    Backend(String),
}

impl StoreError {
    pub(crate) fn corrupt(what: impl Into<String>, detail: impl std::fmt::Display) -> Self {
        StoreError::Corrupt {
            what: what.into(),
            detail: detail.to_string(),
        }
    }
}

/// Parses a JSON column or value; `what` names the record for the error.
pub(crate) fn parse_json(
    text: &str,
    what: impl FnOnce() -> String,
) -> Result<serde_json::Value, StoreError> {
    serde_json::from_str(text)
        .map_err(|e| StoreError::corrupt(what(), format_args!("invalid JSON: {e}")))
}
