//! The scheduler (upstream `pkg/scheduler`): assigns pending pods to nodes.
//!
//! Layout follows upstream: [`framework`] defines the extension points and the types
//! plugins see; [`plugins`] holds one module per plugin and the default profile;
//! [`queue`] orders pending pods (priority, then arrival) with backoff for failures;
//! [`cache`] keeps nodes and their pods, including pods assumed but not yet bound;
//! [`schedule_one`] is the pure scheduling algorithm; [`scheduler`] wires it to the
//! API: reflector-style watches in, bindings, status patches and Events out.

pub mod cache;
pub mod framework;
pub mod metrics;
pub mod plugins;
pub mod queue;
pub mod schedule_one;
pub mod scheduler;

pub use scheduler::{Scheduler, SchedulerConfig, DEFAULT_SCHEDULER_NAME};
