//! `Authorization` headers from token files, read on every use so that a
//! rotated token (a projected service-account token, a Secret updated in
//! place) is picked up without a restart. Reading a small file per request
//! costs microseconds; the callers make at most one request per target and
//! interval.

use std::path::{Path, PathBuf};

use http::HeaderValue;

#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    #[error("reading token file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("token file {path} is empty or not a valid header value")]
    Invalid { path: PathBuf },
}

/// `"<scheme> <token>"` from the file at `path` (surrounding whitespace
/// trimmed), marked sensitive so it is never logged.
pub async fn authorization(path: &Path, scheme: &str) -> Result<HeaderValue, TokenError> {
    let token = tokio::fs::read_to_string(path)
        .await
        .map_err(|source| TokenError::Read {
            path: path.to_path_buf(),
            source,
        })?;
    let invalid = || TokenError::Invalid {
        path: path.to_path_buf(),
    };
    let token = token.trim();
    if token.is_empty() {
        return Err(invalid());
    }
    let mut value = HeaderValue::from_str(&format!("{scheme} {token}")).map_err(|_| invalid())?;
    value.set_sensitive(true);
    Ok(value)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn reads_trims_and_rereads() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("token");
        std::fs::write(&path, "abc\n").unwrap();
        let value = authorization(&path, "token").await.unwrap();
        assert_eq!(value.to_str().unwrap(), "token abc");
        assert!(value.is_sensitive());
        std::fs::write(&path, "rotated").unwrap();
        let value = authorization(&path, "Bearer").await.unwrap();
        assert_eq!(value.to_str().unwrap(), "Bearer rotated");
    }

    #[tokio::test]
    async fn empty_missing_and_unprintable_tokens_are_errors() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("token");
        std::fs::write(&path, " \n").unwrap();
        assert!(matches!(
            authorization(&path, "token").await,
            Err(TokenError::Invalid { .. })
        ));
        std::fs::write(&path, "a\nb").unwrap();
        assert!(matches!(
            authorization(&path, "token").await,
            Err(TokenError::Invalid { .. })
        ));
        let err = authorization(&dir.path().join("absent"), "token")
            .await
            .unwrap_err();
        assert!(matches!(err, TokenError::Read { .. }));
        assert!(err.to_string().contains("absent"), "{err}");
    }
}
