//! Secret files other than PEM keys: the federation's subject pseudonym key and the node's
//! master key (which wraps the data key of every stored record body).

use std::io::Read;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use pons_core::pseudonym::PseudonymKey;

/// Why a secret file was refused.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SecretError {
    /// The file could not be read.
    #[error("cannot read {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// Group or others may read the file.
    #[error("{path} is readable by group or others (mode {mode:04o}): chmod 600")]
    Permissions {
        /// The file.
        path: PathBuf,
        /// Its mode.
        mode: u32,
    },
    /// The contents are not a key.
    #[error("{path}: {reason}")]
    Format {
        /// The file.
        path: PathBuf,
        /// The rule broken.
        reason: String,
    },
}

/// Reads a pseudonym key file: hex text of at least 32 bytes, mode 0600.
///
/// The mode is read from the opened file, so the check and the read concern one file.
pub fn load_pseudonym_key(path: &Path) -> Result<PseudonymKey, SecretError> {
    let bytes = read_hex_secret(path, "pseudonym key")?;
    PseudonymKey::from_bytes(&bytes).map_err(|e| SecretError::Format {
        path: path.to_owned(),
        reason: e.to_string(),
    })
}

/// Reads the node's master key file: hex text of exactly 32 bytes, mode 0600 (made by
/// `pons init`). The node refuses to start otherwise: a key readable by others would let
/// them read every stored record body.
pub fn load_master_key(path: &Path) -> Result<pons_store::MasterKey, SecretError> {
    let bytes = read_hex_secret(path, "master key")?;
    pons_store::MasterKey::from_bytes(&bytes).map_err(|e| SecretError::Format {
        path: path.to_owned(),
        reason: e.to_string(),
    })
}

/// The bytes of a hex key file that group and others cannot read.
///
/// The mode is read from the opened file, so the check and the read concern one file.
fn read_hex_secret(path: &Path, what: &str) -> Result<Vec<u8>, SecretError> {
    let io = |source| SecretError::Io {
        path: path.to_owned(),
        source,
    };
    let file = std::fs::File::open(path).map_err(io)?;
    let mode = file.metadata().map_err(io)?.permissions().mode() & 0o7777;
    if mode & pons_pki::pem::KEY_FORBIDDEN_MODE != 0 {
        return Err(SecretError::Permissions {
            path: path.to_owned(),
            mode,
        });
    }
    let mut text = String::new();
    file.take(4096).read_to_string(&mut text).map_err(io)?;
    hex::decode(text.trim()).map_err(|e| SecretError::Format {
        path: path.to_owned(),
        reason: format!("{what} must be hex: {e}"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn refuses_open_modes_and_bad_contents() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("pseudonym.key");
        std::fs::write(&path, format!("{}\n", "ab".repeat(32))).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o640)).unwrap();
        let err = load_pseudonym_key(&path).unwrap_err();
        assert!(
            matches!(err, SecretError::Permissions { mode: 0o640, .. }),
            "{err}"
        );
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        load_pseudonym_key(&path).unwrap();

        std::fs::write(&path, "not hex").unwrap();
        assert!(matches!(
            load_pseudonym_key(&path),
            Err(SecretError::Format { .. })
        ));
        std::fs::write(&path, "abcd").unwrap();
        let err = load_pseudonym_key(&path).unwrap_err();
        assert!(matches!(err, SecretError::Format { .. }), "{err}");
    }

    #[test]
    fn master_key_is_32_bytes_and_private() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("master.key");
        std::fs::write(&path, format!("{}\n", "cd".repeat(32))).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o604)).unwrap();
        let err = load_master_key(&path).unwrap_err();
        assert!(
            matches!(err, SecretError::Permissions { mode: 0o604, .. }),
            "{err}"
        );
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        assert_eq!(load_master_key(&path).unwrap().to_hex(), "cd".repeat(32));
        std::fs::write(&path, "cd".repeat(33)).unwrap();
        let err = load_master_key(&path).unwrap_err();
        assert!(matches!(err, SecretError::Format { .. }), "{err}");
    }
}
