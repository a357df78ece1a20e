//! Writes the CRDs generated from the Rust types into a folder:
//! `spotwright-crdgen manifests/base/crds`.

use std::path::PathBuf;
use std::process::ExitCode;

fn main() -> ExitCode {
    let Some(dir) = std::env::args_os().nth(1).map(PathBuf::from) else {
        eprintln!("usage: spotwright-crdgen <output-folder>");
        return ExitCode::from(2);
    };
    for (file, crd) in spotwright_api::crds::all() {
        let path = dir.join(file);
        let written = spotwright_api::crds::to_yaml(&crd)
            .map_err(|e| e.to_string())
            .and_then(|yaml| std::fs::write(&path, yaml).map_err(|e| e.to_string()));
        if let Err(err) = written {
            eprintln!("spotwright-crdgen: cannot write {}: {err}", path.display());
            return ExitCode::FAILURE;
        }
    }
    ExitCode::SUCCESS
}
