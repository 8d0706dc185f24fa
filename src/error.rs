//! The one error type every route answers with: `{"error": "..."}` and a 4xx/5xx status.

use serde::Serialize;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ApiError {
    pub status: u16,
    pub message: String,
    /// Set for 405 responses: the `Allow` header value.
    pub allow: Option<&'static str>,
    /// More members of the JSON body next to `error`, for clients that act on them (a partly
    /// committed form publish lists what it committed).
    pub detail: Option<Box<serde_json::Map<String, serde_json::Value>>>,
}

#[derive(Serialize)]
struct Body<'a> {
    error: &'a str,
}

impl ApiError {
    pub fn new(status: u16, message: impl Into<String>) -> Self {
        Self { status, message: message.into(), allow: None, detail: None }
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
        Self { status: 405, message: format!("method not allowed; allowed: {allow}"), allow: Some(allow), detail: None }
    }
    pub fn with_detail(mut self, detail: serde_json::Map<String, serde_json::Value>) -> Self {
        self.detail = Some(Box::new(detail));
        self
    }
    pub fn body(&self) -> String {
        match &self.detail {
            None => serde_json::to_string(&Body { error: &self.message }),
            Some(detail) => {
                let mut body = (**detail).clone();
                body.insert("error".into(), self.message.clone().into());
                serde_json::to_string(&body)
            }
        }
        .expect("JSON serializes")
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

    #[test]
    fn body_detail_sits_next_to_error() {
        let mut detail = serde_json::Map::new();
        detail.insert("committed".into(), serde_json::json!([{"id": "a"}]));
        detail.insert("error".into(), "overwritten".into());
        let e = ApiError::conflict("partly done").with_detail(detail);
        let v: serde_json::Value = serde_json::from_str(&e.body()).unwrap();
        assert_eq!(v, serde_json::json!({"error": "partly done", "committed": [{"id": "a"}]}));
    }
}
