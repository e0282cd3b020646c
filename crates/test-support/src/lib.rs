//! TestServer on 127.0.0.1:0, etcd launcher, wait helpers.

pub mod etcd;
#[cfg(feature = "images")]
pub mod images;
#[cfg(feature = "server")]
pub mod server;

/// A TCP port on 127.0.0.1 that was free a moment ago (bind to `:0`, read, release).
/// Another process may grab it before the caller binds; callers that launch servers
/// retry with a fresh port on bind failures.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind(("127.0.0.1", 0))
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("invariant: binding 127.0.0.1:0 succeeds on a test machine")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn free_port_is_a_real_port() {
        // Binding it again here would race with other processes taking ports.
        assert_ne!(free_port(), 0);
    }
}
