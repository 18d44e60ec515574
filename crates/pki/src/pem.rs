//! Reading PEM files: certificate chains, PKCS#8 private keys and CRLs.
//!
//! PEM parsing is `rustls-pki-types`' [`PemObject`]; this module adds the errors that name
//! the file and the rule, and the permission check on private keys.

use std::fs::File;
use std::io::Read;
use std::path::Path;

use rustls_pki_types::pem::{self, PemObject};
use rustls_pki_types::{
    CertificateDer, CertificateRevocationListDer, PrivateKeyDer, PrivatePkcs8KeyDer,
};

use crate::PkiError;

/// Permission bits a private key file must not have: any access by group or others.
pub const KEY_FORBIDDEN_MODE: u32 = 0o077;

/// Reads every `CERTIFICATE` block of `path`, in order: a leaf first, then its chain.
///
/// A file with no certificate is an error.
pub fn load_certificates(path: &Path) -> Result<Vec<CertificateDer<'static>>, PkiError> {
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|e| pem_error(path, e))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| pem_error(path, e))?;
    if certs.is_empty() {
        return Err(PkiError::Missing {
            path: path.to_owned(),
            what: "CERTIFICATE",
        });
    }
    Ok(certs)
}

/// Reads every `X509 CRL` block of `path`.
///
/// A file with no CRL is an error: an empty CRL is a signed object, not an empty file.
pub fn load_crls(path: &Path) -> Result<Vec<CertificateRevocationListDer<'static>>, PkiError> {
    let crls = CertificateRevocationListDer::pem_file_iter(path)
        .map_err(|e| pem_error(path, e))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| pem_error(path, e))?;
    if crls.is_empty() {
        return Err(PkiError::Missing {
            path: path.to_owned(),
            what: "X509 CRL",
        });
    }
    Ok(crls)
}

/// Reads the PKCS#8 private key (`PRIVATE KEY` block) of `path`.
///
/// The file is refused if its mode gives the group or others any access
/// (`mode & 0o077 != 0`): a key others can read is a key others may have copied, and the
/// operator must learn that now rather than after an incident. The mode is read from the
/// opened file, so the check and the read concern the same file.
///
/// Only PKCS#8 is accepted (as written by `openssl genpkey` and `pons pki`): the same file
/// format serves the TLS key and the record-signing key, which `pons-core` reads as PKCS#8.
pub fn load_private_key(path: &Path) -> Result<PrivatePkcs8KeyDer<'static>, PkiError> {
    let io = |source| PkiError::Io {
        path: path.to_owned(),
        source,
    };
    let mut file = File::open(path).map_err(io)?;
    check_key_mode(path, &file)?;
    let mut bytes = Vec::new();
    file.read_to_end(&mut bytes).map_err(io)?;
    match PrivatePkcs8KeyDer::from_pem_slice(&bytes) {
        Ok(key) => Ok(key),
        Err(pem::Error::NoItemsFound) => {
            // Tell "wrong key format" apart from "no key at all".
            if PrivateKeyDer::from_pem_slice(&bytes).is_ok() {
                Err(PkiError::NotPkcs8 {
                    path: path.to_owned(),
                })
            } else {
                Err(PkiError::Missing {
                    path: path.to_owned(),
                    what: "PRIVATE KEY",
                })
            }
        }
        Err(e) => Err(pem_error(path, e)),
    }
}

#[cfg(unix)]
fn check_key_mode(path: &Path, file: &File) -> Result<(), PkiError> {
    use std::os::unix::fs::PermissionsExt;
    let mode = file
        .metadata()
        .map_err(|source| PkiError::Io {
            path: path.to_owned(),
            source,
        })?
        .permissions()
        .mode()
        & 0o7777;
    if mode & KEY_FORBIDDEN_MODE != 0 {
        return Err(PkiError::KeyPermissions {
            path: path.to_owned(),
            mode,
        });
    }
    Ok(())
}

#[cfg(not(unix))]
fn check_key_mode(_path: &Path, _file: &File) -> Result<(), PkiError> {
    // Pons nodes run on Unix; elsewhere file ACLs are the operator's concern.
    Ok(())
}

fn pem_error(path: &Path, e: pem::Error) -> PkiError {
    match e {
        pem::Error::Io(source) => PkiError::Io {
            path: path.to_owned(),
            source,
        },
        other => PkiError::Pem {
            path: path.to_owned(),
            reason: other.to_string(),
        },
    }
}
