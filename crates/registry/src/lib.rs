//! One module per resource: strategies over a generic store.
