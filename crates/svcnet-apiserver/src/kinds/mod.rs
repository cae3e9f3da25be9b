//! One module per kind, each with its [`Resource`] descriptor and its [`Strategy`]. Adding a
//! kind is a new module here and one line in [`ALL`].

use crate::config::Config;
use crate::resources::Resource;
use crate::strategy::Strategy;

pub mod endpoint_slice;
pub mod endpoints;
pub mod event;
pub mod namespace;
pub mod node;
pub mod pod;
pub mod service;

pub use endpoint_slice::RESOURCE as ENDPOINT_SLICES;
pub use endpoints::RESOURCE as ENDPOINTS;
pub use event::RESOURCE as EVENTS;
pub use namespace::RESOURCE as NAMESPACES;
pub use node::RESOURCE as NODES;
pub use pod::RESOURCE as PODS;
pub use service::RESOURCE as SERVICES;

/// A served kind: its descriptor and how to build its strategy for a server's [`Config`].
pub struct Kind {
    pub resource: &'static Resource,
    pub strategy: fn(&Config) -> Result<Box<dyn Strategy>, String>,
}

/// Every kind this server serves, in discovery order.
pub static ALL: &[Kind] = &[
    Kind {
        resource: &NAMESPACES,
        strategy: namespace::strategy,
    },
    Kind {
        resource: &SERVICES,
        strategy: service::strategy,
    },
    Kind {
        resource: &ENDPOINTS,
        strategy: endpoints::strategy,
    },
    Kind {
        resource: &PODS,
        strategy: pod::strategy,
    },
    Kind {
        resource: &NODES,
        strategy: node::strategy,
    },
    Kind {
        resource: &EVENTS,
        strategy: event::strategy,
    },
    Kind {
        resource: &ENDPOINT_SLICES,
        strategy: endpoint_slice::strategy,
    },
];

/// The descriptors of every served kind.
pub fn resources() -> impl Iterator<Item = &'static Resource> {
    ALL.iter().map(|k| k.resource)
}
