//! What the composition roots share when they read their configuration from the environment.

/// A configuration problem, naming the variable.
#[derive(Debug, thiserror::Error)]
#[error("{var}: {message}")]
pub struct ConfigError {
    /// The environment variable.
    pub var: &'static str,
    /// What is wrong.
    pub message: String,
}

impl ConfigError {
    /// `var` is wrong: `message` says how.
    pub fn new(var: &'static str, message: impl Into<String>) -> Self {
        Self { var, message: message.into() }
    }
}

/// A positive whole number from `name` (read through `var`), if set; `what` says what it counts.
pub fn positive(
    var: impl Fn(&'static str) -> Option<String>,
    name: &'static str,
    what: &str,
) -> Result<Option<u64>, ConfigError> {
    var(name)
        .map(|v| {
            v.trim()
                .parse::<u64>()
                .ok()
                .filter(|n| *n > 0)
                .ok_or_else(|| ConfigError::new(name, format!("must be {what} > 0")))
        })
        .transpose()
}
