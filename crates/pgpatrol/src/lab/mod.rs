//! The local lab: a real Patroni cluster on loopback.
