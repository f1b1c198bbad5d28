//! The store seam: the four xenstore operations the builders use. Paths are absolute.

pub mod memory;
pub mod xenstored;

pub use memory::MemoryStore;
pub use xenstored::XenstoredStore;

/// A failed store operation.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("xenstore {op} {path}: [{code}] {message}")]
pub struct StoreError {
    /// `read`, `write`, `directory` or `rm`.
    pub op: &'static str,
    /// The path involved.
    pub path: String,
    /// errno.
    pub code: i32,
    /// Text.
    pub message: String,
}

/// Result of a store operation.
pub type StoreResult<T> = Result<T, StoreError>;

/// xenstore as the builders see it.
pub trait Store: Send + Sync {
    /// Read a node; `Ok(None)` when it does not exist.
    fn read(&self, path: &str) -> StoreResult<Option<String>>;
    /// Write a node, creating parents.
    fn write(&self, path: &str, value: &str) -> StoreResult<()>;
    /// List the children of a node (empty if it does not exist).
    fn directory(&self, path: &str) -> StoreResult<Vec<String>>;
    /// Remove a node and its children (absent is fine).
    fn rm(&self, path: &str) -> StoreResult<()>;
}

impl<S: Store + ?Sized> Store for std::sync::Arc<S> {
    fn read(&self, path: &str) -> StoreResult<Option<String>> {
        (**self).read(path)
    }
    fn write(&self, path: &str, value: &str) -> StoreResult<()> {
        (**self).write(path, value)
    }
    fn directory(&self, path: &str) -> StoreResult<Vec<String>> {
        (**self).directory(path)
    }
    fn rm(&self, path: &str) -> StoreResult<()> {
        (**self).rm(path)
    }
}

/// `/local/domain/<domid>`, what `xs_get_domain_path` returns.
pub fn domain_path(domid: crate::types::DomId) -> String {
    format!("/local/domain/{domid}")
}
