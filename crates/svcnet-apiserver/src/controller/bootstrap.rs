//! The objects every cluster starts with, written through the registry like any client's: the
//! system namespaces, and the `default/kubernetes` Service with the Endpoints and
//! EndpointSlice the API server publishes for itself (the controller skips selector-less
//! Services).

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{
    EndpointAddress, EndpointPort, EndpointSubset, Endpoints, Service, ServicePort, ServiceSpec,
};
use k8s_openapi::api::discovery::v1::{
    Endpoint, EndpointConditions, EndpointPort as SlicePort, EndpointSlice,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use serde_json::{Value, json};
use svcnet_core::endpoints::{MANAGED_BY_LABEL, SERVICE_NAME_LABEL};

use crate::error::{ApiError, Result};
use crate::kinds::{ENDPOINT_SLICES, ENDPOINTS, NAMESPACES, SERVICES, namespace};
use crate::registry::{Registry, WriteOptions};
use crate::resources::Resource;
use crate::strategy::untyped;

const MANAGER: &str = "kube-apiserver";

pub async fn run(reg: &Registry) -> Result<()> {
    let opts = WriteOptions::by(MANAGER);
    for ns in namespace::SYSTEM {
        let obj = json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}});
        match reg.create(&NAMESPACES, None, obj, &opts).await {
            Ok(_) | Err(ApiError::AlreadyExists { .. }) => {}
            Err(e) => return Err(e),
        }
    }
    let config = reg.config();
    let first_ip = svcnet_core::service_alloc::ServiceAllocators::new(
        &config.service_cidrs,
        config.node_port_range,
    )
    .map_err(ApiError::Internal)?
    .first_ip()
    .to_string();
    let advertise = config.advertise;
    let labels: BTreeMap<String, String> = [("component", "apiserver"), ("provider", "kubernetes")]
        .into_iter()
        .map(|(k, v)| (k.into(), v.into()))
        .collect();
    let meta = |labels: BTreeMap<String, String>| ObjectMeta {
        name: Some("kubernetes".into()),
        namespace: Some("default".into()),
        labels: Some(labels),
        ..Default::default()
    };
    let svc = Service {
        metadata: meta(labels.clone()),
        spec: Some(ServiceSpec {
            cluster_ip: Some(first_ip),
            ports: Some(vec![ServicePort {
                name: Some("https".into()),
                port: 443,
                protocol: Some("TCP".into()),
                target_port: Some(IntOrString::Int(advertise.port().into())),
                ..Default::default()
            }]),
            ..Default::default()
        }),
        status: None,
    };
    match reg
        .create(&SERVICES, Some("default"), untyped(&svc), &opts)
        .await
    {
        Ok(_) | Err(ApiError::AlreadyExists { .. }) => {}
        Err(e) => tracing::warn!(error = %e, "could not create the kubernetes Service"),
    }
    let ep = Endpoints {
        metadata: meta(labels),
        subsets: Some(vec![EndpointSubset {
            addresses: Some(vec![EndpointAddress {
                ip: advertise.ip().to_string(),
                ..Default::default()
            }]),
            ports: Some(vec![EndpointPort {
                name: Some("https".into()),
                port: advertise.port().into(),
                protocol: Some("TCP".into()),
                ..Default::default()
            }]),
            ..Default::default()
        }]),
    };
    publish(reg, &ENDPOINTS, untyped(&ep), &["subsets"]).await?;
    let family = if advertise.is_ipv4() { "IPv4" } else { "IPv6" };
    let slice = EndpointSlice {
        metadata: meta(
            [
                (SERVICE_NAME_LABEL, "kubernetes"),
                (MANAGED_BY_LABEL, "endpointslicemirroring-controller.k8s.io"),
            ]
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect(),
        ),
        address_type: family.into(),
        endpoints: vec![Endpoint {
            addresses: vec![advertise.ip().to_string()],
            conditions: Some(EndpointConditions {
                ready: Some(true),
                serving: Some(true),
                terminating: Some(false),
            }),
            ..Default::default()
        }],
        ports: Some(vec![SlicePort {
            name: Some("https".into()),
            port: Some(advertise.port().into()),
            protocol: Some("TCP".into()),
            app_protocol: None,
        }]),
    };
    publish(
        reg,
        &ENDPOINT_SLICES,
        untyped(&slice),
        &["endpoints", "ports"],
    )
    .await
}

/// Creates `default/kubernetes` of `res`, or updates it when the `fields` differ (the API
/// server moved).
async fn publish(
    reg: &Registry,
    res: &'static Resource,
    value: Value,
    fields: &[&str],
) -> Result<()> {
    let opts = WriteOptions::by(MANAGER);
    match reg.get(res, Some("default"), "kubernetes").await {
        Ok(existing) if fields.iter().all(|f| existing[*f] == value[*f]) => Ok(()),
        Ok(_) => reg
            .update(res, Some("default"), "kubernetes", value, &opts)
            .await
            .map(|_| ()),
        Err(ApiError::NotFound { .. }) => reg
            .create(res, Some("default"), value, &opts)
            .await
            .map(|_| ()),
        Err(e) => Err(e),
    }
}
