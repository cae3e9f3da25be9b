//! Pure object logic for svcnet, shared by the API server, proxy, DNS and agent.
//!
//! Everything here works on `k8s-openapi` types and plain data and does no IO:
//! [`field`] errors shaped like apimachinery's, [`names`] syntax checks, label and field
//! [`selector`]s, the Service IP and NodePort [`allocator`]s, Service defaulting and
//! validation ([`service`]) with Go's address parsing ([`ip`]), generic object metadata checks ([`meta`]), strategic merge
//! patch ([`strategic_merge`]), server-side apply's field ownership ([`fieldpath`],
//! [`structured_merge`]) over the types' merge rules ([`schema`]) and the EndpointSlice
//! desired state ([`endpoints`]).

pub mod allocator;
pub mod endpoints;
pub mod envvars;
pub mod field;
pub mod fieldpath;
pub mod ip;
pub mod meta;
pub mod names;
pub mod schema;
pub mod selector;
pub mod service;
pub mod service_alloc;
pub mod strategic_merge;
pub mod structured_merge;
