//! How the API types' lists and maps merge, per kind and field path: the `patchMergeKey` /
//! `x-kubernetes-list-type` / `x-kubernetes-list-map-keys` / `x-kubernetes-map-type` markers of
//! the Kubernetes Go types. Strategic merge patch ([`crate::strategic_merge`]) and server-side
//! apply ([`crate::structured_merge`]) both read it, so they agree on which lists merge by key.
//!
//! A path is the field names from the object's root to the list or map, without list items:
//! `["spec", "ports"]` for a Service's ports, `["spec", "containers", "ports"]` for a Pod's
//! container ports. Lists not named here are atomic and objects are structs, as in the types.

/// A key field of an associative list, with the value an item that omits it is keyed by.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct KeyField {
    pub name: &'static str,
    pub default: KeyDefault,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KeyDefault {
    /// The field is left out of the key.
    None,
    Str(&'static str),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ListType {
    /// Replaced as a whole, owned as one field.
    Atomic,
    /// A set of scalars (`x-kubernetes-list-type: set`, `patchStrategy: merge` without a key).
    Set,
    /// Items matched by `keys` (server-side apply) or by `merge_key` (strategic merge patch).
    Map {
        keys: &'static [KeyField],
        merge_key: &'static str,
    },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ObjectType {
    /// A struct: its fields merge one by one.
    Struct,
    /// A map with free keys (labels, resource lists): its keys merge one by one.
    Map,
    /// Replaced and owned as a whole (`x-kubernetes-map-type: atomic`, atomic structs).
    Atomic,
}

const fn key(name: &'static str) -> KeyField {
    KeyField {
        name,
        default: KeyDefault::None,
    }
}

const PROTOCOL_TCP: KeyField = KeyField {
    name: "protocol",
    default: KeyDefault::Str("TCP"),
};

const fn by(keys: &'static [KeyField], merge_key: &'static str) -> ListType {
    ListType::Map { keys, merge_key }
}

const BY_NAME: ListType = by(&[key("name")], "name");
const BY_TYPE: ListType = by(&[key("type")], "type");
const BY_IP: ListType = by(&[key("ip")], "ip");
const BY_UID: ListType = by(&[key("uid")], "uid");
const SERVICE_PORTS: ListType = by(&[key("port"), PROTOCOL_TCP], "port");
const CONTAINER_PORTS: ListType = by(&[key("containerPort"), PROTOCOL_TCP], "containerPort");
const VOLUME_MOUNTS: ListType = by(&[key("mountPath")], "mountPath");
const VOLUME_DEVICES: ListType = by(&[key("devicePath")], "devicePath");
const TOPOLOGY_SPREAD: ListType = by(
    &[key("topologyKey"), key("whenUnsatisfiable")],
    "topologyKey",
);

/// Where a path points once the kind's nesting is resolved.
enum Ctx<'a> {
    Meta(&'a [&'a str]),
    PodSpec(&'a [&'a str]),
    Container(&'a [&'a str]),
    PodStatus(&'a [&'a str]),
    Kind(&'a [&'a str]),
}

/// Kinds whose `spec.template` is a PodTemplateSpec.
fn has_pod_template(kind: &str) -> bool {
    matches!(
        kind,
        "Deployment" | "ReplicaSet" | "StatefulSet" | "DaemonSet" | "Job" | "PodTemplate"
    )
}

fn resolve<'a>(kind: &str, path: &'a [&'a str]) -> Ctx<'a> {
    let pod_spec = |rest: &'a [&'a str]| match rest {
        [
            "containers" | "initContainers" | "ephemeralContainers",
            inner @ ..,
        ] if !inner.is_empty() => Ctx::Container(inner),
        _ => Ctx::PodSpec(rest),
    };
    match path {
        ["metadata", rest @ ..] => Ctx::Meta(rest),
        ["spec", "template", "metadata", rest @ ..] if has_pod_template(kind) => Ctx::Meta(rest),
        ["spec", "template", "spec", rest @ ..] if has_pod_template(kind) => pod_spec(rest),
        ["spec", rest @ ..] if kind == "Pod" => pod_spec(rest),
        ["status", rest @ ..] if kind == "Pod" => Ctx::PodStatus(rest),
        _ => Ctx::Kind(path),
    }
}

/// The list type of the list at `path` in an object of `kind`.
pub fn list_type(kind: &str, path: &[&str]) -> ListType {
    match resolve(kind, path) {
        Ctx::Meta(["finalizers"]) => ListType::Set,
        Ctx::Meta(["ownerReferences"]) => BY_UID,
        Ctx::Meta(_) => ListType::Atomic,
        Ctx::PodSpec(p) => match p {
            ["containers" | "initContainers" | "ephemeralContainers"] => BY_NAME,
            ["volumes" | "imagePullSecrets" | "resourceClaims" | "schedulingGates"] => BY_NAME,
            ["hostAliases"] => BY_IP,
            ["topologySpreadConstraints"] => TOPOLOGY_SPREAD,
            _ => ListType::Atomic,
        },
        Ctx::Container(p) => match p {
            ["ports"] => CONTAINER_PORTS,
            ["env"] => BY_NAME,
            ["volumeMounts"] => VOLUME_MOUNTS,
            ["volumeDevices"] => VOLUME_DEVICES,
            ["resources", "claims"] => BY_NAME,
            _ => ListType::Atomic,
        },
        Ctx::PodStatus(p) => match p {
            ["conditions"] => BY_TYPE,
            ["podIPs"] => BY_IP,
            ["resourceClaimStatuses"] => BY_NAME,
            _ => ListType::Atomic,
        },
        Ctx::Kind(p) => match (kind, p) {
            (_, ["status", "conditions"]) => BY_TYPE,
            ("Service", ["spec", "ports"]) => SERVICE_PORTS,
            ("Node", ["spec", "podCIDRs"]) => ListType::Set,
            ("Node", ["status", "addresses"]) => BY_TYPE,
            _ => ListType::Atomic,
        },
    }
}

/// The type of the JSON object at `path` (for list items: the path of the list).
pub fn object_type(kind: &str, path: &[&str]) -> ObjectType {
    match resolve(kind, path) {
        Ctx::Meta(["labels" | "annotations"]) => ObjectType::Map,
        Ctx::Meta(["ownerReferences"]) => ObjectType::Atomic,
        Ctx::Meta(_) => ObjectType::Struct,
        Ctx::PodSpec(p) => match p {
            ["nodeSelector"] => ObjectType::Atomic,
            ["overhead"] => ObjectType::Map,
            ["imagePullSecrets"] => ObjectType::Atomic,
            [
                "affinity",
                "nodeAffinity",
                "requiredDuringSchedulingIgnoredDuringExecution",
            ] => ObjectType::Atomic,
            ["topologySpreadConstraints", "labelSelector"] => ObjectType::Atomic,
            ["volumes", _, "secretRef"] => ObjectType::Atomic,
            _ => ObjectType::Struct,
        },
        Ctx::Container(p) => match p {
            ["resources", "limits" | "requests"] => ObjectType::Map,
            [
                "env",
                "valueFrom",
                "configMapKeyRef" | "secretKeyRef" | "fieldRef" | "resourceFieldRef",
            ] => ObjectType::Atomic,
            _ => ObjectType::Struct,
        },
        Ctx::PodStatus(_) => ObjectType::Struct,
        Ctx::Kind(p) => match (kind, p) {
            ("Service", ["spec", "selector"]) => ObjectType::Atomic,
            ("Node", ["status", "capacity" | "allocatable"]) => ObjectType::Map,
            ("Event", ["involvedObject" | "related"]) => ObjectType::Atomic,
            (_, ["spec", "selector"]) if has_pod_template(kind) => ObjectType::Atomic,
            _ => ObjectType::Struct,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nesting_is_resolved_per_kind() {
        assert_eq!(list_type("Service", &["spec", "ports"]), SERVICE_PORTS);
        assert!(matches!(
            list_type("Pod", &["spec", "containers", "ports"]),
            ListType::Map {
                merge_key: "containerPort",
                ..
            }
        ));
        assert!(matches!(
            list_type(
                "Deployment",
                &["spec", "template", "spec", "containers", "env"]
            ),
            ListType::Map {
                merge_key: "name",
                ..
            }
        ));
        assert_eq!(
            list_type(
                "Deployment",
                &["spec", "template", "metadata", "finalizers"]
            ),
            ListType::Set
        );
        assert_eq!(
            list_type("Service", &["spec", "externalIPs"]),
            ListType::Atomic
        );
        assert_eq!(
            object_type("Service", &["spec", "selector"]),
            ObjectType::Atomic
        );
        assert_eq!(object_type("Pod", &["metadata", "labels"]), ObjectType::Map);
        assert_eq!(
            object_type("Pod", &["spec", "containers", "resources", "limits"]),
            ObjectType::Map
        );
        assert_eq!(
            object_type("Pod", &["spec", "containers"]),
            ObjectType::Struct
        );
    }
}
