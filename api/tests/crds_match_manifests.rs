//! The CRDs under `manifests/base/crds/` must be exactly what the Rust
//! types generate; regenerate them with `spotwright-crdgen` when this fails.

use std::path::Path;

#[test]
fn crd_manifests_are_generated_from_the_types() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../manifests/base/crds");
    for (file, crd) in spotwright_api::crds::all() {
        let expected = spotwright_api::crds::to_yaml(&crd).expect("CRD serialises");
        let path = dir.join(file);
        let actual = std::fs::read_to_string(&path)
            .unwrap_or_else(|e| panic!("{} unreadable: {e}", path.display()));
        assert!(
            actual == expected,
            "{} drifted from the Rust types; run `cargo run -p spotwright-api --bin spotwright-crdgen -- manifests/base/crds`",
            path.display()
        );
    }
}

#[test]
fn every_crd_is_cluster_scoped_with_descriptions_and_columns() {
    for (file, crd) in spotwright_api::crds::all() {
        assert_eq!(crd.spec.scope, "Cluster", "{file}");
        let version = &crd.spec.versions[0];
        assert_eq!(version.name, "v1alpha1");
        let columns = version
            .additional_printer_columns
            .as_ref()
            .map(Vec::len)
            .unwrap_or(0);
        assert!(columns >= 3, "{file} has {columns} printer columns");
        let schema = serde_json::to_value(&version.schema).expect("schema serialises");
        let spec_props = &schema["openAPIV3Schema"]["properties"]["spec"]["properties"];
        let props = spec_props.as_object().expect("spec has properties");
        for (name, prop) in props {
            assert!(
                prop.get("description")
                    .and_then(|d| d.as_str())
                    .is_some_and(|d| !d.is_empty()),
                "{file}: spec.{name} has no description"
            );
        }
    }
}
