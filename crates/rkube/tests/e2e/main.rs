//! End-to-end tests: the real `rkube` binary driven by stock kubectl, with real
//! containerd, CNI and etcd where a test needs them. One test binary for all of them
//! (each links the whole workspace, so one binary per file cost gigabytes of disk);
//! a module per area, filtered as usual: `cargo test -p rkube --test e2e pod_lifecycle::`.

mod common;

mod agent;
mod agent_process;
mod auth;
mod durability;
mod kubectl;
mod pod_lifecycle;
mod pod_network;
mod pod_security;
mod pods;
mod smoke;
mod workloads;
