//! Controller integration tests: an in-process server on `127.0.0.1:0` in a temp dir
//! whose controller manager runs the controller under test, driven through the API with
//! kube-rs and stock kubectl. One test binary for all of them (each links the whole
//! workspace); a module per controller: `cargo test -p controllers --test integration hpa::`.

mod batch_support;
mod common;

mod cronjob;
mod daemonset;
mod deployment;
mod disruption;
mod endpoints;
mod garbagecollector;
mod hpa;
mod job;
mod kubectl;
mod nodeipam;
mod nodelifecycle;
mod podgc;
mod replicaset;
mod serviceaccount;
mod statefulset;
mod volume;
