//! The few `google.rpc` / `google.protobuf` messages OTLP uses around errors: the
//! `Status` of OTLP/HTTP error bodies and gRPC status details, and the `RetryInfo` detail
//! that tells a client when to retry. Shared by the receiver (which writes them) and the
//! exporter (which reads them).

/// `google.rpc.Status`, the body of OTLP/HTTP errors and gRPC status details.
#[derive(Clone, PartialEq, prost::Message)]
pub(crate) struct RpcStatus {
    /// gRPC status code.
    #[prost(int32, tag = "1")]
    pub(crate) code: i32,
    /// Developer-facing message.
    #[prost(string, tag = "2")]
    pub(crate) message: String,
    /// Typed details (`RetryInfo`, ...).
    #[prost(message, repeated, tag = "3")]
    pub(crate) details: Vec<ProtoAny>,
}

/// `google.protobuf.Any`.
#[derive(Clone, PartialEq, prost::Message)]
pub(crate) struct ProtoAny {
    /// `type.googleapis.com/<message name>`.
    #[prost(string, tag = "1")]
    pub(crate) type_url: String,
    /// The encoded message.
    #[prost(bytes = "vec", tag = "2")]
    pub(crate) value: Vec<u8>,
}

/// `google.rpc.RetryInfo`.
#[derive(Clone, PartialEq, prost::Message)]
pub(crate) struct RetryInfo {
    /// How long the client should wait.
    #[prost(message, optional, tag = "1")]
    pub(crate) retry_delay: Option<ProtoDuration>,
}

/// `google.protobuf.Duration`.
#[derive(Clone, PartialEq, prost::Message)]
pub(crate) struct ProtoDuration {
    /// Whole seconds.
    #[prost(int64, tag = "1")]
    pub(crate) seconds: i64,
    /// Nanoseconds.
    #[prost(int32, tag = "2")]
    pub(crate) nanos: i32,
}

/// The `type_url` of a `RetryInfo` detail.
pub(crate) const RETRY_INFO_TYPE_URL: &str = "type.googleapis.com/google.rpc.RetryInfo";
