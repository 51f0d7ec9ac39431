//! The patch a `Blocked` remediation asks the user to make to their own object, written as the
//! `kubectl patch` command that makes it (the same JSON works in a GitOps overlay).

use serde_json::Value;

use crate::remediation::Kind;

/// `kubectl -n NS patch KIND NAME --type merge -p '{...}'`: a JSON merge patch, which keeps
/// every field it does not name.
pub(super) fn merge(kind: Kind, namespace: &str, name: &str, patch: &Value) -> String {
    command(kind, namespace, name, "merge", patch)
}

/// `kubectl -n NS patch KIND NAME --type json -p '[...]'`: a JSON patch (RFC 6902), for changes
/// inside lists, which a merge patch would replace whole.
pub(super) fn json(kind: Kind, namespace: &str, name: &str, operations: &[Value]) -> String {
    command(
        kind,
        namespace,
        name,
        "json",
        &Value::from(operations.to_vec()),
    )
}

fn command(kind: Kind, namespace: &str, name: &str, type_: &str, patch: &Value) -> String {
    format!(
        "kubectl -n {namespace} patch {} {name} --type {type_} -p '{patch}'",
        kind.resource()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands_name_the_object_and_the_patch_type() {
        let patch = serde_json::json!({"spec": {"mtls": {"mode": "PERMISSIVE"}}});
        assert_eq!(
            merge(Kind::PeerAuthentication, "shop", "default", &patch),
            r#"kubectl -n shop patch peerauthentication default --type merge -p '{"spec":{"mtls":{"mode":"PERMISSIVE"}}}'"#
        );
        let ops = [
            serde_json::json!({"op": "add", "path": "/spec/http/0/retries", "value": {"attempts": 2}}),
        ];
        assert_eq!(
            json(Kind::VirtualService, "shop", "cart", &ops),
            r#"kubectl -n shop patch virtualservice cart --type json -p '[{"op":"add","path":"/spec/http/0/retries","value":{"attempts":2}}]'"#
        );
    }
}
