//! Strategies of core/v1 resources with rules beyond the generic ones.

pub mod allocator;
pub mod eviction;
pub mod namespace;
pub mod pod;
pub mod service;
