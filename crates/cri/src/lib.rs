//! A CRI v1 (`runtime.v1`) client: the RuntimeService and ImageService a kubelet uses to
//! run pods, reached over a unix socket (`unix:///run/containerd/containerd.sock`), plus
//! the subset of containerd's event service that reports container exits as they happen.
//!
//! The message and client code under `generated/` is produced by `gen.sh` from the
//! `.proto` files in `proto/` and committed, so building needs no `protoc`.

#[allow(clippy::all, missing_docs)]
pub mod v1 {
    include!("generated/runtime.v1.rs");
}

/// containerd's event service (`containerd.services.events.v1`), for `/tasks/exit`.
#[allow(clippy::all, missing_docs)]
pub mod events {
    include!("generated/containerd.services.events.v1.rs");
}

mod client;

pub use client::{connect, socket_path, CallExt, CriClient, CriError};
