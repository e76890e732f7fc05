//! Free loopback ports.

use std::net::TcpListener;

/// A port on 127.0.0.1 that was free a moment ago. The kernel hands out
/// ephemeral ports in sequence, so a race with another process is unlikely;
/// the components fail loudly (and the harness reports the log) if it happens.
pub fn free_port() -> std::io::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}
