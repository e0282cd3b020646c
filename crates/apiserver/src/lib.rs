//! The Kubernetes API over HTTPS: routing, discovery, verbs, watch, errors.
