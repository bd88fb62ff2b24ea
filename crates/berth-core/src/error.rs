//! The distribution-spec error codes, each with the HTTP status it answers with by default.
//!
//! One closed enum and one `match`: adding a code cannot compile without its status.

/// A code that may appear in an OCI error body `{"errors":[{"code": ...}]}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorCode {
    BlobUnknown,
    BlobUploadInvalid,
    BlobUploadUnknown,
    DigestInvalid,
    ManifestBlobUnknown,
    ManifestInvalid,
    ManifestUnknown,
    NameInvalid,
    NameUnknown,
    SizeInvalid,
    Unauthorized,
    Denied,
    Unsupported,
    TooManyRequests,
    /// A registry berth depends on (a mirror's upstream) cannot answer; not in the
    /// spec's table, as Distribution sends it.
    Unavailable,
    /// Server fault. The cause is logged, never sent.
    Unknown,
}

impl ErrorCode {
    /// The wire form of the code.
    pub fn as_str(self) -> &'static str {
        self.describe().0
    }

    /// The status this code answers with unless the endpoint knows better
    /// (for example 413 or 416, which carry a code of the closest meaning).
    pub fn status(self) -> u16 {
        self.describe().1
    }

    /// The spec's one-line description, used when a handler has nothing more specific.
    pub fn message(self) -> &'static str {
        self.describe().2
    }

    fn describe(self) -> (&'static str, u16, &'static str) {
        match self {
            ErrorCode::BlobUnknown => ("BLOB_UNKNOWN", 404, "blob unknown to registry"),
            ErrorCode::BlobUploadInvalid => ("BLOB_UPLOAD_INVALID", 400, "blob upload invalid"),
            ErrorCode::BlobUploadUnknown => (
                "BLOB_UPLOAD_UNKNOWN",
                404,
                "blob upload unknown to registry",
            ),
            ErrorCode::DigestInvalid => (
                "DIGEST_INVALID",
                400,
                "provided digest did not match uploaded content",
            ),
            ErrorCode::ManifestBlobUnknown => (
                "MANIFEST_BLOB_UNKNOWN",
                400,
                "manifest references a manifest or blob unknown to registry",
            ),
            ErrorCode::ManifestInvalid => ("MANIFEST_INVALID", 400, "manifest invalid"),
            ErrorCode::ManifestUnknown => ("MANIFEST_UNKNOWN", 404, "manifest unknown to registry"),
            ErrorCode::NameInvalid => ("NAME_INVALID", 400, "invalid repository name"),
            ErrorCode::NameUnknown => {
                ("NAME_UNKNOWN", 404, "repository name not known to registry")
            }
            ErrorCode::SizeInvalid => (
                "SIZE_INVALID",
                400,
                "provided length did not match content length",
            ),
            ErrorCode::Unauthorized => ("UNAUTHORIZED", 401, "authentication required"),
            ErrorCode::Denied => ("DENIED", 403, "requested access to the resource is denied"),
            ErrorCode::Unsupported => ("UNSUPPORTED", 405, "the operation is unsupported"),
            ErrorCode::TooManyRequests => ("TOOMANYREQUESTS", 429, "too many requests"),
            ErrorCode::Unavailable => ("UNAVAILABLE", 503, "service unavailable"),
            ErrorCode::Unknown => ("UNKNOWN", 500, "unknown error"),
        }
    }
}

impl std::fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_have_spec_names_and_statuses() {
        assert_eq!(ErrorCode::DigestInvalid.as_str(), "DIGEST_INVALID");
        assert_eq!(ErrorCode::BlobUnknown.status(), 404);
        assert_eq!(ErrorCode::Unauthorized.status(), 401);
        assert_eq!(ErrorCode::Unknown.status(), 500);
    }
}
