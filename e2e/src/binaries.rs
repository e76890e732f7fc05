//! Where the control-plane and headroom binaries come from.

use std::path::{Path, PathBuf};
use std::process::Stdio;

use crate::Error;

/// Directory holding kube-apiserver, kube-controller-manager, kube-scheduler,
/// kwok and etcd. `HEADROOM_CP_BIN_DIR` overrides; otherwise the build script
/// builds them (or reuses its version-keyed cache) and prints the directory.
/// The script's progress goes to our stderr so cold builds do not look hung.
pub fn control_plane_dir() -> Result<PathBuf, Error> {
    if let Ok(dir) = std::env::var("HEADROOM_CP_BIN_DIR") {
        return Ok(PathBuf::from(dir));
    }
    let script = repo_root().join("e2e/scripts/build-control-plane.sh");
    let out = std::process::Command::new("bash")
        .arg(&script)
        .stderr(Stdio::inherit())
        .output()
        .map_err(|e| Error::Build(format!("{}: {e}", script.display())))?;
    if !out.status.success() {
        return Err(Error::Build(format!(
            "{} exited with {}",
            script.display(),
            out.status
        )));
    }
    let stdout = String::from_utf8_lossy(&out.stdout);
    let dir = stdout
        .lines()
        .last()
        .ok_or_else(|| Error::Build("build script printed no directory".into()))?;
    Ok(PathBuf::from(dir.trim()))
}

/// The workspace root (the parent of `e2e/`).
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("e2e has a parent directory")
        .to_path_buf()
}

/// A headroom binary (`headroom-extender`, `headroom-metrics-adapter`) built
/// by cargo in this workspace. `HEADROOM_BIN_DIR` overrides; otherwise the
/// target directory of the profile this crate was built with.
pub fn headroom_binary(name: &str) -> Result<PathBuf, Error> {
    let dir = match std::env::var("HEADROOM_BIN_DIR") {
        Ok(dir) => PathBuf::from(dir),
        Err(_) => {
            let target = std::env::var("CARGO_TARGET_DIR")
                .map(PathBuf::from)
                .unwrap_or_else(|_| repo_root().join("target"));
            let profile = if cfg!(debug_assertions) {
                "debug"
            } else {
                "release"
            };
            target.join(profile)
        }
    };
    let path = dir.join(name);
    if path.is_file() {
        Ok(path)
    } else {
        Err(Error::Build(format!(
            "{} not found: build it first with `cargo build --workspace --bins`",
            path.display()
        )))
    }
}
