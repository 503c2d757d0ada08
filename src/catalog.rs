//! The catalog of subscribable event types: the defaults seeded on first
//! start, name validation, and the in-memory copy every handler reads
//! (`verification` is reserved and never subscribable).

use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};

/// The event type of verification calls; never subscribable or pushable.
pub const VERIFICATION: &str = "verification";

/// Event types known on a fresh installation, with a one-line description.
pub const DEFAULT_EVENT_TYPES: &[(&str, &str)] = &[
    (
        "revision_status_updated",
        "The workflow status of a question or question set revision changed.",
    ),
    (
        "qti_export_ready",
        "A requested QTI export has finished and can be downloaded.",
    ),
    (
        "confirm_final_grades",
        "The final grades of an assessment run were confirmed.",
    ),
    (
        "assessment_run_created",
        "An assessment run (test event) was created.",
    ),
    (
        "assessment_run_updated",
        "Settings of an assessment run (times, access, grading) changed.",
    ),
    (
        "candidate_added",
        "A candidate was registered for an assessment run.",
    ),
    (
        "candidate_submitted",
        "A candidate submitted their answers in an assessment run.",
    ),
    (
        "grading_completed",
        "All candidates of an assessment run have been graded.",
    ),
    (
        "grades_published",
        "Grades of an assessment run were made visible to candidates.",
    ),
    (
        "committee_updated",
        "The grading committee of an assessment run changed.",
    ),
    (
        "question_set_published",
        "A question set was published for use in assessment runs.",
    ),
    (
        "user_role_updated",
        "A user's role or custom user role changed.",
    ),
    (
        "document_uploaded",
        "A document was uploaded to an object (for example a candidate's attachment).",
    ),
    (
        "marketplace_property_updated",
        "A marketplace (tenant) setting changed.",
    ),
];

/// Checks an event type name: 1-64 characters of `a-z`, `0-9` and `_`,
/// starting with a letter, and not the reserved `verification`.
pub fn validate_name(name: &str) -> Result<(), String> {
    if name == VERIFICATION {
        return Err("`verification` is reserved for hookrelay's own endpoint checks".into());
    }
    let mut chars = name.chars();
    let valid = name.len() <= 64
        && chars.next().is_some_and(|c| c.is_ascii_lowercase())
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
    if valid {
        Ok(())
    } else {
        Err(format!(
            "`{name}` is not a valid event type name: use 1 to 64 characters of a-z, 0-9 and _, starting with a letter"
        ))
    }
}

/// The node's copy of the catalog (name → description), shared by handlers.
#[derive(Clone, Default)]
pub struct Catalog(Arc<RwLock<BTreeMap<String, String>>>);

impl Catalog {
    pub fn new(entries: impl IntoIterator<Item = (String, String)>) -> Catalog {
        Catalog(Arc::new(RwLock::new(entries.into_iter().collect())))
    }

    pub fn contains(&self, name: &str) -> bool {
        name != VERIFICATION && self.read().contains_key(name)
    }

    pub fn insert(&self, name: String, description: String) {
        self.0
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .insert(name, description);
    }

    /// Replaces the whole catalog (after reading it from the database).
    pub fn replace(&self, entries: impl IntoIterator<Item = (String, String)>) {
        *self
            .0
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner()) = entries.into_iter().collect();
    }

    pub fn list(&self) -> Vec<(String, String)> {
        self.read()
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, BTreeMap<String, String>> {
        self.0
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_names_are_valid_and_include_the_platform_ones() {
        for (name, description) in DEFAULT_EVENT_TYPES {
            validate_name(name).unwrap();
            assert!(!description.is_empty());
        }
        for required in [
            "revision_status_updated",
            "qti_export_ready",
            "confirm_final_grades",
        ] {
            assert!(DEFAULT_EVENT_TYPES.iter().any(|(n, _)| *n == required));
        }
    }

    #[test]
    fn verification_is_never_subscribable() {
        assert!(validate_name("verification").is_err());
        let c = Catalog::new([("verification".to_string(), "x".to_string())]);
        assert!(!c.contains("verification"));
    }

    #[test]
    fn bad_names_are_refused() {
        for bad in ["", "Upper", "1abc", "has space", "dash-ed", &"a".repeat(65)] {
            assert!(validate_name(bad).is_err(), "{bad}");
        }
    }
}
