//! The linked IP fields of a Service: `clusterIP`, `clusterIPs`, `ipFamilies` and
//! `ipFamilyPolicy` (kube's `storage.go` `normalizeClusterIPs`, `patchAllocatedValues`,
//! `defaultOnReadIPFamilies` and `alloc.go` `initIPFamilyFields`), and the stand-alone check
//! of them that both allocation and validation run (`ValidateServiceClusterIPsRelatedFields`).

use std::collections::{BTreeMap, HashSet};

use k8s_openapi::api::core::v1::ServiceSpec;

use super::{
    IpFamily, ServiceNetwork, families_of, has_selector, health_check_node_port, ips_of,
    is_headless_ips, is_matching_prefer_dual_stack, needs_cluster_ip, needs_health_check_node_port,
    needs_node_ports, node_port, same_cluster_ips, same_ip_families, str_of, ty,
};
use crate::field::{BadValue, ErrorList, FieldError};
use crate::ip;

pub(super) const IP_DETAIL: &str = "must be a valid IP address, (e.g. 10.9.8.7 or 2001:db8::ffff)";

fn ips_value(spec: &ServiceSpec) -> BadValue {
    BadValue::slice("string", spec.cluster_ips.as_deref())
}

fn policy_value(spec: &ServiceSpec) -> BadValue {
    spec.ip_family_policy.as_deref().into()
}

/// `netutils.IsIPv6String`: false for anything that is not an IP.
fn is_ipv6_string(s: &str) -> bool {
    ip::family_of_str(s) == Some(IpFamily::V6)
}

/// `normalizeClusterIPs`: keeps `clusterIPs` in step with `clusterIP`. On create it only
/// fills `clusterIPs` from `clusterIP`, never the other way round.
pub(super) fn normalize_cluster_ips(new: &mut ServiceSpec, old: Option<&ServiceSpec>) {
    let Some(old) = old else {
        if !str_of(&new.cluster_ip).is_empty() && ips_of(new).is_empty() {
            new.cluster_ips = Some(vec![str_of(&new.cluster_ip).to_owned()]);
        }
        return;
    };
    // An old client that patched something else and sent no clusterIPs.
    if !ips_of(old).is_empty()
        && ips_of(new).is_empty()
        && str_of(&old.cluster_ip) == str_of(&new.cluster_ip)
    {
        new.cluster_ips = old.cluster_ips.clone();
    }
    if str_of(&old.cluster_ip) != str_of(&new.cluster_ip) {
        if !str_of(&old.cluster_ip).is_empty() && str_of(&new.cluster_ip).is_empty() {
            // Clearing clusterIP clears clusterIPs on the client's behalf.
            if same_cluster_ips(old, new) {
                new.cluster_ips = None;
            }
        } else if same_cluster_ips(old, new) {
            // Changing only clusterIP changes clusterIPs too (validation then refuses it).
            new.cluster_ips = Some(vec![str_of(&new.cluster_ip).to_owned()]);
        }
    }
}

/// `patchAllocatedValues`: values kube allocated that the client did not send back are kept,
/// so re-applying the same manifest is not a change. Node ports are matched by port name.
pub(super) fn patch_allocated_values(new: &mut ServiceSpec, old: &ServiceSpec) {
    if needs_cluster_ip(old) && needs_cluster_ip(new) {
        if str_of(&new.cluster_ip).is_empty() {
            new.cluster_ip = old.cluster_ip.clone();
        }
        if ips_of(new).is_empty() && !ips_of(old).is_empty() {
            new.cluster_ips = old.cluster_ips.clone();
        }
    }
    if needs_node_ports(old) && needs_node_ports(new) {
        let used_by = |s: &ServiceSpec| -> HashSet<i32> {
            s.ports
                .iter()
                .flatten()
                .map(node_port)
                .filter(|&n| n != 0)
                .collect()
        };
        // Values old and new both use cannot be given to another port.
        let used: HashSet<i32> = used_by(old).intersection(&used_by(new)).copied().collect();
        let by_name: BTreeMap<&str, i32> = old
            .ports
            .iter()
            .flatten()
            .map(|p| (str_of(&p.name), node_port(p)))
            .collect();
        for p in new.ports.iter_mut().flatten() {
            if node_port(p) == 0 {
                let old_value = by_name.get(str_of(&p.name)).copied().unwrap_or(0);
                if old_value != 0 && !used.contains(&old_value) {
                    p.node_port = Some(old_value);
                }
            }
        }
    }
    if needs_health_check_node_port(old)
        && needs_health_check_node_port(new)
        && health_check_node_port(new) == 0
    {
        new.health_check_node_port = old.health_check_node_port;
    }
}

/// `defaultOnRead` for one spec: normalise `clusterIPs`, fill the IP-family fields of objects
/// stored without them (when the primary family is known), and hide `internalTrafficPolicy`
/// on ExternalName Services.
pub(super) fn default_on_read(spec: &mut ServiceSpec, primary: Option<IpFamily>) {
    normalize_cluster_ips(spec, None);
    if let Some(primary) = primary
        && needs_cluster_ip(spec)
        && families_of(spec).is_empty()
    {
        if str_of(&spec.cluster_ip) == "None" {
            if has_selector(spec) {
                spec.ip_family_policy = Some("SingleStack".into());
                spec.ip_families = Some(vec![primary.as_str().into()]);
            } else {
                // Headless and selectorless: assumed dual-stack on any cluster.
                spec.ip_family_policy = Some("RequireDualStack".into());
                spec.ip_families = Some(vec![
                    primary.as_str().into(),
                    primary.other().as_str().into(),
                ]);
            }
        } else {
            let families: Vec<String> = ips_of(spec)
                .iter()
                .map(|ip| {
                    let f = if is_ipv6_string(ip) {
                        IpFamily::V6
                    } else {
                        IpFamily::V4
                    };
                    f.as_str().to_owned()
                })
                .collect();
            match families.len() {
                0 => {}
                1 => spec.ip_family_policy = Some("SingleStack".into()),
                _ => spec.ip_family_policy = Some("RequireDualStack".into()),
            }
            if !families.is_empty() {
                spec.ip_families = Some(families);
            }
        }
    }
    if ty(spec) == "ExternalName" {
        spec.internal_traffic_policy = None;
    }
}

/// `ValidateServiceClusterIPsRelatedFields`: `clusterIP`/`clusterIPs` agreement, family and
/// policy values, the IPs themselves, and that IPs match their families.
pub(super) fn validate_cluster_ips_related(spec: &ServiceSpec) -> ErrorList {
    let mut errs = ErrorList::default();
    if ty(spec) == "ExternalName" {
        return errs;
    }
    let ip = str_of(&spec.cluster_ip);
    let ips = ips_of(spec);
    if !ip.is_empty() {
        if ips.is_empty() {
            errs.push(FieldError::required("spec.clusterIPs", ""));
        } else if ips[0] != ip {
            errs.push(FieldError::invalid(
                "spec.clusterIPs",
                ips_value(spec),
                "first value must match `clusterIP`",
            ));
        }
    } else if !ips.is_empty() {
        errs.push(FieldError::invalid(
            "spec.clusterIPs",
            ips_value(spec),
            "must be empty when `clusterIP` is not specified",
        ));
    }
    let mut seen = HashSet::new();
    for (i, f) in families_of(spec).iter().enumerate() {
        let path = format!("spec.ipFamilies[{i}]");
        if IpFamily::parse(f).is_none() {
            errs.push(FieldError::not_supported(
                path.clone(),
                f,
                &["IPv4", "IPv6"],
            ));
        }
        if !seen.insert(f) {
            errs.push(FieldError::duplicate(path, f));
        }
    }
    if let Some(p) = spec.ip_family_policy.as_deref()
        && !["PreferDualStack", "RequireDualStack", "SingleStack"].contains(&p)
    {
        errs.push(FieldError::not_supported(
            "spec.ipFamilyPolicy",
            p,
            &["PreferDualStack", "RequireDualStack", "SingleStack"],
        ));
    }
    let mut invalid_ips = false;
    for (i, v) in ips.iter().enumerate() {
        if i == 0 && v == "None" {
            if ips.len() > 1 {
                invalid_ips = true;
                errs.push(FieldError::invalid(
                    "spec.clusterIPs",
                    ips_value(spec),
                    "'None' must be the first and only value",
                ));
            }
            continue;
        }
        if ip::parse_ip_sloppy(v).is_none() {
            invalid_ips = true;
            errs.push(FieldError::invalid(
                format!("spec.clusterIPs[{i}]"),
                v,
                IP_DETAIL,
            ));
        }
    }
    if ips.len() > 2 {
        errs.push(FieldError::invalid(
            "spec.clusterIPs",
            ips_value(spec),
            "may only hold up to 2 values",
        ));
    }
    // Bad IPs would skew the checks below.
    if invalid_ips {
        return errs;
    }
    if ips.len() > 1 {
        let families: HashSet<Option<IpFamily>> =
            ips.iter().map(|s| ip::family_of_str(s)).collect();
        let dual = families.contains(&Some(IpFamily::V4)) && families.contains(&Some(IpFamily::V6));
        if !dual {
            errs.push(FieldError::invalid(
                "spec.clusterIPs",
                ips_value(spec),
                "may specify no more than one IP for each IP family",
            ));
        }
    }
    let families = families_of(spec);
    if !is_headless_ips(spec) && !ips.is_empty() && !families.is_empty() {
        for (i, v) in ips.iter().enumerate().take(families.len()) {
            let v6 = is_ipv6_string(v);
            let want = families[i].as_str();
            if (want == "IPv4" && v6) || (want == "IPv6" && !v6) {
                errs.push(FieldError::invalid(
                    format!("spec.clusterIPs[{i}]"),
                    v,
                    format!("expected an {want} value as indicated by `ipFamilies[{i}]`"),
                ));
            }
        }
    }
    errs
}

fn reduced(new: &[String], old: &[String]) -> bool {
    !new.is_empty() && new.len() < old.len()
}

/// `initIPFamilyFields`: defaults `ipFamilyPolicy` and `ipFamilies` from the request, the old
/// object and the cluster, refusing what the cluster cannot do. On update this is where a
/// SingleStack policy trims the secondary IP and family (downgrade) and a dual-stack policy
/// adds the second family (upgrade; allocation then adds the IP).
pub(super) fn init_ip_family_fields(
    spec: &mut ServiceSpec,
    old: Option<&ServiceSpec>,
    net: ServiceNetwork,
) -> Result<(), ErrorList> {
    if ty(spec) == "ExternalName" {
        return Ok(());
    }
    if is_matching_prefer_dual_stack(spec, old) {
        return Ok(());
    }
    let headless_selectorless = str_of(&spec.cluster_ip) == "None" && !has_selector(spec);
    if spec.ip_family_policy.is_none() {
        spec.ip_family_policy = Some(match old.and_then(|o| o.ip_family_policy.clone()) {
            Some(p) => p,
            None if headless_selectorless => "RequireDualStack".into(),
            None => "SingleStack".into(),
        });
    }
    let first = validate_cluster_ips_related(spec);
    if !first.is_empty() {
        return Err(first);
    }
    let mut errs = ErrorList::default();
    let single = str_of(&spec.ip_family_policy) == "SingleStack";
    if let Some(old) = old {
        if single {
            // Setting SingleStack without touching the lists is a clear request to downgrade;
            // clusterIPs[0] is immutable, so it is the one kept.
            if same_cluster_ips(old, spec) && ips_of(spec).len() > 1 {
                spec.cluster_ips.as_mut().expect("non-empty").truncate(1);
            }
            if same_ip_families(old, spec) && families_of(spec).len() > 1 {
                spec.ip_families.as_mut().expect("non-empty").truncate(1);
            }
        } else {
            if reduced(ips_of(spec), ips_of(old)) {
                errs.push(FieldError::invalid(
                    "spec.ipFamilyPolicy",
                    policy_value(spec),
                    "must be 'SingleStack' to release the secondary cluster IP",
                ));
            }
            if reduced(families_of(spec), families_of(old)) {
                errs.push(FieldError::invalid(
                    "spec.ipFamilyPolicy",
                    policy_value(spec),
                    "must be 'SingleStack' to release the secondary IP family",
                ));
            }
        }
    }
    if single {
        if ips_of(spec).len() == 2 {
            errs.push(FieldError::invalid(
                "spec.ipFamilyPolicy",
                policy_value(spec),
                "must be 'RequireDualStack' or 'PreferDualStack' when multiple cluster IPs are specified",
            ));
        }
        if families_of(spec).len() == 2 {
            errs.push(FieldError::invalid(
                "spec.ipFamilyPolicy",
                policy_value(spec),
                "must be 'RequireDualStack' or 'PreferDualStack' when multiple IP families are specified",
            ));
        }
    }
    // Families the user did not give follow the IPs.
    let ips = ips_of(spec).to_vec();
    for (i, v) in ips.iter().enumerate() {
        if v == "None" {
            break;
        }
        if i >= families_of(spec).len() {
            match ip::family_of_str(v) {
                Some(f) if net.supports(f) => spec
                    .ip_families
                    .get_or_insert_with(Vec::new)
                    .push(f.as_str().to_owned()),
                found => errs.push(FieldError::invalid(
                    format!("spec.clusterIPs[{i}]"),
                    ips_value(spec),
                    format!(
                        "{} is not configured on this cluster",
                        found.map_or("unknown", IpFamily::as_str)
                    ),
                )),
            }
        }
    }
    if !errs.is_empty() {
        return Err(errs);
    }
    if headless_selectorless {
        // Allowed anything, even families the cluster does not have: the endpoints are the
        // user's.
        let families = spec.ip_families.get_or_insert_with(Vec::new);
        if families.is_empty() {
            families.push(net.primary.as_str().to_owned());
        }
        if families.len() < 2 && !single {
            let other = if families[0] == "IPv4" {
                "IPv6"
            } else {
                "IPv4"
            };
            families.push(other.to_owned());
        }
        return Ok(());
    }
    if str_of(&spec.ip_family_policy) == "RequireDualStack" && !net.dual_stack() {
        errs.push(FieldError::invalid(
            "spec.ipFamilyPolicy",
            policy_value(spec),
            "this cluster is not configured for dual-stack services",
        ));
    }
    for (i, f) in families_of(spec).iter().enumerate() {
        if !IpFamily::parse(f).is_some_and(|f| net.supports(f)) {
            errs.push(FieldError::invalid(
                format!("spec.ipFamilies[{i}]"),
                f,
                "not configured on this cluster",
            ));
        }
    }
    if !errs.is_empty() {
        return Err(errs);
    }
    let families = spec.ip_families.get_or_insert_with(Vec::new);
    if families.is_empty() {
        families.push(net.primary.as_str().to_owned());
    }
    if !single
        && families.len() == 1
        && net.dual_stack()
        && let Some(f) = IpFamily::parse(&families[0])
    {
        families.push(f.other().as_str().to_owned());
    }
    Ok(())
}
