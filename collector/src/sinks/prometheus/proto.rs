//! The few Prometheus remote-write 1.0 protobuf messages Warden sends, defined by hand
//! with `prost` derives.
//!
//! Field numbers are those of `prompb/remote.proto` and `prompb/types.proto` in the
//! Prometheus repository (package `prometheus`). Only what the remote write 1.0 spec
//! defines is sent: series with float samples. Metadata (`WriteRequest` field 3) is left
//! out, as the 1.0 spec leaves it out ("experimental"); exemplars (`TimeSeries` field 3)
//! and native histograms (field 4) are not sent either. prost skips unknown fields when
//! decoding.

/// `prometheus.WriteRequest`: one remote-write request body (before snappy).
#[derive(Clone, PartialEq, prost::Message)]
pub struct WriteRequest {
    /// The series and their samples.
    #[prost(message, repeated, tag = "1")]
    pub timeseries: Vec<TimeSeries>,
}

/// `prometheus.TimeSeries`: one series (labels sorted by name, `__name__` included) and
/// its samples in timestamp order.
#[derive(Clone, PartialEq, prost::Message)]
pub struct TimeSeries {
    /// The labels, sorted by name, names unique, no empty values.
    #[prost(message, repeated, tag = "1")]
    pub labels: Vec<Label>,
    /// The samples, oldest first.
    #[prost(message, repeated, tag = "2")]
    pub samples: Vec<Sample>,
}

/// `prometheus.Label`.
#[derive(Clone, PartialEq, Eq, prost::Message)]
pub struct Label {
    /// The label name.
    #[prost(string, tag = "1")]
    pub name: String,
    /// The label value.
    #[prost(string, tag = "2")]
    pub value: String,
}

/// `prometheus.Sample`: a float value at a time.
#[derive(Clone, Copy, PartialEq, prost::Message)]
pub struct Sample {
    /// The value (NaN, ±Inf and the staleness marker allowed).
    #[prost(double, tag = "1")]
    pub value: f64,
    /// Milliseconds since the Unix epoch.
    #[prost(int64, tag = "2")]
    pub timestamp: i64,
}
