//! EndpointSlices (`pkg/registry/discovery/endpointslice`): written by the EndpointSlice
//! controller (and others, told apart by `endpointslice.kubernetes.io/managed-by`); the
//! generation moves on with every change of content or labels.

use k8s_openapi::api::discovery::v1::EndpointSlice;
use serde_json::{Value, json};
use svcnet_core::field::{BadValue, ErrorList, ErrorType, FieldError};
use svcnet_core::names;

use crate::error::Result;
use crate::printers;
use crate::resources::{Resource, Subresource};
use crate::strategy::{self, Admission, Decoded, Strategy};

pub static RESOURCE: Resource = Resource {
    group: "discovery.k8s.io",
    kind: "EndpointSlice",
    plural: "endpointslices",
    singular: "endpointslice",
    fields: &["addressType"],
    ..Resource::BASE
};

pub struct EndpointSliceStrategy;

pub fn strategy(_: &crate::config::Config) -> std::result::Result<Box<dyn Strategy>, String> {
    Ok(Box::new(EndpointSliceStrategy))
}

fn validate_content(obj: &Value, errs: &mut ErrorList) -> Result<()> {
    let slice: EndpointSlice = strategy::typed(&RESOURCE, obj)?;
    let at = slice.address_type.as_str();
    if at.is_empty() {
        errs.push(FieldError::required("addressType", ""));
    } else if !["IPv4", "IPv6", "FQDN"].contains(&at) {
        errs.push(FieldError::not_supported(
            "addressType",
            at,
            &["FQDN", "IPv4", "IPv6"],
        ));
    }
    if slice.endpoints.len() > 1000 {
        errs.push(FieldError::new(
            ErrorType::TooMany,
            "endpoints",
            BadValue::Int(slice.endpoints.len() as i64),
            "must have at most 1000 items",
        ));
    }
    for (i, ep) in slice.endpoints.iter().enumerate() {
        if ep.addresses.is_empty() || ep.addresses.len() > 100 {
            errs.push(FieldError::invalid(
                format!("endpoints[{i}].addresses"),
                BadValue::list(&ep.addresses),
                "must contain at least 1 and at most 100 addresses",
            ));
        }
        for (j, a) in ep.addresses.iter().enumerate() {
            let ok = match at {
                "IPv4" => a.parse::<std::net::Ipv4Addr>().is_ok(),
                "IPv6" => a.parse::<std::net::Ipv6Addr>().is_ok(),
                _ => names::dns1123_subdomain(a).is_empty(),
            };
            if !ok {
                errs.push(FieldError::invalid(
                    format!("endpoints[{i}].addresses[{j}]"),
                    a,
                    format!("must be a valid {at} address"),
                ));
            }
        }
    }
    for (i, p) in slice.ports.iter().flatten().enumerate() {
        if let Some(n) = p.name.as_deref().filter(|n| !n.is_empty()) {
            for m in names::dns1123_label(n) {
                errs.push(FieldError::invalid(format!("ports[{i}].name"), n, m));
            }
        }
        if let Some(port) = p.port
            && !(0..=65535).contains(&port)
        {
            errs.push(FieldError::invalid(
                format!("ports[{i}].port"),
                port,
                "must be between 0 and 65535, inclusive",
            ));
        }
    }
    Ok(())
}

/// Everything but the metadata, plus the labels: what moves the generation on.
fn content(obj: &Value) -> (Vec<(&String, &Value)>, &Value) {
    let rest = obj
        .as_object()
        .into_iter()
        .flatten()
        .filter(|(k, _)| !matches!(k.as_str(), "metadata" | "apiVersion" | "kind"))
        .collect();
    (rest, &obj["metadata"]["labels"])
}

impl Strategy for EndpointSliceStrategy {
    fn resource(&self) -> &'static Resource {
        &RESOURCE
    }

    fn admit_create(&self, obj: &mut Value) -> Result<Admission> {
        obj["metadata"]["generation"] = json!(1);
        let mut errs = strategy::validate_meta(&RESOURCE, obj, names::dns1123_subdomain)?;
        validate_content(obj, &mut errs)?;
        strategy::check(&RESOURCE, obj, errs)?;
        Ok(Admission::none())
    }

    fn admit_update(&self, new: &mut Value, old: &Value, _: Subresource) -> Result<Admission> {
        if content(new) != content(old) {
            let g = old["metadata"]["generation"].as_i64().unwrap_or(0);
            new["metadata"]["generation"] = json!(g + 1);
        }
        let mut errs =
            strategy::validate_meta_update(&RESOURCE, new, old, names::dns1123_subdomain)?;
        validate_content(new, &mut errs)?;
        strategy::check(&RESOURCE, new, errs)?;
        Ok(Admission::none())
    }

    fn decode(&self, obj: Value) -> Result<Decoded> {
        strategy::decode_as::<EndpointSlice>(&RESOURCE, obj, |_| {})
    }

    fn columns(&self) -> Vec<Value> {
        use strategy::column;
        vec![
            strategy::name_column(),
            column("AddressType", "string", 0, "The IP protocol for this slice"),
            column("Ports", "string", 0, "The ports exposed by this slice"),
            column("Endpoints", "string", 0, "The endpoints in this slice"),
            strategy::age_column(),
        ]
    }

    fn cells(&self, obj: &Value) -> Vec<Value> {
        let ports: Vec<String> = obj["ports"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|p| p["port"].as_i64().map(|x| x.to_string()))
            .collect();
        let eps: Vec<String> = obj["endpoints"]
            .as_array()
            .into_iter()
            .flatten()
            .flat_map(|e| e["addresses"].as_array().into_iter().flatten())
            .filter_map(|a| a.as_str().map(str::to_owned))
            .collect();
        vec![
            json!(printers::name(obj)),
            json!(obj["addressType"].as_str().unwrap_or("")),
            json!(printers::join_or(ports, "<unset>")),
            json!(printers::first_three(eps, "<unset>")),
            json!(printers::age(obj)),
        ]
    }
}
