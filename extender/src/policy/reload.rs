//! Reloading the policy file while the extender runs: a ConfigMap edit
//! reaches the mounted file within about a minute, and admins expect a cap
//! change ("node03: 40% CPU") to take effect without a restart. A file that
//! does not parse or validate leaves the policy in force unchanged.

use std::path::{Path, PathBuf};

use super::{Policy, PolicyError, read_text};

/// The policy file and the text last read from it.
#[derive(Debug)]
pub struct WatchedPolicy {
    path: PathBuf,
    last_text: String,
}

impl WatchedPolicy {
    /// Reads and validates the file once, for start-up.
    pub fn load(path: &Path) -> Result<(Self, Policy), PolicyError> {
        let text = read_text(path)?;
        let policy = Policy::from_yaml(&text)?;
        Ok((
            Self {
                path: path.to_path_buf(),
                last_text: text,
            },
            policy,
        ))
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Reads the file again: `Ok(None)` when its text is unchanged,
    /// `Ok(Some(policy))` when it changed and is valid. A changed but
    /// invalid file is reported once, and again only after it changes.
    pub fn reload(&mut self) -> Result<Option<Policy>, PolicyError> {
        let text = read_text(&self.path)?;
        if text == self.last_text {
            return Ok(None);
        }
        let parsed = Policy::from_yaml(&text);
        self.last_text = text;
        parsed.map(Some)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CAPPED: &str = "caps:\n  - nodeNames: [node03]\n    cpuPercent: 40\n";
    const LOOSER: &str = "caps:\n  - nodeNames: [node03]\n    cpuPercent: 60\n";

    fn cpu_cap_percent(policy: &Policy) -> Option<f64> {
        policy.caps.first().and_then(|r| r.cpu_percent)
    }

    #[test]
    fn reload_sees_changes_only_and_keeps_going_after_a_bad_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("policy.yaml");
        std::fs::write(&path, CAPPED).unwrap();
        let (mut file, policy) = WatchedPolicy::load(&path).unwrap();
        assert_eq!(cpu_cap_percent(&policy), Some(40.0));
        assert!(file.reload().unwrap().is_none(), "unchanged");

        std::fs::write(&path, LOOSER).unwrap();
        let reloaded = file.reload().unwrap().expect("changed");
        assert_eq!(cpu_cap_percent(&reloaded), Some(60.0));
        assert!(file.reload().unwrap().is_none());

        // Invalid: an error naming the field, once; the caller keeps the old policy.
        std::fs::write(
            &path,
            "caps:\n  - nodeNames: [node03]\n    cpuPercent: 140\n",
        )
        .unwrap();
        let err = file.reload().unwrap_err().to_string();
        assert!(err.contains("cpuPercent"), "{err}");
        assert!(
            file.reload().unwrap().is_none(),
            "same bad text: reported once"
        );

        // Fixed again.
        std::fs::write(&path, CAPPED).unwrap();
        assert_eq!(
            cpu_cap_percent(&file.reload().unwrap().unwrap()),
            Some(40.0)
        );

        // Gone (a ConfigMap volume swaps its symlink): a read error, not a panic.
        std::fs::remove_file(&path).unwrap();
        assert!(matches!(file.reload(), Err(PolicyError::Read { .. })));
    }
}
