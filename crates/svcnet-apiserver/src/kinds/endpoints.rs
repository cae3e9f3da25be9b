//! Endpoints (`pkg/registry/core/endpoint`): the legacy address list of a Service, written by
//! the EndpointSlice controller; created on update too.

use k8s_openapi::api::core::v1::Endpoints;
use serde_json::{Value, json};
use svcnet_core::field::{ErrorList, FieldError};
use svcnet_core::names;

use crate::error::Result;
use crate::printers;
use crate::resources::{Resource, Subresource};
use crate::strategy::{self, Admission, Decoded, Strategy};

pub static RESOURCE: Resource = Resource {
    kind: "Endpoints",
    plural: "endpoints",
    singular: "endpoints",
    short_names: &["ep"],
    ..Resource::BASE
};

pub struct EndpointsStrategy;

pub fn strategy(_: &crate::config::Config) -> std::result::Result<Box<dyn Strategy>, String> {
    Ok(Box::new(EndpointsStrategy))
}

fn validate_addresses(obj: &Value, errs: &mut ErrorList) -> Result<()> {
    let ep: Endpoints = strategy::typed(&RESOURCE, obj)?;
    for (i, subset) in ep.subsets.iter().flatten().enumerate() {
        for (j, a) in subset.addresses.iter().flatten().enumerate() {
            if a.ip.parse::<std::net::IpAddr>().is_err() {
                errs.push(FieldError::invalid(
                    format!("subsets[{i}].addresses[{j}].ip"),
                    &a.ip,
                    "must be a valid IP address",
                ));
            }
        }
    }
    Ok(())
}

impl Strategy for EndpointsStrategy {
    fn resource(&self) -> &'static Resource {
        &RESOURCE
    }

    fn admit_create(&self, obj: &mut Value) -> Result<Admission> {
        let mut errs = strategy::validate_meta(&RESOURCE, obj, names::dns1123_subdomain)?;
        validate_addresses(obj, &mut errs)?;
        strategy::check(&RESOURCE, obj, errs)?;
        Ok(Admission::none())
    }

    fn admit_update(&self, new: &mut Value, old: &Value, _: Subresource) -> Result<Admission> {
        let mut errs =
            strategy::validate_meta_update(&RESOURCE, new, old, names::dns1123_subdomain)?;
        validate_addresses(new, &mut errs)?;
        strategy::check(&RESOURCE, new, errs)?;
        Ok(Admission::none())
    }

    fn allow_create_on_update(&self) -> bool {
        true
    }

    fn decode(&self, obj: Value) -> Result<Decoded> {
        strategy::decode_as::<Endpoints>(&RESOURCE, obj, |_| {})
    }

    fn columns(&self) -> Vec<Value> {
        vec![
            strategy::name_column(),
            strategy::column("Endpoints", "string", 0, "Endpoints of the service"),
            strategy::age_column(),
        ]
    }

    fn cells(&self, obj: &Value) -> Vec<Value> {
        let mut eps = Vec::new();
        for s in obj["subsets"].as_array().into_iter().flatten() {
            let ports: Vec<i64> = s["ports"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|p| p["port"].as_i64())
                .collect();
            for a in s["addresses"].as_array().into_iter().flatten() {
                let ip = a["ip"].as_str().unwrap_or("");
                if ports.is_empty() {
                    eps.push(ip.to_owned());
                }
                for p in &ports {
                    eps.push(format!("{ip}:{p}"));
                }
            }
        }
        vec![
            json!(printers::name(obj)),
            json!(printers::first_three(eps, "<none>")),
            json!(printers::age(obj)),
        ]
    }
}
