//! Patroni's wire format, one home for both places it is read: the REST API's JSON
//! ([`rest`]: `/cluster`, `/patroni`, `/history`, mirrored field for field and turned into
//! the core model in one function, `rest::into_cluster`) and the DCS's keys ([`dcs`]: etcd
//! keys or Kubernetes annotations, turned into the `/cluster` JSON Patroni would serve from
//! them). Pure decoding above `http`: no call is made here.

pub mod dcs;
pub mod rest;
