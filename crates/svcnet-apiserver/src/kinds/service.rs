//! Services (`pkg/registry/core/service`): defaulting and validation from
//! [`svcnet_core::service`], and the ClusterIP and NodePort allocators, which this strategy
//! owns (allocated on admission, released when a write fails or the Service is deleted,
//! rebuilt from the stored Services at start).

use std::sync::Mutex;

use k8s_openapi::api::core::v1::{Service, ServiceSpec};
use rand::SeedableRng;
use rand::rngs::StdRng;
use serde_json::{Value, json};
use svcnet_core::field::ErrorList;
use svcnet_core::service;
use svcnet_core::service_alloc::{AllocateError, Allocation, ServiceAllocators};

use crate::error::{ApiError, Result};
use crate::printers;
use crate::resources::{Resource, Subresource};
use crate::strategy::{self, Admission, Decoded, Reserved, Restore, Strategy};

pub static RESOURCE: Resource = Resource {
    kind: "Service",
    plural: "services",
    singular: "service",
    short_names: &["svc"],
    categories: &["all"],
    has_status: true,
    fields: &["spec.type", "spec.clusterIP"],
    ..Resource::BASE
};

pub struct ServiceStrategy {
    allocators: std::sync::Arc<Mutex<ServiceAllocators>>,
    rng: Mutex<StdRng>,
}

pub fn strategy(config: &crate::config::Config) -> std::result::Result<Box<dyn Strategy>, String> {
    let allocators = ServiceAllocators::new(&config.service_cidrs, config.node_port_range)?;
    Ok(Box::new(ServiceStrategy {
        allocators: std::sync::Arc::new(Mutex::new(allocators)),
        rng: Mutex::new(StdRng::from_os_rng()),
    }))
}

/// Addresses and ports held for a write until the store answers.
struct Held {
    allocators: std::sync::Arc<Mutex<ServiceAllocators>>,
    /// Newly allocated: released if the write fails.
    fresh: Allocation,
    /// Held by the old version only: released once the write succeeded.
    release_after: Allocation,
}

impl Reserved for Held {
    fn commit(self: Box<Self>) {
        if !self.release_after.is_empty() {
            self.allocators
                .lock()
                .expect("allocator lock")
                .release(&self.release_after);
        }
    }
    fn rollback(self: Box<Self>) {
        if !self.fresh.is_empty() {
            self.allocators
                .lock()
                .expect("allocator lock")
                .release(&self.fresh);
        }
    }
}

fn alloc_error(obj: &Value, e: AllocateError) -> ApiError {
    match e {
        AllocateError::Invalid(errs) => strategy::invalid(&RESOURCE, obj, errs),
        AllocateError::Internal(msg) => ApiError::Internal(msg),
        AllocateError::Unexpected(msg) => ApiError::Unexpected(msg),
    }
}

impl ServiceStrategy {
    fn network(&self) -> service::ServiceNetwork {
        self.allocators.lock().expect("allocator lock").network()
    }

    /// Allocates what a new Service's `spec` asks for.
    fn allocate_create(&self, obj: &Value, spec: &mut ServiceSpec) -> Result<Held> {
        let fresh = {
            let mut allocs = self.allocators.lock().expect("allocator lock");
            let mut rng = self.rng.lock().expect("rng lock");
            allocs
                .allocate(spec, &Allocation::default(), &mut *rng)
                .map_err(|e| alloc_error(obj, e))?
        };
        Ok(self.held(fresh, Allocation::default()))
    }

    /// Allocates what `new` needs beyond what `old` holds (kube-apiserver's update rules).
    fn allocate_update(
        &self,
        obj: &Value,
        new: &mut ServiceSpec,
        old: &ServiceSpec,
    ) -> Result<Held> {
        let fresh = {
            let mut allocs = self.allocators.lock().expect("allocator lock");
            let mut rng = self.rng.lock().expect("rng lock");
            allocs
                .allocate_update(new, old, &mut *rng)
                .map_err(|e| alloc_error(obj, e))?
        };
        Ok(self.held(fresh, Allocation::held_by(old)))
    }

    fn held(&self, fresh: Allocation, before: Allocation) -> Held {
        Held {
            allocators: self.allocators.clone(),
            fresh,
            release_after: before,
        }
    }
}

/// Validation runs after allocation (kube-apiserver allocates in `BeginCreate`/`BeginUpdate`):
/// on failure the fresh allocation goes back. What is released once the write lands is what
/// the old version held and the new one does not.
fn validated(
    obj: &mut Value,
    svc: &mut Service,
    mut held: Held,
    errs: ErrorList,
    net: service::ServiceNetwork,
) -> Result<Admission> {
    if !errs.is_empty() {
        Box::new(held).rollback();
        return Err(strategy::invalid(&RESOURCE, obj, errs));
    }
    held.release_after = held.release_after.minus(&Allocation::held_by(
        svc.spec.as_ref().unwrap_or(&Default::default()),
    ));
    // `defaultOnRead`, once at write time: stored Services are what reads return.
    service::default_on_read(svc, net);
    *obj = strategy::untyped(svc);
    Ok(Admission::holding(held))
}

impl Strategy for ServiceStrategy {
    fn resource(&self) -> &'static Resource {
        &RESOURCE
    }

    fn decode(&self, obj: Value) -> Result<Decoded> {
        strategy::decode_as::<Service>(&RESOURCE, obj, service::set_defaults)
    }

    fn admit_create(&self, obj: &mut Value) -> Result<Admission> {
        let mut svc: Service = strategy::typed(&RESOURCE, obj)?;
        let net = self.network();
        service::prepare_for_create(&mut svc, net)
            .map_err(|errs| strategy::invalid(&RESOURCE, obj, errs))?;
        let mut spec = svc.spec.take().unwrap_or_default();
        let held = self.allocate_create(obj, &mut spec)?;
        svc.spec = Some(spec);
        let errs = service::validate_create(&svc);
        let warnings = service::warnings(&svc, None);
        Ok(validated(obj, &mut svc, held, errs, net)?.warn(warnings))
    }

    fn admit_update(&self, new: &mut Value, old: &Value, sub: Subresource) -> Result<Admission> {
        let old_svc: Service = strategy::typed(&RESOURCE, old)?;
        let mut svc: Service = strategy::typed(&RESOURCE, new)?;
        if sub == Subresource::Status {
            let errs = service::validate_status_update(&svc, &old_svc);
            strategy::check(&RESOURCE, new, errs)?;
            // Status writes cannot touch the spec, so allocations stay as they are.
            return Ok(Admission::none());
        }
        let net = self.network();
        service::prepare_for_update(&mut svc, &old_svc, net)
            .map_err(|errs| strategy::invalid(&RESOURCE, new, errs))?;
        let mut spec = svc.spec.take().unwrap_or_default();
        let old_spec = old_svc.spec.clone().unwrap_or_default();
        let held = self.allocate_update(new, &mut spec, &old_spec)?;
        svc.spec = Some(spec);
        service::finish_update(&mut svc, &old_svc);
        let errs = service::validate_update(&svc, &old_svc);
        let warnings = service::warnings(&svc, Some(&old_svc));
        Ok(validated(new, &mut svc, held, errs, net)?.warn(warnings))
    }

    fn allow_create_on_update(&self) -> bool {
        true
    }

    fn after_delete(&self, old: &Value) {
        if let Ok(svc) = Service::deserialize(old) {
            let held = Allocation::held_by(&svc.spec.unwrap_or_default());
            self.allocators
                .lock()
                .expect("allocator lock")
                .release(&held);
        }
    }

    fn restore(&self) -> Option<&dyn Restore> {
        Some(self)
    }

    fn columns(&self) -> Vec<Value> {
        use strategy::column;
        vec![
            strategy::name_column(),
            column(
                "Type",
                "string",
                0,
                "type determines how the Service is exposed.",
            ),
            column(
                "Cluster-IP",
                "string",
                0,
                "clusterIP is the IP address of the service.",
            ),
            column(
                "External-IP",
                "string",
                0,
                "externalIPs is a list of IP addresses for which nodes in the cluster will also accept traffic for this service.",
            ),
            column(
                "Port(s)",
                "string",
                0,
                "The list of ports that are exposed by this service.",
            ),
            strategy::age_column(),
            column(
                "Selector",
                "string",
                1,
                "Route service traffic to pods with label keys and values matching this selector.",
            ),
        ]
    }

    fn cells(&self, obj: &Value) -> Vec<Value> {
        let (spec, status) = (&obj["spec"], &obj["status"]);
        let ty = spec["type"].as_str().unwrap_or("ClusterIP");
        let cluster_ip = match ty {
            "ExternalName" => "<none>",
            _ => spec["clusterIP"]
                .as_str()
                .filter(|s| !s.is_empty())
                .unwrap_or("<none>"),
        };
        let mut external: Vec<String> = status["loadBalancer"]["ingress"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|i| i["ip"].as_str().or(i["hostname"].as_str()))
            .map(str::to_owned)
            .collect();
        external.extend(
            spec["externalIPs"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|v| v.as_str().map(str::to_owned)),
        );
        let external = match ty {
            "ExternalName" => spec["externalName"].as_str().unwrap_or("<none>").to_owned(),
            "LoadBalancer" if external.is_empty() => "<pending>".to_owned(),
            _ => printers::join_or(external, "<none>"),
        };
        let ports: Vec<String> = spec["ports"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|p| {
                let proto = p["protocol"].as_str().unwrap_or("TCP");
                match p["nodePort"].as_i64().filter(|&n| n != 0) {
                    Some(np) => format!("{}:{np}/{proto}", p["port"]),
                    None => format!("{}/{proto}", p["port"]),
                }
            })
            .collect();
        let selector: Vec<String> = spec["selector"]
            .as_object()
            .into_iter()
            .flatten()
            .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or("")))
            .collect();
        vec![
            json!(printers::name(obj)),
            json!(ty),
            json!(cluster_ip),
            json!(external),
            json!(printers::join_or(ports, "<none>")),
            json!(printers::age(obj)),
            json!(printers::join_or(selector, "<none>")),
        ]
    }
}

impl Restore for ServiceStrategy {
    /// Marks what a stored Service holds as allocated (kube-apiserver's repair loop).
    fn restore(&self, obj: &Value) -> Result<()> {
        let svc = Service::deserialize(obj).map_err(|e| {
            ApiError::Internal(format!(
                "stored Service {} is corrupt: {e}",
                obj["metadata"]["name"]
            ))
        })?;
        let mut allocs = self.allocators.lock().expect("allocator lock");
        for problem in allocs.repair(&svc.spec.unwrap_or_default()) {
            tracing::warn!(service = %obj["metadata"]["name"], %problem, "allocation repair found a conflict");
        }
        Ok(())
    }
}

use serde::Deserialize;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn service_row() {
        let svc = json!({"metadata": {"name": "my-service"}, "spec": {"type": "NodePort", "clusterIP": "10.96.0.7",
            "ports": [{"port": 80, "protocol": "TCP", "nodePort": 30080}, {"port": 53, "protocol": "UDP"}], "selector": {"app": "MyApp"}}});
        let s = strategy(&Default::default()).unwrap();
        let c = s.cells(&svc);
        assert_eq!(c[1], "NodePort");
        assert_eq!(c[2], "10.96.0.7");
        assert_eq!(c[3], "<none>");
        assert_eq!(c[4], "80:30080/TCP,53/UDP");
        assert_eq!(c[6], "app=MyApp");
    }
}
