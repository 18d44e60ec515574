//! Secret files other than PEM keys: the federation's subject pseudonym key.

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
    let io = |source| SecretError::Io {
        path: path.to_owned(),
        source,
    };
    let file = std::fs::File::open(path).map_err(io)?;
    let mode = file.metadata().map_err(io)?.permissions().mode() & 0o7777;
    if mode & 0o077 != 0 {
        return Err(SecretError::Permissions {
            path: path.to_owned(),
            mode,
        });
    }
    let mut text = String::new();
    file.take(4096).read_to_string(&mut text).map_err(io)?;
    let format = |reason: String| SecretError::Format {
        path: path.to_owned(),
        reason,
    };
    let bytes =
        hex::decode(text.trim()).map_err(|e| format(format!("pseudonym key must be hex: {e}")))?;
    PseudonymKey::from_bytes(&bytes).map_err(|e| format(e.to_string()))
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
}
