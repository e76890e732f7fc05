//! Our own services (extender, metrics adapter) run as processes against the
//! loopback cluster, exactly as the released binaries run.

use std::path::Path;

use crate::process::Proc;
use crate::{Cluster, Error, binaries};

/// Starts the headroom binary `binary` (e.g. `headroom-extender`) with
/// `args`, `KUBECONFIG` pointing at `kubeconfig`, logging to the cluster dir.
pub fn spawn(
    cluster: &Cluster,
    name: &str,
    binary: &str,
    args: &[String],
    kubeconfig: &Path,
) -> Result<Proc, Error> {
    let path = binaries::headroom_binary(binary)?;
    let envs = vec![
        ("KUBECONFIG".to_string(), kubeconfig.display().to_string()),
        (
            "RUST_LOG".to_string(),
            std::env::var("RUST_LOG").unwrap_or_else(|_| "info".into()),
        ),
    ];
    Proc::spawn(name, &path, args, &envs, &cluster.dir)
}
