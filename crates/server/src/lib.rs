//! Process wiring: starts the store, API server and components.
