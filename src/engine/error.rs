//! Errors found while checking a workflow's definition, before any step runs.
//!
//! The binding layer raises each of these as `WorkflowDefinitionError` with the `Display` text as the
//! message, so the text is part of the contract: it names the steps involved.

/// A workflow definition that cannot run: duplicate ids, unknown dependencies, cycles, template
/// references to steps that are not ancestors, and invalid per-step settings.
///
/// An empty workflow is deliberately *not* an error: it runs and completes with no steps.
// No `Eq`: `InvalidTimeout` carries the offending `f64` (it may be NaN) so the message can quote it.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum DefinitionError {
    /// Two steps share an id; `id` is the repeated one.
    #[error("duplicate step id '{id}'")]
    DuplicateId {
        /// The id declared more than once.
        id: String,
    },

    /// A step's `depends_on` names a step that is not in the workflow.
    #[error("step '{step}' depends on unknown step '{dependency}'")]
    UnknownDependency {
        /// The step whose `depends_on` is wrong.
        step: String,
        /// The id it names that no step has.
        dependency: String,
    },

    /// The dependencies form a cycle.
    #[error("dependency cycle: {}", cycle_path(.cycle))]
    Cycle {
        /// The steps of one concrete cycle in dependency order (each one is a dependency of the next,
        /// and the last is a dependency of the first), starting at the earliest-declared of them.
        /// The first id is not repeated here; the message repeats it to close the loop.
        cycle: Vec<String>,
    },

    /// A `{x.result}` template refers to a step that is not a (transitive) dependency, so its output
    /// would be a race, or never exist.
    #[error(
        "step '{step}' references '{{{reference}.result}}' but '{reference}' is not one of its \
         dependencies (direct or transitive)"
    )]
    ReferenceNotAncestor {
        /// The step whose message or args hold the template.
        step: String,
        /// The step id the template names.
        reference: String,
    },

    /// A step's retry policy is out of range; `reason` names the field and the expected range.
    #[error("step '{step}': invalid retry policy: {reason}")]
    InvalidPolicy {
        /// The step the policy belongs to.
        step: String,
        /// What is wrong, e.g. "max_attempts must be at least 1, got 0".
        reason: String,
    },

    /// A step's timeout is zero, negative, not a number, or too large for a `Duration`
    /// (`u64::MAX` seconds, ~5.8e11 years).
    #[error(
        "step '{step}': timeout must be a positive number of seconds (finite, below 1.8e19), \
         got {timeout}"
    )]
    InvalidTimeout {
        /// The step the timeout belongs to.
        step: String,
        /// The rejected value, in seconds.
        timeout: f64,
    },
}

/// The result of checking (part of) a workflow definition.
pub type DefResult<T> = Result<T, DefinitionError>;

/// `a -> b -> c -> a`: the cycle closed by repeating its first step, as users read it.
fn cycle_path(cycle: &[String]) -> String {
    let mut path = cycle.join(" -> ");
    if let Some(first) = cycle.first() {
        path.push_str(" -> ");
        path.push_str(first);
    }
    path
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn duplicate_id_message_names_the_id() {
        let e = DefinitionError::DuplicateId { id: "x".into() };
        assert_eq!(e.to_string(), "duplicate step id 'x'");
    }

    #[test]
    fn unknown_dependency_message_names_step_and_dependency() {
        let e = DefinitionError::UnknownDependency {
            step: "b".into(),
            dependency: "zz".into(),
        };
        assert_eq!(e.to_string(), "step 'b' depends on unknown step 'zz'");
    }

    #[test]
    fn cycle_message_closes_the_loop() {
        let e = DefinitionError::Cycle {
            cycle: vec!["a".into(), "b".into(), "c".into()],
        };
        assert_eq!(e.to_string(), "dependency cycle: a -> b -> c -> a");
    }

    #[test]
    fn self_cycle_message_repeats_the_step() {
        let e = DefinitionError::Cycle {
            cycle: vec!["a".into()],
        };
        assert_eq!(e.to_string(), "dependency cycle: a -> a");
    }

    #[test]
    fn reference_not_ancestor_message_shows_the_template() {
        let e = DefinitionError::ReferenceNotAncestor {
            step: "c".into(),
            reference: "x".into(),
        };
        assert_eq!(
            e.to_string(),
            "step 'c' references '{x.result}' but 'x' is not one of its dependencies \
             (direct or transitive)"
        );
    }

    #[test]
    fn invalid_policy_message_carries_the_reason() {
        let e = DefinitionError::InvalidPolicy {
            step: "s".into(),
            reason: "jitter must be between 0 and 1, got 2".into(),
        };
        assert_eq!(
            e.to_string(),
            "step 's': invalid retry policy: jitter must be between 0 and 1, got 2"
        );
    }

    #[test]
    fn invalid_timeout_message_prints_whole_seconds_without_fraction() {
        let e = DefinitionError::InvalidTimeout {
            step: "s".into(),
            timeout: -1.0,
        };
        assert_eq!(
            e.to_string(),
            "step 's': timeout must be a positive number of seconds (finite, below 1.8e19), got -1"
        );
    }

    #[test]
    fn invalid_timeout_message_prints_fractions() {
        let e = DefinitionError::InvalidTimeout {
            step: "s".into(),
            timeout: -0.5,
        };
        assert!(e.to_string().ends_with("got -0.5"));
    }
}
