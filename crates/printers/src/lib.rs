//! Server-side Table printing (kubectl get columns) for built-in resources.
