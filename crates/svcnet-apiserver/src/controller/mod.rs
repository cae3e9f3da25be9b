//! Controllers that run inside the API server process. Each is a client of the
//! [`crate::registry::Registry`] (its writes go through validation and admission like any
//! client's) and reports its health for `/readyz`; none is called by the registry.

pub mod bootstrap;
pub mod endpointslice;
pub mod namespace;
pub mod pod_gc;
