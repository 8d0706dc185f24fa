//! The one error type every route answers with: `{"error": "..."}` and a 4xx/5xx status.

use serde::Serialize;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ApiError {
    pub status: u16,
    pub message: String,
    /// Set for 405 responses: the `Allow` header value.
    pub allow: Option<&'static str>,
}

#[derive(Serialize)]
struct Body<'a> {
    error: &'a str,
}

impl ApiError {
    pub fn new(status: u16, message: impl Into<String>) -> Self {
        Self { status, message: message.into(), allow: None }
    }
    pub fn bad_request(m: impl Into<String>) -> Self {
        Self::new(400, m)
    }
    pub fn unauthorized(m: impl Into<String>) -> Self {
        Self::new(401, m)
    }
    pub fn not_found(m: impl Into<String>) -> Self {
        Self::new(404, m)
    }
    pub fn conflict(m: impl Into<String>) -> Self {
        Self::new(409, m)
    }
    pub fn unprocessable(m: impl Into<String>) -> Self {
        Self::new(422, m)
    }
    pub fn too_large(m: impl Into<String>) -> Self {
        Self::new(413, m)
    }
    pub fn internal(m: impl Into<String>) -> Self {
        Self::new(500, m)
    }
    pub fn method_not_allowed(allow: &'static str) -> Self {
        Self { status: 405, message: format!("method not allowed; allowed: {allow}"), allow: Some(allow) }
    }
    pub fn body(&self) -> String {
        serde_json::to_string(&Body { error: &self.message }).expect("string serializes")
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}", self.status, self.message)
    }
}

impl std::error::Error for ApiError {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_body_escapes() {
        let e = ApiError::bad_request("bad \"x\"\n");
        assert_eq!(e.body(), r#"{"error":"bad \"x\"\n"}"#);
        assert_eq!(ApiError::method_not_allowed("GET, HEAD").allow, Some("GET, HEAD"));
    }
}
