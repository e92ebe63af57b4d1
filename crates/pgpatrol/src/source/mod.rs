//! Where cluster snapshots come from: the Patroni REST API (Kubernetes and the DCS later).
