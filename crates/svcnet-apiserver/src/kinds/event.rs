//! Events (`pkg/registry/core/event`): written by controllers, created on update too.

use k8s_openapi::api::core::v1::Event;
use serde_json::Value;
use svcnet_core::names;

use crate::error::Result;
use crate::resources::{Resource, Subresource};
use crate::strategy::{self, Admission, Decoded, Strategy};

pub static RESOURCE: Resource = Resource {
    kind: "Event",
    plural: "events",
    singular: "event",
    short_names: &["ev"],
    fields: &[
        "involvedObject.kind",
        "involvedObject.name",
        "involvedObject.namespace",
        "involvedObject.uid",
        "reason",
        "type",
    ],
    ..Resource::BASE
};

pub struct EventStrategy;

pub fn strategy(_: &crate::config::Config) -> std::result::Result<Box<dyn Strategy>, String> {
    Ok(Box::new(EventStrategy))
}

impl Strategy for EventStrategy {
    fn resource(&self) -> &'static Resource {
        &RESOURCE
    }

    fn admit_create(&self, obj: &mut Value) -> Result<Admission> {
        let errs = strategy::validate_meta(&RESOURCE, obj, names::dns1123_subdomain)?;
        strategy::check(&RESOURCE, obj, errs)?;
        Ok(Admission::none())
    }

    fn admit_update(&self, new: &mut Value, old: &Value, _: Subresource) -> Result<Admission> {
        let errs = strategy::validate_meta_update(&RESOURCE, new, old, names::dns1123_subdomain)?;
        strategy::check(&RESOURCE, new, errs)?;
        Ok(Admission::none())
    }

    fn allow_create_on_update(&self) -> bool {
        true
    }

    fn decode(&self, obj: Value) -> Result<Decoded> {
        strategy::decode_as::<Event>(&RESOURCE, obj, |_| {})
    }
}
