//! Name and label syntax checks from apimachinery's `validation` package.

const DNS1123_LABEL_MSG: &str = "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')";
const DNS1035_LABEL_MSG: &str = "a DNS-1035 label must consist of lower case alphanumeric characters or '-', start with an alphabetic character, and end with an alphanumeric character (e.g. 'my-name',  or 'abc-123', regex used for validation is '[a-z]([-a-z0-9]*[a-z0-9])?')";
const DNS1123_SUBDOMAIN_MSG: &str = "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')";
const QUALIFIED_NAME_MSG: &str = "name part must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyName',  or 'my.name',  or '123-abc', regex used for validation is '([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]')";
const QUALIFIED_NAME_MANY_SLASHES_MSG: &str = "a qualified name must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyName',  or 'my.name',  or '123-abc', regex used for validation is '([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]') with an optional DNS subdomain prefix and '/' (e.g. 'example.com/MyName')";
const LABEL_VALUE_MSG: &str = "a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyValue',  or 'my_value',  or '12345', regex used for validation is '(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?')";

fn lower_alnum(c: u8) -> bool {
    c.is_ascii_lowercase() || c.is_ascii_digit()
}

fn is_label_shape(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && lower_alnum(b[0])
        && lower_alnum(b[b.len() - 1])
        && b.iter().all(|&c| lower_alnum(c) || c == b'-')
}

fn is_subdomain_shape(s: &str) -> bool {
    !s.is_empty() && s.split('.').all(is_label_shape)
}

/// Problems with `s` as an RFC 1123 label (port names, namespaces); empty when valid.
pub fn dns1123_label(s: &str) -> Vec<String> {
    let mut errs = Vec::new();
    if s.len() > 63 {
        errs.push("must be no more than 63 characters".to_owned());
    }
    if !is_label_shape(s) {
        if is_subdomain_shape(s) {
            // A valid subdomain that is not a label can only have dots in it.
            errs.push("must not contain dots".to_owned());
        } else {
            errs.push(DNS1123_LABEL_MSG.to_owned());
        }
    }
    errs
}

/// Problems with `s` as an RFC 1035 label (Service names).
pub fn dns1035_label(s: &str) -> Vec<String> {
    let mut errs = Vec::new();
    if s.len() > 63 {
        errs.push("must be no more than 63 characters".to_owned());
    }
    if !is_label_shape(s) || !s.as_bytes()[0].is_ascii_lowercase() {
        errs.push(DNS1035_LABEL_MSG.to_owned());
    }
    errs
}

/// Problems with `s` as an RFC 1123 subdomain (most object names, ExternalName targets).
pub fn dns1123_subdomain(s: &str) -> Vec<String> {
    let mut errs = Vec::new();
    if s.len() > 253 {
        errs.push("must be no more than 253 characters".to_owned());
    }
    if !is_subdomain_shape(s) {
        errs.push(DNS1123_SUBDOMAIN_MSG.to_owned());
    }
    errs
}

/// Problems with `s` as an IANA service name (named target ports).
pub fn iana_svc_name(s: &str) -> Vec<String> {
    let mut errs = Vec::new();
    if s.len() > 15 {
        errs.push("must be no more than 15 characters".to_owned());
    }
    if s.is_empty() || !s.bytes().all(|c| lower_alnum(c) || c == b'-') {
        errs.push(
            "must contain only alpha-numeric characters (a-z, 0-9), and hyphens (-)".to_owned(),
        );
    }
    if !s.bytes().any(|c| c.is_ascii_lowercase()) {
        errs.push("must contain at least one letter (a-z)".to_owned());
    }
    if s.contains("--") {
        errs.push("must not contain consecutive hyphens".to_owned());
    }
    if s.starts_with('-') || s.ends_with('-') {
        errs.push("must not begin or end with a hyphen".to_owned());
    }
    errs
}

fn qualified_name_part(s: &str) -> bool {
    let b = s.as_bytes();
    let alnum = |c: u8| c.is_ascii_alphanumeric();
    !b.is_empty()
        && alnum(b[0])
        && alnum(b[b.len() - 1])
        && b.iter()
            .all(|&c| alnum(c) || matches!(c, b'-' | b'_' | b'.'))
}

/// Problems with `s` as a qualified name (label and annotation keys, appProtocol,
/// finalizers, loadBalancerClass).
pub fn qualified_name(s: &str) -> Vec<String> {
    let mut errs = Vec::new();
    let parts: Vec<&str> = s.split('/').collect();
    let name = match parts.as_slice() {
        [name] => *name,
        [prefix, name] => {
            if prefix.is_empty() {
                errs.push("prefix part must be non-empty".to_owned());
            } else {
                errs.extend(
                    dns1123_subdomain(prefix)
                        .into_iter()
                        .map(|m| format!("prefix part {m}")),
                );
            }
            *name
        }
        _ => {
            errs.push(QUALIFIED_NAME_MANY_SLASHES_MSG.to_owned());
            return errs;
        }
    };
    if name.is_empty() {
        errs.push("name part must be non-empty".to_owned());
    } else if name.len() > 63 {
        errs.push("name part must be no more than 63 characters".to_owned());
    }
    // The pattern is checked on its own, so an empty or long name gets both messages.
    if !qualified_name_part(name) {
        errs.push(QUALIFIED_NAME_MSG.to_owned());
    }
    errs
}

/// Problems with `s` as a label value.
pub fn label_value(s: &str) -> Vec<String> {
    let mut errs = Vec::new();
    if s.len() > 63 {
        errs.push("must be no more than 63 characters".to_owned());
    }
    if !s.is_empty() && !qualified_name_part(s) {
        errs.push(LABEL_VALUE_MSG.to_owned());
    }
    errs
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels() {
        assert!(dns1123_label("123-abc").is_empty());
        assert!(dns1123_label("web").is_empty());
        assert!(!dns1123_label("123_abc").is_empty());
        assert!(!dns1123_label("-web").is_empty());
        assert!(!dns1123_label(&"a".repeat(64)).is_empty());
        assert!(dns1035_label("my-service").is_empty());
        assert!(!dns1035_label("1abc").is_empty());
        assert!(dns1123_subdomain("foo.example.com").is_empty());
        assert!(!dns1123_subdomain("foo..com").is_empty());
        assert!(iana_svc_name("http").is_empty());
        assert!(!iana_svc_name("80").is_empty());
        assert!(!iana_svc_name("a--b").is_empty());
        assert!(qualified_name("app.kubernetes.io/name").is_empty());
        assert!(!qualified_name("bad key").is_empty());
        assert!(label_value("").is_empty());
        assert!(!label_value("-x").is_empty());
    }

    /// Message order and combinations as apimachinery's `validation` package returns them.
    #[test]
    fn messages_match_apimachinery() {
        assert_eq!(
            dns1123_label("a.b"),
            vec!["must not contain dots".to_owned()]
        );
        assert_eq!(dns1123_label("a_b"), vec![DNS1123_LABEL_MSG.to_owned()]);
        assert_eq!(
            qualified_name(""),
            vec![
                "name part must be non-empty".to_owned(),
                QUALIFIED_NAME_MSG.to_owned()
            ]
        );
        assert_eq!(
            qualified_name(&format!("{}-", "a".repeat(63))),
            vec![
                "name part must be no more than 63 characters".to_owned(),
                QUALIFIED_NAME_MSG.to_owned()
            ]
        );
        assert_eq!(
            qualified_name("a/b/c"),
            vec![QUALIFIED_NAME_MANY_SLASHES_MSG.to_owned()]
        );
        assert_eq!(
            qualified_name("/x"),
            vec!["prefix part must be non-empty".to_owned()]
        );
        assert_eq!(
            iana_svc_name("--"),
            vec![
                "must contain at least one letter (a-z)".to_owned(),
                "must not contain consecutive hyphens".to_owned(),
                "must not begin or end with a hyphen".to_owned(),
            ]
        );
        assert_eq!(iana_svc_name("").len(), 2);
    }

    /// A multi-byte character across the 63-byte limit is an error, not a panic (the value
    /// comes straight from clients).
    #[test]
    fn long_label_value_with_multibyte_character() {
        let value = format!("{}é", "a".repeat(62));
        assert_eq!(
            label_value(&value),
            vec![
                "must be no more than 63 characters".to_owned(),
                LABEL_VALUE_MSG.to_owned()
            ]
        );
        let ok = "a".repeat(63);
        assert!(label_value(&ok).is_empty());
        assert_eq!(label_value(&format!("{ok}b")).len(), 1);
    }
}
