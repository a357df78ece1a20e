//! RBAC: the webhook's Roles and ClusterRoles grant exactly what it needs,
//! Secrets only by name in spotwright-system, and every role is bound to its
//! ServiceAccount only. (The extender's and the scheduler's exact rules are
//! in `extender` and `scheduler`, with the helpers below.)

use serde_json::{json, Value};
use std::collections::BTreeSet;

use crate::render::{base, items, kind, label, obj_name, strs, Rendered};
use crate::{NS, PROVISIONER, SERVICE_ACCOUNTS, WEBHOOK};

const SECRETS: [&str; 2] = ["spotwright-webhook-tls", "spotwright-webhook-ca"];

/// The built-in roles a binding of the base may refer to (they are not in
/// the base): what the default kube-scheduler is bound to.
pub const BUILT_IN_ROLES: [(&str, &str); 3] = [
    ("ClusterRole", "system:kube-scheduler"),
    ("ClusterRole", "system:volume-scheduler"),
    ("Role", "extension-apiserver-authentication-reader"),
];

/// One permission, `(apiGroup, resource, verb, resourceName)`, with "" as
/// the resourceName of a rule without resourceNames.
pub type Grant = (String, String, String, String);

/// Every permission `role` grants, one [`Grant`] per combination, so that
/// two roles that say the same in differently split rules compare equal.
pub fn grants(role: &Value) -> BTreeSet<Grant> {
    let mut out = BTreeSet::new();
    for rule in items(&role["rules"]) {
        let mut names = strs(&rule["resourceNames"]);
        if names.is_empty() {
            names.push("");
        }
        for g in strs(&rule["apiGroups"]) {
            for res in strs(&rule["resources"]) {
                for v in strs(&rule["verbs"]) {
                    for n in &names {
                        out.insert((g.into(), res.into(), v.into(), n.to_string()));
                    }
                }
            }
        }
    }
    out
}

/// [`Grant`]s from `(apiGroup, resource, verb, resourceName)` literals
/// (apiGroup "" for the core group, resourceName "" for any).
pub fn grant_set(v: &[(&str, &str, &str, &str)]) -> BTreeSet<Grant> {
    v.iter()
        .map(|(g, r, verb, n)| {
            (
                g.to_string(),
                r.to_string(),
                verb.to_string(),
                n.to_string(),
            )
        })
        .collect()
}

/// `(binding kind, binding namespace, role kind, role name)` of every
/// binding of `r` with ServiceAccount `NS/sa` among its subjects.
pub fn bindings_of(r: &Rendered, sa: &str) -> BTreeSet<(String, String, String, String)> {
    let me = json!({"kind": "ServiceAccount", "name": sa, "namespace": NS});
    r.objects
        .iter()
        .filter(|b| ["RoleBinding", "ClusterRoleBinding"].contains(&kind(b)))
        .filter(|b| items(&b["subjects"]).any(|s| *s == me))
        .map(|b| {
            let s = |v: &Value| v.as_str().unwrap_or("").to_string();
            (
                kind(b).to_string(),
                s(&b["metadata"]["namespace"]),
                s(&b["roleRef"]["kind"]),
                s(&b["roleRef"]["name"]),
            )
        })
        .collect()
}

/// `(apiGroups, resources, verbs, resourceNames)` of one RBAC rule.
type Rule = (Vec<String>, Vec<String>, Vec<String>, Vec<String>);

fn roles(r: &Rendered) -> Vec<&Value> {
    r.objects
        .iter()
        .filter(|o| ["Role", "ClusterRole"].contains(&kind(o)))
        .collect()
}

fn owned(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| s.to_string()).collect()
}

/// A role's rules, each as a [`Rule`].
fn rules(role: &Value) -> Vec<Rule> {
    items(&role["rules"])
        .map(|x| {
            let s = |f: &str| owned(&strs(&x[f]));
            (
                s("apiGroups"),
                s("resources"),
                s("verbs"),
                s("resourceNames"),
            )
        })
        .collect()
}

#[test]
fn rbac_has_no_wildcards() {
    for role in roles(base()) {
        for rule in items(&role["rules"]) {
            for field in ["verbs", "resources", "apiGroups", "resourceNames"] {
                assert!(
                    !strs(&rule[field]).iter().any(|s| s.contains('*')),
                    "{}: rule {rule} must not use a wildcard in {field}",
                    label(role)
                );
            }
            assert!(
                rule.get("nonResourceURLs").is_none(),
                "{}: must not grant nonResourceURLs",
                label(role)
            );
            for verb in ["escalate", "bind", "impersonate", "deletecollection"] {
                assert!(
                    !strs(&rule["verbs"]).contains(&verb),
                    "{}: must not grant {verb}",
                    label(role)
                );
            }
            // Only the provisioner deletes: the Node of a terminated
            // instance, its NodeClaim, and the pods a drain still finds once
            // its NodePool's terminationGracePeriod is over.
            if strs(&rule["verbs"]).contains(&"delete") {
                let deletes_own = label(role) == format!("ClusterRole/{PROVISIONER}")
                    && strs(&rule["resources"])
                        .iter()
                        .all(|r| ["nodes", "nodeclaims", "pods"].contains(r));
                assert!(
                    deletes_own,
                    "{}: must not grant delete on {rule}",
                    label(role)
                );
            }
        }
    }
}

#[test]
fn secrets_are_namespaced_and_restricted_by_name() {
    let r = base();
    let mut can_create = false;
    let mut can_read = BTreeSet::new();
    for role in roles(r) {
        for rule in items(&role["rules"]) {
            if !strs(&rule["resources"]).contains(&"secrets") {
                continue;
            }
            let who = format!("{} ({})", label(role), rule);
            assert_eq!(
                kind(role),
                "Role",
                "{who}: secrets may only be granted by a namespaced Role"
            );
            assert_eq!(
                role["metadata"]["namespace"], NS,
                "{who}: secrets may only be granted in {NS}"
            );
            let verbs = strs(&rule["verbs"]);
            let names = strs(&rule["resourceNames"]);
            if verbs.contains(&"create") {
                assert_eq!(
                    verbs,
                    ["create"],
                    "{who}: create (which cannot be limited by name) must be a rule of its own"
                );
                can_create = true;
            } else {
                assert!(
                    !names.is_empty(),
                    "{who}: secrets rules other than create must have resourceNames"
                );
                for n in &names {
                    assert!(
                        SECRETS.contains(n),
                        "{who}: resourceName {n} is not one of the webhook's Secrets"
                    );
                }
                for v in &verbs {
                    assert!(
                        ["get", "list", "watch", "update", "patch"].contains(v),
                        "{who}: verb {v} on Secrets is more than the certs containers need"
                    );
                }
                // `spotwright-certs ensure` reads, watches by name and replaces them.
                for v in ["get", "list", "watch", "update"] {
                    assert!(
                        verbs.contains(&v),
                        "{who}: the certs containers need {v} on their Secrets"
                    );
                }
                can_read.extend(names);
            }
        }
    }
    assert!(
        can_create,
        "Role/spotwright-webhook-certs: the certs containers need to create their Secrets"
    );
    assert_eq!(
        can_read,
        BTreeSet::from(SECRETS),
        "Role/spotwright-webhook-certs: must reach both Secrets by name"
    );
}

#[test]
fn rbac_grants_exactly_what_the_webhook_needs() {
    let r = base();
    let read = owned(&["get", "list", "watch"]);

    let caches = r.get("ClusterRole", WEBHOOK);
    assert_eq!(
        rules(caches),
        vec![
            (owned(&[""]), owned(&["namespaces"]), read.clone(), vec![]),
            (owned(&["spotwright.io"]), owned(&["nodepools"]), read.clone(), vec![]),
        ],
        "ClusterRole/{WEBHOOK}: must grant exactly get/list/watch on namespaces and nodepools.spotwright.io"
    );
    let certs = r.get("ClusterRole", "spotwright-webhook-certs");
    assert_eq!(
        rules(certs),
        vec![(
            owned(&["admissionregistration.k8s.io"]),
            owned(&["mutatingwebhookconfigurations"]),
            owned(&["get", "list", "watch", "patch"]),
            owned(&[WEBHOOK])
        )],
        "ClusterRole/spotwright-webhook-certs: must grant only get/list/watch/patch on MutatingWebhookConfiguration {WEBHOOK} (by name)"
    );

    assert_bindings(r);
    r.get("ServiceAccount", WEBHOOK);
}

/// The ServiceAccount a binding is for: the one whose name its own name
/// starts with (`spotwright-webhook-certs` → `spotwright-webhook`).
fn owner(binding: &str) -> &'static str {
    SERVICE_ACCOUNTS
        .iter()
        .filter(|sa| binding == **sa || binding.starts_with(&format!("{sa}-")))
        .max_by_key(|sa| sa.len())
        .unwrap_or_else(|| {
            panic!("binding {binding}: its name must start with the name of the ServiceAccount it binds ({SERVICE_ACCOUNTS:?})")
        })
}

/// Every binding binds one component's ServiceAccount (and nothing else) to
/// a role of the base or one of [`BUILT_IN_ROLES`]; every role of the base
/// is bound.
fn assert_bindings(r: &Rendered) {
    let mut bound = BTreeSet::new();
    for b in r
        .all("RoleBinding")
        .into_iter()
        .chain(r.all("ClusterRoleBinding"))
    {
        let role_kind = b["roleRef"]["kind"].as_str().unwrap_or("");
        let role_name = b["roleRef"]["name"].as_str().unwrap_or("");
        if !BUILT_IN_ROLES.contains(&(role_kind, role_name)) {
            r.get(role_kind, role_name);
        }
        if kind(b) == "ClusterRoleBinding" {
            assert_eq!(
                role_kind,
                "ClusterRole",
                "{}: must bind a ClusterRole",
                label(b)
            );
        }
        let sa = owner(obj_name(b));
        assert_eq!(
            b["subjects"],
            json!([{"kind": "ServiceAccount", "name": sa, "namespace": NS}]),
            "{}: must bind only ServiceAccount {NS}/{sa}",
            label(b)
        );
        r.get("ServiceAccount", sa);
        bound.insert((role_kind.to_string(), role_name.to_string()));
    }
    for role in roles(r) {
        assert!(
            bound.contains(&(kind(role).to_string(), obj_name(role).to_string())),
            "{}: is bound by nothing",
            label(role)
        );
    }
}
