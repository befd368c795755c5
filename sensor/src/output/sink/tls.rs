//! TLS for the network outputs: rustls with the ring provider, trusting
//! either the CA certificates an output names (`ca=PATH`) or, by default,
//! the Mozilla roots built into the agent (webpki-roots), so the trust set
//! is the same on every host whatever its certificate store.

use std::{path::Path, sync::Arc};

use rustls::RootCertStore;
use rustls_pki_types::{CertificateDer, pem::PemObject};

use super::SinkError;

/// The certificates of a PEM file (at least one).
pub fn load_ca(output: &str, path: &Path) -> Result<Vec<CertificateDer<'static>>, SinkError> {
    let failed = |source| SinkError::CaFile {
        output: output.to_owned(),
        path: path.to_path_buf(),
        source,
    };
    let pem = std::fs::read(path).map_err(failed)?;
    let certs = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|err| {
            failed(std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                err.to_string(),
            ))
        })?;
    if certs.is_empty() {
        return Err(SinkError::CaEmpty {
            output: output.to_owned(),
            path: path.to_path_buf(),
        });
    }
    Ok(certs)
}

/// A client configuration trusting `ca`'s certificates, or the built-in
/// roots.
pub fn client_config(
    output: &str,
    ca: Option<&Path>,
) -> Result<Arc<rustls::ClientConfig>, SinkError> {
    let mut roots = RootCertStore::empty();
    match ca {
        Some(path) => {
            for cert in load_ca(output, path)? {
                roots.add(cert).map_err(|err| SinkError::Setup {
                    output: output.to_owned(),
                    problem: format!(
                        "the CA file {} holds a certificate rustls refuses: {err}",
                        path.display()
                    ),
                })?;
            }
        }
        None => roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned()),
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|err| SinkError::Setup {
            output: output.to_owned(),
            problem: format!("TLS: {err}"),
        })?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(config))
}
