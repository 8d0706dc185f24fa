//! The one place where the layers' errors become HTTP: each domain error enum maps to a status
//! here (and to `{"error": "…"}` through [`ApiError::body`]). Layers below `http` never pick a
//! status for these errors themselves.

use crate::access::auth::AccessError;
use crate::error::ApiError;
use crate::storage::store::StoreError;

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        let status = match e {
            StoreError::DigestMismatch(_) => 422,
            StoreError::LengthMismatch(_) => 400,
            StoreError::Corrupt(_) | StoreError::Backend(_) => 500,
        };
        ApiError::new(status, e.to_string())
    }
}

impl From<AccessError> for ApiError {
    fn from(e: AccessError) -> Self {
        let status = match e {
            AccessError::NotConfigured => 503,
            AccessError::Unauthenticated(_) => 401,
            AccessError::Forbidden(_) => 403,
        };
        ApiError::new(status, e.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_each_layer_error_maps_once() {
        let cases: [(ApiError, u16); 7] = [
            (StoreError::DigestMismatch("x".into()).into(), 422),
            (StoreError::LengthMismatch("x".into()).into(), 400),
            (StoreError::Corrupt("x".into()).into(), 500),
            (StoreError::Backend("x".into()).into(), 500),
            (AccessError::NotConfigured.into(), 503),
            (AccessError::Unauthenticated("x".into()).into(), 401),
            (AccessError::Forbidden("x".into()).into(), 403),
        ];
        for (e, status) in cases {
            assert_eq!(e.status, status, "{e}");
            assert!(e.body().starts_with(r#"{"error":""#));
        }
    }
}
