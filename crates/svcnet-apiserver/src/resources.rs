//! What describes one REST resource: its group, version, kind, names, scope, subresources and
//! the field selectors it accepts, and where its objects live in the store. Plain data; the
//! behaviour of each kind is its [`crate::strategy::Strategy`] in [`crate::kinds`].

/// One REST resource (a kind in a group-version).
#[derive(Debug, PartialEq, Eq)]
pub struct Resource {
    pub group: &'static str,
    pub version: &'static str,
    pub kind: &'static str,
    pub plural: &'static str,
    pub singular: &'static str,
    pub namespaced: bool,
    pub short_names: &'static [&'static str],
    /// Discovery categories (`kubectl get all` lists the `all` category).
    pub categories: &'static [&'static str],
    /// Has a `status` subresource: writes to the object keep the stored status.
    pub has_status: bool,
    /// Has a `finalize` subresource (Namespaces).
    pub has_finalize: bool,
    /// Field selectors this resource accepts besides `metadata.name`/`metadata.namespace`.
    pub fields: &'static [&'static str],
}

impl Resource {
    /// The defaults the kinds' descriptors fill in from.
    pub const BASE: Resource = Resource {
        group: "",
        version: "v1",
        kind: "",
        plural: "",
        singular: "",
        namespaced: true,
        short_names: &[],
        categories: &[],
        has_status: false,
        has_finalize: false,
        fields: &[],
    };

    pub fn api_version(&self) -> String {
        if self.group.is_empty() {
            self.version.to_owned()
        } else {
            format!("{}/{}", self.group, self.version)
        }
    }

    pub fn list_kind(&self) -> String {
        format!("{}List", self.kind)
    }

    /// The store prefix of all objects, or of one namespace's objects.
    pub fn prefix(&self, namespace: Option<&str>) -> String {
        let group = if self.group.is_empty() {
            "core"
        } else {
            self.group
        };
        match namespace {
            Some(ns) if self.namespaced => format!("/registry/{group}/{}/{ns}/", self.plural),
            _ => format!("/registry/{group}/{}/", self.plural),
        }
    }

    pub fn key(&self, namespace: Option<&str>, name: &str) -> String {
        format!("{}{name}", self.prefix(namespace))
    }

    /// The subresources a URL may name.
    pub fn subresource(&self, name: &str) -> Option<Subresource> {
        match name {
            "status" if self.has_status => Some(Subresource::Status),
            "finalize" if self.has_finalize => Some(Subresource::Finalize),
            _ => None,
        }
    }
}

/// Which part of an object a write addresses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Subresource {
    /// The object itself: the status is kept from the stored object.
    Main,
    /// `…/status`: only the status changes.
    Status,
    /// `namespaces/…/finalize`: only `spec.finalizers` changes.
    Finalize,
}

impl Subresource {
    /// The name in URLs and in `managedFields[].subresource` (empty for the object itself).
    pub fn as_str(self) -> &'static str {
        match self {
            Subresource::Main => "",
            Subresource::Status => "status",
            Subresource::Finalize => "finalize",
        }
    }
}

pub const VERBS: &[&str] = &[
    "create",
    "delete",
    "deletecollection",
    "get",
    "list",
    "patch",
    "update",
    "watch",
];
