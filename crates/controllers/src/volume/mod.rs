//! Persistent volumes (upstream `pkg/controller/volume`): the PersistentVolume
//! controller that binds claims to volumes and reclaims released ones ([`binder`]), and
//! the built-in `local-path` provisioner that creates host-path volumes for claims of
//! that class ([`local_path`]). Matching rules and annotation names live in
//! [`apis::volume`], shared with the scheduler.

pub mod binder;
pub mod local_path;
