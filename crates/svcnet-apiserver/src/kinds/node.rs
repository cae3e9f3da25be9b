//! Nodes (`pkg/registry/core/node`): cluster-scoped, status written by their agent.

use k8s_openapi::api::core::v1::Node;
use serde_json::{Value, json};
use svcnet_core::names;

use crate::error::Result;
use crate::printers;
use crate::resources::{Resource, Subresource};
use crate::strategy::{self, Admission, Decoded, Strategy};

pub static RESOURCE: Resource = Resource {
    kind: "Node",
    plural: "nodes",
    singular: "node",
    namespaced: false,
    short_names: &["no"],
    has_status: true,
    fields: &["spec.unschedulable"],
    ..Resource::BASE
};

pub struct NodeStrategy;

pub fn strategy(_: &crate::config::Config) -> std::result::Result<Box<dyn Strategy>, String> {
    Ok(Box::new(NodeStrategy))
}

impl Strategy for NodeStrategy {
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

    fn decode(&self, obj: Value) -> Result<Decoded> {
        strategy::decode_as::<Node>(&RESOURCE, obj, |_| {})
    }

    fn columns(&self) -> Vec<Value> {
        use strategy::column;
        vec![
            strategy::name_column(),
            column("Status", "string", 0, "The status of the node"),
            column("Roles", "string", 0, "The roles of the node"),
            strategy::age_column(),
            column(
                "Version",
                "string",
                0,
                "Kubelet Version reported by the node.",
            ),
            column(
                "Internal-IP",
                "string",
                1,
                "List of addresses reachable to the node.",
            ),
        ]
    }

    fn cells(&self, obj: &Value) -> Vec<Value> {
        let status = &obj["status"];
        let ready = status["conditions"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|c| c["type"] == "Ready")
            .map_or("Unknown", |c| {
                if c["status"] == "True" {
                    "Ready"
                } else {
                    "NotReady"
                }
            });
        let internal = status["addresses"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|a| a["type"] == "InternalIP")
            .and_then(|a| a["address"].as_str())
            .unwrap_or("<none>");
        vec![
            json!(printers::name(obj)),
            json!(ready),
            json!("<none>"),
            json!(printers::age(obj)),
            json!(status["nodeInfo"]["kubeletVersion"].as_str().unwrap_or("")),
            json!(internal),
        ]
    }
}
