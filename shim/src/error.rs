//! The shim's error type for task API calls, and its mapping to ttrpc status codes
//! (containerd turns the code into an errdefs class: NotFound, InvalidArgument, …).

use containerd_shim_protos::ttrpc::{self, Code};

/// An error returned by a task API call.
#[derive(Debug, thiserror::Error)]
pub enum ShimError {
    /// The request or the container's spec/image asks for something the shim cannot do.
    #[error("{0}")]
    InvalidArgument(String),
    /// No such container, or the process already exited.
    #[error("{0}")]
    NotFound(String),
    /// A container with this id already exists in this shim.
    #[error("{0}")]
    AlreadyExists(String),
    /// The container is not in a state that allows the call.
    #[error("{0}")]
    FailedPrecondition(String),
    /// The call makes no sense for a unikernel.
    #[error("{0}")]
    Unimplemented(String),
    /// Something failed on the host.
    #[error("{0}")]
    Internal(String),
}

impl ShimError {
    /// The ttrpc status code for this error.
    pub fn code(&self) -> Code {
        match self {
            ShimError::InvalidArgument(_) => Code::INVALID_ARGUMENT,
            ShimError::NotFound(_) => Code::NOT_FOUND,
            ShimError::AlreadyExists(_) => Code::ALREADY_EXISTS,
            ShimError::FailedPrecondition(_) => Code::FAILED_PRECONDITION,
            ShimError::Unimplemented(_) => Code::UNIMPLEMENTED,
            ShimError::Internal(_) => Code::INTERNAL,
        }
    }
}

impl From<ShimError> for ttrpc::Error {
    fn from(e: ShimError) -> Self {
        ttrpc::Error::RpcStatus(ttrpc::get_status(e.code(), e.to_string()))
    }
}

/// Result of a task API call.
pub type ShimResult<T> = Result<T, ShimError>;
