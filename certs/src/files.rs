//! Certificates as files: `spotwright-certs generate`, and the `--write-dir`
//! copy `ensure` keeps for the webhook container.
//!
//! Every file is written atomically (a temporary file in the same directory,
//! then `rename`), so a reader sees the old content or the new, never half.
//! Keys are mode 0600, certificates 0644.

use std::fs::{self, OpenOptions, Permissions};
use std::io::{ErrorKind, Write as _};
use std::net::IpAddr;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use time::OffsetDateTime;

use crate::pki::CertificateAuthority;
use crate::plan::{ServingSecretData, CA_CRT, CA_KEY, TLS_CRT, TLS_KEY};
use crate::Error;

/// Mode of private key files.
pub const KEY_MODE: u32 = 0o600;
/// Mode of certificate files.
pub const CERT_MODE: u32 = 0o644;

/// What `generate` makes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GenerateOptions {
    /// Directory for `ca.crt`, `ca.key`, `tls.crt`, `tls.key` (created if missing).
    pub out_dir: PathBuf,
    /// DNS names of the serving certificate.
    pub dns_names: Vec<String>,
    /// IPs of the serving certificate.
    pub ips: Vec<IpAddr>,
    /// Validity of the serving certificate.
    pub validity: Duration,
    /// Validity of a new CA.
    pub ca_validity: Duration,
    /// An existing CA (certificate file, PKCS#8 key file) to sign with instead of a new one.
    pub ca: Option<(PathBuf, PathBuf)>,
    /// Common name of a new CA.
    pub ca_common_name: String,
}

/// What `generate` wrote.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Generated {
    /// Paths written, in order.
    pub files: Vec<PathBuf>,
    /// Whether a new CA was made (and `ca.key` written).
    pub ca_generated: bool,
}

/// `spotwright-certs generate`: a CA (new, or loaded) and a serving pair as files.
///
/// Writes `ca.crt`, `ca.key` (only for a new CA), `tls.key`, `tls.crt`.
pub fn generate(opts: &GenerateOptions, now: OffsetDateTime) -> Result<Generated, Error> {
    let (ca, ca_generated) = match &opts.ca {
        Some((cert_path, key_path)) => {
            let cert = read_to_string(cert_path)?;
            let key = read_to_string(key_path)?;
            (CertificateAuthority::from_pem(&cert, &key)?, false)
        }
        None => (
            CertificateAuthority::generate(&opts.ca_common_name, opts.ca_validity, now)?,
            true,
        ),
    };
    let pair = ca.issue_serving(&opts.dns_names, &opts.ips, opts.validity, now)?;

    fs::create_dir_all(&opts.out_dir).map_err(|source| Error::Io {
        path: opts.out_dir.clone(),
        source,
    })?;
    let mut files = Vec::new();
    let mut put = |name: &str, contents: &str, mode: u32| -> Result<(), Error> {
        let path = opts.out_dir.join(name);
        write_atomic(&path, contents.as_bytes(), mode)?;
        files.push(path);
        Ok(())
    };
    put(CA_CRT, &ca.cert_pem, CERT_MODE)?;
    if ca_generated {
        put(CA_KEY, &ca.key_pem, KEY_MODE)?;
    }
    put(TLS_KEY, &pair.key_pem, KEY_MODE)?;
    put(TLS_CRT, &pair.cert_pem, CERT_MODE)?;
    Ok(Generated {
        files,
        ca_generated,
    })
}

/// Copies the serving Secret's `ca.crt`, `tls.key`, `tls.crt` into `dir`,
/// rewriting only files whose content differs. Returns the names rewritten.
///
/// The certificate is written last so that a reader that keys on `tls.crt`
/// finds the matching key already in place.
pub fn sync_dir(dir: &Path, data: &ServingSecretData) -> Result<Vec<&'static str>, Error> {
    fs::create_dir_all(dir).map_err(|source| Error::Io {
        path: dir.to_path_buf(),
        source,
    })?;
    let mut changed = Vec::new();
    for (name, contents, mode) in [
        (CA_CRT, &data.ca_crt, CERT_MODE),
        (TLS_KEY, &data.tls_key, KEY_MODE),
        (TLS_CRT, &data.tls_crt, CERT_MODE),
    ] {
        let Some(contents) = contents else {
            continue;
        };
        let path = dir.join(name);
        let same = match fs::read(&path) {
            Ok(old) => old == contents.as_bytes(),
            Err(e) if e.kind() == ErrorKind::NotFound => false,
            Err(source) => return Err(Error::Io { path, source }),
        };
        if !same {
            write_atomic(&path, contents.as_bytes(), mode)?;
            changed.push(name);
        }
    }
    Ok(changed)
}

/// Writes `contents` to `path` with `mode`: a temporary file in the same
/// directory, flushed to disk, then renamed over `path`.
pub fn write_atomic(path: &Path, contents: &[u8], mode: u32) -> Result<(), Error> {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let io_err = |source| Error::Io {
        path: path.to_path_buf(),
        source,
    };
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let name = path.file_name().ok_or_else(|| {
        io_err(std::io::Error::new(
            ErrorKind::InvalidInput,
            "not a file path",
        ))
    })?;
    let tmp = dir.join(format!(
        ".{}.tmp.{}.{}",
        name.to_string_lossy(),
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    ));
    let result = (|| -> std::io::Result<()> {
        let mut file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(mode)
            .open(&tmp)?;
        // The umask may have narrowed the mode; make it exact.
        file.set_permissions(Permissions::from_mode(mode))?;
        file.write_all(contents)?;
        file.sync_all()?;
        drop(file);
        fs::rename(&tmp, path)?;
        // Make the rename itself durable; not every filesystem allows this.
        if let Ok(d) = fs::File::open(&dir) {
            let _ = d.sync_all();
        }
        Ok(())
    })();
    if let Err(source) = result {
        let _ = fs::remove_file(&tmp);
        return Err(io_err(source));
    }
    Ok(())
}

fn read_to_string(path: &Path) -> Result<String, Error> {
    fs::read_to_string(path).map_err(|source| Error::Io {
        path: path.to_path_buf(),
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pki::{inspect, key_matches};
    use crate::service_dns_names;

    const DAY: Duration = Duration::from_secs(86_400);

    fn now() -> OffsetDateTime {
        OffsetDateTime::from_unix_timestamp(1_767_268_800).unwrap()
    }

    fn mode(path: &Path) -> u32 {
        fs::metadata(path).unwrap().permissions().mode() & 0o777
    }

    fn opts(dir: &Path) -> GenerateOptions {
        GenerateOptions {
            out_dir: dir.to_path_buf(),
            dns_names: service_dns_names("spotwright-webhook", "spotwright-system"),
            ips: vec!["127.0.0.1".parse().unwrap()],
            validity: 365 * DAY,
            ca_validity: 3650 * DAY,
            ca: None,
            ca_common_name: "spotwright-webhook-ca".to_string(),
        }
    }

    #[test]
    fn generate_writes_four_files_with_key_modes() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("out");
        let out = generate(&opts(&dir), now()).unwrap();
        assert!(out.ca_generated);
        let names: Vec<_> = out
            .files
            .iter()
            .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
            .collect();
        assert_eq!(names, ["ca.crt", "ca.key", "tls.key", "tls.crt"]);
        assert_eq!(mode(&dir.join("ca.key")), 0o600);
        assert_eq!(mode(&dir.join("tls.key")), 0o600);
        assert_eq!(mode(&dir.join("ca.crt")), 0o644);
        assert_eq!(mode(&dir.join("tls.crt")), 0o644);
        // No temporary files left behind.
        assert_eq!(fs::read_dir(&dir).unwrap().count(), 4);

        let read = |n: &str| fs::read_to_string(dir.join(n)).unwrap();
        let ca = CertificateAuthority::from_pem(&read("ca.crt"), &read("ca.key")).unwrap();
        ca.verify(&read("tls.crt")).unwrap();
        let info = inspect(&read("tls.crt")).unwrap();
        key_matches(&read("tls.key"), &info).unwrap();
        assert!(info.covers(&opts(&dir).dns_names, &opts(&dir).ips));
        assert!(info.server_auth);
        assert_eq!(
            info.not_after,
            now() - crate::BACKDATE + time::Duration::days(365)
        );
        assert_eq!(
            ca.info().unwrap().not_after,
            now() - crate::BACKDATE + time::Duration::days(3650)
        );
    }

    #[test]
    fn generate_with_existing_ca_writes_no_ca_key() {
        let tmp = tempfile::tempdir().unwrap();
        let ca = CertificateAuthority::generate("given", 10 * DAY, now()).unwrap();
        fs::write(tmp.path().join("given.crt"), &ca.cert_pem).unwrap();
        fs::write(tmp.path().join("given.key"), &ca.key_pem).unwrap();
        let dir = tmp.path().join("out");
        let mut o = opts(&dir);
        o.ca = Some((tmp.path().join("given.crt"), tmp.path().join("given.key")));
        let out = generate(&o, now()).unwrap();
        assert!(!out.ca_generated);
        assert!(!dir.join("ca.key").exists());
        assert_eq!(fs::read_to_string(dir.join("ca.crt")).unwrap(), ca.cert_pem);
        ca.verify(&fs::read_to_string(dir.join("tls.crt")).unwrap())
            .unwrap();
    }

    #[test]
    fn generate_reports_unwritable_dir_and_bad_ca() {
        let tmp = tempfile::tempdir().unwrap();
        let file = tmp.path().join("a-file");
        fs::write(&file, "x").unwrap();
        let err = generate(&opts(&file.join("sub")), now()).unwrap_err();
        assert!(matches!(err, Error::Io { .. }), "{err}");
        assert!(err.to_string().contains("a-file"), "{err}");

        let mut o = opts(&tmp.path().join("out"));
        o.ca = Some((
            tmp.path().join("missing.crt"),
            tmp.path().join("missing.key"),
        ));
        let err = generate(&o, now()).unwrap_err();
        assert!(err.to_string().contains("missing.crt"), "{err}");
    }

    #[test]
    fn write_atomic_replaces_and_sets_mode() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("f");
        write_atomic(&path, b"one", 0o644).unwrap();
        write_atomic(&path, b"two", 0o600).unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"two");
        assert_eq!(mode(&path), 0o600);
        assert_eq!(fs::read_dir(tmp.path()).unwrap().count(), 1);
        assert!(write_atomic(&tmp.path().join("no/such/dir/f"), b"x", 0o600).is_err());
    }

    #[test]
    fn sync_dir_writes_only_changes() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("tls");
        let mut data = ServingSecretData {
            tls_crt: Some("crt".to_string()),
            tls_key: Some("key".to_string()),
            ca_crt: Some("ca".to_string()),
        };
        assert_eq!(
            sync_dir(&dir, &data).unwrap(),
            vec!["ca.crt", "tls.key", "tls.crt"]
        );
        assert_eq!(mode(&dir.join("tls.key")), 0o600);
        assert!(sync_dir(&dir, &data).unwrap().is_empty());
        data.tls_crt = Some("crt2".to_string());
        assert_eq!(sync_dir(&dir, &data).unwrap(), vec!["tls.crt"]);
        assert_eq!(fs::read_to_string(dir.join("tls.crt")).unwrap(), "crt2");
    }
}
